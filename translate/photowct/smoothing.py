"""PhotoWCT's smoothing step: make the stylized image's pixels vary only where the content's do.

Closed-form smoothing (Li et al. ECCV 2018, Eq. 5; FastPhotoStyle `photo_smooth.py`): with W the
matting affinity of the content image (Levin et al. 2008: 3x3 windows, eps 1e-7), d_i = sum_j W_ij,
S = D^-1/2 W D^-1/2 and Y the stylized image, the result R solves

    (I - beta S) R = (1 - beta) Y,     beta = 1 / (1 + lambda) = 0.9999 (lambda 1e-4, the reference)

for each colour channel. W_ij = sum over the 3x3 windows k holding both pixels of
(1/9) (1 + (I_i - mu_k)^T (Sigma_k + eps/9 I_3)^-1 (I_j - mu_k)), windows lying fully inside the image,
mu_k / Sigma_k the window's mean and biased covariance (the reference's `__compute_laplacian`, which
despite its name returns this affinity).

  matting_smooth(stylized, content, beta)        exact: the sparse system solved by SuperLU (scipy,
                                                  float64, host), as the reference does;
  matting_smooth_cg(stylized, content, beta)      JAX: Jacobi-preconditioned conjugate gradients with a
                                                  matrix-free W (box sums), float64 (`matting_cg_solve`
                                                  is the jittable core); approximate (tol);
  guided_filter(stylized, content, radius, eps)   the fast variant (the paper's "PhotoWCT + GIF";
                                                  FastPhotoStyle `photo_gif.py`, cv2.ximgproc's guided
                                                  filter, radius 35), He et al. 2010's colour guided
                                                  filter, JAX, jittable.

Images are (H, W, 3) float arrays in [0, 1] (HWC, one image), the content aligned with the stylized
image. Departure: the reference crops the stylized image by 2 px per side, pads it back by edge
replication, RESIZES the content to the cropped size (so the two are slightly misaligned) and returns
an image 4 px smaller; we smooth the aligned images at their own size (`matting_affinity` and the solve
are the same computation: tests/test_parity_photowct.py checks them on the reference's padded inputs).

Guided filter units: cv2.ximgproc.guidedFilter works on the 0..255 values of 8-bit images, so the
reference's eps = 1e-3 is 1e-3 / 255^2 in [0, 1] units: `GIF_EPS` (almost no regularisation; the
result follows the content's edges closely). Windows are (2r + 1)^2 boxes clipped at the border (He's
normalisation by the number of pixels in the window; OpenCV reflects at the border instead).
"""
from __future__ import annotations

import numpy as np

import jax
import jax.numpy as jnp

BETA = 0.9999  # the reference's default (demo.py, process_stylization_folder.py)
MATTING_EPS = 1e-7
GIF_RADIUS = 35
GIF_EPS = 1e-3 / 255.0 ** 2


def _check_pair(stylized, content):
  if stylized.ndim != 3 or stylized.shape[-1] != 3 or content.shape != stylized.shape:
    raise ValueError(f"Smoothing takes an (H, W, 3) stylized image and an (H, W, 3) content image of "
                     f"the same size, got {stylized.shape} and {content.shape}.")
  if min(content.shape[:2]) < 3:
    raise ValueError(f"Smoothing needs images of at least 3x3 px, got {content.shape[:2]}.")


# ----------------------------------------------------------------------------------------------------
# Exact: scipy sparse (host, float64)
# ----------------------------------------------------------------------------------------------------
def _windows(img: np.ndarray):
  """3x3 windows fully inside the image: (pixel indices (K, 9), values (K, 9, 3))."""
  h, w, _ = img.shape
  index = np.arange(h * w).reshape(h, w)
  win = np.lib.stride_tricks.sliding_window_view(index, (3, 3)).reshape(-1, 9)
  return win, img.reshape(-1, img.shape[-1])[win]


def matting_affinity(content, eps: float = MATTING_EPS):
  """The matting affinity W (scipy CSR, (H*W, H*W), float64, pixel index y * W + x) of an
  (H, W, 3) image in [0, 1]."""
  import scipy.sparse
  img = np.asarray(content, np.float64)
  win, vals = _windows(img)
  mu = vals.mean(axis=1, keepdims=True)
  centred = vals - mu
  cov = np.einsum("kji,kjl->kil", centred, centred) / 9.0
  inv = np.linalg.inv(cov + (eps / 9.0) * np.eye(3))
  a = (1.0 + np.einsum("kic,kcd,kjd->kij", centred, inv, centred)) / 9.0  # (K, 9, 9)
  rows = np.repeat(win, 9, axis=1).ravel()
  cols = np.tile(win, (1, 9)).ravel()
  n = img.shape[0] * img.shape[1]
  return scipy.sparse.coo_matrix((a.ravel(), (rows, cols)), shape=(n, n)).tocsr()  # duplicates add


