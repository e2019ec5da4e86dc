"""U-GAT-IT generator and discriminator: shapes, initial values, size checks, spectral-norm gradients and
the converter's errors. Tiny widths and <= 64 px so the file runs in seconds on a CPU."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from translate import convert, layers
from translate.networks.ugatit import Discriminator, Generator


def _image(batch, size, channels=3, seed=0):
  rng = np.random.default_rng(seed)  # numpy: a jax.random draw would compile a kernel per shape
  return jnp.asarray(rng.uniform(-1, 1, (batch, size, size, channels)), jnp.float32)


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


# Compiling the random-number kernels dominates this file's run time (every distinct kernel shape
# compiles its own draw; threefry is slow to compile on CPU), so the tests that need real values share
# two initialised networks, drawn with the cheaper-to-compile 'rbg' PRNG; shape-only checks use
# jax.eval_shape, which compiles nothing.
LIGHT_G = Generator(output_nc=3, ngf=4, n_blocks=2, img_size=256, light=True)  # img_size unused
SMALL_D = Discriminator(ndf=4, n_layers=5, init_type="normal", init_gain=0.05)


def _key(seed=0):
  return jax.random.key(seed, impl="rbg")


@pytest.fixture(scope="module")
def light_g_variables():
  return LIGHT_G.init(_key(), _image(1, 32))


@pytest.fixture(scope="module")
def small_d_variables():
  return SMALL_D.init(_key(), _image(1, 32))


@pytest.mark.parametrize("light,size", [(True, 32), (True, 48), (False, 32), (False, 64)])
def test_generator_shapes(light, size):
  ngf = 4
  model = Generator(output_nc=3, ngf=ngf, n_blocks=2, img_size=size, light=light)
  x = _image(2, size, channels=1)  # the input channel count comes from the input
  variables = jax.eval_shape(model.init, _key(), x)
  out, cam_logit, heatmap = jax.eval_shape(model.apply, variables, x)
  assert out.shape == (2, size, size, 3)
  assert cam_logit.shape == (2, 2)
  assert heatmap.shape == (2, size // 4, size // 4, 1)
  # The full model's MLP sees the flattened bottleneck; the light one its channel means.
  fc_inputs = variables["params"]["fc1"]["kernel"].shape[0]
  assert fc_inputs == (4 * ngf if light else (size // 4) ** 2 * 4 * ngf)
  assert variables["params"]["down_conv0"]["kernel"].shape == (7, 7, 1, ngf)
  assert "bias" not in variables["params"]["down_conv0"]  # only conv1x1 has a bias
  assert "bias" in variables["params"]["cam"]["conv1x1"]


def test_generator_light_runs_at_any_size_with_the_same_weights(light_g_variables):
  # Initialised at 32 px, applied at 48 px.
  out, cam_logit, heatmap = jax.jit(LIGHT_G.apply)(light_g_variables, _image(2, 48, seed=48))
  assert out.shape == (2, 48, 48, 3) and heatmap.shape == (2, 12, 12, 1)
  assert np.all(np.abs(np.asarray(out)) < 1.0)  # tanh output
  assert np.all(np.asarray(heatmap) >= 0.0)  # sum of ReLU features
  assert np.all(np.isfinite(np.asarray(cam_logit)))
  # Per-sample norms: the two images of the batch give different outputs.
  assert np.max(np.abs(np.asarray(out[0] - out[1]))) > 1e-3


def test_generator_rho_and_norm_initial_values(light_g_variables):
  params = light_g_variables["params"]
  adalin_rhos = [v for k, v in _flat(params).items() if k.startswith("up_res") and k.endswith("/rho")]
  iln_rhos = [v for k, v in _flat(params).items() if k.startswith("up_norm") and k.endswith("/rho")]
  assert len(adalin_rhos) == 4 and len(iln_rhos) == 2  # 2 per AdaLIN block, 1 per upsampling stage
  for rho in adalin_rhos:
    np.testing.assert_allclose(np.asarray(rho), 0.9)
  for rho in iln_rhos:
    np.testing.assert_array_equal(np.asarray(rho), 0.0)
  for i, channels in enumerate((8, 4)):
    np.testing.assert_array_equal(np.asarray(params[f"up_norm{i}"]["scale"]), np.ones(channels))
    np.testing.assert_array_equal(np.asarray(params[f"up_norm{i}"]["bias"]), np.zeros(channels))


def test_kernel_init_types(light_g_variables, small_d_variables):
  # The generator uses torch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3 * 7 * 7 here.
  kernel = np.asarray(light_g_variables["params"]["down_conv0"]["kernel"])
  bound = 1.0 / np.sqrt(3 * 7 * 7)
  assert np.max(np.abs(kernel)) <= bound and np.max(np.abs(kernel)) > 0.8 * bound
  # The discriminator was built with init_type='normal', init_gain=0.05: N(0, 0.05) everywhere.
  for path in ("conv3", "out_conv"):
    kernel = np.asarray(small_d_variables["params"][path]["kernel"])  # 8192 / 1024 values
    assert abs(np.std(kernel) - 0.05) < 0.005 and abs(np.mean(kernel)) < 0.005, path


def test_generator_full_rejects_other_sizes():
  model = Generator(ngf=4, n_blocks=1, img_size=64, light=False)
  with pytest.raises(ValueError, match=r"img_size=64.*32x32"):
    jax.eval_shape(model.init, _key(), _image(1, 32))
  # The reference's MLP size (img_size // 4)^2 is wrong for sizes not divisible by 4.
  with pytest.raises(ValueError, match="divisible by 4"):
    jax.eval_shape(Generator(ngf=4, n_blocks=1, img_size=30, light=False).init,
                   _key(), _image(1, 30))


@pytest.mark.parametrize("n_layers,size,heat,out", [(5, 32, 3, 2), (5, 64, 7, 6), (6, 64, 3, 2)])
def test_discriminator_shapes(n_layers, size, heat, out):
  ndf = 4
  model = Discriminator(ndf=ndf, n_layers=n_layers)
  x = _image(2, size)
  variables = jax.eval_shape(model.init, _key(), x)
  y, cam_logit, heatmap = jax.eval_shape(model.apply, variables, x)
  assert y.shape == (2, out, out, 1)
  assert cam_logit.shape == (2, 2)
  assert heatmap.shape == (2, heat, heat, 1)
  channels = ndf * 2 ** (n_layers - 2)
  assert variables["params"]["cam"]["conv1x1"]["kernel"].shape == (1, 1, 2 * channels, channels)
  spectral = _flat(variables[layers.SPECTRAL])
  # Every conv and both CAM fcs are spectrally normalised; conv1x1 is not.
  assert len(spectral) == 2 * (n_layers - 1 + 3)
  assert not any(k.startswith("cam/conv1x1") for k in spectral)
  assert spectral["out_conv/sn/v"].shape == (4 * 4 * channels,)


def test_discriminator_too_small_input_raises():
  with pytest.raises(ValueError, match="Reflection padding"):
    jax.eval_shape(Discriminator(ndf=4, n_layers=7).init, _key(), _image(1, 64))


def test_discriminator_gradient_never_reaches_spectral_vectors(small_d_variables):
  x = _image(2, 32)

  def loss(variables):
    (out, cam_logit, _), _ = SMALL_D.apply(variables, x, update_stats=True, mutable=[layers.SPECTRAL])
    return jnp.mean(out ** 2) + jnp.mean(cam_logit ** 2)

  grads = jax.jit(jax.grad(loss))(small_d_variables)
  for path, g in _flat(grads[layers.SPECTRAL]).items():
    assert np.all(np.asarray(g) == 0.0), path
  param_grads = _flat(grads["params"])
  for path, g in param_grads.items():
    if path.endswith("kernel"):
      assert np.any(np.asarray(g) != 0.0), path  # ... while every weight does get a gradient


def test_discriminator_update_stats_only_moves_vectors_when_asked(small_d_variables):
  x = _image(1, 32)
  variables = small_d_variables
  # Eager on purpose: init already compiled these ops at this shape, jit would compile anew.
  _, eval_state = SMALL_D.apply(variables, x, update_stats=False, mutable=[layers.SPECTRAL])
  _, train_state = SMALL_D.apply(variables, x, update_stats=True, mutable=[layers.SPECTRAL])
  before, after_eval = _flat(variables[layers.SPECTRAL]), _flat(eval_state[layers.SPECTRAL])
  after_train = _flat(train_state[layers.SPECTRAL])
  for path in before:
    np.testing.assert_array_equal(np.asarray(after_eval[path]), np.asarray(before[path]))
  moved = {p for p in before if np.max(np.abs(np.asarray(after_train[p]) - np.asarray(before[p]))) > 1e-4}
  # From random initial vectors one step moves every v (so every SN layer, CAM fcs and the output conv
  # included, sees update_stats) and the u of every multi-output layer (a 1-element u stays +-1).
  assert {p for p in before if p.endswith("/v")} <= moved
  assert {f"conv{j}/sn/u" for j in range(4)} <= moved


def test_converter_rejects_mismatched_checkpoints(golden_state_dict):
  state_dict, g = golden_state_dict("ugatit_generator_full_ngf8.npz")
  args = dict(g["meta"]["args"], img_size=32)  # a 64-px checkpoint loaded as a 32-px model
  with pytest.raises(convert.StateDictError, match=r"FC\.0\.weight.*\(32, 2048\)"):
    convert.from_torch("ugatit_generator", state_dict, **args)
  d_state, d_g = golden_state_dict("ugatit_discriminator_local_n5_ndf8.npz")
  missing = {k: v for k, v in d_state.items() if k != "conv.weight_u"}
  with pytest.raises(convert.StateDictError, match=r"conv\.weight_u"):
    convert.from_torch("ugatit_discriminator", missing, **d_g["meta"]["args"])
  # The local (n_layers=5) checkpoint loaded as a global (n_layers=7) network: keys are missing.
  with pytest.raises(convert.StateDictError, match="missing key"):
    convert.from_torch("ugatit_discriminator", d_state, **dict(d_g["meta"]["args"], n_layers=7))
