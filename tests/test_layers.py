"""translate.layers against hand-written numpy references of the PyTorch semantics they claim.

Every reference here is written from torch's documented formulas (not from our own code), so a test
fails when a layer drifts from torch: spectral norm's power iteration and its gradient, the norms'
eps/variance conventions and running-statistics updates, padding modes, the transposed convolution's
geometry (through the converter's weight layout), initialisers, CAM attention and the conditional norm.
"""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import optax
import pytest

from translate import convert, layers

EPS = 1e-5


@pytest.fixture(autouse=True)
def _exact_matmuls():
  # References are float64 numpy; keep XLA's float32 dots exact so tolerances can be tight.
  with jax.default_matmul_precision("highest"):
    yield


def _init(module, *args, seed=0, **kwargs):
  """`module.init` compiled as one program: on CPU, compiling one XLA program is much cheaper than
  compiling every eager op of a Flax module separately. Python flags go in kwargs (static)."""
  return jax.jit(lambda key, *a: module.init(key, *a, **kwargs))(jax.random.PRNGKey(seed), *args)


def _apply(module, variables, *args, **kwargs):
  """`module.apply` compiled as one program; kwargs (flags, `mutable`) are static."""
  return jax.jit(lambda v, *a: module.apply(v, *a, **kwargs))(variables, *args)


def _rng(seed=0):
  return np.random.default_rng(seed)


