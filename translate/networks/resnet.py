"""CycleGAN's ResNet generator (Johnson et al. style), NHWC, equal to the reference `ResnetGenerator`.

    7x7 conv (reflection pad 3) -> norm -> ReLU
    2 x [3x3 conv stride 2 (zero pad 1) -> norm -> ReLU]
    n_blocks x ResnetBlock(4 ngf)                    x + (pad, conv3, norm, ReLU, [dropout], pad, conv3, norm)
    2 x [3x3 ConvTranspose stride 2, p1, op1 -> norm -> ReLU]
    7x7 conv (reflection pad 3, bias) -> tanh

`padding_type` ('reflect', 'replicate', 'zero') applies to the residual-block convs only: the reference
pads the two 7x7 convs with ReflectionPad2d(3) whatever `padding_type` says, and the stride-2 convs
with zeros. Conv biases follow the reference's `use_bias` rule (only with instance norm, see
`_cyclegan_common`); the output conv always has one.

`translate.convert` loads reference state dicts as 'cyclegan_resnet'.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from translate import convert, layers
from translate.networks import _cyclegan_common as common

Array = layers.Array
N_DOWNSAMPLING = 2  # fixed in the reference


class ResnetBlock(nn.Module):
  """`x + conv_block(x)`; no activation after the sum (as the reference)."""
  padding_type: str = "reflect"
  norm: str = "instance"
  use_dropout: bool = False
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.padding_type not in common.PADDING_TYPES:
      raise ValueError(f"Unknown padding_type {self.padding_type!r}; "
                       f"expected one of {tuple(common.PADDING_TYPES)}.")
    c = x.shape[-1]
    mode = common.PADDING_TYPES[self.padding_type]
    use_bias = common.conv_bias(self.norm)
    norm_layer = common.norm_factory(self.norm, self.init_type, self.init_gain)
    k_init = layers.kernel_init(self.init_type, self.init_gain)

    y = layers.Conv2d(c, 3, padding=1, padding_mode=mode, use_bias=use_bias, kernel_init=k_init,
                      name="conv1")(x)
    y = layers.apply_norm(norm_layer and norm_layer(name="norm1"), y, train)
    y = nn.relu(y)
    if self.use_dropout:
      y = nn.Dropout(0.5, deterministic=not train, name="dropout")(y)
    y = layers.Conv2d(c, 3, padding=1, padding_mode=mode, use_bias=use_bias, kernel_init=k_init,
                      name="conv2")(y)
    y = layers.apply_norm(norm_layer and norm_layer(name="norm2"), y, train)
    return x + y


class ResnetGenerator(nn.Module):
  """The CycleGAN generator. Input NHWC in [-1, 1] with any channel count, output tanh in [-1, 1].

  H and W should be divisible by 4 for the output to have the input's size (as in the reference).
  `train=True` uses batch statistics for batch norm (pass `mutable=['batch_stats']` to update the
  running ones) and enables dropout (rng 'dropout').
  """
  output_nc: int = 3
  ngf: int = 64
  n_blocks: int = 9
  norm: str = "instance"
  use_dropout: bool = False
  padding_type: str = "reflect"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if self.n_blocks < 0:
      raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}.")
    use_bias = common.conv_bias(self.norm)
    norm_layer = common.norm_factory(self.norm, self.init_type, self.init_gain)
    k_init = layers.kernel_init(self.init_type, self.init_gain)

    def norm(h, name):
      return layers.apply_norm(norm_layer and norm_layer(name=name), h, train)

    h = layers.Conv2d(self.ngf, 7, padding=3, padding_mode="reflect", use_bias=use_bias,
                      kernel_init=k_init, name="conv_in")(x)
    h = nn.relu(norm(h, "norm_in"))
    for i in range(N_DOWNSAMPLING):
      h = layers.Conv2d(self.ngf * 2 ** (i + 1), 3, stride=2, padding=1, use_bias=use_bias,
                        kernel_init=k_init, name=f"down{i}")(h)
      h = nn.relu(norm(h, f"down_norm{i}"))
    for i in range(self.n_blocks):
      h = ResnetBlock(self.padding_type, self.norm, self.use_dropout, self.init_type, self.init_gain,
                      name=f"block{i}")(h, train)
    for i in range(N_DOWNSAMPLING):
      features = self.ngf * 2 ** (N_DOWNSAMPLING - i - 1)
      h = layers.ConvTranspose2d(features, 3, stride=2, padding=1, output_padding=1,
                                 use_bias=use_bias, kernel_init=k_init, name=f"up{i}")(h)
      h = nn.relu(norm(h, f"up_norm{i}"))
    h = layers.Conv2d(self.output_nc, 7, padding=3, padding_mode="reflect", use_bias=True,
                      kernel_init=k_init, name="conv_out")(h)
    return jnp.tanh(h)


# ----------------------------------------------------------------------------------------------------
# torch state dict -> Flax ('cyclegan_resnet')
# ----------------------------------------------------------------------------------------------------
def _build(input_nc=3, output_nc=3, ngf=64, n_blocks=9, norm="instance", use_dropout=False,
           padding_type="reflect"):
  module = ResnetGenerator(output_nc=output_nc, ngf=ngf, n_blocks=n_blocks, norm=norm,
                           use_dropout=use_dropout, padding_type=padding_type)
  return module, (jnp.zeros((1, 32, 32, input_nc), jnp.float32),), {}


def _map_norm(conv: convert.Converter, norm: str, prefix: str, path: tuple[str, ...]) -> None:
  # Only batch norm has state-dict entries: instance norm is affine=False without running stats and
  # 'none' is an Identity.
  if norm == "batch":
    conv.norm(prefix, path)


def _mapping(conv: convert.Converter, input_nc=3, output_nc=3, ngf=64, n_blocks=9, norm="instance",
             use_dropout=False, padding_type="reflect") -> None:
  bias = common.conv_bias(norm)
  # Indices in the reference's `self.model` Sequential: pad, conv, norm, ReLU, then (conv, norm, ReLU)
  # per downsampling, the blocks, (convT, norm, ReLU) per upsampling, pad, conv, tanh.
  conv.conv("model.1", ("conv_in",), bias)
  _map_norm(conv, norm, "model.2", ("norm_in",))
  for i in range(N_DOWNSAMPLING):
    conv.conv(f"model.{4 + 3 * i}", (f"down{i}",), bias)
    _map_norm(conv, norm, f"model.{5 + 3 * i}", (f"down_norm{i}",))
  first_block = 1 + 3 + 3 * N_DOWNSAMPLING
  # Inside a block: [pad] conv norm ReLU [dropout] [pad] conv norm; 'zero' has no pad layers.
  pad = 0 if padding_type == "zero" else 1
  conv2_index = 2 * pad + 3 + int(use_dropout)
  for b in range(n_blocks):
    prefix = f"model.{first_block + b}.conv_block"
    conv.conv(f"{prefix}.{pad}", (f"block{b}", "conv1"), bias)
    _map_norm(conv, norm, f"{prefix}.{pad + 1}", (f"block{b}", "norm1"))
    conv.conv(f"{prefix}.{conv2_index}", (f"block{b}", "conv2"), bias)
    _map_norm(conv, norm, f"{prefix}.{conv2_index + 1}", (f"block{b}", "norm2"))
  first_up = first_block + n_blocks
  for i in range(N_DOWNSAMPLING):
    conv.conv_transpose(f"model.{first_up + 3 * i}", (f"up{i}",), bias)
    _map_norm(conv, norm, f"model.{first_up + 3 * i + 1}", (f"up_norm{i}",))
  conv.conv(f"model.{first_up + 3 * N_DOWNSAMPLING + 1}", ("conv_out",), True)


convert.register_arch("cyclegan_resnet", _build, _mapping, ignore=common.IGNORE_KEYS)
