"""MUNIT (AdaINGen, MsImageDis) and UNIT (VAEGen) networks against the golden outputs of the reference
PyTorch code (NVlabs/MUNIT, mingyuliutw/UNIT master), loaded through `translate.convert.from_torch`
with the reference constructor arguments (`input_dim`, `params`), so the key mapping is covered too.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import max_diff_nchw, nchw_to_nhwc
from translate import convert, layers
from translate.networks import munit

TOL = 1e-4


def _style(s):  # reference style codes are (B, style_dim, 1, 1); ours (B, style_dim)
  return np.asarray(s).reshape(s.shape[0], -1)


@pytest.mark.parametrize("winograd", ["auto", "on"])  # "on": the 3x3 convs as Winograd F(2x2, 3x3)
def test_adaingen_matches_torch(golden_network, monkeypatch, winograd):
  monkeypatch.setattr(layers, "WINOGRAD", winograd)
  module, v, g = golden_network("munit_adaingen_d8_s8_mlp16_r2.npz", "munit_generator")
  with jax.default_matmul_precision("highest"):
    content, style = module.apply(v, nchw_to_nhwc(g["input"]), method=module.encode)
    assert max_diff_nchw(content, g["content"]) <= TOL
    assert float(np.max(np.abs(np.asarray(style) - _style(g["style"])))) <= TOL
    for code, name in ((g["style"], "recon"), (g["style_given"], "given")):
      params = module.apply(v, _style(code), method=module.adain_params)
      assert max_diff_nchw(params, g[f"adain_params_{name}"]) <= TOL
      out = module.apply(v, content, _style(code), method=module.decode)
      assert max_diff_nchw(out, g[f"output_{name}"]) <= TOL
    assert max_diff_nchw(module.apply(v, nchw_to_nhwc(g["input"])), g["forward_output"]) <= TOL
    c2, s2 = module.apply(v, nchw_to_nhwc(g["input_batch2"]), method=module.encode)
    assert max_diff_nchw(c2, g["content_batch2"]) <= TOL
    assert float(np.max(np.abs(np.asarray(s2) - _style(g["style_batch2"])))) <= TOL
    out2 = module.apply(v, c2, _style(g["style_given_batch2"]), method=module.decode)
    assert max_diff_nchw(out2, g["output_given_batch2"]) <= TOL


def test_munit_layernorm_is_unbiased_std_plus_eps():
  """The reference's LayerNorm divides by (unbiased std + eps); torch/Flax LayerNorm would use
  sqrt(biased var + eps). On a small map the difference is visible, so this pins the formula."""
  x = np.random.default_rng(0).normal(size=(2, 3, 2, 4)).astype(np.float64)
  ln = munit.LayerNorm()
  v = ln.init(jax.random.PRNGKey(0), jnp.asarray(x, jnp.float32))
  y = np.asarray(ln.apply(v, jnp.asarray(x, jnp.float32)))
  flat = x.reshape(2, -1)
  ref = (x - flat.mean(1)[:, None, None, None]) / (flat.std(1, ddof=1)[:, None, None, None] + 1e-5)
  gamma, beta = (np.asarray(v["params"][k]) for k in ("gamma", "beta"))
  assert np.all((gamma >= 0) & (gamma <= 1)) and np.all(beta == 0)
  np.testing.assert_allclose(y, ref * gamma + beta, atol=1e-5)


def test_msimagedis_matches_torch(golden_network):
  module, v, g = golden_network("munit_msimagedis_d8_n4_s3.npz", "munit_discriminator")
  x, real = nchw_to_nhwc(g["input"]), nchw_to_nhwc(g["input_real"])
  with jax.default_matmul_precision("highest"):
    outs = module.apply(v, x)
    outs_real = module.apply(v, real)
  assert len(outs) == 3
  for s, out in enumerate(outs):
    assert max_diff_nchw(out, g[f"output_scale{s}"]) <= TOL
  # the images fed to the coarser scales: count_include_pad=False average pooling
  down1 = munit.avg_pool_exclude_pad(jnp.asarray(x))
  assert max_diff_nchw(down1, g["aux_downsampled_1"]) <= 1e-6
  assert max_diff_nchw(munit.avg_pool_exclude_pad(down1), g["aux_downsampled_2"]) <= 1e-6
  assert abs(float(munit.calc_gen_loss(outs, "lsgan")) - float(g["loss_gen_lsgan"])) <= TOL
  assert abs(float(munit.calc_dis_loss(outs, outs_real, "lsgan")) - float(g["loss_dis_lsgan"])) <= TOL


def test_vaegen_matches_torch(golden_network):
  module, v, g = golden_network("unit_vaegen_d8_r2.npz", "unit_generator")
  with jax.default_matmul_precision("highest"):
    h = module.apply(v, nchw_to_nhwc(g["input"]), method=module.encode)
    assert max_diff_nchw(h, g["hiddens"]) <= TOL
    assert max_diff_nchw(module.apply(v, h, method=module.decode), g["output"]) <= TOL
    noisy = module.apply(v, h + nchw_to_nhwc(g["noise_given"]), method=module.decode)
    assert max_diff_nchw(noisy, g["output_noisy"]) <= TOL


def test_converter_rejects_other_architecture(golden_state_dict):
  """A UNIT checkpoint is not an AdaINGen: the converter names a missing key."""
  state_dict, g = golden_state_dict("unit_vaegen_d8_r2.npz")
  params = dict(g["meta"]["args"]["params"], style_dim=8, mlp_dim=16)
  with pytest.raises(convert.StateDictError, match="enc_style"):
    convert.from_torch("munit_generator", state_dict, input_dim=3, params=params)