def _random_variables(module, *args, seed=0, scale=0.5, **kwargs):
  """The variable tree of `module` filled with numpy normals (vectors in `spectral` get unit norm).

  Only the tree's structure comes from Flax (`eval_shape`: nothing is compiled): drawing with
  jax.random would compile a PRNG program for every new shape, which dominates this file's run time.
  """
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **kwargs))
  rng = _rng(seed)

  def fill(path, leaf):
    value = rng.normal(size=leaf.shape)
    if path[0].key == layers.SPECTRAL:
      return jnp.asarray(value / np.linalg.norm(value), leaf.dtype)
    return jnp.asarray(scale * value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _torch_matrix_hwio(kernel):
  """(kh, kw, in, out) -> torch's spectral-norm matrix (out, in*kh*kw)."""
  kernel = np.asarray(kernel)
  return kernel.transpose(3, 2, 0, 1).reshape(kernel.shape[-1], -1)


def _top_singular_value(matrix):
  return float(np.linalg.svd(np.asarray(matrix, np.float64), compute_uv=False)[0])


def _conv_ref(x, kernel, stride=1):
  """Valid cross-correlation, NHWC x HWIO, the torch Conv2d definition, as a plain loop."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  b, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
  out = np.zeros((b, ho, wo, cout))
  for i in range(ho):
    for j in range(wo):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      out[:, i, j, :] = np.einsum("bhwi,hwio->bo", patch, kernel)
  return out


def _conv_transpose_ref(x, weight_torch, stride, padding, output_padding):
  """torch.nn.ConvTranspose2d from its definition: every input pixel scatters weight[c] * x into the
  output at (i*s + a, j*s + b); then `padding` rows/cols are cut from each side and `output_padding`
  extra rows/cols are kept at the bottom/right. x NHWC, weight (in, out, kh, kw)."""
  x, w = np.asarray(x, np.float64), np.asarray(weight_torch, np.float64)
  b, h, wd, _ = x.shape
  _, cout, kh, kw = w.shape
  full = np.zeros((b, (h - 1) * stride + kh + output_padding, (wd - 1) * stride + kw + output_padding,
                   cout))
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :] += np.einsum(
          "bc,cokl->bklo", x[:, i, j, :], w)
  ho = (h - 1) * stride - 2 * padding + kh + output_padding
  wo = (wd - 1) * stride - 2 * padding + kw + output_padding
  return full[:, padding:padding + ho, padding:padding + wo, :]


# ----------------------------------------------------------------------------------------------------
# Spectral norm
# ----------------------------------------------------------------------------------------------------
def _run_power_iteration(module, weight, spectral, steps):
  @jax.jit
  def step(spectral):
    _, new = module.apply({"spectral": spectral}, weight, True, mutable=["spectral"])
    return new["spectral"]

  for _ in range(steps):
    spectral = step(spectral)
  return spectral


@pytest.mark.parametrize("layout,shape", [("hwio", (3, 3, 4, 6)), ("io", (10, 7))])
def test_spectral_norm_power_iteration_converges_to_top_singular_value(layout, shape):
  weight = jnp.asarray(_rng(1).normal(size=shape), jnp.float32)
  matrix = _torch_matrix_hwio(weight) if layout == "hwio" else np.asarray(weight).T
  sigma_true = _top_singular_value(matrix)
  module = layers.SpectralNorm(layout=layout)
  start = _random_variables(module, weight, seed=2)["spectral"]
  assert start["u"].shape == (matrix.shape[0],) and start["v"].shape == (matrix.shape[1],)
  spectral = _run_power_iteration(module, weight, start, 300)
  u, v = np.asarray(spectral["u"], np.float64), np.asarray(spectral["v"], np.float64)
  sigma = float(u @ matrix @ v)
  assert abs(sigma - sigma_true) / sigma_true < 1e-4
  # The normalised weight, read as torch's matrix, has spectral norm 1.
  normalised = _apply(module, {"spectral": spectral}, weight, update_stats=False)
  normalised = _torch_matrix_hwio(normalised) if layout == "hwio" else np.asarray(normalised).T
  assert abs(_top_singular_value(normalised) - 1.0) < 1e-4
  # ... and the estimate really moved: a single step from the random start is far from converged.
  one = _run_power_iteration(module, weight, start, 1)
  assert not np.allclose(np.asarray(one["u"]), u, atol=1e-3)


def test_spectral_norm_training_step_is_one_torch_power_iteration():
  weight = jnp.asarray(_rng(2).normal(size=(3, 3, 2, 5)), jnp.float32)
  matrix = _torch_matrix_hwio(weight).astype(np.float64)
  module = layers.SpectralNorm(layout="hwio")
  spectral = _init(module, weight, seed=3)["spectral"]
  # Initial vectors are random unit vectors, as torch's N(0, 1) draws normalised.
  assert abs(np.linalg.norm(spectral["u"]) - 1) < 1e-5 and abs(np.linalg.norm(spectral["v"]) - 1) < 1e-5
  assert len(set(np.round(np.asarray(spectral["v"]), 6))) == 18
  u0 = np.asarray(spectral["u"], np.float64)
  out, new = _apply(module, {"spectral": spectral}, weight, update_stats=True, mutable=["spectral"])
  v1 = matrix.T @ u0
  v1 /= np.linalg.norm(v1)
  u1 = matrix @ v1
  u1 /= np.linalg.norm(u1)
  np.testing.assert_allclose(new["spectral"]["v"], v1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["spectral"]["u"], u1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out, np.asarray(weight) / (u1 @ matrix @ v1), rtol=1e-5, atol=1e-6)


def test_spectral_norm_inference_uses_stored_vectors_unchanged():
  weight = jnp.asarray(_rng(4).normal(size=(3, 3, 3, 4)), jnp.float32)
  matrix = _torch_matrix_hwio(weight).astype(np.float64)
  module = layers.SpectralNorm(layout="hwio")
  # Stored vectors that are deliberately NOT the converged ones (nor unit norm), as torch would keep.
  u = _rng(5).normal(size=(4,)).astype(np.float32)
  v = _rng(6).normal(size=(27,)).astype(np.float32)
  spectral = {"u": jnp.asarray(u), "v": jnp.asarray(v)}
  out, new = _apply(module, {"spectral": spectral}, weight, update_stats=False,
                    mutable=["spectral"])
  expected = np.asarray(weight, np.float64) / (u.astype(np.float64) @ matrix @ v.astype(np.float64))
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(new["spectral"]["u"], u)
  np.testing.assert_array_equal(new["spectral"]["v"], v)
  # Training mode without a mutable collection still runs (the update is simply not stored).
  out_train = _apply(module, {"spectral": spectral}, weight, update_stats=True)
  assert out_train.shape == weight.shape
  assert not np.allclose(out_train, out)


@pytest.mark.parametrize("update_stats", [False, True])
def test_spectral_norm_gradient_flows_through_sigma_not_into_vectors(update_stats):
  conv = layers.Conv2d(3, 3, padding=1, spectral_norm=True)
  x = jnp.asarray(_rng(7).normal(size=(2, 5, 5, 2)), jnp.float32)
  target = jnp.asarray(_rng(8).normal(size=(2, 5, 5, 3)), jnp.float32)
  variables = _random_variables(conv, x, seed=9)
  params, spectral = variables["params"], variables["spectral"]

  def loss(params, spectral):
    y, _ = conv.apply({"params": params, "spectral": spectral}, x, update_stats,
                      mutable=["spectral"])
    return jnp.sum((y - target) ** 2)

  grad_params, grad_spectral = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, spectral)
  for leaf in jax.tree_util.tree_leaves(grad_spectral):
    np.testing.assert_array_equal(leaf, 0.0)

  # The u, v the forward used: the stored ones, or the ones after one power iteration.
  _, used = _apply(conv, variables, x, update_stats=update_stats, mutable=["spectral"])
  u, v = used["spectral"]["sn"]["u"], used["spectral"]["sn"]["v"]
  if update_stats:
    assert not np.allclose(u, spectral["sn"]["u"])

  def loss_ref(params):
    kernel = params["kernel"]
    matrix = jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)
    w = kernel / jnp.dot(u, matrix @ v)  # u, v are constants here; sigma still depends on W
    y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["bias"]
    return jnp.sum((y - target) ** 2)

  grad_ref = jax.jit(jax.grad(loss_ref))(params)
  np.testing.assert_allclose(grad_params["kernel"], grad_ref["kernel"], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grad_params["bias"], grad_ref["bias"], rtol=1e-4, atol=1e-5)
  # The sigma term matters: dropping it (treating sigma as a constant) gives another gradient.
  sigma = jnp.dot(u, _torch_matrix_hwio(params["kernel"]) @ v)

  def loss_const_sigma(params):
    y = jax.lax.conv_general_dilated(x, params["kernel"] / jax.lax.stop_gradient(sigma), (1, 1),
                                     ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum((y + params["bias"] - target) ** 2)

  grad_const = jax.jit(jax.grad(loss_const_sigma))(params)
  assert not np.allclose(grad_params["kernel"], grad_const["kernel"], rtol=1e-3, atol=1e-4)


def test_spectral_norm_agrees_with_flax_spectral_norm():
  x = jnp.ones((1, 9), jnp.float32)
  flax_sn = nn.SpectralNorm(nn.Dense(5, use_bias=False))
  flax_vars = _random_variables(flax_sn, x, update_stats=False)
  kernel = jnp.asarray(_rng(9).normal(size=(9, 5)), jnp.float32)
  flax_vars = {"params": {"layer_instance": {"kernel": kernel}},
               "batch_stats": flax_vars["batch_stats"]}

  @jax.jit
  def flax_step(batch_stats):
    _, new = flax_sn.apply({"params": flax_vars["params"], "batch_stats": batch_stats}, x,
                           update_stats=True, mutable=["batch_stats"])
    return new["batch_stats"]

  batch_stats = flax_vars["batch_stats"]
  for _ in range(300):
    batch_stats = flax_step(batch_stats)
  flax_sigma = float(batch_stats["layer_instance/kernel/sigma"])

  ours = layers.SpectralNorm(layout="io")
  spectral = _run_power_iteration(ours, kernel, _random_variables(ours, kernel)["spectral"], 300)
  our_sigma = float(np.asarray(spectral["u"]) @ np.asarray(kernel).T @ np.asarray(spectral["v"]))
  assert abs(our_sigma - flax_sigma) / flax_sigma < 1e-4
  assert abs(our_sigma - _top_singular_value(kernel)) / our_sigma < 1e-4


# ----------------------------------------------------------------------------------------------------
# Norms with torch semantics
# ----------------------------------------------------------------------------------------------------
def _np_norm(x, axes, ddof=0):
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=axes, keepdims=True)
  var = x.var(axis=axes, keepdims=True, ddof=ddof)
  return (x - mean) / np.sqrt(var + EPS)


def _x(seed=10, shape=(3, 4, 5, 6)):
  # A non-zero mean and a scale far from 1, so mean/variance mistakes are visible.
  return jnp.asarray(2.0 + 3.0 * _rng(seed).normal(size=shape), jnp.float32)


def test_instance_norm_matches_torch_formula():
  x = _x()
  norm = layers.InstanceNorm(affine=True)
  variables = jax.eval_shape(lambda: norm.init(jax.random.PRNGKey(0), x))
  assert "batch_stats" not in variables
  scale = _rng(11).normal(size=(6,)).astype(np.float32)
  bias = _rng(12).normal(size=(6,)).astype(np.float32)
  y = _apply(norm, {"params": {"scale": scale, "bias": bias}}, x)
  np.testing.assert_allclose(y, _np_norm(x, (1, 2)) * scale + bias, rtol=1e-5, atol=1e-5)
  # Without affine there are no params, and inference without running stats still uses instance stats.
  plain = layers.InstanceNorm()
  assert jax.eval_shape(lambda: plain.init(jax.random.PRNGKey(0), x)) == {}
  np.testing.assert_allclose(_apply(plain, {}, x, use_running_average=True), _np_norm(x, (1, 2)),
                             rtol=1e-5, atol=1e-5)


def test_instance_norm_running_stats_update_and_inference():
  x = _x(13)
  norm = layers.InstanceNorm(track_running_stats=True)
  variables = _init(norm, x)
  np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(6))
  np.testing.assert_array_equal(variables["batch_stats"]["var"], np.ones(6))
  y, new = _apply(norm, variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, _np_norm(x, (1, 2)), rtol=1e-5, atol=1e-5)
  xn = np.asarray(x, np.float64)
  # torch: running stats = (1 - 0.1) * old + 0.1 * batch mean of per-instance mean / unbiased var.
  np.testing.assert_allclose(new["batch_stats"]["mean"], 0.1 * xn.mean(axis=(1, 2)).mean(0),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["batch_stats"]["var"],
                             0.9 + 0.1 * xn.var(axis=(1, 2), ddof=1).mean(0), rtol=1e-5)
  # Inference normalises with the running statistics, not the instance ones.
  stats = {"mean": jnp.asarray(_rng(14).normal(size=(6,)), jnp.float32),
           "var": jnp.asarray(0.5 + _rng(15).random(6), jnp.float32)}
  y_eval = _apply(norm, {"batch_stats": stats}, x, use_running_average=True)
  expected = (xn - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + EPS)
  np.testing.assert_allclose(y_eval, expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_training_inference_and_running_stats():
  x = _x(16)
  norm = layers.BatchNorm()
  variables = _init(norm, x)
  np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(6))
  np.testing.assert_array_equal(variables["batch_stats"]["var"], np.ones(6))
  scale = _rng(17).normal(size=(6,)).astype(np.float32)
  bias = _rng(18).normal(size=(6,)).astype(np.float32)
  variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": variables["batch_stats"]}
  xn = np.asarray(x, np.float64)

  y, new = _apply(norm, variables, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, _np_norm(x, (0, 1, 2)) * scale + bias, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(new["batch_stats"]["mean"], 0.1 * xn.mean(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["batch_stats"]["var"],
                             0.9 + 0.1 * xn.var(axis=(0, 1, 2), ddof=1), rtol=1e-5)
  # A second step moves them again from the new values (momentum 0.1 on the old value).
  _, newer = _apply(norm, {**variables, **new}, x, mutable=["batch_stats"])
  np.testing.assert_allclose(newer["batch_stats"]["mean"], 0.19 * xn.mean(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-6)

  # Training without a mutable collection: batch statistics, and nothing to update (no error).
  y_frozen = _apply(norm, variables, x)
  np.testing.assert_allclose(y_frozen, y, rtol=1e-6, atol=1e-6)
  # Inference uses the running statistics and leaves them alone even when they are mutable.
  stats = {"mean": jnp.asarray(_rng(19).normal(size=(6,)), jnp.float32),
           "var": jnp.asarray(0.5 + _rng(20).random(6), jnp.float32)}
  y_eval, same = _apply(norm, {"params": variables["params"], "batch_stats": stats}, x,
                        use_running_average=True, mutable=["batch_stats"])
  expected = (xn - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + EPS)
  np.testing.assert_allclose(y_eval, expected * scale + bias, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(same["batch_stats"]["mean"], stats["mean"])
  np.testing.assert_array_equal(same["batch_stats"]["var"], stats["var"])


def test_batch_norm_on_features_and_get_norm():
  x = jnp.asarray(_rng(21).normal(size=(8, 5)), jnp.float32)
  norm = layers.BatchNorm(affine=False)
  y, new = _apply(norm, _init(norm, x), x, mutable=["batch_stats"])
  np.testing.assert_allclose(y, _np_norm(x, (0,)), rtol=1e-5, atol=1e-5)
  assert new["batch_stats"]["mean"].shape == (5,)
  assert layers.get_norm("none") is None
  assert layers.apply_norm(None, x, True) is x
  with pytest.raises(ValueError, match="Unknown norm"):
    layers.get_norm("group")


def test_layer_norm_matches_torch_formula():
  x = _x(22)
  ln = layers.LayerNorm()
  variables = _init(ln, x)
  np.testing.assert_allclose(_apply(ln, variables, x), _np_norm(x, (1, 2, 3)), rtol=1e-5, atol=1e-5)
  scale = _rng(23).normal(size=(6,)).astype(np.float32)
  bias = _rng(24).normal(size=(6,)).astype(np.float32)
  y = _apply(ln, {"params": {"scale": scale, "bias": bias}}, x)
  np.testing.assert_allclose(y, _np_norm(x, (1, 2, 3)) * scale + bias, rtol=1e-5, atol=1e-5)
  y_unbiased = _apply(layers.LayerNorm(affine=False, unbiased=True), {}, x)
  np.testing.assert_allclose(y_unbiased, _np_norm(x, (1, 2, 3), ddof=1), rtol=1e-5, atol=1e-5)


def _np_iln(x, rho):
  """U-GAT-IT's adaILN/ILN body: torch.var is UNBIASED."""
  return rho * _np_norm(x, (1, 2), ddof=1) + (1 - rho) * _np_norm(x, (1, 2, 3), ddof=1)


@pytest.mark.parametrize("axes,unbiased", [((1, 2), False), ((0, 1, 2), False), ((1, 2, 3), True),
                                            ((0,), False)])
def test_standardize_value_and_gradient_equal_autodiff_of_the_formula(axes, unbiased):
  # `_standardize` (BatchNorm, InstanceNorm and LayerNorm in training) has a hand-written backward pass;
  # in float64 it must equal JAX's own gradient of (x - mean) / sqrt(var + eps) to rounding, through y
  # and through the returned mean and variance (the running statistics' inputs).
  with jax.enable_x64(True):
    shape = (3, 5) if axes == (0,) else (2, 5, 6, 3)
    x = jnp.asarray(_rng(60).normal(size=shape) * 3 + 1, jnp.float64)
    w = jnp.asarray(_rng(61).normal(size=shape), jnp.float64)
    stats_shape = np.mean(np.asarray(x), axis=axes, keepdims=True).shape
    w_mean, w_var = (jnp.asarray(_rng(s).normal(size=stats_shape), jnp.float64) for s in (62, 63))

    def formula(x):
      mean, var = layers._moments(x, axes, unbiased)
      return layers._normalize(x, mean, var, 1e-5), mean, var

    def loss(fn, x):
      y, mean, var = fn(x)
      return jnp.sum(jnp.tanh(y) * w) + jnp.sum(mean * w_mean) + jnp.sum(var ** 2 * w_var)

    ours = lambda x: layers._standardize(x, axes, 1e-5, unbiased)
    for a, b in zip(ours(x), formula(x)):
      np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    g_ours, g_ref = jax.grad(lambda x: loss(ours, x))(x), jax.grad(lambda x: loss(formula, x))(x)
    assert g_ours.dtype == jnp.float64
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-11, atol=1e-12)
    assert float(jnp.abs(g_ref).max()) > 1e-2  # the check has something to compare


