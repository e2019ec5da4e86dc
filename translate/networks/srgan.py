"""SRResNet / SRGAN networks (Ledig et al. 2017, Fig. 4), NHWC, equal to the reference port
sgrvinod/a-PyTorch-Tutorial-to-Super-Resolution `models.py` (`SRResNet`/`Generator`, `Discriminator`).

Generator (SRResNet; SRGAN's G is the same network):

    9x9 conv (3 -> n) -> PReLU                                            (the global skip's source)
    B x ResidualBlock:  x + (3x3 conv, BN, PReLU, 3x3 conv, BN)(x)
    3x3 conv -> BN, + the first block's output                             (global skip)
    log2(scale) x [3x3 conv (n -> 4n) -> PixelShuffle(2) -> PReLU]         (sub-pixel x2 stages)
    9x9 conv (n -> 3) -> tanh

Discriminator: `n_blocks` 3x3 conv blocks (zero padding 1, with bias) with widths n, n, 2n, 2n, 4n, ...
(doubling at every even block after the first) and strides 1, 2, 1, 2, ...; BN on all but the first;
LeakyReLU(0.2); then AdaptiveAvgPool2d((6, 6)), flattened in torch's (C, 6, 6) order, Dense(fc_size),
LeakyReLU(0.2), Dense(1): logits (B, 1), no sigmoid.

Where the reference departs from the paper, we follow the reference (so its checkpoints load and the
golden files match) and say so:
  * G ends in tanh (outputs in [-1, 1], the project's image range); the paper's G has no output
    activation.
  * PReLU has ONE shared slope per layer (`nn.PReLU()`, init 0.25); the paper does not say.
  * Every conv has a bias, also those followed by BN.
  * D pools to 6x6 before the dense layers (the identity for the paper's 96x96 crops; other sizes
    work, as in the reference).
What G's input is (ImageNet-normalised LR in the reference, [0, 1] in the paper) is the method's
choice, not the network's (`translate.methods.srresnet`).

BatchNorm: `train=True` normalises with the batch statistics and (when `batch_stats` is mutable)
updates the running ones with torch's momentum 0.1 and unbiased variance; `train=False` uses the
running statistics (torch `eval()`, the golden files' mode).

PixelShuffle follows PyTorch's channel order: out[n, c, r*h + i, r*w + j] = in[n, r*r*c + r*i + j, h, w]
(in NHWC: channel index c*r*r + i*r + j). TF's `depth_to_space` reads channel (i*r + j)*C + c, a
different order, so it is not used.

`translate.convert` loads reference state dicts as 'srgan_generator' (kwargs large_kernel_size,
small_kernel_size, n_channels, n_blocks, scaling_factor; keys with the `net.` prefix of the reference's
`Generator`, or without it, as its `SRResNet` saves them) and 'srgan_discriminator' (kernel_size,
n_channels, n_blocks, fc_size).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from translate import convert, layers

Array = layers.Array
LEAKY_SLOPE = 0.2  # the discriminator's LeakyReLU
PRELU_INIT = 0.25  # torch nn.PReLU's initial slope
POOL_SIZE = 6  # the discriminator's AdaptiveAvgPool2d((6, 6))


# ----------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------
def pixel_shuffle(x: Array, factor: int) -> Array:
  """torch.nn.PixelShuffle(factor) on NHWC: (B, H, W, C*r*r) -> (B, H*r, W*r, C), with output channel
  c at sub-pixel (i, j) read from input channel c*r*r + i*r + j (PyTorch's order)."""
  b, h, w, cr2 = x.shape
  r = factor
  if cr2 % (r * r):
    raise ValueError(f"pixel_shuffle({r}) needs channels divisible by {r * r}, got {cr2}.")
  c = cr2 // (r * r)
  x = x.reshape(b, h, w, c, r, r)  # channel = c*r*r + i*r + j
  x = x.transpose(0, 1, 4, 2, 5, 3)  # (b, h, i, w, j, c)
  return x.reshape(b, h * r, w * r, c)


class PixelShuffle(nn.Module):
  """torch.nn.PixelShuffle as a layer (see `pixel_shuffle`)."""
  upscale_factor: int

  def __call__(self, x: Array) -> Array:
    return pixel_shuffle(x, self.upscale_factor)


class PReLU(nn.Module):
  """torch.nn.PReLU(num_parameters): y = max(0, x) + a * min(0, x), `a` of shape (num_parameters,)
  (1 = one slope shared by all channels, torch's default), initialised to 0.25."""
  num_parameters: int = 1
  slope_init: float = PRELU_INIT

  @nn.compact
  def __call__(self, x: Array) -> Array:
    a = self.param("weight", jax.nn.initializers.constant(self.slope_init), (self.num_parameters,))
    a = a.astype(x.dtype)
    return jnp.where(x >= 0, x, a * x)


def _torch_bias_init(fan_in: int) -> layers.Initializer:
  """torch's default Conv2d/Linear bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _conv(features: int, kernel: int, in_channels: int, stride: int = 1, name: str | None = None):
  """Conv2d(kernel, stride, padding kernel // 2, bias) with torch's default init."""
  return layers.Conv2d(features, kernel, stride=stride, padding=kernel // 2,
                       kernel_init=layers.kernel_init("default"),
                       bias_init=_torch_bias_init(in_channels * kernel * kernel), name=name)


def _dense(features: int, in_features: int, name: str):
  return layers.Dense(features, kernel_init=layers.kernel_init("default"),
                      bias_init=_torch_bias_init(in_features), name=name)


def adaptive_avg_pool(x: Array, size: int) -> Array:
  """torch.nn.AdaptiveAvgPool2d((size, size)) on NHWC: bin i of an axis of length n averages indices
  floor(i*n/size) .. ceil((i+1)*n/size) - 1 (bins overlap when n is not a multiple of size)."""
  def pool_axis(x, axis):
    n = x.shape[axis]
    if n == size:
      return x
    bins = []
    for i in range(size):
      start, end = (i * n) // size, -((-(i + 1) * n) // size)
      bins.append(jnp.mean(jax.lax.slice_in_dim(x, start, end, axis=axis), axis=axis, keepdims=True))
    return jnp.concatenate(bins, axis=axis)
  return pool_axis(pool_axis(x, 1), 2)


# ----------------------------------------------------------------------------------------------------
# Generator (SRResNet)
# ----------------------------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
  """x + (3x3 conv, BN, PReLU, 3x3 conv, BN)(x), no activation after the sum."""
  kernel_size: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    c, k = x.shape[-1], self.kernel_size
    y = _conv(c, k, c, name="conv1")(x)
    y = layers.BatchNorm(name="bn1")(y, use_running_average=not train)
    y = PReLU(name="prelu")(y)
    y = _conv(c, k, c, name="conv2")(y)
    y = layers.BatchNorm(name="bn2")(y, use_running_average=not train)
    return x + y


class Generator(nn.Module):
  """SRResNet (= SRGAN's G): LR images (B, h, w, C) -> SR images (B, h*scale, w*scale, out_channels)
  in [-1, 1] (tanh). Any h, w (fully convolutional). `train`: BN with batch statistics (see the module
  docstring). Constructor arguments are the reference's (`n_channels` = the paper's 64,
  `n_blocks` = B = 16, `scaling_factor` 2, 4 or 8)."""
  large_kernel_size: int = 9
  small_kernel_size: int = 3
  n_channels: int = 64
  n_blocks: int = 16
  scaling_factor: int = 4
  out_channels: int = 3

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.scaling_factor not in (2, 4, 8):
      raise ValueError(f"scaling_factor must be 2, 4 or 8 (log2(scale) sub-pixel x2 stages), got "
                       f"{self.scaling_factor}.")
    if x.ndim != 4:
      raise ValueError(f"The SRResNet generator takes NHWC batches, got shape {x.shape}.")
    n, kl, ks = self.n_channels, self.large_kernel_size, self.small_kernel_size
    y = _conv(n, kl, x.shape[-1], name="conv_in")(x)
    skip = y = PReLU(name="prelu_in")(y)
    for i in range(self.n_blocks):
      y = ResidualBlock(ks, name=f"res{i}")(y, train)
    y = _conv(n, ks, n, name="conv_mid")(y)
    y = layers.BatchNorm(name="bn_mid")(y, use_running_average=not train)
    y = y + skip
    for i in range(int(math.log2(self.scaling_factor))):
      y = _conv(4 * n, ks, n, name=f"up{i}_conv")(y)
      y = pixel_shuffle(y, 2)
      y = PReLU(name=f"up{i}_prelu")(y)
    y = _conv(self.out_channels, kl, n, name="conv_out")(y)
    return jnp.tanh(y)


# ----------------------------------------------------------------------------------------------------
# Discriminator
# ----------------------------------------------------------------------------------------------------
def discriminator_widths(n_channels: int, n_blocks: int) -> list[int]:
  """Block widths of the reference: n, n, 2n, 2n, 4n, 4n, ... (doubling at even blocks >= 2)."""
  widths, c = [], n_channels
  for i in range(n_blocks):
    if i and i % 2 == 0:
      c *= 2
    widths.append(c)
  return widths


class Discriminator(nn.Module):
  """SRGAN discriminator: images (B, H, W, C) in [-1, 1] (or as the method feeds them) -> logits
  (B, 1). H, W >= 2^(n_blocks/2) so the conv stack leaves at least one pixel."""
  kernel_size: int = 3
  n_channels: int = 64
  n_blocks: int = 8
  fc_size: int = 1024

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if x.ndim != 4:
      raise ValueError(f"The SRGAN discriminator takes NHWC batches, got shape {x.shape}.")
    y, c_in = x, x.shape[-1]
    for i, c in enumerate(discriminator_widths(self.n_channels, self.n_blocks)):
      y = _conv(c, self.kernel_size, c_in, stride=1 if i % 2 == 0 else 2, name=f"conv{i}")(y)
      if i:
        y = layers.BatchNorm(name=f"bn{i}")(y, use_running_average=not train)
      y = nn.leaky_relu(y, LEAKY_SLOPE)
      c_in = c
    y = adaptive_avg_pool(y, POOL_SIZE)
    y = y.transpose(0, 3, 1, 2).reshape(y.shape[0], -1)  # torch's (C, 6, 6) flatten order
    y = _dense(self.fc_size, y.shape[-1], "fc1")(y)
    y = nn.leaky_relu(y, LEAKY_SLOPE)
    return _dense(1, self.fc_size, "fc2")(y)


# ----------------------------------------------------------------------------------------------------
# Reference state dicts
# ----------------------------------------------------------------------------------------------------
def _build_generator(large_kernel_size=9, small_kernel_size=3, n_channels=64, n_blocks=16,
                     scaling_factor=4):
  module = Generator(large_kernel_size, small_kernel_size, n_channels, n_blocks, scaling_factor)
  return module, (jnp.zeros((1, 4, 4, 3), jnp.float32),), {}


def _map_generator(conv: convert.Converter, n_blocks=16, scaling_factor=4, **_):
  # `Generator` holds an SRResNet as `net`; an SRResNet's own state dict has no prefix.
  p = "net." if any(k.startswith("net.") for k in conv.state_dict) else ""
  conv.conv(f"{p}conv_block1.conv_block.0", ("conv_in",))
  conv.put(f"{p}conv_block1.conv_block.1.weight", ("params", "prelu_in", "weight"), "vector")
  for i in range(n_blocks):
    r = f"{p}residual_blocks.{i}"
    conv.conv(f"{r}.conv_block1.conv_block.0", (f"res{i}", "conv1"))
    conv.norm(f"{r}.conv_block1.conv_block.1", (f"res{i}", "bn1"))
    conv.put(f"{r}.conv_block1.conv_block.2.weight", ("params", f"res{i}", "prelu", "weight"),
             "vector")
    conv.conv(f"{r}.conv_block2.conv_block.0", (f"res{i}", "conv2"))
    conv.norm(f"{r}.conv_block2.conv_block.1", (f"res{i}", "bn2"))
  conv.conv(f"{p}conv_block2.conv_block.0", ("conv_mid",))
  conv.norm(f"{p}conv_block2.conv_block.1", ("bn_mid",))
  for i in range(int(math.log2(scaling_factor))):
    s = f"{p}subpixel_convolutional_blocks.{i}"
    conv.conv(f"{s}.conv", (f"up{i}_conv",))
    conv.put(f"{s}.prelu.weight", ("params", f"up{i}_prelu", "weight"), "vector")
  conv.conv(f"{p}conv_block3.conv_block.0", ("conv_out",))


def _build_discriminator(kernel_size=3, n_channels=64, n_blocks=8, fc_size=1024):
  module = Discriminator(kernel_size, n_channels, n_blocks, fc_size)
  return module, (jnp.zeros((1, 96, 96, 3), jnp.float32),), {}


def _map_discriminator(conv: convert.Converter, n_blocks=8, **_):
  for i in range(n_blocks):
    conv.conv(f"conv_blocks.{i}.conv_block.0", (f"conv{i}",))
    if i:
      conv.norm(f"conv_blocks.{i}.conv_block.1", (f"bn{i}",))
  conv.linear("fc1", ("fc1",))
  conv.linear("fc2", ("fc2",))


convert.register_arch("srgan_generator", _build_generator, _map_generator)
convert.register_arch("srgan_discriminator", _build_discriminator, _map_discriminator)
