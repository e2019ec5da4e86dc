"""U-GAT-IT networks against the golden outputs of znxlwm/UGATIT-pytorch (torch, eval mode).

The torch state dicts are loaded through `translate.convert.from_torch`, so these tests cover the
converter's key mapping (by name: the reference's state-dict order is unusual) as well as the forward
passes. The discriminator tests also pin down spectral norm: eval mode must use the stored u/v as they
are, train mode must run exactly one power iteration, starting from them, before the forward.
"""
import jax
import numpy as np
import pytest

from tests.conftest import max_diff_nchw, nchw_to_nhwc, nhwc_to_nchw
from translate import convert, layers
from translate.networks import ugatit

GENERATOR_FILES = ["ugatit_generator_light_ngf8.npz", "ugatit_generator_full_ngf8.npz"]
DISCRIMINATOR_FILES = ["ugatit_discriminator_local_n5_ndf8.npz",
                       "ugatit_discriminator_global_n7_ndf4.npz"]


@pytest.mark.parametrize("name", GENERATOR_FILES)
@pytest.mark.parametrize("winograd", ["auto", "on"])  # "on": the 3x3 convs as Winograd F(2x2, 3x3)
def test_generator_matches_torch(name, golden_network, monkeypatch, winograd):
  monkeypatch.setattr(layers, "WINOGRAD", winograd)
  module, variables, g = golden_network(name, "ugatit_generator")
  with jax.default_matmul_precision("highest"):
    out, cam_logit, heatmap = module.apply(variables, nchw_to_nhwc(g["input"]))
  assert max_diff_nchw(out, g["output"]) <= 1e-4
  assert max_diff_nchw(cam_logit, g["cam_logit"]) <= 1e-4
  assert max_diff_nchw(heatmap, g["heatmap"]) <= 1e-4


def test_generator_full_fc_uses_nchw_flatten_order(golden_network):
  """The full model's FC.0 sees the bottleneck flattened as torch's (C, H, W); flattening our NHWC
  array directly would scramble the inputs of that layer. Loading FC.0.weight with its columns permuted
  to (H, W, C) order into the unmodified network must therefore break parity (guards the transpose)."""
  module, variables, g = golden_network("ugatit_generator_full_ngf8.npz", "ugatit_generator")
  kernel = np.asarray(variables["params"]["fc1"]["kernel"])  # (C*h*w, out), rows in (C, H, W) order
  c, hw = 32, 16
  hwc_rows = kernel.reshape(c, hw, hw, -1).transpose(1, 2, 0, 3).reshape(kernel.shape)
  scrambled = jax.tree_util.tree_map(lambda a: a, variables)
  scrambled["params"]["fc1"]["kernel"] = hwc_rows
  with jax.default_matmul_precision("highest"):
    out, _, _ = module.apply(scrambled, nchw_to_nhwc(g["input"]))
  assert max_diff_nchw(out, g["output"]) > 1e-3


@pytest.mark.parametrize("name", DISCRIMINATOR_FILES)
def test_discriminator_matches_torch_eval(name, golden_network):
  module, variables, g = golden_network(name, "ugatit_discriminator")
  with jax.default_matmul_precision("highest"):
    (out, cam_logit, heatmap), updated = module.apply(
        variables, nchw_to_nhwc(g["input"]), update_stats=False, mutable=[layers.SPECTRAL])
  # Outputs are O(1e-2) or smaller: the README asks for 1e-5 absolute.
  assert max_diff_nchw(out, g["output"]) <= 1e-5
  assert max_diff_nchw(cam_logit, g["cam_logit"]) <= 1e-5
  assert max_diff_nchw(heatmap, g["heatmap"]) <= 1e-5
  # Inference never moves the power-iteration vectors, even when the collection is mutable.
  for before, after in zip(jax.tree_util.tree_leaves(variables[layers.SPECTRAL]),
                           jax.tree_util.tree_leaves(updated[layers.SPECTRAL])):
    np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def _is_spectral_norm(module, method_name):
  return isinstance(module, layers.SpectralNorm)


