"""FID and KID between two sets of (Inception pool3) features.

FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two feature sets,
    ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)),
with unbiased covariances, computed in float64. The matrix square root is scipy's `sqrtm` of S1 S2;
when the product is near-singular (fewer samples than dimensions) and sqrtm returns non-finite values,
eps * I is added to both covariances first, and a tiny imaginary part from rounding is dropped, as
pytorch-fid does (a large one is an error).

KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over `num_subsets` random subsets of `subset_size` features of each
set (without replacement within a subset); the std is over subsets. Defaults 100 subsets of 1000 (the
size is capped at the smaller set), as torch-fidelity and clean-fid; U-GAT-IT reports KID x 100 with
this std, and `KID.compute` returns that scaled form.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from translate.metrics import base


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f"Feature statistics differ in shape: {mu1.shape} vs {mu2.shape}, "
                     f"{sigma1.shape} vs {sigma2.shape}.")
  diff = mu1 - mu2
  covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f"sqrtm(S1 S2) has an imaginary component of {np.max(np.abs(covmean.imag))}: "
                       f"the covariances are not valid (too few samples?).")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class _TwoSetMetric(base.Metric):
  """A metric of two feature sets kept as a pair (fake, real) of accumulators that have `add` and
  `merge`; a batch may bring features of either set or both."""

  def update(self, state, fake_features=None, real_features=None):
    fake, real = state
    if fake_features is not None:
      fake = fake.add(fake_features)
    if real_features is not None:
      real = real.add(real_features)
    return fake, real

  def merge(self, a, b):
    return a[0].merge(b[0]), a[1].merge(b[1])


class FID(_TwoSetMetric):
  """update(state, fake_features, real_features): either may be empty (None) for a batch.

  The state is a pair of `MomentState`s (fake, real): jittable, mergeable, exact in the limit (the
  merged mean/covariance equal those of all features at once, up to float32 rounding).
  """

  def __init__(self, dim: int = 2048):
    self.dim = dim

  def empty(self):
    return (base.MomentState.empty(self.dim), base.MomentState.empty(self.dim))

  def compute(self, state) -> base.Result:
    mu1, s1 = state[0].mean_and_covariance()
    mu2, s2 = state[1].mean_and_covariance()
    return base.Result(frechet_distance(mu1, s1, mu2, s2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (x.y / d + 1)^3 for all pairs of rows, float64."""
  d = x.shape[1]
  return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased squared MMD with the cubic polynomial kernel between two equal-size samples:
  mean over i != j of k(x_i, x_j) + k(y_i, y_j), minus twice the mean over all i, j of k(x_i, y_j)."""
  m = x.shape[0]
  if m < 2 or y.shape[0] != m:
    raise ValueError(f"mmd2_unbiased needs two samples of one size >= 2, got {x.shape[0]}, {y.shape[0]}.")
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
  return float(within - 2.0 * kxy.mean())


def kernel_inception_distance(fake: np.ndarray, real: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> base.Result:
  """KID (unscaled): mean and std over subsets of `mmd2_unbiased` (subset size capped at min(N1, N2))."""
  fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
  m = min(len(fake), len(real), subset_size)
  if m < 2:
    raise ValueError(f"KID needs at least 2 features in each set, got {len(fake)} and {len(real)}.")
  rng = np.random.default_rng(seed)
  values = [mmd2_unbiased(fake[rng.choice(len(fake), m, replace=False)],
                          real[rng.choice(len(real), m, replace=False)]) for _ in range(num_subsets)]
  return base.Result(float(np.mean(values)), float(np.std(values)))


class KID(_TwoSetMetric):
  """update(state, fake_features, real_features) into two `FeatureBank`s; compute -> KID x `scale`
  (100 by default, as U-GAT-IT's tables) with its std over subsets."""

  def __init__(self, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0,
               scale: float = 100.0):
    self.num_subsets, self.subset_size, self.seed, self.scale = num_subsets, subset_size, seed, scale

  def empty(self):
    return base.FeatureBank(), base.FeatureBank()

  def compute(self, state) -> base.Result:
    r = kernel_inception_distance(state[0].array(), state[1].array(), self.num_subsets,
                                  self.subset_size, self.seed)
    return base.Result(r.value * self.scale, r.std * self.scale)
