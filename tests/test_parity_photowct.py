"""PhotoWCT against the golden outputs of NVIDIA/FastPhotoStyle (torch / numpy / scipy).

* networks: `models.py` VGGEncoder / VGGDecoder levels 1 and 2 through `convert.from_torch('photo_wct')`
  (the keys of photo_wct.pth), on a 17x14 input (odd height: the unpooled last row stays 0);
* WCT: `PhotoWCT.__feature_wct` without segmentation (full-rank and rank-deficient style covariance)
  and with label maps (an invalid label keeps its content features);
* smoothing: `photo_smooth.Propagator(0.9999)` on a 16 px image, in float64.
"""
import jax
import numpy as np
import pytest

from tests.conftest import max_diff_nchw, nchw_to_nhwc
from translate import convert

NETS_FILE = "photowct_vgg_levels12.npz"
WCT_FILE = "photowct_wct.npz"
SMOOTH_FILE = "photowct_smooth_16px.npz"


@pytest.fixture(scope="module")
def golden_nets():
  from tests.conftest import GOLDEN_DIR, golden_required
  path = GOLDEN_DIR / NETS_FILE
  if not path.exists():
    if golden_required():
      pytest.fail(f"golden file {path} not found; CI requires it")
    pytest.skip(f"golden file {path} not found (it lives in ../shared/golden beside the repo)")
  with np.load(path, allow_pickle=False) as data:
    g = {k: data[k] for k in data.files}
  state = {str(k): g[str(k)] for k in g["meta_state_dict_keys"]}
  module, variables = convert.from_torch("photo_wct", state, levels=(1, 2))
  return module, variables, g


def test_encoders_decoders_with_unpooling(golden_nets):
  module, variables, g = golden_nets
  x = nchw_to_nhwc(g["input"])
  with jax.default_matmul_precision("highest"):
    feats1, pools1 = module.apply(variables, 1, x, method="encode")
    y1 = module.apply(variables, 1, feats1["relu1_1"], pools1, method="decode")
    feats2, pools2 = module.apply(variables, 2, x, method="encode")
    y2 = module.apply(variables, 2, feats2["relu2_1"], pools2, method="decode")
    y2_alt = module.apply(variables, 2, nchw_to_nhwc(g["d2_input_alt"]), pools2, method="decode")
  assert pools1 == ()
  assert max_diff_nchw(feats1["relu1_1"], g["e1_output"]) <= 1e-4
  assert max_diff_nchw(y1, g["d1_output"]) <= 1e-4
  assert max_diff_nchw(feats2["relu2_1"], g["e2_output"]) <= 1e-4
  assert max_diff_nchw(y2, g["d2_output"]) <= 1e-4
  # The decoder gets other features but the content's indices (as PhotoWCT's cascade does).
  assert max_diff_nchw(y2_alt, g["d2_output_alt"]) <= 1e-4
  # The pooling indices are torch's (flat h * W + w, first maximum of tied windows: 679 all-zero
  # windows here) and the unpooled size is the pre-pool 17x14.
  (pool,) = pools2
  assert pool.size == (17, 14)
  np.testing.assert_array_equal(np.asarray(pool.indices).transpose(0, 3, 1, 2),
                                g["aux_e2_pool1_idx"].astype(np.int32))


def _hwc(x):
  return np.asarray(x)[0].transpose(1, 2, 0)


def test_wct_global_full_and_low_rank_style(golden):
  from translate.photowct import wct
  g = golden(WCT_FILE)
  content = _hwc(g["content_feat"])
  for case in ("full", "lowrank"):
    out = jax.jit(wct.feature_wct)(content, _hwc(g[f"style_feat_{case}"]))
    assert max_diff_nchw(np.asarray(out)[None], g[f"output_{case}"]) <= 1e-4, case


def test_wct_per_label(golden):
  from translate.photowct import wct
  g = golden(WCT_FILE)
  content, style = _hwc(g["content_feat_seg"]), _hwc(g["style_feat_seg"])
  masks = wct.label_masks(g["content_seg"].astype(np.uint8), g["style_seg"].astype(np.uint8),
                          content.shape[:2], style.shape[:2])
  # label 2 (9 px) is invalid, label 3 is only in the style: labels 0 and 1 are transformed.
  np.testing.assert_array_equal(masks.labels, np.flatnonzero(g["meta"]["label_indicator"]))
  np.testing.assert_array_equal(wct.resize_nearest(g["content_seg"], content.shape[:2]),
                                g["aux_content_seg_resized"])
  np.testing.assert_array_equal(wct.resize_nearest(g["style_seg"], style.shape[:2]),
                                g["aux_style_seg_resized"])
  out = jax.jit(wct.feature_wct)(content, style, masks.content, masks.style)
  assert max_diff_nchw(np.asarray(out)[None], g["output_seg"]) <= 1e-4


def test_matting_smoothing_float64(golden):
  """From the reference's padded inputs (its resize of the content is PIL's, not ours): the affinity
  W, then the solve and the 2 px crop, at 1e-6 in float64; the uint8 result exactly."""
  from translate.photowct import smoothing
  g = golden(SMOOTH_FILE)
  content = np.pad(g["aux_content_resized_hwc"].astype(np.float64), ((2, 2), (2, 2), (0, 0)),
                   mode="edge") / 255.0
  np.testing.assert_allclose(content, g["aux_content_padded"], atol=1e-7)
  w = smoothing.matting_affinity(content)
  np.testing.assert_allclose(w.toarray(), g["aux_affinity_W"], rtol=0, atol=1e-6)
  out = smoothing.matting_smooth(g["aux_init_padded"], content, beta=g["meta"]["args"]["beta"])
  out = out[2:14, 2:14]
  assert np.max(np.abs(out - g["output"])) <= 1e-6
  np.testing.assert_array_equal(np.uint8(np.clip(out * 255.0, 0, 255)), g["output_uint8_hwc"])
