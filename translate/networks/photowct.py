"""PhotoWCT's networks (Li et al., ECCV 2018, "A Closed-form Solution to Photorealistic Image Stylization";
NVIDIA/FastPhotoStyle `models.py`): VGG encoders up to relu1_1 ... relu4_1 and their mirror decoders,
which undo each max-pool by max-UNPOOLING at the encoder's argmax positions (the "Photo" in PhotoWCT:
no blurry upsampling, so edges stay where the content image has them).

    enc = Encoder(level=4)                  # relu4_1; images NHWC in [0, 1] (the reference's ToTensor)
    feats, pools = enc.apply(e_vars, x)     # feats {'relu1_1': ..., 'relu4_1': ...}, pools (Pool, ...)
    y = Decoder(level=4).apply(d_vars, feats['relu4_1'], pools)   # (N, H, W, 3), ~[0, 1], no clamp

Encoder (level L, `arch` 'vgg19' as the reference, or 'vgg16'): `conv0`, a 1x1 conv 3->3 with bias and
no activation that absorbs the input preprocessing (the reference's file maps [0, 1] RGB to the
normalised VGG's input; for torchvision weights it holds (x - mean) / std), then VGG's 3x3 convs, each
after a ReflectionPad2d(1) (valid conv, bias) and followed by ReLU; a 2x2 stride-2 max pool (floor: an
odd last row/column is never pooled) after relu1_2, relu2_2 and relu3_4 (vgg16: relu3_3), returning
its argmax indices. Convs: conv1_1 3->64 (level 1 stops), conv1_2, pool1, conv2_1 64->128 (level 2),
conv2_2, pool2, conv3_1 128->256 (level 3), conv3_2..conv3_4, pool3, conv4_1 256->512 (level 4).
The encoder returns every relu<k>_1 up to its level (the reference's `forward` returns the deepest,
`forward_multiple` all of them: the same computation).

Decoder (level L): the encoder's 3x3 convs in reverse order, every one again ReflectionPad(1) + 3x3 conv
+ ReLU except the last (conv1_1 64->3, no activation), with a max-unpool after each conv<s>_1 (s > 1):
level 4: conv4_1 512->256, unpool3, conv3_4, conv3_3, conv3_2 (vgg16: no conv3_4), conv3_1 256->128,
unpool2, conv2_2, conv2_1 128->64, unpool1, conv1_2, conv1_1 64->3; level 3 starts at conv3_1, level 2
at conv2_1, level 1 is conv1_1 alone. Names are the reference's, so `photo_wct.pth` keys map one to one:
`e<L>.<conv>.weight/bias`, `d<L>.<conv>.weight/bias` (arch `photo_wct` of `translate.convert`).

Pooling indices follow torch's `MaxPool2d(2, 2, return_indices=True)`: `Pool.indices` (N, h, w, C) int32
is the flat position `row * W + col` of the maximum inside the (H, W) plane of the pooled map, the
FIRST maximum of the 2x2 window in row-major order when several tie (relu outputs are often 0 in a whole
window); `Pool.size` is the static (H, W) of the map before pooling. `max_unpool` writes each value at
its index and zeros elsewhere, at size (H, W) (torch's `MaxUnpool2d(2, 2)(x, idx, output_size)`): an odd
last row/column stays 0. Indices must come from a 2x2/2 max pool (each one inside its own window), as
in PhotoWCT; this is not checked (values are traced).

`widths` (four stage widths, default VGG's 64, 128, 256, 512) shrinks both networks for tests.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from translate import convert, layers

LEVELS = (1, 2, 3, 4)
WIDTHS = (64, 128, 256, 512)
ARCHS = ("vgg19", "vgg16")
FEATURES = {1: "relu1_1", 2: "relu2_1", 3: "relu3_1", 4: "relu4_1"}


class Pool(NamedTuple):
  """A max pool's argmax positions (N, h, w, C) int32, flat `row * W + col`, and the static (H, W)."""
  indices: jax.Array
  size: tuple[int, int]


