"""One small API for evaluation metrics: accumulate over batches, then compute a value (and a std).

A metric is an object with
    state = metric.empty()                    # the statistics of no data
    state = metric.update(state, *batch)      # pure: a new state (jittable where the state is arrays)
    state = metric.merge(state_a, state_b)    # the state of both data sets (other hosts, shards)
    result = metric.compute(state)            # Result(value, std): std is None where there is none

States are `flax.struct` dataclasses of arrays, so `update` and `merge` run inside `jax.jit` and the
states are pytrees. The exception is `FeatureBank` (KID needs the features themselves): it keeps numpy
arrays on the host and `update` must run outside jit. `compute` runs on the host in float64.

Provided here: `MeanState` (count, sum, sum of squares: a mean and the std across items, for per-image
scores such as PSNR/SSIM), `MomentState` (mean and centred second moment merged with Chan et al.'s
pairwise formula, so float32 batches do not lose the covariance to cancellation; FID), `FeatureBank`,
and the classifier scores `Accuracy` (label-preserving accuracy, DTN) and `target_accuracy` (the
target-domain accuracy of StarGAN: a classifier trained on real images judges whether translations
show the requested target labels).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Result:
  value: float
  std: float | None = None

  def as_dict(self, name: str) -> dict[str, float]:
    """{name: value} plus {name_std: std} when there is one (the flat form eval.json stores)."""
    out = {name: float(self.value)}
    if self.std is not None:
      out[f"{name}_std"] = float(self.std)
    return out


class Metric:
  """Interface (see the module docstring)."""

  def empty(self) -> Any:
    raise NotImplementedError

  def update(self, state, *batch) -> Any:
    raise NotImplementedError

  def merge(self, a, b) -> Any:
    raise NotImplementedError

  def compute(self, state) -> Result:
    raise NotImplementedError

  def __call__(self, *data) -> Result:
    """One-shot: the result on one batch of data."""
    return self.compute(self.update(self.empty(), *data))


# ----------------------------------------------------------------------------------------------------
# Mean of per-item values
# ----------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class MeanState:
  count: jax.Array
  total: jax.Array
  total_sq: jax.Array

  @classmethod
  def empty(cls) -> "MeanState":
    z = jnp.zeros((), jnp.float32)
    return cls(z, z, z)

  def add(self, values: jax.Array, mask: jax.Array | None = None) -> "MeanState":
    values = jnp.asarray(values, jnp.float32).reshape(-1)
    w = jnp.ones_like(values) if mask is None else jnp.asarray(mask, jnp.float32).reshape(-1)
    values = jnp.where(w > 0, values, 0.0)  # masked-out items may be inf/nan (padding)
    return MeanState(self.count + w.sum(), self.total + (w * values).sum(),
                     self.total_sq + (w * values * values).sum())

  def merge(self, other: "MeanState") -> "MeanState":
    return jax.tree_util.tree_map(jnp.add, self, other)

  def result(self, with_std: bool = True) -> Result:
    n = float(self.count)
    if n == 0:
      raise ValueError("No items were seen: cannot compute a mean.")
    mean = float(self.total) / n
    std = np.sqrt(max(float(self.total_sq) / n - mean * mean, 0.0)) if with_std else None
    return Result(mean, std)


class Mean(Metric):
  """Mean (and std across items) of per-item values computed by `fn(*batch) -> (B,)`."""

  def __init__(self, fn: Callable[..., jax.Array], with_std: bool = True):
    self.fn, self.with_std = fn, with_std

  def empty(self) -> MeanState:
    return MeanState.empty()

  def update(self, state: MeanState, *batch) -> MeanState:
    return state.add(self.fn(*batch))

  def merge(self, a: MeanState, b: MeanState) -> MeanState:
    return a.merge(b)

  def compute(self, state: MeanState) -> Result:
    return state.result(self.with_std)


# ----------------------------------------------------------------------------------------------------
# First and second moments of features (FID)
# ----------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class MomentState:
  count: jax.Array  # ()
  mean: jax.Array  # (d,)
  m2: jax.Array  # (d, d): sum over items of (x - mean)(x - mean)^T

  @classmethod
  def empty(cls, dim: int) -> "MomentState":
    return cls(jnp.zeros((), jnp.float32), jnp.zeros((dim,), jnp.float32),
               jnp.zeros((dim, dim), jnp.float32))

  def merge(self, other: "MomentState") -> "MomentState":
    # Chan, Golub & LeVeque (1979): combine two (count, mean, M2) without forming raw sums of x x^T.
    n = self.count + other.count
    safe_n = jnp.maximum(n, 1.0)
    delta = other.mean - self.mean
    mean = self.mean + delta * (other.count / safe_n)
    m2 = self.m2 + other.m2 + jnp.outer(delta, delta) * (self.count * other.count / safe_n)
    return MomentState(n, mean, m2)

  def add(self, features: jax.Array) -> "MomentState":
    x = jnp.asarray(features, jnp.float32)
    n = jnp.asarray(x.shape[0], jnp.float32)
    mean = x.mean(axis=0) if x.shape[0] else jnp.zeros(x.shape[1:], jnp.float32)
    centred = x - mean
    batch = MomentState(n, mean, centred.T @ centred)
    return self.merge(batch)

  def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean and unbiased covariance (ddof=1, as numpy.cov and pytorch-fid)."""
    n = float(self.count)
    if n < 2:
      raise ValueError(f"A covariance needs at least 2 items, got {int(n)}.")
    return np.asarray(self.mean, np.float64), np.asarray(self.m2, np.float64) / (n - 1)