def smoothing_matrix(content, beta: float = BETA, eps: float = MATTING_EPS):
  """A = I - beta D^-1/2 W D^-1/2 (scipy CSC, float64)."""
  import scipy.sparse
  w = matting_affinity(content, eps)
  d = 1.0 / np.sqrt(np.asarray(w.sum(axis=0)).ravel())
  dm = scipy.sparse.diags(d)
  return (scipy.sparse.identity(w.shape[0]) - beta * (dm @ w @ dm)).tocsc()


def matting_smooth(stylized, content, beta: float = BETA, eps: float = MATTING_EPS) -> np.ndarray:
  """Exact closed-form smoothing (module docstring): R (H, W, 3) float64, not clipped. Raises
  ValueError for mismatched or too small images or beta outside [0, 1)."""
  import scipy.sparse.linalg
  stylized, content = np.asarray(stylized, np.float64), np.asarray(content, np.float64)
  _check_pair(stylized, content)
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"beta must lie in [0, 1), got {beta}.")
  solve = scipy.sparse.linalg.factorized(smoothing_matrix(content, beta, eps))
  y = stylized.reshape(-1, 3)
  r = np.stack([solve(np.ascontiguousarray(y[:, c])) for c in range(3)], axis=1)
  return ((1.0 - beta) * r).reshape(stylized.shape)


# ----------------------------------------------------------------------------------------------------
# JAX: matrix-free affinity and preconditioned conjugate gradients
# ----------------------------------------------------------------------------------------------------
def _box3_valid(x):
  """Sums over the 3x3 windows fully inside: (H, W, ...) -> (H - 2, W - 2, ...)."""
  h, w = x.shape[:2]
  return sum(x[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))


def _box3_scatter(x):
  """Adjoint of `_box3_valid`: each pixel sums the values of the windows that hold it."""
  padded = jnp.pad(x, ((2, 2), (2, 2)) + ((0, 0),) * (x.ndim - 2))
  return _box3_valid(padded)


def _window_stats(content, eps):
  img = content
  mu = _box3_valid(img) / 9.0  # (h, w, 3)
  outer = _box3_valid(img[..., :, None] * img[..., None, :]) / 9.0 - mu[..., :, None] * mu[..., None, :]
  inv = jnp.linalg.inv(outer + (eps / 9.0) * jnp.eye(3, dtype=img.dtype))
  return mu, inv


def affinity_matvec(content, v, eps: float = MATTING_EPS, stats=None):
  """W v for the matting affinity of `content` (H, W, 3) and v (H, W) or (H, W, K), without forming W:
  (W v)_i = sum_{k holds i} [vbar_k + (I_i - mu_k)^T inv_k c_k], c_k = mean_k(I v) - mu_k vbar_k."""
  mu, inv = _window_stats(content, eps) if stats is None else stats
  squeeze = v.ndim == 2
  v = v[..., None] if squeeze else v
  vbar = _box3_valid(v) / 9.0  # (h, w, K)
  iv = _box3_valid(content[..., :, None] * v[..., None, :]) / 9.0  # (h, w, 3, K)
  c = iv - mu[..., :, None] * vbar[..., None, :]
  a = jnp.einsum("hwij,hwjk->hwik", inv, c)  # (h, w, 3, K)
  const = vbar - jnp.einsum("hwi,hwik->hwk", mu, a)
  out = _box3_scatter(const) + jnp.einsum("hwi,hwik->hwk", content, _box3_scatter(a))
  return out[..., 0] if squeeze else out


def affinity_diagonal(content, eps: float = MATTING_EPS, stats=None):
  """diag(W) (H, W): sum_{k holds i} (1 + (I_i - mu_k)^T inv_k (I_i - mu_k)) / 9."""
  mu, inv = _window_stats(content, eps) if stats is None else stats
  h, w = content.shape[:2]
  total = jnp.zeros((h, w), content.dtype)
  for i in range(3):
    for j in range(3):
      d = content[i:h - 2 + i, j:w - 2 + j] - mu
      q = (1.0 + jnp.einsum("hwi,hwij,hwj->hw", d, inv, d)) / 9.0
      total = total.at[i:h - 2 + i, j:w - 2 + j].add(q)
  return total


