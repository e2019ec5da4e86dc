"""Golden parity: the CycleGAN/pix2pix networks loaded from the reference's PyTorch state dicts
(through translate.convert) reproduce the reference outputs stored in ../shared/golden."""
import jax
import numpy as np
import pytest

from tests.conftest import nchw_to_nhwc, nhwc_to_nchw
from translate import convert, layers

TOLERANCE = 1e-4  # max abs diff, as the golden README asks for a float32 port


def _run(module, variables, x_nchw):
  # "highest": on GPU the default float32 conv precision may be TF32 (~1e-3), far above the tolerance.
  with jax.default_matmul_precision("highest"):
    y = jax.jit(module.apply)(variables, nchw_to_nhwc(x_nchw))
  return nhwc_to_nchw(y)


def _max_diff(a, b):
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("winograd", ["auto", "on"])  # "on": the 3x3 convs as Winograd F(2x2, 3x3)
def test_cyclegan_resnet_6blocks(golden_state_dict, monkeypatch, winograd):
  monkeypatch.setattr(layers, "WINOGRAD", winograd)
  state_dict, g = golden_state_dict("cyclegan_resnet6_ngf8.npz")
  module, variables = convert.from_torch("cyclegan_resnet", state_dict, input_nc=3, output_nc=3,
                                         ngf=8, n_blocks=6, norm="instance")
  assert _max_diff(_run(module, variables, g["input"]), g["output"]) <= TOLERANCE
  # Batch of two: instance norm is per sample, so sample 0 must not change.
  out2 = _run(module, variables, g["input_batch2"])
  assert _max_diff(out2, g["output_batch2"]) <= TOLERANCE
  assert _max_diff(out2[:1], g["output"]) <= TOLERANCE


def test_cyclegan_resnet_accepts_old_instance_norm_stats(golden_state_dict):
  # 2018 checkpoints carry InstanceNorm running stats that the reference drops on load.
  state_dict, g = golden_state_dict("cyclegan_resnet6_ngf8.npz")
  old = dict(state_dict)
  old["model.2.running_mean"] = np.zeros(8, np.float32)
  old["model.2.running_var"] = np.ones(8, np.float32)
  old["model.10.conv_block.2.running_mean"] = np.zeros(32, np.float32)
  old["model.10.conv_block.2.running_var"] = np.ones(32, np.float32)
  module, variables = convert.from_torch("cyclegan_resnet", old, ngf=8, n_blocks=6, norm="instance")
  assert _max_diff(_run(module, variables, g["input"]), g["output"]) <= TOLERANCE


def test_pix2pix_unet_128(golden_state_dict):
  state_dict, g = golden_state_dict("pix2pix_unet128_ngf4.npz")
  module, variables = convert.from_torch("pix2pix_unet", state_dict, input_nc=3, output_nc=3,
                                         num_downs=7, ngf=4, norm="batch")
  # eval mode: batch norm with the stored running statistics
  assert _max_diff(_run(module, variables, g["input"]), g["output"]) <= TOLERANCE


def test_pix2pix_unet_train_mode_differs(golden_state_dict):
  # The golden output is an eval-mode output; train mode (batch statistics) must not match it, which
  # shows the running statistics were actually loaded and used.
  state_dict, g = golden_state_dict("pix2pix_unet128_ngf4.npz")
  module, variables = convert.from_torch("pix2pix_unet", state_dict, num_downs=7, ngf=4)
  x = nchw_to_nhwc(g["input"])
  with jax.default_matmul_precision("highest"):
    y_train, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
  assert _max_diff(nhwc_to_nchw(y_train), g["output"]) > 1e-2


def test_pix2pix_patchgan_70(golden_state_dict):
  state_dict, g = golden_state_dict("pix2pix_patchgan_nlayer3_ndf8.npz")
  module, variables = convert.from_torch("patchgan", state_dict, input_nc=6, ndf=8, n_layers=3,
                                         norm="batch")
  out = _run(module, variables, g["input"])
  assert out.shape == (1, 1, 6, 6)
  assert _max_diff(out, g["output"]) <= TOLERANCE
