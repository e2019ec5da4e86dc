"""Networks of the Domain Transfer Network (Taigman, Polyak & Wolf 2017): f, g and the ternary D.

  SourceClassifier  f: a digit classifier of the SOURCE domain. Its named layers (`layers=`) are what
                    DTN can use as the representation: 'conv1'..'conv3' (spatial maps after each
                    pool), 'features' (the 1x1 map before the classifier, the paper's choice: "the
                    output of the last convolutional layer" before the labels' layer) and 'logits'.
  Decoder           g: f's representation (a vector, or a spatial map of any size that doubles up to
                    the image size) -> an image in [-1, 1]. The paper's digit g: transposed
                    convolutions from 1x1 up to 32x32, each but the last followed by batch norm and
                    ReLU, tanh out.
  TernaryDiscriminator  D: image -> 3 logits (class 0: G(source), 1: G(target), 2: a real target
                    image). The paper's digit D: four stride-2 convolutions with batch norm and ReLU;
                    ours uses LeakyReLU and (optionally) batch norm, see `norm`.

Sizes are the paper's shapes at small widths: the embedded digits train on 2 CPU cores in minutes
(configs/dtn.py records what was measured).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
LUMINANCE = (0.299, 0.587, 0.114)
CLASSIFIER_LAYERS = ("conv1", "conv2", "conv3", "features", "logits", "probs", "unit_logits")


def luminance(x: Array) -> Array:
  """RGB -> one grey channel (BT.601); grey stays as it is."""
  if x.shape[-1] == 3:
    return x @ jnp.asarray(LUMINANCE, x.dtype)[:, None]
  return x


def space_to_depth(x: Array, block: int = 2) -> Array:
  """(N, H, W, C) -> (N, H/block, W/block, C*block*block): each block x block patch becomes channels.
  On CPU a convolution over one channel at full resolution costs more than the whole rest of f."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // block, w // block, block * block * c)


def ink_positive(x: Array, rows: int = 3) -> Array:
  """Grey images with bright ink on a dark ground, stretched to [-1, 1] per image: an image whose top
  and bottom `rows` rows (paper, not ink, in a centred digit crop) are brighter than its mean is
  inverted. A fixed input normalisation of f (no parameters): MNIST's white-on-black digits pass
  unchanged, printed digits of either polarity meet f alike."""
  edge = jnp.concatenate([x[:, :rows], x[:, -rows:]], axis=1).mean(axis=(1, 2, 3), keepdims=True)
  x = jnp.where(edge > x.mean(axis=(1, 2, 3), keepdims=True), -x, x)
  lo, hi = x.min(axis=(1, 2, 3), keepdims=True), x.max(axis=(1, 2, 3), keepdims=True)
  return (x - lo) / jnp.maximum(hi - lo, 1e-3) * 2.0 - 1.0


class SourceClassifier(nn.Module):
  """f: grey (or RGB, reduced to luminance) 32x32 images in [-1, 1] -> 10 logits.

  Space-to-depth stem, then 3x3 conv + ReLU + 2x2 max-pool per width (16 -> 8 -> 4 -> 2 px), a
  dense 'features' layer (ReLU), dropout (training only) and the 'logits' layer.
  `__call__(x)` gives the logits; `__call__(x, layers=names)` a dict of the named layers.
  """
  widths: Sequence[int] = (32, 64, 128)
  features: int = 128
  num_classes: int = 10
  dropout_rate: float = 0.3
  normalize: bool = True  # `ink_positive` inputs

  @nn.compact
  def __call__(self, x: Array, train: bool = False, layers: Sequence[str] | None = None):
    out = {}
    x = luminance(x)
    if self.normalize:
      x = ink_positive(x)
    x = space_to_depth(x)
    for i, width in enumerate(self.widths):
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", name=f"conv{i + 1}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
      out[f"conv{i + 1}"] = x
    x = nn.relu(nn.Dense(self.features, name="features")(x.reshape(x.shape[0], -1)))
    out["features"] = x
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    out["logits"] = nn.Dense(self.num_classes, name="logits")(x)
    out["probs"] = jax.nn.softmax(out["logits"])
    out["unit_logits"] = out["logits"] / jnp.sqrt(
        jnp.sum(jnp.square(out["logits"]), axis=-1, keepdims=True) + 1e-6)
    if layers is None:
      return out["logits"]
    unknown = [n for n in layers if n not in out]
    if unknown:
      raise ValueError(f"SourceClassifier has no layer(s) {unknown}; it has {list(out)}.")
    return {n: out[n] for n in layers}


class Decoder(nn.Module):
  """g: a representation (B, D) or (B, h, w, D) -> images (B, S, S, out_channels) in [-1, 1].

  A vector (or a 1x1 map) is first projected to 4x4 by a 4x4 transposed convolution; then each
  stride-2 4x4 transposed convolution doubles the size (halving the width, floor `ngf`), with `norm`
  and ReLU after all but the last, which has `out_channels` and tanh. `image_size` / h must be a
  power of 2.
  """
  out_channels: int = 1
  ngf: int = 32
  image_size: int = 32
  norm: str = "none"  # 'batch' | 'none'

  def _norm(self, x: Array, train: bool) -> Array:
    if self.norm == "batch":
      return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    if self.norm != "none":
      raise ValueError(f"Decoder norm must be 'batch' or 'none', got {self.norm!r}.")
    return x

  @nn.compact
  def __call__(self, h: Array, train: bool = False) -> Array:
    if h.ndim == 2:
      h = h[:, None, None, :]
    size = h.shape[1]
    steps = (self.image_size // 4).bit_length() - 1  # doublings from 4x4
    if size == 1:
      width = self.ngf * 2 ** (steps - 1)
      h = nn.ConvTranspose(width, (4, 4), padding="VALID")(h)
      h = nn.relu(self._norm(h, train))
      size = 4
    ratio = self.image_size // size
    if size * ratio != self.image_size or ratio & (ratio - 1):
      raise ValueError(f"Decoder: a {size}x{size} representation does not double up to "
                       f"{self.image_size} px.")
    while size * 2 < self.image_size:
      size *= 2
      width = max(self.ngf, self.ngf * self.image_size // (2 * size))
      h = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding="SAME")(h)
      h = nn.relu(self._norm(h, train))
    if size < self.image_size:
      h = nn.ConvTranspose(self.out_channels, (4, 4), strides=(2, 2), padding="SAME")(h)
    else:  # already at image size (a full-resolution representation)
      h = nn.Conv(self.out_channels, (3, 3), padding="SAME")(h)
    return jnp.tanh(h)


class TernaryDiscriminator(nn.Module):
  """D: images (B, S, S, C) -> logits (B, 3) of (G(source), G(target), real target).

  `n_layers` stride-2 4x4 convolutions (widths ndf, 2 ndf, ...), LeakyReLU 0.2, `norm` after all but
  the first; the last map is flattened into a dense layer with 3 outputs.
  """
  ndf: int = 32
  n_layers: int = 3
  norm: str = "none"  # 'batch' | 'none'
  num_classes: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    for i in range(self.n_layers):
      x = nn.Conv(self.ndf * 2 ** i, (4, 4), strides=(2, 2), padding="SAME")(x)
      if i and self.norm == "batch":
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
      elif self.norm not in ("batch", "none"):
        raise ValueError(f"TernaryDiscriminator norm must be 'batch' or 'none', got {self.norm!r}.")
      x = nn.leaky_relu(x, 0.2)
    return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))