def matting_cg_solve(stylized, content, beta: float = BETA, eps: float = MATTING_EPS,
                     tol: float = 1e-6, maxiter: int = 5000):
  """The closed-form smoothing solved by Jacobi-preconditioned CG (`jax.scipy.sparse.linalg.cg`) with a
  matrix-free A = I - beta S, in the inputs' dtype; jittable; returns R (H, W, 3). `tol` is CG's
  relative residual, `maxiter` its iteration cap. Use float64: the per-window inverses
  (Sigma + 1e-7/9 I)^-1 are too ill-conditioned for float32, whose CG drifts away from the solution as
  it iterates (measured at 128 px: max error 4 after 200 iterations, 67 after 5000; float64: 9e-8
  after 1000)."""
  stylized, content = jnp.asarray(stylized), jnp.asarray(content)
  _check_pair(stylized, content)
  content = content.astype(stylized.dtype)
  stats = _window_stats(content, eps)
  ones = jnp.ones(content.shape[:2], content.dtype)
  d = 1.0 / jnp.sqrt(affinity_matvec(content, ones, eps, stats))
  diag = 1.0 - beta * d * d * affinity_diagonal(content, eps, stats)

  def a_op(x):
    return x - beta * d[..., None] * affinity_matvec(content, d[..., None] * x, eps, stats)

  b = (1.0 - beta) * stylized
  r, _ = jax.scipy.sparse.linalg.cg(a_op, b, x0=stylized, tol=tol, maxiter=maxiter,
                                    M=lambda x: x / diag[..., None])
  return r


_cg_jit = jax.jit(matting_cg_solve, static_argnames=("maxiter",))


def matting_smooth_cg(stylized, content, beta: float = BETA, eps: float = MATTING_EPS,
                      tol: float = 1e-6, maxiter: int = 5000) -> np.ndarray:
  """`matting_cg_solve` in float64 (64-bit JAX enabled for this call only) -> R (H, W, 3) float64:
  the JAX alternative to `matting_smooth`'s SuperLU (no factorisation; suited to accelerators)."""
  stylized, content = np.asarray(stylized, np.float64), np.asarray(content, np.float64)
  _check_pair(stylized, content)
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"beta must lie in [0, 1), got {beta}.")
  with jax.enable_x64(True):
    out = _cg_jit(jnp.asarray(stylized), jnp.asarray(content), beta, eps, tol, maxiter)
    return np.asarray(out)


# ----------------------------------------------------------------------------------------------------
# Fast: the guided filter (He, Sun & Tang 2010), JAX
# ----------------------------------------------------------------------------------------------------
def box_mean(x, radius: int):
  """Mean over the (2r + 1)^2 window clipped at the border, of (H, W, ...) arrays: separable sums
  (rows, then columns; O(r) per pixel), divided by the number of pixels in the clipped window."""
  k = 2 * radius + 1
  rest = (1,) * (x.ndim - 2)
  zeros = ((0, 0),) * (x.ndim - 2)
  s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (k, 1) + rest, (1,) * x.ndim,
                            ((radius, radius), (0, 0)) + zeros)
  s = jax.lax.reduce_window(s, 0.0, jax.lax.add, (1, k) + rest, (1,) * x.ndim,
                            ((0, 0), (radius, radius)) + zeros)
  h, w = x.shape[:2]

  def count(n):
    i = jnp.arange(n)
    return (jnp.minimum(i + radius, n - 1) - jnp.maximum(i - radius, 0) + 1).astype(x.dtype)

  n = count(h)[:, None] * count(w)[None, :]
  return s / n.reshape(n.shape + rest)


def guided_filter(stylized, content, radius: int = GIF_RADIUS, eps: float = GIF_EPS):
  """He et al.'s colour guided filter of `stylized` (H, W, C) guided by `content` (H, W, 3), both in
  [0, 1]: per window a linear model q = a^T I + b fitted by ridge regression (eps), averaged over the
  windows that hold each pixel. Jittable; returns (H, W, C) in the input dtype (not clipped)."""
  p, guide = jnp.asarray(stylized), jnp.asarray(content).astype(jnp.asarray(stylized).dtype)
  if guide.ndim != 3 or guide.shape[-1] != 3 or p.ndim != 3 or p.shape[:2] != guide.shape[:2]:
    raise ValueError(f"guided_filter takes (H, W, C) images and an (H, W, 3) guide of the same size, got "
                     f"{p.shape} and {guide.shape}.")
  if radius < 1:
    raise ValueError(f"radius must be >= 1, got {radius}.")
  guide = guide - jnp.mean(guide, axis=(0, 1))  # smaller magnitudes: less float32 cancellation
  mean_i = box_mean(guide, radius)  # (H, W, 3)
  mean_p = box_mean(p, radius)  # (H, W, C)
  cov_ii = box_mean(guide[..., :, None] * guide[..., None, :], radius) - (
      mean_i[..., :, None] * mean_i[..., None, :])
  cov_ip = box_mean(guide[..., :, None] * p[..., None, :], radius) - (
      mean_i[..., :, None] * mean_p[..., None, :])  # (H, W, 3, C)
  a = jnp.linalg.solve(cov_ii + eps * jnp.eye(3, dtype=p.dtype), cov_ip)  # (H, W, 3, C)
  b = mean_p - jnp.einsum("hwi,hwic->hwc", mean_i, a)
  return jnp.einsum("hwi,hwic->hwc", guide, box_mean(a, radius)) + box_mean(b, radius)
