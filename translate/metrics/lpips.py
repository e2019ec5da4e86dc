"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"),
v0.1 with VGG16, as the `lpips` package computes it; lower is more similar.

    network = translate.pretrained.load("lpips_vgg")            # weights: see translate.pretrained
    dist, per_layer = lpips(network, pred, target)              # (N,), (N, 5)
    metric = LPIPS(network)                                     # the metric API: mean and std over images

Images are NHWC in [-1, 1] (1 or 3 channels, at least 16 px, both of one shape). The network and the
formula are in `translate.pretrained.lpips_vgg`; this module checks the inputs and accumulates. As with
PSNR/SSIM (`image_quality`), the metric object by default first quantises images to 8-bit levels,
round((x + 1) * 127.5) / 127.5 - 1, because papers measure saved images (and the `lpips` package reads
them as u8 / 127.5 - 1).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from translate import pretrained
from translate.metrics import base


def lpips(pretrained_lpips: pretrained.Pretrained, x, y, spatial: bool = False
          ) -> tuple[jax.Array, jax.Array]:
  """LPIPS distances between NHWC batches `x` and `y` in [-1, 1]: `(dist (N,), per_layer (N, 5))`
  (layers relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; they sum to `dist`), or with `spatial=True`
  maps `(N, H, W)` and `(N, 5, H, W)`. Jittable (pass the network as an argument). Raises `TypeError`
  when `pretrained_lpips` is not an LPIPS network and `ValueError` for mismatched or non-NHWC inputs."""
  if not isinstance(pretrained_lpips, pretrained.Pretrained) or not pretrained_lpips.name.startswith(
      "lpips"):
    raise TypeError(f"lpips() needs the 'lpips_vgg' network from translate.pretrained.load, got "
                    f"{getattr(pretrained_lpips, 'name', type(pretrained_lpips).__name__)!r}.")
  if jnp.ndim(x) != 4 or jnp.shape(x) != jnp.shape(y):
    raise ValueError(f"LPIPS compares NHWC batches of one shape, got {jnp.shape(x)} and {jnp.shape(y)}.")
  return pretrained_lpips(x, y, spatial=spatial)


def quantize(images) -> jax.Array:
  """Images in [-1, 1] -> the nearest of the 256 levels u8 / 127.5 - 1 (a saved 8-bit image)."""
  x = jnp.clip(jnp.asarray(images, jnp.float32), -1.0, 1.0)
  return jnp.round((x + 1.0) * 127.5) / 127.5 - 1.0


@functools.partial(jax.jit, static_argnames="quantized")
def _distances(network, x, y, quantized: bool):
  if quantized:
    x, y = quantize(x), quantize(y)
  return lpips(network, x, y)[0]


@functools.lru_cache(maxsize=2)
def _load_cached(path: str | None, mtime: float | None) -> pretrained.Pretrained:
  del mtime  # part of the key only: a rewritten file is read again
  return pretrained.load("lpips_vgg", path)


def load_network(path: str | None = None) -> pretrained.Pretrained:
  """`pretrained.load('lpips_vgg', path)`, kept for the next call with the same file (periodic
  evaluation during training builds the metric again each time)."""
  path = os.fspath(path) if path else None
  mtime = os.path.getmtime(path) if path and os.path.exists(path) else None
  return _load_cached(path, mtime)


class LPIPS(base.Mean):
  """Mean LPIPS (and std across images) of `update(state, pred, target[, mask])`, pred and target
  NHWC in [-1, 1]. `network`: the 'lpips_vgg' Pretrained (default: loaded from `path`, or found as
  `translate.pretrained.load` finds it). Batches are cut into chunks of `batch_size` images, a short
  chunk padded to a power of two, so any batch size runs one of a few compiled programs per image
  shape."""

  def __init__(self, network: pretrained.Pretrained | None = None, path: str | None = None,
               quantize: bool = True, batch_size: int = 16):
    self.network = network if network is not None else load_network(path)
    self.quantize, self.batch_size = quantize, int(batch_size)
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    super().__init__(self._distances)

  def _distances(self, pred, target) -> np.ndarray:
    pred, target = np.asarray(pred, np.float32), np.asarray(target, np.float32)
    if pred.shape != target.shape or pred.ndim != 4:
      raise ValueError(f"LPIPS compares NHWC batches of one shape, got {pred.shape} and {target.shape}.")
    out = []
    for start in range(0, pred.shape[0], self.batch_size):
      x, y = pred[start:start + self.batch_size], target[start:start + self.batch_size]
      n = x.shape[0]
      # pad to a power of two (at most batch_size): few compiled programs, little wasted work
      size = min(self.batch_size, 1 << (n - 1).bit_length())
      if size > n:
        x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        y = np.concatenate([y, np.zeros((size - n, *y.shape[1:]), y.dtype)])
      out.append(np.asarray(_distances(self.network, x, y, self.quantize))[:n])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)

  def update(self, state: base.MeanState, pred, target, mask=None) -> base.MeanState:
    return state.add(self._distances(pred, target), mask)
