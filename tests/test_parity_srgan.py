"""SRGAN networks against the golden outputs of sgrvinod/a-PyTorch-Tutorial-to-Super-Resolution
`models.py` (torch `Generator` and `Discriminator` in `eval()` mode: BN with running statistics).

The torch state dicts go through `translate.convert.from_torch`, so the key mapping (the `net.` prefix,
the PReLU indices .1 / .2, the discriminator's BN-less first block) is covered too.
"""
import jax
import numpy as np
import pytest

from tests.conftest import max_diff_nchw, nchw_to_nhwc
from translate import convert, layers

G_FILE = "srgan_generator_c16_b2_x4.npz"
D_FILE = "srgan_discriminator_c1_b8_fc1024.npz"


@pytest.mark.parametrize("winograd", ["auto", "on"])  # "on": the 3x3 convs as Winograd F(2x2, 3x3)
def test_generator_eval_mode(golden_network, monkeypatch, winograd):
  monkeypatch.setattr(layers, "WINOGRAD", winograd)
  module, variables, g = golden_network(G_FILE, "srgan_generator")
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, nchw_to_nhwc(g["input"]), train=False)
  assert out.shape == (1, 48, 48, 3)
  assert max_diff_nchw(out, g["output"]) <= 1e-4
  # Train mode (batch statistics) is a different computation: the running stats matter.
  with jax.default_matmul_precision("highest"):
    out_train, _ = module.apply(variables, nchw_to_nhwc(g["input"]), train=True,
                                mutable=["batch_stats"])
  assert max_diff_nchw(out_train, g["output"]) > 1e-2


def test_generator_loads_srresnet_keys_without_prefix(golden_state_dict):
  """The reference's SRResNet saves the same network without `Generator`'s `net.` prefix."""
  state_dict, g = golden_state_dict(G_FILE)
  bare = {k[len("net."):]: v for k, v in state_dict.items()}
  module, variables = convert.from_torch("srgan_generator", bare, **g["meta"]["args"])
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, nchw_to_nhwc(g["input"]))
  assert max_diff_nchw(out, g["output"]) <= 1e-4


def test_generator_rejects_other_scale(golden_state_dict):
  state_dict, g = golden_state_dict(G_FILE)
  args = dict(g["meta"]["args"], scaling_factor=2)  # a x4 checkpoint loaded as x2: an unused key
  try:
    convert.from_torch("srgan_generator", state_dict, **args)
  except convert.StateDictError as e:
    assert "subpixel_convolutional_blocks.1" in str(e)
  else:
    raise AssertionError("a x4 checkpoint loaded as x2 without an error")


def test_discriminator_eval_mode(golden_network):
  module, variables, g = golden_network(D_FILE, "srgan_discriminator")
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, nchw_to_nhwc(g["input"]))
    out_64, inter = module.apply(variables, nchw_to_nhwc(g["input_64"]), mutable=["intermediates"],
                                 capture_intermediates=lambda mdl, _: mdl.name == "bn7")
  assert out.shape == (1, 1)
  assert float(np.max(np.abs(np.asarray(out) - g["output"]))) <= 1e-4
  # 64 px: the 4x4 conv map goes through the overlapping 4 -> 6 adaptive pool.
  assert float(np.max(np.abs(np.asarray(out_64) - g["output_64"]))) <= 1e-4
  del inter


def test_adaptive_pool_matches_reference():
  from translate.networks import srgan
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
  bins = [(0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)]  # the README's bins for n = 4
  want = np.array([[[x[0, a:b, c:d].mean(axis=(0, 1)) for c, d in bins] for a, b in bins]])
  np.testing.assert_allclose(np.asarray(srgan.adaptive_avg_pool(x, 6)), want, atol=1e-6)