def test_iln_and_adalin_match_ugatit_formula():
  x = _x(25, (2, 3, 4, 5))
  iln = layers.ILN()
  iln_vars = _init(iln, x)
  np.testing.assert_array_equal(iln_vars["params"]["rho"], np.zeros(5))
  np.testing.assert_array_equal(iln_vars["params"]["scale"], np.ones(5))
  np.testing.assert_array_equal(iln_vars["params"]["bias"], np.zeros(5))
  rho = _rng(26).random(5).astype(np.float32)
  gamma = _rng(27).normal(size=(5,)).astype(np.float32)
  beta = _rng(28).normal(size=(5,)).astype(np.float32)
  y = _apply(iln, {"params": {"rho": rho, "scale": gamma, "bias": beta}}, x)
  np.testing.assert_allclose(y, _np_iln(x, rho) * gamma + beta, rtol=1e-5, atol=1e-5)
  # The variances really are unbiased: the biased formula differs at this tiny H*W.
  assert not np.allclose(y, (rho * _np_norm(x, (1, 2)) + (1 - rho) * _np_norm(x, (1, 2, 3)))
                         * gamma + beta, atol=1e-3)

  adalin = layers.AdaLIN()
  gamma_b = _rng(29).normal(size=(2, 5)).astype(np.float32)  # per sample
  beta_b = _rng(30).normal(size=(2, 5)).astype(np.float32)
  ada_vars = _init(adalin, x, gamma_b, beta_b)
  np.testing.assert_allclose(ada_vars["params"]["rho"], np.full(5, 0.9), rtol=1e-7)
  y = _apply(adalin, ada_vars, x, gamma_b, beta_b)
  expected = _np_iln(x, 0.9) * gamma_b[:, None, None, :] + beta_b[:, None, None, :]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_adain_matches_formula():
  x = _x(31, (2, 4, 4, 3))
  gamma = _rng(32).normal(size=(2, 3)).astype(np.float32)
  beta = _rng(33).normal(size=(2, 3)).astype(np.float32)
  y = _apply(layers.AdaIN(), {}, x, gamma, beta)
  expected = _np_norm(x, (1, 2)) * gamma[:, None, None, :] + beta[:, None, None, :]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


