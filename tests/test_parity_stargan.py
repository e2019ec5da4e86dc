"""StarGAN networks against the golden outputs of yunjey/stargan `model.py` (torch).

The torch state dicts go through `translate.convert.from_torch`, so the converter's key mapping is
covered too. The generator file holds two outputs of the same weights: torch `eval()` (instance norms
use the stored running statistics) and train mode (per-instance statistics, what the reference solver
uses at train and test time); both must match.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import max_diff_nchw, nchw_to_nhwc, nhwc_to_nchw
from translate import convert, layers
from translate.networks import stargan

G_FILE = "stargan_generator_c8_c5_r2.npz"
D_FILE = "stargan_discriminator_s64_c4_c5_r6.npz"


def test_generator_eval_mode_uses_running_stats(golden_network):
  module, variables, g = golden_network(G_FILE, "stargan_generator")
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, nchw_to_nhwc(g["input"]), g["c"], use_running_average=True)
  assert max_diff_nchw(out, g["output"]) <= 1e-4


@pytest.mark.parametrize("winograd", ["auto", "on"])  # "on": the 3x3 convs as Winograd F(2x2, 3x3)
def test_generator_train_mode_uses_instance_stats(golden_network, monkeypatch, winograd):
  monkeypatch.setattr(layers, "WINOGRAD", winograd)
  module, variables, g = golden_network(G_FILE, "stargan_generator")
  x = nchw_to_nhwc(g["input"])
  with jax.default_matmul_precision("highest"):
    out_default = module.apply(variables, x, g["c"])
    out_train = module.apply(variables, x, g["c"], use_running_average=False)
  # The default is the solver's behaviour (per-instance statistics), not torch eval().
  np.testing.assert_array_equal(np.asarray(out_default), np.asarray(out_train))
  assert max_diff_nchw(out_train, g["output_train_mode"]) <= 1e-4
  # The two modes really are different computations (README: up to 0.95 apart).
  assert np.max(np.abs(g["output"] - g["output_train_mode"])) > 0.1


def test_generator_label_changes_output(golden_network):
  module, variables, g = golden_network(G_FILE, "stargan_generator")
  x = nchw_to_nhwc(g["input"])
  other = 1.0 - g["c"]
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, x, g["c"])
    out_other = module.apply(variables, x, other)
  assert float(jnp.max(jnp.abs(out - out_other))) > 1e-2


def test_generator_train_mode_updates_running_stats_like_torch(golden_network):
  """A mutable train-mode call moves each running mean/var towards the batch average of the
  per-instance mean / unbiased variance with momentum 0.1 (torch's InstanceNorm2d train mode)."""
  module, variables, g = golden_network(G_FILE, "stargan_generator")
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  c = np.array([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1]], np.float32)
  with jax.default_matmul_precision("highest"):
    out, state = module.apply(variables, x, c, mutable=["batch_stats", "intermediates"],
                              capture_intermediates=lambda mdl, _: mdl.name == "conv_in")
    out_frozen = module.apply(variables, x, c)
  np.testing.assert_allclose(np.asarray(out), np.asarray(out_frozen), atol=1e-6)
  feats = np.asarray(state["intermediates"]["conv_in"]["__call__"][0], np.float64)  # (2, 16, 16, 8)
  n = feats.shape[1] * feats.shape[2]
  inst_mean = feats.mean(axis=(1, 2))
  inst_var_unbiased = feats.var(axis=(1, 2)) * n / (n - 1)
  old = variables["batch_stats"]["norm_in"]
  new = state["batch_stats"]["norm_in"]
  np.testing.assert_allclose(new["mean"], 0.9 * np.asarray(old["mean"]) + 0.1 * inst_mean.mean(0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["var"],
                             0.9 * np.asarray(old["var"]) + 0.1 * inst_var_unbiased.mean(0),
                             rtol=1e-5, atol=1e-6)


def test_generator_rejects_bad_inputs():
  module = stargan.Generator(conv_dim=4, c_dim=3, repeat_num=1)
  x = jnp.zeros((1, 16, 16, 3))
  # Shapes only: the checks run while tracing.
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x, jnp.zeros((1, 3)))
  with pytest.raises(ValueError, match="c must be"):
    jax.eval_shape(module.apply, variables, x, jnp.zeros((1, 5)))
  with pytest.raises(ValueError, match="divisible by 4"):
    jax.eval_shape(module.apply, variables, jnp.zeros((1, 18, 16, 3)), jnp.zeros((1, 3)))


def test_discriminator_matches_torch(golden_network):
  module, variables, g = golden_network(D_FILE, "stargan_discriminator")
  with jax.default_matmul_precision("highest"):
    out_src, out_cls = module.apply(variables, nchw_to_nhwc(g["input"]))
  assert out_src.shape == (1, 1, 1, 1)  # NHWC (B, H/64, W/64, 1)
  assert out_cls.shape == (1, 5)
  assert max_diff_nchw(out_src, g["out_src"]) <= 1e-5  # |out_src| ~ 0.02: absolute 1e-5 (README)
  assert max_diff_nchw(out_cls, g["out_cls"]) <= 1e-4


def test_discriminator_shapes_and_size_checks():
  # Shapes only (eval_shape): compiling a random init costs far more than this test needs.
  module = stargan.Discriminator(image_size=32, conv_dim=4, c_dim=3, repeat_num=4)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
  out_src, out_cls = jax.eval_shape(module.apply, variables, x)
  assert out_src.shape == (2, 2, 2, 1) and out_cls.shape == (2, 3)
  assert variables["params"]["conv_cls"]["kernel"].shape == (2, 2, 32, 3)
  assert variables["params"]["conv3"]["kernel"].shape == (4, 4, 16, 32)
  with pytest.raises(ValueError, match="built for 32x32"):
    jax.eval_shape(module.apply, variables, jnp.zeros((2, 64, 64, 3)))
  with pytest.raises(ValueError, match="divisible by 2\\*\\*repeat_num"):
    jax.eval_shape(stargan.Discriminator(image_size=48, repeat_num=5).init,
                   jax.random.PRNGKey(0), jnp.zeros((1, 48, 48, 3)))


def test_discriminator_default_bias_init_is_torchs():
  # torch's default conv bias init: U(+-1/sqrt(fan_in)), fan_in = in * kh * kw; not zeros.
  bias = np.asarray(stargan._torch_default_bias_init(3 * 16)(jax.random.PRNGKey(0), (256,)))
  bound = 1 / np.sqrt(3 * 16)
  assert np.all(np.abs(bias) <= bound) and np.max(np.abs(bias)) > 0.9 * bound
  assert abs(np.mean(bias)) < 0.2 * bound


def test_converter_rejects_mismatched_state_dicts(golden_state_dict):
  state_dict, g = golden_state_dict(G_FILE)
  missing = {k: v for k, v in state_dict.items() if k != "main.4.running_var"}
  with pytest.raises(convert.StateDictError, match="main.4.running_var"):
    convert.from_torch("stargan_generator", missing, **g["meta"]["args"])
  with pytest.raises(convert.StateDictError):  # a checkpoint of another repeat_num
    convert.from_torch("stargan_generator", state_dict, conv_dim=8, c_dim=5, repeat_num=3)
  with pytest.raises(convert.StateDictError, match="shape"):  # another c_dim
    convert.from_torch("stargan_generator", state_dict, conv_dim=8, c_dim=4, repeat_num=2)
