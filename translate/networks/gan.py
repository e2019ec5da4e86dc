"""Generators and discriminators of the (conditional) GAN baselines.

MLP nets of Mirza & Osindero, "Conditional Generative Adversarial Nets" (2014), Sec. 4.1 (MNIST):
  G: z (100-d, uniform on the unit hypercube) -> 200 ReLU; one-hot y -> 1000 ReLU; both -> a joint
     1200 ReLU layer -> 784 outputs. The paper's output is a sigmoid on [0, 1] pixels; ours is tanh,
     since the project's images live in [-1, 1] (the same unit up to an affine map).
  D: x -> maxout 240 units x 5 pieces; y -> maxout 50 x 5; both -> joint maxout 240 x 4 -> one logit
     (the paper's sigmoid unit is inside the BCE loss). Dropout 0.5 in G and D.
Two options that are not in the paper, against mode collapse (configs/cgan.py has the measurements):
`MLPGenerator.leaky_slope` (LeakyReLU hidden layers) and `MaxoutDiscriminator.minibatch_std` (D also
sees the within-class spread of its batch).
The unconditional (`num_classes=0`) nets are the same MLPs minus the y branches: Goodfellow et al.'s
MNIST GAN shape (ReLU G, maxout D).

A small DCGAN-style conv pair at 32x32 shows `layers.ConditionalBatchNorm` in use: the G's batch norms
take their gain and bias from the class (BigGAN's class-conditional BN), and the D is conditioned by
projection (Miyato & Koyama 2018: logit = psi(h) + <embed(y), h> on globally summed features h).

Every net takes `train` (dropout on, batch statistics used and updated) and returns NHWC images in
[-1, 1] (G) or logits (B,) (D).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from translate import layers

Array = jax.Array
ARCHS = ("mlp", "dcgan")


def _check_labels(labels, num_classes: int, batch: int):
  if num_classes and labels is None:
    raise ValueError(f"a conditional net (num_classes={num_classes}) needs class labels.")
  if not num_classes and labels is not None:
    raise ValueError("an unconditional net (num_classes=0) takes no labels.")
  if labels is not None and labels.shape != (batch,):
    raise ValueError(f"labels must be class ids of shape ({batch},), got {labels.shape}.")


def _one_hot(labels, num_classes: int) -> Array:
  return jax.nn.one_hot(labels.astype(jnp.int32), num_classes, dtype=jnp.float32)


class MLPGenerator(nn.Module):
  """Mirza & Osindero's MLP G (see the module docstring); `num_classes=0`: unconditional."""
  image_shape: Sequence[int] = (28, 28, 1)
  num_classes: int = 10
  z_hidden: int = 200
  y_hidden: int = 1000
  joint_hidden: int = 1200
  dropout: float = 0.5
  leaky_slope: float = 0.0  # 0: the paper's ReLU; > 0: LeakyReLU with that slope (not in the paper)
  kernel_init: layers.Initializer = layers.kernel_init("default")

  @nn.compact
  def __call__(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
    _check_labels(labels, self.num_classes, z.shape[0])
    dense = lambda n, name: layers.Dense(n, kernel_init=self.kernel_init, name=name)
    act = lambda h: nn.leaky_relu(h, self.leaky_slope) if self.leaky_slope else nn.relu(h)
    h = act(dense(self.z_hidden, "z_fc")(z))
    if self.num_classes:
      h_y = act(dense(self.y_hidden, "y_fc")(_one_hot(labels, self.num_classes)))
      h = jnp.concatenate([h, h_y], axis=-1)
    h = act(dense(self.joint_hidden, "joint_fc")(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    size = 1
    for s in self.image_shape:
      size *= s
    x = jnp.tanh(dense(size, "out_fc")(h))
    return x.reshape(z.shape[0], *self.image_shape)


def within_class_stddev(h: Array, labels: Array | None, num_classes: int) -> Array:
  """Minibatch standard deviation (Karras et al. 2018, Sec. 3), per class: for each example, the
  mean over features of the standard deviation of `h` (B, F) across the batch's examples of its own
  class (the whole batch when unconditional). Returns (B, 1). A G that ignores z makes this 0 for
  its fakes, while real digits of a class vary, so D can tell a collapsed batch from a real one."""
  if not num_classes:
    std = jnp.sqrt(jnp.var(h, axis=0) + 1e-8)
    return jnp.broadcast_to(jnp.mean(std), (h.shape[0], 1))
  onehot = _one_hot(labels, num_classes)  # (B, K)
  count = jnp.maximum(jnp.sum(onehot, axis=0), 1.0)[:, None]  # (K, 1)
  mean = (onehot.T @ h) / count  # (K, F)
  var = (onehot.T @ jnp.square(h - onehot @ mean)) / count
  std = jnp.mean(jnp.sqrt(var + 1e-8), axis=-1)  # (K,)
  return (onehot @ std)[:, None]


class MaxoutDiscriminator(nn.Module):
  """Mirza & Osindero's maxout D (see the module docstring); `num_classes=0`: unconditional.
  `minibatch_std`: the joint layer also gets `within_class_stddev` of the x features (not in the
  paper; it gives D the batch's diversity, against mode collapse). D must then see real and fake
  examples in separate calls, as the methods do."""
  num_classes: int = 10
  x_units: int = 240
  x_pieces: int = 5
  y_units: int = 50
  y_pieces: int = 5
  joint_units: int = 240
  joint_pieces: int = 4
  dropout: float = 0.5
  minibatch_std: bool = False
  kernel_init: layers.Initializer = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array, labels: Array | None = None, train: bool = False) -> Array:
    _check_labels(labels, self.num_classes, x.shape[0])
    drop = lambda h: nn.Dropout(self.dropout, deterministic=not train)(h)
    h = layers.Maxout(self.x_units, self.x_pieces, self.kernel_init, name="x_maxout")(
        x.reshape(x.shape[0], -1))
    spread = within_class_stddev(h, labels, self.num_classes) if self.minibatch_std else None
    h = drop(h)
    if spread is not None:
      h = jnp.concatenate([h, spread], axis=-1)
    if self.num_classes:
      h_y = drop(layers.Maxout(self.y_units, self.y_pieces, self.kernel_init, name="y_maxout")(
          _one_hot(labels, self.num_classes)))
      h = jnp.concatenate([h, h_y], axis=-1)
    h = drop(layers.Maxout(self.joint_units, self.joint_pieces, self.kernel_init,
                           name="joint_maxout")(h))
    return layers.Dense(1, kernel_init=self.kernel_init, name="out_fc")(h)[:, 0]


class ConvGenerator(nn.Module):
  """DCGAN-style G for 32x32: z -> 4x4x(4 ngf) -> three stride-2 transposed convs -> tanh. Every hidden
  layer is batch-normed; with classes the norm is `ConditionalBatchNorm` and y enters only there."""
  out_channels: int = 1
  num_classes: int = 10
  ngf: int = 64
  kernel_init: layers.Initializer = layers.kernel_init("normal", 0.02)

  @nn.compact
  def __call__(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
    _check_labels(labels, self.num_classes, z.shape[0])

    def norm(h, name):
      if self.num_classes:
        return layers.ConditionalBatchNorm(self.num_classes, name=name)(h, labels, train=train)
      return layers.BatchNorm(name=name)(h, use_running_average=not train)

    h = layers.Dense(4 * 4 * 4 * self.ngf, use_bias=False, kernel_init=self.kernel_init,
                     name="fc")(z).reshape(z.shape[0], 4, 4, 4 * self.ngf)
    h = nn.relu(norm(h, "norm0"))
    for i, width in enumerate((2 * self.ngf, self.ngf), start=1):
      h = layers.ConvTranspose2d(width, 4, 2, 1, use_bias=False, kernel_init=self.kernel_init,
                                 name=f"up{i}")(h)
      h = nn.relu(norm(h, f"norm{i}"))
    h = layers.ConvTranspose2d(self.out_channels, 4, 2, 1, kernel_init=self.kernel_init, name="out")(h)
    return jnp.tanh(h)


class ProjectionDiscriminator(nn.Module):
  """DCGAN-style D for 32x32 (three stride-2 convs, LeakyReLU 0.2), logit = linear(h) + <E y, h> with
  h the features summed over space (the projection term only with classes)."""
  num_classes: int = 10
  ndf: int = 64
  kernel_init: layers.Initializer = layers.kernel_init("normal", 0.02)

  @nn.compact
  def __call__(self, x: Array, labels: Array | None = None, train: bool = False) -> Array:
    _check_labels(labels, self.num_classes, x.shape[0])
    h = x
    for i, width in enumerate((self.ndf, 2 * self.ndf, 4 * self.ndf)):
      h = nn.leaky_relu(layers.Conv2d(width, 4, 2, 1, kernel_init=self.kernel_init,
                                      name=f"conv{i}")(h), 0.2)
    h = jnp.sum(h, axis=(1, 2))
    logit = layers.Dense(1, kernel_init=self.kernel_init, name="out_fc")(h)[:, 0]
    if self.num_classes:
      embed = layers.Dense(h.shape[-1], use_bias=False, kernel_init=self.kernel_init, name="embed")
      logit = logit + jnp.sum(embed(_one_hot(labels, self.num_classes)) * h, axis=-1)
    return logit