class _TinyAdaLINNet(nn.Module):
  @nn.compact
  def __call__(self, x):
    style = jnp.mean(x, axis=(1, 2))
    gamma = layers.Dense(x.shape[-1], name="gamma")(style)
    beta = layers.Dense(x.shape[-1], name="beta")(style)
    y = layers.AdaLIN(name="adalin")(x, gamma, beta)
    return layers.ILN(name="iln")(layers.Conv2d(x.shape[-1], 3, padding=1, name="conv")(y))


def test_clip_rho_clamps_rho_after_adam_step_and_leaves_the_rest():
  x = _x(34, (2, 5, 5, 4))
  target = jnp.asarray(_rng(35).normal(size=(2, 5, 5, 4)), jnp.float32)
  net = _TinyAdaLINNet()
  params = _random_variables(net, x)["params"]
  params["adalin"]["rho"] = jnp.full((4,), 0.9)
  params["iln"]["rho"] = jnp.full((4,), 0.1)
  optimizer = optax.adam(5.0)  # a huge step: adam moves every parameter by ~lr

  @jax.jit
  def train_step(params):
    grads = jax.grad(lambda p: jnp.mean((net.apply({"params": p}, x) - target) ** 2))(params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return optax.apply_updates(params, updates)

  stepped = train_step(params)
  rhos = np.concatenate([np.asarray(stepped["adalin"]["rho"]), np.asarray(stepped["iln"]["rho"])])
  assert np.any(rhos < 0) and np.any(rhos > 1), rhos  # the step pushed rho out on both sides

  clipped = layers.clip_rho(stepped)
  for name in ("adalin", "iln"):
    rho = np.asarray(clipped[name]["rho"])
    assert np.all((rho >= 0) & (rho <= 1))
    np.testing.assert_array_equal(rho, np.clip(np.asarray(stepped[name]["rho"]), 0, 1))
  flat_stepped = jax.tree_util.tree_leaves_with_path(stepped)
  flat_clipped = dict(jax.tree_util.tree_leaves_with_path(clipped))
  for path, leaf in flat_stepped:
    if path[-1].key != "rho":
      np.testing.assert_array_equal(flat_clipped[path], leaf)
  # Non-rho parameters that the step pushed outside [0, 1] are not clamped.
  assert np.max(np.abs(np.asarray(clipped["conv"]["kernel"]))) > 1
  # A FrozenDict tree (older Flax init results) is clipped the same way.
  frozen = layers.clip_rho(flax.core.freeze(stepped))
  np.testing.assert_array_equal(frozen["adalin"]["rho"], clipped["adalin"]["rho"])


# ----------------------------------------------------------------------------------------------------
# Convolutions and padding
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"),
                                          ("zeros", "constant")])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_padding_modes_match_numpy_pad_then_valid_conv(mode, np_mode, stride):
  x = jnp.asarray(_rng(36).normal(size=(2, 7, 6, 3)), jnp.float32)
  conv = layers.Conv2d(4, 3, stride=stride, padding=2, padding_mode=mode)
  variables = jax.eval_shape(lambda: conv.init(jax.random.PRNGKey(0), x))
  kernel = _rng(37).normal(size=(3, 3, 3, 4)).astype(np.float32)
  bias = _rng(38).normal(size=(4,)).astype(np.float32)
  y = _apply(conv, {"params": {"kernel": kernel, "bias": bias}}, x)
  assert variables["params"]["kernel"].shape == kernel.shape
  padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)), mode=np_mode)
  expected = _conv_ref(padded, kernel, stride) + bias
  assert y.shape == expected.shape
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_reflection_padding_too_large_raises():
  x = jnp.zeros((1, 4, 6, 2))
  with pytest.raises(ValueError, match="Reflection padding"):
    jax.eval_shape(lambda: layers.Conv2d(2, 3, padding=4, padding_mode="reflect").init(
        jax.random.PRNGKey(0), x))
  # The largest legal reflection (pad = size - 1) works, as in torch.
  jax.eval_shape(lambda: layers.Conv2d(2, 3, padding=3, padding_mode="reflect").init(
      jax.random.PRNGKey(0), x))
  with pytest.raises(ValueError, match="Unknown padding mode"):
    layers.pad2d(x, 1, "circular")
  with pytest.raises(ValueError, match="Unknown padding mode"):  # even where nothing is padded
    jax.eval_shape(lambda: layers.Conv2d(2, 1, padding_mode="circular").init(
        jax.random.PRNGKey(0), x))


