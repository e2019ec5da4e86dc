"""The whitening and colouring transform (WCT; Li et al. NeurIPS 2017, as PhotoWCT uses it), in JAX.

    out = wct.feature_wct(content_feats, style_feats)                       # (H, W, C) -> (H, W, C)
    masks = wct.label_masks(content_seg, style_seg, content_hw, style_hw)   # host, numpy
    out = wct.feature_wct(content_feats, style_feats, masks.content, masks.style)

Follows FastPhotoStyle's `PhotoWCT.__wct_core` / `__feature_wct` (photo_wct.py), on (pixels, channels)
matrices f_c (N_c x C) and f_s (N_s x C):

  content: mean m_c over pixels, centred f_c - m_c, covariance Cc = (f_c - m_c)^T (f_c - m_c) / (N_c - 1)
           + I (unbiased, and the identity added: a ridge of weight 1, as the reference does), eigen-
           decomposition Cc = Vc diag(e_c) Vc^T, eigenvalues below `eig_threshold` (1e-5) dropped;
  style:   m_s, Cs = (f_s - m_s)^T (f_s - m_s) / (N_s - 1) with NO ridge, eigenvalues < 1e-5 dropped
           (an absolute threshold in variance units: a rank-deficient style keeps only its rank);
  out = (f_c - m_c) Vc diag(e_c^-1/2) Vc^T  Vs diag(e_s^1/2) Vs^T + m_s.

So `out` has the style's mean and the covariance Cs^1/2 Sc (Sc + I)^-1 Cs^1/2 (Sc: the content's
covariance without the ridge), i.e. the style's covariance where the content's variances are large
against 1, as VGG relu features mostly are. No
alpha blending and no clamping (the reference has none). Dropping eigenvalues is a mask on the spectrum,
so the function is jittable (no data-dependent shapes).

Per-label WCT (`content_masks` (L, H_c, W_c), `style_masks` (L, H_s, W_s), 0/1): for each label, the
content and style pixels of that label are transformed with their own statistics (weighted means and
covariances over the label's pixels) and written back to that label's content pixels. Content pixels of
no transformed label keep their ORIGINAL features (the reference: labels failing its validity test, or
with no pixels at this feature size in either map). `label_masks` builds the masks on the host as the
reference does: a label of the content map is used iff it has more than 10 pixels in both full-size
maps and neither count is 100 times the other; maps are resized to the feature size by PIL's NEAREST
rule (source index floor((i + 0.5) * in / out)); labels only in the style map are ignored.

Precision: float32 by default (the reference computes in float32; its float64 path differs by ~1e-6);
`dtype=jnp.float64` computes in float64 (needs `jax.config.update("jax_enable_x64", True)`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EIG_THRESHOLD = 1e-5  # the reference's absolute eigenvalue threshold
MIN_LABEL_PIXELS = 10  # a label needs more than this many pixels in both full-size maps
MAX_LABEL_RATIO = 100  # and neither count 100x the other


def _compute_dtype(dtype):
  dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    raise ValueError("WCT in float64 needs jax.config.update('jax_enable_x64', True) first.")
  if dtype not in (jnp.float32, jnp.float64):
    raise ValueError(f"WCT computes in float32 or float64, got {dtype}.")
  return dtype


def _stats(x, w):
  """Weighted mean (C,) and unbiased covariance (C, C) of the rows of x (N, C) with 0/1 weights w."""
  n = jnp.sum(w)
  mean = (w @ x) / jnp.maximum(n, 1)
  centred = (x - mean) * w[:, None]
  cov = centred.T @ centred / jnp.maximum(n - 1, 1)
  return mean, cov


def _sym_power(cov, power, threshold):
  """V diag(e^power) V^T over eigenvalues e >= threshold (the others dropped)."""
  e, v = jnp.linalg.eigh(cov)
  keep = e >= threshold
  d = jnp.where(keep, jnp.where(keep, e, 1.0) ** power, 0.0)
  return (v * d) @ v.T


def wct_core(content, style, content_weights=None, style_weights=None, *,
             eig_threshold: float = EIG_THRESHOLD, dtype=None):
  """WCT of content pixels (N_c, C) with the statistics of style pixels (N_s, C) -> (N_c, C).

  `content_weights` (N_c,) / `style_weights` (N_s,) (0/1) restrict the statistics to some pixels (a
  label); every content row is transformed (callers keep the rows they want). Computed in `dtype`
  (float32 default, or float64), returned in the content's dtype."""
  out_dtype = content.dtype
  dtype = _compute_dtype(dtype)
  c, s = content.astype(dtype), style.astype(dtype)
  wc = jnp.ones(c.shape[0], dtype) if content_weights is None else content_weights.astype(dtype)
  ws = jnp.ones(s.shape[0], dtype) if style_weights is None else style_weights.astype(dtype)
  c_mean, c_cov = _stats(c, wc)
  s_mean, s_cov = _stats(s, ws)
  c_cov = c_cov + jnp.eye(c.shape[1], dtype=dtype)  # the reference's ridge
  whiten = _sym_power(c_cov, -0.5, eig_threshold)
  colour = _sym_power(s_cov, 0.5, eig_threshold)
  out = (c - c_mean) @ (whiten @ colour) + s_mean
  return out.astype(out_dtype)


