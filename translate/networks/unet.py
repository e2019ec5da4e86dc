"""pix2pix's U-Net generator, NHWC, equal to the reference `UnetGenerator`.

The reference builds the net recursively from `UnetSkipConnectionBlock`s; here the same levels are
unrolled, outermost (level 0) to innermost (level num_downs - 1). Channels (outer -> inner) per level:
(output_nc <- input_nc, ngf), (ngf, 2ngf), (2ngf, 4ngf), (4ngf, 8ngf), then (8ngf, 8ngf) for the
`num_downs - 5` intermediate levels and the innermost one. Every down conv and up ConvTranspose is
k4 s2 p1, so a 2**num_downs input reaches a 1x1 bottleneck.

  outermost:    down conv (no activation before it, no norm after it) ... ReLU, ConvT (bias), tanh;
                no skip.
  intermediate: LeakyReLU(0.2), down conv, norm ... ReLU, ConvT, norm, [dropout 0.5]; returns
                concat([x, up], channels) (the skip first).
  innermost:    LeakyReLU(0.2), down conv (no norm), ReLU, ConvT, norm; concat as above.

Dropout exists only in the `num_downs - 5` intermediate 8ngf levels. Conv biases follow the reference's
`use_bias` rule (only with instance norm, see `_cyclegan_common`), also for the outermost down conv
that no norm follows; only the outermost ConvTranspose always has a bias.

The reference's in-place LeakyReLU overwrites the block input, so its skip half holds leaky_relu(x);
every concat is consumed by a ReLU first and relu(leaky_relu(x)) == relu(x), so the plain input is
concatenated here with identical results.

`translate.convert` loads reference state dicts as 'pix2pix_unet'.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from translate import convert, layers
from translate.networks import _cyclegan_common as common

Array = layers.Array
MIN_DOWNS = 5  # outermost + three widening levels + innermost


def _level_channels(output_nc: int, ngf: int, num_downs: int) -> list[tuple[int, int]]:
  """(outer_nc, inner_nc) of each level, outermost first."""
  levels = [(output_nc, ngf), (ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)]
  levels += [(8 * ngf, 8 * ngf)] * (num_downs - 4)  # intermediate ngf*8 levels + the innermost
  return levels


class UnetGenerator(nn.Module):
  """The pix2pix generator. Input NHWC in [-1, 1] whose H and W are divisible by 2**num_downs.

  `train=True` uses batch statistics for batch norm (pass `mutable=['batch_stats']` to update the
  running ones) and enables dropout (rng 'dropout').
  """
  output_nc: int = 3
  num_downs: int = 8
  ngf: int = 64
  norm: str = "batch"
  use_dropout: bool = False
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.num_downs < MIN_DOWNS:
      raise ValueError(f"num_downs must be >= {MIN_DOWNS} (the reference always builds at least 5 "
                       f"levels), got {self.num_downs}.")
    factor = 2 ** self.num_downs
    h_in, w_in = x.shape[1], x.shape[2]
    if h_in % factor or w_in % factor:
      raise ValueError(
          f"UnetGenerator with num_downs={self.num_downs} needs H and W divisible by "
          f"2**{self.num_downs} = {factor}; got an input of {h_in}x{w_in}.")
    use_bias = common.conv_bias(self.norm)
    norm_layer = common.norm_factory(self.norm, self.init_type, self.init_gain)
    k_init = layers.kernel_init(self.init_type, self.init_gain)
    levels = _level_channels(self.output_nc, self.ngf, self.num_downs)
    innermost = self.num_downs - 1

    def norm(h, name):
      return layers.apply_norm(norm_layer and norm_layer(name=name), h, train)

    skips = []
    h = x
    for level, (_, inner_nc) in enumerate(levels):
      skips.append(h)
      if level > 0:
        h = nn.leaky_relu(h, 0.2)
      h = layers.Conv2d(inner_nc, 4, stride=2, padding=1, use_bias=use_bias, kernel_init=k_init,
                        name=f"down{level}")(h)
      if 0 < level < innermost:
        h = norm(h, f"down_norm{level}")

    for level in reversed(range(self.num_downs)):
      outer_nc = levels[level][0]
      h = nn.relu(h)
      h = layers.ConvTranspose2d(outer_nc, 4, stride=2, padding=1,
                                 use_bias=use_bias or level == 0, kernel_init=k_init,
                                 name=f"up{level}")(h)
      if level == 0:
        return jnp.tanh(h)
      h = norm(h, f"up_norm{level}")
      if self.use_dropout and 4 <= level < innermost:
        h = nn.Dropout(0.5, deterministic=not train, name=f"dropout{level}")(h)
      h = jnp.concatenate([skips[level], h], axis=-1)
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------------
# torch state dict -> Flax ('pix2pix_unet')
# ----------------------------------------------------------------------------------------------------
def torch_level_prefixes(num_downs: int) -> list[str]:
  """Torch key prefix of each level's Sequential, outermost first.

  The outermost block is `model` and its Sequential `model.model`; a block's submodule sits at index 1
  of the outermost Sequential and at index 3 of the others.
  """
  prefixes = ["model.model"]
  for level in range(1, num_downs):
    child = 1 if level == 1 else 3
    prefixes.append(f"{prefixes[-1]}.{child}.model")
  return prefixes


def _build(input_nc=3, output_nc=3, num_downs=8, ngf=64, norm="batch", use_dropout=False):
  module = UnetGenerator(output_nc=output_nc, num_downs=num_downs, ngf=ngf, norm=norm,
                         use_dropout=use_dropout)
  size = 2 ** max(num_downs, MIN_DOWNS)
  return module, (jnp.zeros((1, size, size, input_nc), jnp.float32),), {}


def _mapping(conv: convert.Converter, input_nc=3, output_nc=3, num_downs=8, ngf=64, norm="batch",
             use_dropout=False) -> None:
  bias = common.conv_bias(norm)
  innermost = num_downs - 1

  def map_norm(prefix, path):
    if norm == "batch":  # instance norm (affine=False, untracked) and Identity have no entries
      conv.norm(prefix, path)

  for level, prefix in enumerate(torch_level_prefixes(num_downs)):
    if level == 0:  # [downconv, submodule, ReLU, upconv(bias), tanh]
      conv.conv(f"{prefix}.0", ("down0",), bias)
      conv.conv_transpose(f"{prefix}.3", ("up0",), True)
    elif level == innermost:  # [LReLU, downconv, ReLU, upconv, upnorm]
      conv.conv(f"{prefix}.1", (f"down{level}",), bias)
      conv.conv_transpose(f"{prefix}.3", (f"up{level}",), bias)
      map_norm(f"{prefix}.4", (f"up_norm{level}",))
    else:  # [LReLU, downconv, downnorm, submodule, ReLU, upconv, upnorm, (dropout)]
      conv.conv(f"{prefix}.1", (f"down{level}",), bias)
      map_norm(f"{prefix}.2", (f"down_norm{level}",))
      conv.conv_transpose(f"{prefix}.5", (f"up{level}",), bias)
      map_norm(f"{prefix}.6", (f"up_norm{level}",))


convert.register_arch("pix2pix_unet", _build, _mapping, ignore=common.IGNORE_KEYS)