@pytest.mark.parametrize("k,s,p,op", [(3, 2, 1, 1), (4, 2, 1, 0), (3, 1, 1, 0), (5, 3, 2, 2),
                                      (2, 3, 2, 1)])  # the last: padding > k - 1 crops the output
def test_conv_transpose_geometry_and_values_match_torch_through_converter(k, s, p, op):
  h, w, cin, cout = 4, 3, 3, 2
  x = jnp.asarray(_rng(39).normal(size=(2, h, w, cin)), jnp.float32)
  layer = layers.ConvTranspose2d(cout, k, stride=s, padding=p, output_padding=op)
  abstract = jax.eval_shape(lambda: layer.init(jax.random.PRNGKey(0), x))
  weight_torch = _rng(40).normal(size=(cin, cout, k, k)).astype(np.float32)  # (in, out, kh, kw)
  bias = _rng(41).normal(size=(cout,)).astype(np.float32)
  converter = convert.Converter("test", {"up.weight": weight_torch, "up.bias": bias}, abstract)
  converter.conv_transpose("up", ())
  variables = converter.finish()
  to_flax, torch_shape_of = convert._KINDS["conv_transpose"]
  np.testing.assert_array_equal(variables["params"]["kernel"], to_flax(weight_torch))
  assert torch_shape_of(abstract["params"]["kernel"].shape) == weight_torch.shape

  y = _apply(layer, variables, x)
  assert y.shape == (2, (h - 1) * s - 2 * p + k + op, (w - 1) * s - 2 * p + k + op, cout)
  expected = _conv_transpose_ref(x, weight_torch, s, p, op) + bias
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def _conv_transpose_grads_ref(x, weight_torch, g, stride, padding, output_padding):
  """d<g, y>/dx and d<g, y>/dweight of `_conv_transpose_ref` from the same scatter definition: the
  output gradient is placed back into the uncropped output, then gathered per input pixel."""
  x, w, g = (np.asarray(a, np.float64) for a in (x, weight_torch, g))
  b, h, wd, _ = x.shape
  _, cout, kh, kw = w.shape
  full = np.zeros((b, (h - 1) * stride + kh + output_padding, (wd - 1) * stride + kw + output_padding,
                   cout))
  full[:, padding:padding + g.shape[1], padding:padding + g.shape[2], :] = g
  dx, dw = np.zeros_like(x), np.zeros_like(w)
  for i in range(h):
    for j in range(wd):
      window = full[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]  # (b, kh, kw, out)
      dx[:, i, j, :] = np.einsum("bklo,cokl->bc", window, w)
      dw += np.einsum("bc,bklo->cokl", x[:, i, j, :], window)
  return dx, dw


@pytest.mark.parametrize("hw", [(4, 3), (2, 2), (17, 16)])
@pytest.mark.parametrize("mode", ["taps", "dilated"])
@pytest.mark.parametrize("k,s,p,op,cout", [(3, 2, 1, 1, 2), (4, 2, 1, 0, 2), (5, 3, 2, 2, 2),
                                           (2, 3, 2, 1, 2), (4, 4, 0, 3, 2), (4, 2, 1, 0, 16)])
