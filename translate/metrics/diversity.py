"""Output diversity of multimodal translation: mean LPIPS between outputs of ONE input.

MUNIT (Huang et al. 2018, Sec. 5.1 "Diversity") and BicycleGAN measure how different the translations
of one input under different random styles are: the LPIPS distance between pairs of outputs of the same
input, averaged over pairs and inputs (MUNIT: 100 inputs, 19 random pairs each). Here every input gets
K outputs and all K (K - 1) / 2 pairs are averaged, an unbiased estimate of the same expected distance.
A deterministic translator (CycleGAN, UNIT without its latent noise) scores exactly 0.

    network = translate.pretrained.load("lpips_vgg")    # the real-weights LPIPS (VGG16, v0.1)
    per_input = pairwise_lpips(network, samples)        # samples (K, B, H, W, C) in [-1, 1] -> (B,)

The distances are LPIPS v0.1 (`translate.pretrained.lpips_vgg`) of the 8-bit quantised images (as
`translate.metrics.lpips.LPIPS` compares saved images); each output's VGG features are computed once
and shared by its K - 1 pairs (the same numbers as K (K - 1) / 2 LPIPS calls, ~K/2 times cheaper).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from translate.metrics import lpips as lpips_metric
from translate.pretrained import lpips_vgg, vgg


@functools.partial(jax.jit, static_argnames="k")
def _pairwise(params, images, k: int):
  """images (K*B, H, W, C), sample-major -> (P, B) LPIPS of the pairs i < j of each input."""
  i, j = np.triu_indices(k, 1)
  feats = vgg.features(params["vgg"], lpips_metric.quantize(images), lpips_vgg.LAYERS)
  total = 0.0
  for name in lpips_vgg.LAYERS:
    f = lpips_vgg._normalize_channels(feats[name])
    f = f.reshape(k, -1, *f.shape[1:])  # (K, B, h, w, c)
    diff = jnp.square(f[i] - f[j])  # (P, B, h, w, c)
    weighted = jnp.einsum("pbhwc,c->pbhw", diff, params["lin"][name],
                          precision=jax.lax.Precision.HIGHEST)
    total = total + jnp.mean(weighted, axis=(2, 3))
  return total


def pairwise_lpips(network, samples) -> np.ndarray:
  """Mean LPIPS over all pairs of the K outputs of each input: `samples` (K, B, H, W, C) NHWC in
  [-1, 1] (1 or 3 channels, >= 16 px), K >= 2 -> (B,) float32. `network` is the 'lpips_vgg'
  `translate.pretrained.Pretrained`. Raises ValueError for K < 2 or a non-5-D array, TypeError for
  another network."""
  if not str(getattr(network, "name", "")).startswith("lpips"):
    raise TypeError(f"pairwise_lpips needs the 'lpips_vgg' network from translate.pretrained.load, "
                    f"got {getattr(network, 'name', type(network).__name__)!r}.")
  samples = np.asarray(samples, np.float32)
  if samples.ndim != 5:
    raise ValueError(f"samples must be (K, B, H, W, C), got shape {samples.shape}.")
  k = samples.shape[0]
  if k < 2:
    raise ValueError(f"Diversity needs at least 2 outputs per input, got {k}.")
  flat = samples.reshape(-1, *samples.shape[2:])
  return np.asarray(_pairwise(network.params, flat, k)).mean(axis=0).astype(np.float32)