# ----------------------------------------------------------------------------------------------------
# Features kept as they are (KID)
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FeatureBank:
  """Host-side list of feature batches (not a jit state: KID needs every feature vector)."""
  chunks: tuple[np.ndarray, ...] = ()

  def add(self, features) -> "FeatureBank":
    return FeatureBank(self.chunks + (np.asarray(features, np.float32),))

  def merge(self, other: "FeatureBank") -> "FeatureBank":
    return FeatureBank(self.chunks + other.chunks)

  def array(self) -> np.ndarray:
    return np.concatenate(self.chunks) if self.chunks else np.zeros((0, 0), np.float32)

  def __len__(self) -> int:
    return sum(len(c) for c in self.chunks)


# ----------------------------------------------------------------------------------------------------
# Classifier scores
# ----------------------------------------------------------------------------------------------------
def correct_predictions(outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-item correctness as floats.

  * labels int (B,), outputs logits (B, K) or predicted classes (B,): 1.0 where the class matches;
  * labels binary (B, K) (multi-label attributes, StarGAN's CelebA protocol), outputs logits (B, K):
    each attribute counts as one item, predicted present where its logit > 0; returns (B * K,).
  """
  outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
  if labels.ndim == 1:
    predicted = outputs if outputs.ndim == 1 else jnp.argmax(outputs, axis=-1)
    return (predicted.astype(jnp.int32) == labels.astype(jnp.int32)).astype(jnp.float32)
  if outputs.shape != labels.shape:
    raise ValueError(f"Multi-label outputs {outputs.shape} and labels {labels.shape} differ in shape.")
  return ((outputs > 0) == (labels > 0.5)).astype(jnp.float32).reshape(-1)


class Accuracy(Metric):
  """Share of correct predictions; update(state, outputs, labels[, mask]) (see correct_predictions).

  No std: a single accuracy over the test set is what the papers report.
  """

  def empty(self) -> MeanState:
    return MeanState.empty()

  def update(self, state: MeanState, outputs, labels, mask=None) -> MeanState:
    correct = correct_predictions(outputs, labels)
    if mask is not None and correct.shape[0] != jnp.shape(mask)[0]:  # multi-label: a mask per image
      mask = jnp.repeat(jnp.asarray(mask), correct.shape[0] // jnp.shape(mask)[0])
    return state.add(correct, mask)

  def merge(self, a: MeanState, b: MeanState) -> MeanState:
    return a.merge(b)

  def compute(self, state: MeanState) -> Result:
    return state.result(with_std=False)


def target_accuracy(classifier: Callable[[Any], Any], batches) -> Result:
  """Target-domain classification accuracy (StarGAN, Choi et al. 2018, Sec. 4.4 / Table 1 protocol).

  `classifier(images) -> logits` (or predicted classes) is a classifier trained on *real* images of the
  target domains (e.g. CelebA attributes, or the digit classifier for digit classes); `batches` yields
  `(translated_images, target_labels)` where the labels are what the translator was asked to produce
  (int class ids (B,) or binary attribute vectors (B, K)). The score is the share of translations the
  classifier assigns to their requested target.
  """
  metric = Accuracy()
  state = metric.empty()
  for images, labels in batches:
    state = metric.update(state, classifier(images), labels)
  return metric.compute(state)