def test_conv_transpose_gradients_match_definition_in_both_forms(monkeypatch, mode, k, s, p, op, cout,
                                                                 hw):
  # On CPU the kernel gradient is taken as per-tap matmuls, and on small input maps (<= 64 pixels)
  # the forward pass and the input gradient as per-tap matmuls too;
  # every form must give torch's values and gradients, for non-square inputs and every phase layout.
  monkeypatch.setattr(layers, "CONV_TRANSPOSE_GRAD", mode)
  x = _rng(42).normal(size=(2, *hw, 3)).astype(np.float32)
  weight_torch = _rng(43).normal(size=(3, cout, k, k)).astype(np.float32)
  kernel = convert._KINDS["conv_transpose"][0](weight_torch)
  y = layers.conv_transpose(jnp.asarray(x), jnp.asarray(kernel), s, p, op)
  np.testing.assert_allclose(y, _conv_transpose_ref(x, weight_torch, s, p, op), rtol=1e-5, atol=1e-5)
  g = _rng(44).normal(size=y.shape).astype(np.float32)
  dx, dkernel = jax.jit(jax.grad(lambda x, kern: jnp.sum(
      layers.conv_transpose(x, kern, s, p, op) * g), argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(kernel))
  dx_ref, dw_ref = _conv_transpose_grads_ref(x, weight_torch, g, s, p, op)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dkernel, convert._KINDS["conv_transpose"][0](dw_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["taps", "xla"])
@pytest.mark.parametrize("k,s,p,cin,cout,hw", [(7, 1, 3, 4, 3, (9, 7)), (4, 2, 1, 3, 5, (9, 7)),
                                               (3, 2, 0, 2, 2, (9, 7)), (4, 1, 1, 5, 1, (9, 7)),
                                               (1, 1, 0, 3, 4, (9, 7)), (3, 1, 1, 9, 10, (12, 11)),
                                               (4, 2, 1, 10, 3, (20, 18)), (4, 1, 2, 6, 6, (8, 10)),
                                               (3, 1, 1, 12, 6, (9, 8))])
def test_conv_gradients_match_definition_in_both_forms(monkeypatch, mode, k, s, p, cin, cout, hw):
  # On CPU the gradients are taken as per-tap matmuls (layers.conv: dK everywhere but on few input
  # channels, dx on maps of at most 64 outputs); both forms must give the gradients of the
  # correlation's definition, for non-square inputs, strides, odd/even kernels, small and larger maps.
  monkeypatch.setattr(layers, "CONV_KERNEL_GRAD", mode)
  x = _rng(45).normal(size=(2, *hw, cin)).astype(np.float32)
  kernel = _rng(46).normal(size=(k, k, cin, cout)).astype(np.float32)
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  ho, wo = (xp.shape[1] - k) // s + 1, (xp.shape[2] - k) // s + 1
  windows = np.stack([np.stack([xp[:, i * s:i * s + k, j * s:j * s + k] for j in range(wo)], 1)
                      for i in range(ho)], 1)  # (b, ho, wo, k, k, cin)
  y = layers.conv(jnp.asarray(x), jnp.asarray(kernel), s, ((p, p), (p, p)))
  np.testing.assert_allclose(y, np.einsum("bhwklc,klco->bhwo", windows, kernel), rtol=1e-4, atol=1e-4)
  g = _rng(47).normal(size=y.shape).astype(np.float32)
  dx, dkernel = jax.jit(jax.grad(lambda x_, k_: jnp.sum(
      layers.conv(x_, k_, s, ((p, p), (p, p))) * g), argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(kernel))
  np.testing.assert_allclose(dkernel, np.einsum("bhwklc,bhwo->klco", windows, g), rtol=1e-4, atol=1e-4)
  dxp = np.zeros_like(xp)
  for i in range(ho):
    for j in range(wo):
      dxp[:, i * s:i * s + k, j * s:j * s + k] += np.einsum("bo,klco->bklc", g[:, i, j], kernel)
  np.testing.assert_allclose(dx, dxp[:, p:p + x.shape[1], p:p + x.shape[2]], rtol=1e-4, atol=1e-4)


def test_conv_matmul_gradients_keep_float64(monkeypatch):
  # float64 (the 8-device test runs some methods in it) must not be accumulated in float32: the matmul
  # gradients must equal XLA's own to float64 rounding, for every branch (x taps, dy's shifted copies,
  # the row-block product, small-map input gradient), also with many channels.
  with jax.enable_x64(True):
    for k, s, cin, cout, hw in [(3, 2, 9, 10, (12, 11)), (7, 1, 10, 3, (9, 9)), (4, 1, 12, 16, (5, 5)),
                                (3, 1, 128, 130, (6, 5))]:
      x = jnp.asarray(_rng(50).normal(size=(2, *hw, cin)), jnp.float64)
      kernel = jnp.asarray(_rng(51).normal(size=(k, k, cin, cout)), jnp.float64)
      grads = {}
      for mode in ("taps", "xla"):
        monkeypatch.setattr(layers, "CONV_KERNEL_GRAD", mode)
        grads[mode] = jax.grad(lambda a, b: jnp.sum(jnp.sin(layers.conv(a, b, s, ((1, 1), (1, 1))))),
                               argnums=(0, 1))(x, kernel)
      for ours, xla in zip(grads["taps"], grads["xla"]):
        assert ours.dtype == jnp.float64
        np.testing.assert_allclose(ours, xla, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,s,p,hw", [(3, 2, 1, (34, 29)), (4, 2, 1, (30, 33)), (3, 2, 0, (35, 32)),
                                     (5, 2, 2, (31, 31)), (3, 3, 1, (40, 31)), (2, 2, 0, (24, 24))])
def test_strided_conv_input_gradient_in_space_to_depth_form(monkeypatch, k, s, p, hw):
  # The strided layers' input gradient taken through the space-to-depth form (forced here for every
  # map size) equals XLA's own to float64 rounding: odd sizes (rows the conv never reads are cut),
  # kernels not a multiple of the stride (zero taps), stride 3.
  monkeypatch.setattr(layers, "S2D_MIN_OUTPUTS", 0)
  calls = []
  space_to_depth = layers._space_to_depth
  monkeypatch.setattr(layers, "_space_to_depth", lambda *a: calls.append(a) or space_to_depth(*a))
  with jax.enable_x64(True):
    x = jnp.asarray(_rng(52).normal(size=(2, *hw, 9)), jnp.float64)
    kernel = jnp.asarray(_rng(53).normal(size=(k, k, 9, 5)), jnp.float64)
    grads = {}
    for mode in ("taps", "xla"):
      monkeypatch.setattr(layers, "CONV_KERNEL_GRAD", mode)
      grads[mode] = jax.grad(lambda a, b: jnp.sum(jnp.sin(layers.conv(a, b, s, ((p, p), (p, p))))),
                             argnums=(0, 1))(x, kernel)
    assert calls and grads["taps"][0].shape == x.shape  # the form was used
    for ours, xla in zip(grads["taps"], grads["xla"]):
      np.testing.assert_allclose(ours, xla, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pads,cin,cout,hw", [(((1, 1), (1, 1)), 9, 10, (12, 11)), (((0, 0), (0, 0)), 3, 5, (9, 8)),
                                              (((1, 0), (0, 2)), 4, 4, (7, 7)), (((2, 2), (2, 2)), 6, 3, (5, 10))])
