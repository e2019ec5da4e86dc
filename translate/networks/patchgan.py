"""PatchGAN discriminators of pix2pix/CycleGAN (reference `NLayerDiscriminator`, `PixelDiscriminator`)
and a pix2pixHD-style multi-scale wrapper, NHWC. All return raw logits (no sigmoid).

NLayerDiscriminator (n_layers=3 is the 70x70 PatchGAN):
    conv k4 s2 p1 (bias) -> LReLU(0.2)
    (n_layers - 1) x [conv k4 s2 p1 -> norm -> LReLU(0.2)]        channels ndf * min(2**n, 8)
    conv k4 s1 p1 -> norm -> LReLU(0.2)
    conv k4 s1 p1 (bias) -> 1 channel
Zero padding throughout; each stride-1 k4 p1 conv shrinks H and W by 1 (256 -> 30x30 patches).

PixelDiscriminator (1x1 PixelGAN): conv1x1 (bias) -> LReLU -> conv1x1 -> norm -> LReLU -> conv1x1.
As in the reference, the *last* conv of the PixelGAN also follows the `use_bias` rule (no bias unless
instance norm), unlike the NLayer one.

Conv biases follow the reference's `use_bias` rule (only with instance norm, see `_cyclegan_common`).
`translate.convert` loads `NLayerDiscriminator` state dicts as 'patchgan'.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from translate import convert, layers
from translate.networks import _cyclegan_common as common

Array = layers.Array
LEAKY_SLOPE = 0.2


def channel_multipliers(n_layers: int) -> list[int]:
  """Channel multiplier (of ndf) of conv 0 .. n_layers, as the reference's `nf_mult`."""
  return [min(2 ** n, 8) for n in range(n_layers + 1)]


class NLayerDiscriminator(nn.Module):
  """PatchGAN with `n_layers` stride-2 convs. Input NHWC (for pix2pix: concat([A, B], channels))."""
  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.n_layers < 1:
      raise ValueError(f"n_layers must be >= 1, got {self.n_layers}.")
    use_bias = common.conv_bias(self.norm)
    norm_layer = common.norm_factory(self.norm, self.init_type, self.init_gain)
    k_init = layers.kernel_init(self.init_type, self.init_gain)
    mults = channel_multipliers(self.n_layers)

    h = layers.Conv2d(self.ndf, 4, stride=2, padding=1, use_bias=True, kernel_init=k_init,
                      name="conv0")(x)
    h = nn.leaky_relu(h, LEAKY_SLOPE)
    for n in range(1, self.n_layers + 1):
      stride = 2 if n < self.n_layers else 1  # the last normed conv keeps the resolution (-1 px)
      h = layers.Conv2d(self.ndf * mults[n], 4, stride=stride, padding=1, use_bias=use_bias,
                        kernel_init=k_init, name=f"conv{n}")(h)
      h = layers.apply_norm(norm_layer and norm_layer(name=f"norm{n}"), h, train)
      h = nn.leaky_relu(h, LEAKY_SLOPE)
    return layers.Conv2d(1, 4, stride=1, padding=1, use_bias=True, kernel_init=k_init,
                         name="conv_out")(h)


class PixelDiscriminator(nn.Module):
  """1x1 PixelGAN: classifies every pixel independently."""
  ndf: int = 64
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    use_bias = common.conv_bias(self.norm)
    norm_layer = common.norm_factory(self.norm, self.init_type, self.init_gain)
    k_init = layers.kernel_init(self.init_type, self.init_gain)
    h = layers.Conv2d(self.ndf, 1, use_bias=True, kernel_init=k_init, name="conv0")(x)
    h = nn.leaky_relu(h, LEAKY_SLOPE)
    h = layers.Conv2d(self.ndf * 2, 1, use_bias=use_bias, kernel_init=k_init, name="conv1")(h)
    h = layers.apply_norm(norm_layer and norm_layer(name="norm1"), h, train)
    h = nn.leaky_relu(h, LEAKY_SLOPE)
    return layers.Conv2d(1, 1, use_bias=use_bias, kernel_init=k_init, name="conv2")(h)


def downsample_avg(x: Array) -> Array:
  """AvgPool2d(3, stride=2, padding=1, count_include_pad=False): border windows average only the
  pixels inside the image, so edges are not darkened towards 0."""
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)


class MultiscaleDiscriminator(nn.Module):
  """pix2pixHD-style multi-scale discriminator: `num_D` PatchGANs of the same architecture (separate
  weights, `scale0` .. `scale{num_D-1}`), the k-th applied to the image downsampled k times by
  `downsample_avg`. Returns the list of logit maps, full resolution first; `losses.gan_loss` accepts
  the list directly.
  """
  num_D: int = 3
  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> list[Array]:
    if self.num_D < 1:
      raise ValueError(f"num_D must be >= 1, got {self.num_D}.")
    outputs = []
    for i in range(self.num_D):
      if i > 0:
        x = downsample_avg(x)
      outputs.append(NLayerDiscriminator(self.ndf, self.n_layers, self.norm, self.init_type,
                                         self.init_gain, name=f"scale{i}")(x, train))
    return outputs


# ----------------------------------------------------------------------------------------------------
# torch state dict -> Flax ('patchgan' = NLayerDiscriminator)
# ----------------------------------------------------------------------------------------------------
def _build(input_nc=3, ndf=64, n_layers=3, norm="batch"):
  module = NLayerDiscriminator(ndf=ndf, n_layers=n_layers, norm=norm)
  # n_layers halvings, then two k4 s1 p1 convs that take 1 px each: leave 4 px at the bottom.
  size = 4 * 2 ** max(n_layers, 1)
  return module, (jnp.zeros((1, size, size, input_nc), jnp.float32),), {}


def _mapping(conv: convert.Converter, input_nc=3, ndf=64, n_layers=3, norm="batch") -> None:
  bias = common.conv_bias(norm)
  # Sequential: conv, LReLU, then (conv, norm, LReLU) for n = 1..n_layers, then the output conv.
  conv.conv("model.0", ("conv0",), True)
  for n in range(1, n_layers + 1):
    conv.conv(f"model.{3 * n - 1}", (f"conv{n}",), bias)
    if norm == "batch":  # instance norm (affine=False, untracked) and Identity have no entries
      conv.norm(f"model.{3 * n}", (f"norm{n}",))
  conv.conv(f"model.{3 * n_layers + 2}", ("conv_out",), True)


convert.register_arch("patchgan", _build, _mapping, ignore=common.IGNORE_KEYS)
