"""PSNR and SSIM for paired translation (pix2pix) and super-resolution, in the conventions of SR papers.

    per_image = psnr(pred, target, max_value=255.0, crop_border=4, y_channel=True)   # (N,)
    metric = PSNR(y_channel=True, crop_border=4)      # the metric API on images in [-1, 1]

Conventions (those of the SR literature and its reference code, e.g. BasicSR / the MATLAB scripts):
  * values are computed on the [0, 255] scale per image, then averaged over images;
  * `crop_border` pixels are removed on every side first (SR papers crop `scale` pixels);
  * `y_channel`: luma of ITU-R BT.601 as MATLAB's rgb2ycbcr, Y = 16 + (65.481 R + 128.553 G +
    24.966 B) / 255 for R, G, B in [0, 255] (Y in [16, 235]), still measured against a peak of 255;
  * SSIM (Wang et al. 2004): an 11x11 Gaussian window with sigma 1.5 (normalised to sum 1), K1 = 0.01,
    K2 = 0.03, L = 255, local statistics over 'valid' window positions only (no padding, as the
    reference MATLAB `ssim_index` and BasicSR), population (not sample) variances; the SSIM of an
    RGB image is the mean of its per-channel SSIMs.
The metric objects take images in [-1, 1] (the project's convention) and by default quantise them to
8 bits first, as papers measure saved images.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from translate.metrics import base

BT601_Y = (65.481, 128.553, 24.966)  # Y weights for R, G, B in [0, 1], output on the [0, 255] scale
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_y_channel(images: jax.Array) -> jax.Array:
  """RGB (..., 3) in [0, 255] -> BT.601 luma (..., 1) in [16, 235]."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] != 3:
    raise ValueError(f"The Y channel needs RGB images, got {images.shape[-1]} channels.")
  return (images / 255.0) @ jnp.asarray(BT601_Y, jnp.float32)[:, None] + 16.0


def _prepare(pred, target, crop_border: int, y_channel: bool):
  pred, target = jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32)
  if pred.shape != target.shape:
    raise ValueError(f"Images differ in shape: {pred.shape} vs {target.shape}.")
  if pred.ndim != 4:
    raise ValueError(f"Expected NHWC batches, got shape {pred.shape}.")
  if crop_border:
    c = crop_border
    if 2 * c >= min(pred.shape[1:3]):
      raise ValueError(f"crop_border={c} removes the whole {pred.shape[1]}x{pred.shape[2]} image.")
    pred, target = pred[:, c:-c, c:-c], target[:, c:-c, c:-c]
  if y_channel:
    pred, target = to_y_channel(pred), to_y_channel(target)
  return pred, target


def psnr(pred, target, max_value: float = 255.0, crop_border: int = 0,
         y_channel: bool = False) -> jax.Array:
  """Per-image PSNR in dB (N,) of NHWC images on a [0, max_value] scale; inf for identical images."""
  pred, target = _prepare(pred, target, crop_border, y_channel)
  mse = jnp.mean(jnp.square(pred - target), axis=(1, 2, 3))
  return 10.0 * jnp.log10(max_value ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """The normalised 1-D Gaussian; SSIM's 2-D window is its outer product (separable)."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-x ** 2 / (2 * sigma ** 2))
  return g / g.sum()


def _filter_valid(x: jax.Array, window: np.ndarray) -> jax.Array:
  """Separable 'valid' filtering of every channel of an NHWC array with window (x) window."""
  n, h, w, c = x.shape
  k = len(window)
  # channels to the batch axis: one single-channel convolution per plane
  planes = x.transpose(0, 3, 1, 2).reshape(n * c, h, w, 1)
  g = jnp.asarray(window, jnp.float32)
  out = jax.lax.conv_general_dilated(planes, g.reshape(k, 1, 1, 1), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
  out = jax.lax.conv_general_dilated(out, g.reshape(1, k, 1, 1), (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
  return out.reshape(n, c, h - k + 1, w - k + 1).transpose(0, 2, 3, 1)


def ssim(pred, target, max_value: float = 255.0, crop_border: int = 0,
         y_channel: bool = False) -> jax.Array:
  """Per-image SSIM (N,) of NHWC images on a [0, max_value] scale (see the module docstring)."""
  pred, target = _prepare(pred, target, crop_border, y_channel)
  if min(pred.shape[1:3]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} px after cropping, got "
                     f"{pred.shape[1]}x{pred.shape[2]}.")
  c1, c2 = (SSIM_K1 * max_value) ** 2, (SSIM_K2 * max_value) ** 2
  # SSIM is invariant to adding one constant to both images: centring on the pair's mean keeps the
  # float32 cancellation in E[x^2] - E[x]^2 small.
  centre = 0.5 * (pred.mean(axis=(1, 2, 3), keepdims=True) + target.mean(axis=(1, 2, 3), keepdims=True))
  x, y = pred - centre, target - centre
  window = gaussian_window()
  mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
  var_x = _filter_valid(x * x, window) - mu_x ** 2
  var_y = _filter_valid(y * y, window) - mu_y ** 2
  cov = _filter_valid(x * y, window) - mu_x * mu_y
  # the luminance term needs the true means (the centring constant is added back)
  mx, my = mu_x + centre, mu_y + centre
  ssim_map = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (var_x + var_y + c2))
  return ssim_map.mean(axis=(1, 2, 3))


def to_pixels(images, quantize: bool = True) -> jax.Array:
  """Images in [-1, 1] -> [0, 255] floats, rounded to 8-bit levels when `quantize` (as saved PNGs)."""
  x = (jnp.clip(jnp.asarray(images, jnp.float32), -1.0, 1.0) + 1.0) * 127.5
  return jnp.round(x) if quantize else x


class _PairedImageMetric(base.Mean):
  """update(state, pred, target) with images in [-1, 1]; mean and std over images."""
  score = None

  def __init__(self, crop_border: int = 0, y_channel: bool = False, quantize: bool = True):
    self.crop_border, self.y_channel, self.quantize = crop_border, y_channel, quantize
    fn = functools.partial(type(self).score, max_value=255.0, crop_border=crop_border,
                           y_channel=y_channel)
    super().__init__(lambda pred, target: fn(to_pixels(pred, quantize), to_pixels(target, quantize)))


class PSNR(_PairedImageMetric):
  """Mean per-image PSNR (dB). Identical images give inf (and so would their mean)."""
  score = staticmethod(psnr)


class SSIM(_PairedImageMetric):
  """Mean per-image SSIM."""
  score = staticmethod(ssim)