def stage_convs(arch: str) -> tuple[tuple[str, ...], ...]:
  """The conv names of each of the four stages an encoder of level 4 runs (stage 4: conv4_1 only)."""
  if arch not in ARCHS:
    raise ValueError(f"Unknown PhotoWCT encoder architecture {arch!r}; expected one of {ARCHS}.")
  third = ("conv3_1", "conv3_2", "conv3_3") + (("conv3_4",) if arch == "vgg19" else ())
  return (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), third, ("conv4_1",))


def max_pool_with_indices(x: jax.Array) -> tuple[jax.Array, Pool]:
  """2x2 stride-2 max pool (floor) of NHWC `x` -> (pooled (N, H//2, W//2, C), Pool)."""
  n, height, width, c = x.shape
  h, w = height // 2, width // 2
  if h == 0 or w == 0:
    raise ValueError(f"Max pooling needs maps of at least 2x2, got {height}x{width} (the image is "
                     "too small for this encoder level).")
  windows = x[:, :2 * h, :2 * w].reshape(n, h, 2, w, 2, c).transpose(0, 1, 3, 5, 2, 4)
  windows = windows.reshape(n, h, w, c, 4)  # TL, TR, BL, BR
  local = jnp.argmax(windows, axis=-1)  # the first maximum, as torch
  pooled = jnp.take_along_axis(windows, local[..., None], axis=-1)[..., 0]  # gradient to argmax only
  rows = 2 * jnp.arange(h)[None, :, None, None] + local // 2
  cols = 2 * jnp.arange(w)[None, None, :, None] + local % 2
  return pooled, Pool((rows * width + cols).astype(jnp.int32), (height, width))


def max_unpool(x: jax.Array, pool: Pool) -> jax.Array:
  """Inverse of `max_pool_with_indices`: (N, h, w, C) -> (N, H, W, C), each value at its argmax
  position of `pool`, zeros elsewhere."""
  n, h, w, c = x.shape
  height, width = pool.size
  if pool.indices.shape != x.shape or height // 2 != h or width // 2 != w:
    raise ValueError(f"max_unpool: features {x.shape} do not match the pooling indices "
                     f"{pool.indices.shape} of a {height}x{width} map.")
  rows, cols = pool.indices // width, pool.indices % width
  local = (rows - 2 * jnp.arange(h)[None, :, None, None]) * 2 + (
      cols - 2 * jnp.arange(w)[None, None, :, None])
  placed = jax.nn.one_hot(local, 4, dtype=x.dtype) * x[..., None]  # (n, h, w, c, 4)
  placed = placed.reshape(n, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * h, 2 * w, c)
  return jnp.pad(placed, ((0, 0), (0, height - 2 * h), (0, width - 2 * w), (0, 0)))


def _conv3x3(features: int, name: str, init: str) -> layers.Conv2d:
  return layers.Conv2d(features, 3, padding=1, padding_mode="reflect", kernel_init=layers.kernel_init(
      init), bias_init=layers.zeros, name=name)


def _width_of(conv: str, widths: Sequence[int]) -> int:
  """Output width of encoder conv `conv` ('conv<s>_<i>')."""
  return widths[int(conv[4]) - 1]


def _check(level: int, widths: Sequence[int]) -> None:
  if level not in LEVELS:
    raise ValueError(f"PhotoWCT level must be one of {LEVELS}, got {level!r}.")
  if len(widths) != 4:
    raise ValueError(f"`widths` must be four stage widths, got {widths!r}.")


class Encoder(nn.Module):
  """VGG encoder up to relu<level>_1 (see the module docstring). Input NHWC RGB; returns
  ({'relu1_1': ..., 'relu<level>_1': ...}, pools) with `level - 1` Pools, shallowest first."""
  level: int = 4
  arch: str = "vgg19"
  widths: Sequence[int] = WIDTHS
  init_type: str = "kaiming"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[dict[str, jax.Array], tuple[Pool, ...]]:
    _check(self.level, self.widths)
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"The PhotoWCT encoder takes NHWC RGB images, got shape {x.shape}.")
    x = layers.Conv2d(3, 1, kernel_init=layers.kernel_init(self.init_type), name="conv0")(x)
    feats, pools = {}, []
    for stage, convs in enumerate(stage_convs(self.arch), start=1):
      if stage > 1:
        x, pool = max_pool_with_indices(x)
        pools.append(pool)
      for i, name in enumerate(convs):
        x = nn.relu(_conv3x3(_width_of(name, self.widths), name, self.init_type)(x))
        if i == 0:
          feats[FEATURES[stage]] = x
          if stage == self.level:
            return feats, tuple(pools)
    raise AssertionError("unreachable")