def feature_wct(content_feats, style_feats, content_masks=None, style_masks=None, *,
                eig_threshold: float = EIG_THRESHOLD, dtype=None):
  """WCT of one image's features: `content_feats` (H_c, W_c, C) or (1, H_c, W_c, C) with the
  statistics of `style_feats` (H_s, W_s, C) / (1, ...) -> the content's shape. With `content_masks`
  (L, H_c, W_c) and `style_masks` (L, H_s, W_s) (from `label_masks`), per-label WCT; pixels outside
  every transformed label keep their features. Raises ValueError for mismatched shapes."""
  shape = content_feats.shape
  cf = content_feats.reshape(-1, shape[-1])
  sf = style_feats.reshape(-1, style_feats.shape[-1])
  if content_feats.ndim not in (3, 4) or style_feats.ndim != content_feats.ndim or (
      content_feats.ndim == 4 and (shape[0] != 1 or style_feats.shape[0] != 1)):
    raise ValueError(f"feature_wct takes one image's (H, W, C) or (1, H, W, C) features, got "
                     f"{content_feats.shape} and {style_feats.shape}.")
  if cf.shape[1] != sf.shape[1]:
    raise ValueError(f"Content and style features differ in channels: {shape} vs {style_feats.shape}.")
  kw = dict(eig_threshold=eig_threshold, dtype=dtype)
  if (content_masks is None) != (style_masks is None):
    raise ValueError("Give both content_masks and style_masks, or neither.")
  if content_masks is None:
    return wct_core(cf, sf, **kw).reshape(shape)
  cm = jnp.asarray(content_masks).reshape(content_masks.shape[0], -1)
  sm = jnp.asarray(style_masks).reshape(style_masks.shape[0], -1)
  if cm.shape != (cm.shape[0], cf.shape[0]) or sm.shape != (cm.shape[0], sf.shape[0]):
    raise ValueError(f"Masks {content_masks.shape} / {style_masks.shape} do not match the features "
                     f"{shape} / {style_feats.shape} (one mask per label, at the feature size).")

  def one(out, masks):
    mc, ms = masks
    transformed = wct_core(cf, sf, mc, ms, **kw)
    use = (mc > 0) & (jnp.sum(mc) > 0) & (jnp.sum(ms) > 0)  # labels absent here are skipped
    return jnp.where(use[:, None], transformed, out), None

  out, _ = jax.lax.scan(one, cf, (cm, sm))
  return out.reshape(shape)


# ----------------------------------------------------------------------------------------------------
# Label maps (host side)
# ----------------------------------------------------------------------------------------------------
class LabelMasks(NamedTuple):
  labels: np.ndarray  # (L,) the labels used (valid per the reference's rule)
  content: np.ndarray  # (L, H_c, W_c) float32 0/1
  style: np.ndarray  # (L, H_s, W_s) float32 0/1


def as_label_map(seg) -> np.ndarray:
  """An (H, W) integer label map from (H, W) integers or an (H, W, 3|4) colour map (each colour a
  label; colours are packed into one integer so that the same colour is the same label in both maps).
  Raises ValueError for other shapes."""
  seg = np.asarray(seg)
  if seg.ndim == 3 and seg.shape[-1] in (3, 4):
    seg = seg[..., :3].astype(np.int64)
    return (seg[..., 0] << 16) | (seg[..., 1] << 8) | seg[..., 2]
  if seg.ndim != 2:
    raise ValueError(f"A segmentation map is (H, W) labels or (H, W, 3) colours, got shape {seg.shape}.")
  if not np.issubdtype(seg.dtype, np.integer):
    if not np.all(seg == np.round(seg)):
      raise ValueError("A segmentation label map must hold integer labels.")
    seg = seg.astype(np.int64)
  return seg


def valid_labels(content_seg, style_seg) -> np.ndarray:
  """The labels of the content map that the reference transforms: more than 10 pixels in both
  full-size maps and neither count 100 times the other (`__compute_label_info`)."""
  c, s = as_label_map(content_seg), as_label_map(style_seg)
  out = []
  for label in np.unique(c):
    a, b = int(np.sum(c == label)), int(np.sum(s == label))
    if a > MIN_LABEL_PIXELS and b > MIN_LABEL_PIXELS and a / b < MAX_LABEL_RATIO and (
        b / a < MAX_LABEL_RATIO):
      out.append(label)
  return np.asarray(out, dtype=c.dtype)


def resize_nearest(seg: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """PIL's NEAREST resize of a label map to (H, W): source index floor((i + 0.5) * in / out)."""
  h, w = size
  rows = np.minimum(np.floor((np.arange(h) + 0.5) * seg.shape[0] / h).astype(np.int64), seg.shape[0] - 1)
  cols = np.minimum(np.floor((np.arange(w) + 0.5) * seg.shape[1] / w).astype(np.int64), seg.shape[1] - 1)
  return seg[rows][:, cols]


def label_masks(content_seg, style_seg, content_hw: tuple[int, int], style_hw: tuple[int, int]
                ) -> LabelMasks:
  """Masks of the valid labels at feature sizes `content_hw` / `style_hw` (see the module docstring)."""
  c, s = as_label_map(content_seg), as_label_map(style_seg)
  labels = valid_labels(c, s)
  rc, rs = resize_nearest(c, content_hw), resize_nearest(s, style_hw)
  cm = np.stack([rc == l for l in labels]) if len(labels) else np.zeros((0, *content_hw), bool)
  sm = np.stack([rs == l for l in labels]) if len(labels) else np.zeros((0, *style_hw), bool)
  return LabelMasks(labels, cm.astype(np.float32), sm.astype(np.float32))
