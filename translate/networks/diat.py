"""DIAT's networks (Li, Zuo & Zhang 2016, "Deep Identity-aware Transfer of Facial Attributes",
arXiv 1610.05586 v1): the face transform network T, the attribute discriminator D and the face
enhancement network E. NHWC, images in [-1, 1].

DIAT has no public code. What the paper's v1 text fixes, and what we chose where it is silent:

  T (`TransformNetwork`), as the paper: 3 convolutions, 5 residual blocks (two 3x3 convs each), 2
    deconvolutions (fractionally strided convs), 1 convolution; input an image WITHOUT the attribute,
    output the same face WITH it. This is the layout of Johnson et al.'s (2016) transform network,
    which the paper builds on, and where the paper is silent we follow that network: 9x9 stride-1 conv
    (ngf), 3x3 stride-2 convs (2 ngf, 4 ngf), residual blocks at 4 ngf, 3x3 stride-2 deconvs
    (`layers.ConvTranspose2d`, padding 1, output padding 1) back to 2 ngf and ngf, 9x9 conv to the
    image, tanh. Our choices: weights N(0, 0.02) (DCGAN's; `init_type`, `init_gain` as
    `layers.kernel_init`), instance norm (`norm`; Johnson's first version had batch norm; instance
    norm makes one image's translation independent of its batch), ReLU, reflection padding in the
    residual blocks, zero padding elsewhere. `upsample='nearest'` replaces each deconv by nearest
    upsampling + 3x3 conv (faster on XLA:CPU); the default is the paper's deconv.
  D (`AttributeDiscriminator`): real images WITH the attribute vs T's outputs. The paper gives a
    convolutional stack ending in a real/fake score; ours: `n_layers` 4x4 stride-2 convs (ndf, 2 ndf,
    ... capped at 8 ndf), LeakyReLU 0.2, `norm` after every conv but the first (DCGAN's rule), then a
    dense layer on the flattened last map to one logit per image. `features=True` also returns the
    activations after each conv block, {'conv1': (B, H/2, W/2, ndf), 'conv2': ...}: the feature maps
    of DIAT-A's adaptive perceptual identity loss.
  E (`EnhancementNetwork`, the second stage): the paper adds a face enhancement network after T to
    improve visual quality, trained after T. Its layers are not fixed in v1's text; ours is a
    residual refiner: `n_layers` 3x3 convs (ngf, instance norm, ReLU) and a 3x3 conv to a residual r,
    output tanh(atanh(t) + r) for T's output t. The last conv is zero-initialised, so E starts as the
    identity on T's outputs and the second stage starts from T's results.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from translate import layers
from translate.networks import _cyclegan_common as common
from translate.networks.resnet import ResnetBlock

Array = layers.Array
UPSAMPLES = ("deconv", "nearest")


def _norm(name: str, norm: str, y: Array, train: bool) -> Array:
  factory = common.norm_factory(norm, "normal", 0.02)
  return layers.apply_norm(factory and factory(name=name), y, train)


class TransformNetwork(nn.Module):
  """T: (B, H, W, C) in [-1, 1] -> (B, H, W, out_channels) in [-1, 1] (tanh); H, W divisible by 4.

  conv9x9(ngf) -> conv3x3/2(2 ngf) -> conv3x3/2(4 ngf) -> n_blocks residual blocks ->
  deconv3x3/2(2 ngf) -> deconv3x3/2(ngf) -> conv9x9(out_channels) -> tanh; each inner conv followed
  by `norm` and ReLU (see the module docstring)."""
  out_channels: int = 3
  ngf: int = 32
  n_blocks: int = 5
  norm: str = "instance"
  upsample: str = "deconv"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.upsample not in UPSAMPLES:
      raise ValueError(f"Unknown upsample {self.upsample!r}; expected one of {UPSAMPLES}.")
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f"TransformNetwork needs H and W divisible by 4 (two stride-2 convs), got "
                       f"{x.shape[1]}x{x.shape[2]}.")
    use_bias = common.conv_bias(self.norm) or self.norm == "none"
    k_init = layers.kernel_init(self.init_type, self.init_gain)
    y = layers.Conv2d(self.ngf, 9, padding=4, use_bias=use_bias, kernel_init=k_init, name="conv1")(x)
    y = nn.relu(_norm("norm1", self.norm, y, train))
    for i, mult in enumerate((2, 4)):
      y = layers.Conv2d(self.ngf * mult, 3, stride=2, padding=1, use_bias=use_bias,
                        kernel_init=k_init, name=f"conv{i + 2}")(y)
      y = nn.relu(_norm(f"norm{i + 2}", self.norm, y, train))
    for i in range(self.n_blocks):
      y = ResnetBlock(padding_type="reflect", norm=self.norm, init_type=self.init_type,
                      init_gain=self.init_gain, name=f"block{i + 1}")(y, train)
    for i, mult in enumerate((2, 1)):
      if self.upsample == "deconv":
        y = layers.ConvTranspose2d(self.ngf * mult, 3, stride=2, padding=1, output_padding=1,
                                   use_bias=use_bias, kernel_init=k_init, name=f"deconv{i + 1}")(y)
      else:
        y = layers.ResizeConv2d(self.ngf * mult, 3, factor=2, mode="nearest", padding_mode="zeros",
                                use_bias=use_bias, kernel_init=k_init, name=f"deconv{i + 1}")(y)
      y = nn.relu(_norm(f"norm_up{i + 1}", self.norm, y, train))
    y = layers.Conv2d(self.out_channels, 9, padding=4, kernel_init=k_init, name="conv_out")(y)
    return jnp.tanh(y)


class AttributeDiscriminator(nn.Module):
  """D: (B, H, W, C) in [-1, 1] -> logits (B,) (real image with the attribute vs T's output);
  with `features=True`, (logits, {'conv1': ..., 'conv<n_layers>': ...}), the activations after each
  conv block (NHWC). H and W must be divisible by 2**n_layers."""
  ndf: int = 64
  n_layers: int = 4
  norm: str = "none"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False, features: bool = False):
    if x.shape[1] % 2 ** self.n_layers or x.shape[2] % 2 ** self.n_layers:
      raise ValueError(f"AttributeDiscriminator with n_layers={self.n_layers} needs H and W "
                       f"divisible by {2 ** self.n_layers}, got {x.shape[1]}x{x.shape[2]}.")
    k_init = layers.kernel_init(self.init_type, self.init_gain)
    feats = {}
    y = x
    for i in range(self.n_layers):
      width = self.ndf * min(2 ** i, 8)
      y = layers.Conv2d(width, 4, stride=2, padding=1, kernel_init=k_init, name=f"conv{i + 1}")(y)
      if i > 0:
        y = _norm(f"norm{i + 1}", self.norm, y, train)
      y = nn.leaky_relu(y, 0.2)
      feats[f"conv{i + 1}"] = y
    logits = layers.Dense(1, kernel_init=k_init, name="fc")(y.reshape(y.shape[0], -1))[:, 0]
    return (logits, feats) if features else logits


class EnhancementNetwork(nn.Module):
  """E: T's output t (B, H, W, C) in [-1, 1] -> tanh(atanh(t) + r(t)), the same shape; r is
  `n_layers` 3x3 convs (ngf, `norm`, ReLU) and a zero-initialised 3x3 conv (E starts as the identity)."""
  ngf: int = 32
  n_layers: int = 3
  norm: str = "instance"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, t: Array, train: bool = False) -> Array:
    k_init = layers.kernel_init(self.init_type, self.init_gain)
    y = t
    for i in range(self.n_layers):
      y = layers.Conv2d(self.ngf, 3, padding=1, padding_mode="reflect", kernel_init=k_init,
                        name=f"conv{i + 1}")(y)
      y = nn.relu(_norm(f"norm{i + 1}", self.norm, y, train))
    r = layers.Conv2d(t.shape[-1], 3, padding=1, padding_mode="reflect",
                      kernel_init=jax.nn.initializers.zeros, name="conv_out")(y)
    return jnp.tanh(jnp.arctanh(jnp.clip(t, -0.999, 0.999)) + r)
