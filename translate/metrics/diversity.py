"""Output diversity of multimodal translation: mean LPIPS between outputs of ONE input.

MUNIT (Huang et al. 2018, Sec. 5.1 "Diversity") and BicycleGAN measure how different the translations
of one input under different random styles are: the LPIPS distance between pairs of outputs of the same
input, averaged over pairs and inputs (MUNIT: 100 inputs, 19 random pairs each). Here every input gets
K outputs and all K (K - 1) / 2 pairs are averaged, an unbiased estimate of the same expected distance.
A deterministic translator (CycleGAN, UNIT without its latent noise) scores exactly 0.

    lp = translate.metrics.lpips.LPIPS()                  # the real-weights LPIPS (VGG), quantised
    per_input = pairwise_lpips(lp, samples)               # samples (K, B, H, W, C) in [-1, 1] -> (B,)
"""
from __future__ import annotations

import numpy as np


def pairwise_lpips(lpips_metric, samples) -> np.ndarray:
  """Mean LPIPS over all pairs of the K outputs of each input: `samples` (K, B, H, W, C) NHWC in
  [-1, 1], K >= 2 -> (B,) float32. `lpips_metric` is a `translate.metrics.lpips.LPIPS` (its chunking
  and 8-bit quantisation apply). Raises ValueError for K < 2 or a non-5-D array."""
  samples = np.asarray(samples, np.float32)
  if samples.ndim != 5:
    raise ValueError(f"samples must be (K, B, H, W, C), got shape {samples.shape}.")
  k, b = samples.shape[:2]
  if k < 2:
    raise ValueError(f"Diversity needs at least 2 outputs per input, got {k}.")
  i, j = np.triu_indices(k, 1)
  x = samples[i].reshape(-1, *samples.shape[2:])
  y = samples[j].reshape(-1, *samples.shape[2:])
  return lpips_metric._distances(x, y).reshape(len(i), b).mean(axis=0).astype(np.float32)