class Decoder(nn.Module):
  """Mirror decoder of level `level` (see the module docstring): relu<level>_1 features (N, h, w, C)
  and the encoder's `level - 1` Pools -> NHWC images (the encoder's input range; no final clamp)."""
  level: int = 4
  arch: str = "vgg19"
  widths: Sequence[int] = WIDTHS
  init_type: str = "kaiming"

  @nn.compact
  def __call__(self, x: jax.Array, pools: Sequence[Pool] = ()) -> jax.Array:
    _check(self.level, self.widths)
    if len(pools) != self.level - 1:
      raise ValueError(f"A level-{self.level} decoder needs {self.level - 1} pooling indices, got "
                       f"{len(pools)}.")
    for name in decoder_convs(self.level, self.arch):
      stage, first = int(name[4]), name.endswith("_1")
      out = (3 if stage == 1 else self.widths[stage - 2]) if first else self.widths[stage - 1]
      x = _conv3x3(out, name, self.init_type)(x)
      if name == "conv1_1":
        return x
      x = nn.relu(x)
      if first:
        x = max_unpool(x, pools[stage - 2])
    raise AssertionError("unreachable")


class PhotoWCTNets(nn.Module):
  """The reference's `PhotoWCT` container: encoders e1..e4 and decoders d1..d4 (`levels`), one pair per
  level, named as in `photo_wct.pth`. `__call__` runs each pair (reconstruction; used for init)."""
  levels: Sequence[int] = LEVELS
  arch: str = "vgg19"
  widths: Sequence[int] = WIDTHS

  def setup(self):
    self.encoders = {f"e{k}": Encoder(k, self.arch, self.widths, name=f"e{k}") for k in self.levels}
    self.decoders = {f"d{k}": Decoder(k, self.arch, self.widths, name=f"d{k}") for k in self.levels}

  def encode(self, level: int, x):
    return self.encoders[f"e{level}"](x)

  def decode(self, level: int, x, pools):
    return self.decoders[f"d{level}"](x, pools)

  def __call__(self, x):
    out = {}
    for k in self.levels:
      feats, pools = self.encode(k, x)
      out[k] = self.decode(k, feats[FEATURES[k]], pools)
    return out


# ----------------------------------------------------------------------------------------------------
# photo_wct.pth -> Flax (`translate.convert.from_torch('photo_wct', state_dict)`)
# ----------------------------------------------------------------------------------------------------
def encoder_convs(level: int, arch: str = "vgg19") -> list[str]:
  """conv0 and the 3x3 convs of a level-`level` encoder, in forward order."""
  names = ["conv0"]
  for stage, convs in enumerate(stage_convs(arch), start=1):
    if stage > level:
      break
    names += list(convs) if stage < level else [convs[0]]
  return names


def decoder_convs(level: int, arch: str = "vgg19") -> list[str]:
  """The convs of a level-`level` decoder, in forward order: the encoder's 3x3 convs reversed."""
  return list(reversed(encoder_convs(level, arch)[1:]))


def _build(levels: Sequence[int] = LEVELS, arch: str = "vgg19", widths: Sequence[int] = WIDTHS):
  module = PhotoWCTNets(tuple(levels), arch, tuple(widths))
  return module, (jnp.zeros((1, 16, 16, 3), jnp.float32),), {}


def _map(conv: convert.Converter, levels: Sequence[int] = LEVELS, arch: str = "vgg19", **_):
  for k in levels:
    for name in encoder_convs(k, arch):
      conv.conv(f"e{k}.{name}", (f"e{k}", name))
    for name in decoder_convs(k, arch):
      conv.conv(f"d{k}.{name}", (f"d{k}", name))


convert.register_arch("photo_wct", _build, _map)