def _sigmas(intermediates, variables, n_layers):
  """sigma of every SN layer, keyed by torch prefix: raw weight / the normalised weight it returned."""
  sigmas = {}
  for prefix, path in ugatit.discriminator_torch_paths(n_layers).items():
    node_params, node_inter = variables["params"], intermediates
    for p in path:
      node_params, node_inter = node_params[p], node_inter[p]
    raw = np.asarray(node_params["kernel"], np.float64).ravel()
    normalised = np.asarray(node_inter["sn"]["__call__"][0], np.float64).ravel()
    sigmas[prefix] = float(raw @ raw / (raw @ normalised))
  return sigmas


def _torch_power_iteration(w, u, eps=1e-12):
  """One step of torch's spectral_norm power iteration on the (out, -1) matrix, in float64."""
  w, u = w.reshape(w.shape[0], -1).astype(np.float64), u.astype(np.float64)
  v = w.T @ u
  v = v / max(np.linalg.norm(v), eps)
  u = w @ v
  u = u / max(np.linalg.norm(u), eps)
  return u, v


@pytest.mark.parametrize("name", DISCRIMINATOR_FILES)
def test_discriminator_training_apply_runs_one_power_iteration(name, golden_network, golden_state_dict):
  module, variables, g = golden_network(name, "ugatit_discriminator")
  n_layers = g["meta"]["args"]["n_layers"]
  x = nchw_to_nhwc(g["input"])
  with jax.default_matmul_precision("highest"):
    (out_eval, _, _), eval_state = module.apply(
        variables, x, update_stats=False, capture_intermediates=_is_spectral_norm)
    (out_train, _, _), train_state = module.apply(
        variables, x, update_stats=True, mutable=[layers.SPECTRAL, "intermediates"],
        capture_intermediates=_is_spectral_norm)

  sigma_before = _sigmas(eval_state["intermediates"], variables, n_layers)
  sigma_after = _sigmas(train_state["intermediates"], variables, n_layers)
  state_dict, _ = golden_state_dict(name)
  for prefix, path in ugatit.discriminator_torch_paths(n_layers).items():
    # Eval-mode sigma = u . (W v) with the stored vectors: torch's recorded value.
    aux_key = f"aux_sn_sigma.{prefix}"
    if aux_key in g:
      assert abs(sigma_before[prefix] - float(g[aux_key])) <= 1e-5, prefix
    # The update is exactly one torch power-iteration step from the stored u.
    w = state_dict[f"{prefix}.weight_orig"]
    u_expected, v_expected = _torch_power_iteration(w, state_dict[f"{prefix}.weight_u"])
    node = train_state[layers.SPECTRAL]
    for p in path:
      node = node[p]
    np.testing.assert_allclose(np.asarray(node["sn"]["u"]), u_expected, atol=1e-5, err_msg=prefix)
    np.testing.assert_allclose(np.asarray(node["sn"]["v"]), v_expected, atol=1e-5, err_msg=prefix)
    if w.shape[0] > 1:
      # A single-output layer (gap_fc, gmp_fc, conv) is at its fixed point after one iteration
      # (u = +-1, v = w / |w|), so only the multi-output layers have vectors that must move.
      assert np.max(np.abs(np.asarray(node["sn"]["u"]) - state_dict[f"{prefix}.weight_u"])) > 1e-5
      assert np.max(np.abs(np.asarray(node["sn"]["v"]) - state_dict[f"{prefix}.weight_v"])) > 1e-5
    # Power iteration never lowers the estimate and never exceeds the true spectral norm.
    top_singular_value = np.linalg.svd(w.reshape(w.shape[0], -1).astype(np.float64),
                                       compute_uv=False)[0]
    assert sigma_before[prefix] - 1e-6 <= sigma_after[prefix] <= top_singular_value + 1e-5, prefix

  # The stored vectors are already well converged, so the output moves only a little (torch: ~4e-4).
  change = max_diff_nchw(out_train, nhwc_to_nchw(out_eval))
  assert 1e-5 < change < 2e-3  # measured: 4.5e-4 (local), 1.2e-4 (global)
  # Train mode uses the *updated* vectors: an eval apply with them reproduces its output.
  updated = {**variables, layers.SPECTRAL: train_state[layers.SPECTRAL]}
  with jax.default_matmul_precision("highest"):
    out_again, _, _ = module.apply(updated, x, update_stats=False)
  np.testing.assert_allclose(np.asarray(out_again), np.asarray(out_train), atol=1e-7)