def test_winograd_conv_matches_definition(monkeypatch, pads, cin, cout, hw):
  # Winograd F(2x2, 3x3), forced on for these small layers: values and both gradients equal the
  # correlation's definition for odd and even output sizes (an odd one gets an extra zero row or column
  # that is cut off again), asymmetric and no padding, a batch of two.
  monkeypatch.setattr(layers, "WINOGRAD", "on")
  calls = []
  padded = layers._conv3x3_winograd_padded
  monkeypatch.setattr(layers, "_conv3x3_winograd_padded", lambda *a: calls.append(a) or padded(*a))
  x = _rng(60).normal(size=(2, *hw, cin)).astype(np.float32)
  kernel = _rng(61).normal(size=(3, 3, cin, cout)).astype(np.float32)
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), *pads, (0, 0)))
  ho, wo = xp.shape[1] - 2, xp.shape[2] - 2
  windows = np.stack([np.stack([xp[:, i:i + 3, j:j + 3] for j in range(wo)], 1) for i in range(ho)], 1)
  y = layers.conv(jnp.asarray(x), jnp.asarray(kernel), 1, pads)
  assert calls  # the Winograd form was used
  np.testing.assert_allclose(y, np.einsum("bhwklc,klco->bhwo", windows, kernel), rtol=1e-4, atol=1e-4)
  g = _rng(62).normal(size=y.shape).astype(np.float32)
  dx, dkernel = jax.jit(jax.grad(lambda x_, k_: jnp.sum(layers.conv(x_, k_, 1, pads) * g),
                                 argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(kernel))
  np.testing.assert_allclose(dkernel, np.einsum("bhwklc,bhwo->klco", windows, g), rtol=1e-4, atol=1e-4)
  dxp = np.zeros_like(xp)
  for i in range(ho):
    for j in range(wo):
      dxp[:, i:i + 3, j:j + 3] += np.einsum("bo,klco->bklc", g[:, i, j], kernel)
  (lo_h, _), (lo_w, _) = pads
  np.testing.assert_allclose(dx, dxp[:, lo_h:lo_h + hw[0], lo_w:lo_w + hw[1]], rtol=1e-4, atol=1e-4)


def test_winograd_transforms_are_exact_in_float64():
  # In exact arithmetic the Winograd form is the convolution: in float64 its values and gradients equal
  # XLA's convolution to float64 rounding (a wrong transform coefficient shows as an O(1) error).
  with jax.enable_x64(True):
    x = jnp.asarray(_rng(63).normal(size=(2, 9, 6, 5)), jnp.float64)
    kernel = jnp.asarray(_rng(64).normal(size=(3, 3, 5, 7)), jnp.float64)
    pads = ((1, 1), (0, 1))
    ours = jax.value_and_grad(lambda a, b: jnp.sum(jnp.sin(layers._conv3x3_winograd_padded(a, b, pads))),
                              argnums=(0, 1))(x, kernel)
    xla = jax.value_and_grad(lambda a, b: jnp.sum(jnp.sin(lax.conv_general_dilated(
        a, b, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")))), argnums=(0, 1))(x, kernel)
    np.testing.assert_allclose(ours[0], xla[0], rtol=1e-12)
    for a, b in zip(ours[1], xla[1]):
      assert a.dtype == jnp.float64
      np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def test_winograd_rule(monkeypatch):
  # "auto": 3x3 stride-1 float32 layers with >= WINOGRAD_MIN_CHANNELS in and out channels, on CPU only
  # (benchmarks/conv_grads.py: slower than the direct forms on 64 or fewer channels).
  x = jnp.zeros((1, 8, 8, 128), jnp.float32)
  on_cpu = jax.default_backend() == "cpu"
  assert layers._winograd_applies(x, jnp.zeros((3, 3, 128, 256)), 1) == on_cpu
  assert not layers._winograd_applies(x, jnp.zeros((3, 3, 128, 64)), 1)
  assert not layers._winograd_applies(x, jnp.zeros((3, 3, 128, 128)), 2)
  assert not layers._winograd_applies(x, jnp.zeros((4, 4, 128, 128)), 1)
  assert not layers._winograd_applies(x.astype(jnp.bfloat16), jnp.zeros((3, 3, 128, 128)), 1)
  monkeypatch.setattr(layers, "WINOGRAD", "on")
  assert layers._winograd_applies(x, jnp.zeros((3, 3, 128, 2)), 1)
  monkeypatch.setattr(layers, "WINOGRAD", "off")
  assert not layers._winograd_applies(x, jnp.zeros((3, 3, 128, 256)), 1)
  monkeypatch.setattr(layers, "WINOGRAD", "yes")
  with pytest.raises(ValueError, match="WINOGRAD must be"):
    layers.conv(x, jnp.zeros((3, 3, 128, 128)), 1, ((1, 1), (1, 1)))


def test_conv_transpose_rejects_output_padding_not_below_stride():
  with pytest.raises(ValueError, match="output_padding"):
    jax.eval_shape(lambda: layers.ConvTranspose2d(2, 3, stride=2, padding=1, output_padding=2).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 3, 3, 1))))


def test_dense_matches_linear():
  x = _rng(42).normal(size=(3, 5)).astype(np.float32)
  weight_torch = _rng(43).normal(size=(4, 5)).astype(np.float32)  # (out, in)
  bias = _rng(44).normal(size=(4,)).astype(np.float32)
  y = _apply(layers.Dense(4), {"params": {"kernel": convert._KINDS["linear"][0](weight_torch),
                                        "bias": bias}}, x)
  np.testing.assert_allclose(y, x @ weight_torch.T + bias, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------
# Initialisers
# ----------------------------------------------------------------------------------------------------
def test_kernel_init_distributions_match_torch_formulas():
  key = jax.random.PRNGKey(0)
  shape = (3, 3, 64, 32)  # HWIO: torch fan_in = 64 * 9, fan_out = 32 * 9
  fan_in, fan_out = 64 * 9, 32 * 9

  def std(init_type, gain):
    return float(np.std(np.asarray(layers.kernel_init(init_type, gain)(key, shape))))

  assert std("normal", 0.02) == pytest.approx(0.02, rel=0.03)
  assert std("normal", 0.5) == pytest.approx(0.5, rel=0.03)
  assert std("xavier", 0.02) == pytest.approx(0.02 * np.sqrt(2.0 / (fan_in + fan_out)), rel=0.03)
  assert std("xavier", 1.0) == pytest.approx(np.sqrt(2.0 / (fan_in + fan_out)), rel=0.03)
  assert std("kaiming", 0.02) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.03)
  default = np.asarray(layers.kernel_init("default")(key, shape))
  bound = 1.0 / np.sqrt(fan_in)  # torch's kaiming_uniform(a=sqrt(5)) bound
  assert np.max(np.abs(default)) <= bound
  assert np.max(np.abs(default)) > 0.99 * bound
  assert float(np.std(default)) == pytest.approx(bound / np.sqrt(3.0), rel=0.03)
  with pytest.raises(ValueError, match="Unknown init_type"):
    layers.kernel_init("he")


@pytest.mark.parametrize("gain", [1.0, 0.02])
def test_orthogonal_init_gives_orthogonal_torch_rows(gain):
  kernel = np.asarray(layers.kernel_init("orthogonal", gain)(jax.random.PRNGKey(1), (16, 6)),
                      np.float64)  # dense (in, out) -> torch (out, in): 6 orthogonal rows of 16
  weight_torch = kernel.T
  np.testing.assert_allclose(weight_torch @ weight_torch.T, gain**2 * np.eye(6), atol=1e-5 * gain)
  # A conv kernel: torch's (out, in*kh*kw) rows are orthogonal.
  conv = np.asarray(layers.kernel_init("orthogonal", gain)(jax.random.PRNGKey(2), (3, 3, 64, 32)),
                    np.float64)
  rows = _torch_matrix_hwio(conv)  # (32, 576)
  np.testing.assert_allclose(rows @ rows.T, gain**2 * np.eye(32), atol=1e-5 * gain)


def test_conv_transpose_init_uses_torch_fans():
  # torch's ConvTranspose2d weight is (in, out, kh, kw): its fan_in is out*kh*kw, not in*kh*kw.
  # (Shapes as in the tests above, and eager init, so jax.random's compiled programs are reused.)
  cin, cout, k = 32, 64, 3
  x = jnp.zeros((1, 2, 2, cin))

  def kernel_of(init_type):
    layer = layers.ConvTranspose2d(cout, k, 2, 1, kernel_init=layers.kernel_init(init_type, 1.0))
    kernel = np.asarray(layer.init(jax.random.PRNGKey(3), x)["params"]["kernel"], np.float64)
    assert kernel.shape == (k, k, cin, cout)
    return kernel

  assert np.std(kernel_of("kaiming")) == pytest.approx(np.sqrt(2.0 / (cout * k * k)), rel=0.05)
  assert np.max(np.abs(kernel_of("default"))) <= 1.0 / np.sqrt(cout * k * k)
  assert np.max(np.abs(kernel_of("default"))) > 0.99 / np.sqrt(cout * k * k)
  # torch's orthogonal_ flattens (in, out*kh*kw): the `in` rows are orthonormal.
  rows = kernel_of("orthogonal").transpose(2, 3, 0, 1).reshape(cin, -1)
  np.testing.assert_allclose(rows @ rows.T, np.eye(cin), atol=1e-5)


def test_norm_scale_init_is_normal_around_one():
  # The reference draws BatchNorm weights from N(1, gain) whatever the conv init_type is.
  for init_type in ("normal", "kaiming"):
    values = np.asarray(layers.norm_scale_init(init_type, 0.02)(jax.random.PRNGKey(0),
                                                                (3, 3, 64, 32)))
    assert np.mean(values) == pytest.approx(1.0, abs=1e-3)
    assert np.std(values) == pytest.approx(0.02, rel=0.03)
  np.testing.assert_array_equal(layers.norm_scale_init("default")(jax.random.PRNGKey(0), (4,)), 1.0)


# ----------------------------------------------------------------------------------------------------
# CAM attention, conditional norm, upsampling
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spectral_norm,slope", [(False, None), (True, 0.2)])
def test_cam_attention(spectral_norm, slope):
  b, h, w, c = 2, 5, 4, 6
  x = jnp.asarray(_rng(45).normal(size=(b, h, w, c)), jnp.float32)
  cam = layers.CAMAttention(spectral_norm=spectral_norm, leaky_slope=slope)
  variables = _random_variables(cam, x)
  features, cam_logit, heatmap = _apply(cam, variables, x)
  assert features.shape == (b, h, w, c)
  assert cam_logit.shape == (b, 2)
  assert heatmap.shape == (b, h, w, 1)
  np.testing.assert_allclose(heatmap, np.sum(np.asarray(features), axis=-1, keepdims=True),
                             rtol=1e-5, atol=1e-5)

  p = variables["params"]
  xn = np.asarray(x, np.float64)
  w_gap = np.asarray(p["gap_fc"]["kernel"], np.float64)[:, 0]  # the raw weights
  w_gmp = np.asarray(p["gmp_fc"]["kernel"], np.float64)[:, 0]

  def expected_features(w_gap, w_gmp):
    weighted = np.concatenate([xn * w_gap, xn * w_gmp], axis=-1)
    y = weighted @ np.asarray(p["conv1x1"]["kernel"], np.float64)[0, 0] + np.asarray(
        p["conv1x1"]["bias"])
    return np.maximum(y, 0) if slope is None else np.where(y > 0, y, slope * y)

  np.testing.assert_allclose(features, expected_features(w_gap, w_gmp), rtol=1e-5, atol=1e-6)

  sigma_gap = sigma_gmp = 1.0
  if spectral_norm:
    s = variables["spectral"]
    sigma_gap = float(np.asarray(s["gap_fc"]["sn"]["u"]) @ w_gap[None, :] @ np.asarray(
        s["gap_fc"]["sn"]["v"]))
    sigma_gmp = float(np.asarray(s["gmp_fc"]["sn"]["u"]) @ w_gmp[None, :] @ np.asarray(
        s["gmp_fc"]["sn"]["v"]))
    # Weighting with the normalised weights would be visibly different.
    assert not np.allclose(features, expected_features(w_gap / sigma_gap, w_gmp / sigma_gmp),
                           atol=1e-3)
  expected_logit = np.stack([xn.mean(axis=(1, 2)) @ w_gap / sigma_gap,
                             xn.max(axis=(1, 2)) @ w_gmp / sigma_gmp], axis=-1)
  np.testing.assert_allclose(cam_logit, expected_logit, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_conditional_norm(norm):
  x = _x(46, (4, 3, 3, 5))
  labels = jnp.asarray([0, 1, 2, 1])
  cond = layers.ConditionalNorm(num_classes=3, norm=norm)
  variables = cond.init(jax.random.PRNGKey(0), x, labels)
  plain = (layers.BatchNorm(affine=False) if norm == "batch" else layers.InstanceNorm())
  plain_vars = plain.init(jax.random.PRNGKey(0), x)
  for train in (True, False):
    y = cond.apply(variables, x, labels, train=train)
    np.testing.assert_allclose(y, plain.apply(plain_vars, x, use_running_average=not train),
                               rtol=1e-6, atol=1e-6)

  params = jax.tree_util.tree_map(lambda a: a, variables["params"])
  params["gain"]["kernel"] = jnp.asarray(_rng(47).normal(size=(3, 5)), jnp.float32)
  params["bias"]["kernel"] = jnp.asarray(_rng(48).normal(size=(3, 5)), jnp.float32)
  trained = {**variables, "params": params}
  same_x = jnp.broadcast_to(x[:1], x.shape)  # one image with every label
  y = np.asarray(cond.apply(trained, same_x, jnp.asarray([0, 1, 2, 0]), train=False))
  assert not np.allclose(y[0], y[1], atol=1e-3) and not np.allclose(y[1], y[2], atol=1e-3)
  np.testing.assert_allclose(y[0], y[3], rtol=1e-6, atol=1e-6)
  y_plain = np.asarray(plain.apply(plain_vars, same_x, use_running_average=True))
  gain = 1.0 + np.asarray(params["gain"]["kernel"])
  np.testing.assert_allclose(y[1], y_plain[1] * gain[1] + np.asarray(params["bias"]["kernel"])[1],
                             rtol=1e-5, atol=1e-5)
  y_onehot = cond.apply(trained, x, jax.nn.one_hot(labels, 3), train=False)
  np.testing.assert_allclose(cond.apply(trained, x, labels, train=False), y_onehot,
                             rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="classes"):
    jax.eval_shape(lambda: cond.apply(trained, x, jnp.zeros((4, 2))))


def test_upsample_nearest_and_resize_conv():
  x = _rng(49).normal(size=(2, 3, 4, 5)).astype(np.float32)
  np.testing.assert_array_equal(layers.upsample_nearest(jnp.asarray(x), 3),
                                np.repeat(np.repeat(x, 3, axis=1), 3, axis=2))
  for mode in ("nearest", "bilinear"):
    layer = layers.ResizeConv2d(7, mode=mode)
    assert jax.eval_shape(lambda: layer.init_with_output(jax.random.PRNGKey(0), x))[0].shape == (
        2, 6, 8, 7)


def test_upsample_bilinear_matches_torch_align_corners_false():
  x = _rng(50).normal(size=(1, 3, 4, 2))
  factor = 2

  def interp_matrix(n):
    # torch: src = max((dst + 0.5) / factor - 0.5, 0), linear between floor(src) and the next index.
    m = np.zeros((n * factor, n))
    for dst in range(n * factor):
      src = max((dst + 0.5) / factor - 0.5, 0.0)
      i0 = int(np.floor(src))
      i1 = min(i0 + 1, n - 1)
      frac = src - i0
      m[dst, i0] += 1 - frac
      m[dst, i1] += frac
    return m

  expected = np.einsum("Hh,Ww,bhwc->bHWc", interp_matrix(3), interp_matrix(4), x)
  np.testing.assert_allclose(layers.upsample_bilinear(jnp.asarray(x, jnp.float32), factor),
                             expected, rtol=1e-5, atol=1e-5)
