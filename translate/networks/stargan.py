"""StarGAN networks (Choi et al. 2018), NHWC, equal to yunjey/stargan `model.py`.

Generator: the target-domain label vector c (B, c_dim) is tiled over the image and concatenated after
the image channels; then a 7x7 conv, two k4 s2 p1 downsampling convs, `repeat_num` residual blocks,
two k4 s2 p1 transposed convs and a 7x7 conv with tanh. Every conv is zero-padded (the authors found
reflection padding hurts the label conditioning) and bias-free, each followed by
InstanceNorm(affine=True, track_running_stats=True).

Discriminator: `repeat_num` k4 s2 p1 convs (with bias) and LeakyReLU(0.01), doubling the channels from
`conv_dim`; then two bias-free heads on the (image_size / 2^repeat_num)^2 feature map: `out_src`, a
3x3 conv giving a real/fake patch map (B, H/2^r, W/2^r, 1), and `out_cls`, a conv whose kernel covers
the whole map, giving domain logits (B, c_dim).

Instance norm and `use_running_average`
---------------------------------------
The reference's norms track running statistics, so in torch's `eval()` mode they normalise with the
running averages (like batch norm). The reference solver never calls `eval()`: it trains AND
translates test images in train mode (under `no_grad`), i.e. with per-instance statistics. Our default,
`use_running_average=False`, is therefore what StarGAN actually computes at train and at test time;
`True` reproduces torch's `eval()` (needed only to match an `eval()`-mode torch output, and
meaningful only with calibrated running stats). When `batch_stats` is mutable, a
`use_running_average=False` call also updates the running statistics as torch's train mode does.

`translate.convert` loads reference state dicts as 'stargan_generator' (kwargs conv_dim, c_dim,
repeat_num) and 'stargan_discriminator' (image_size, conv_dim, c_dim, repeat_num).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from translate import convert, layers

Array = layers.Array
N_SAMPLING = 2  # down- and upsampling stages of the generator, fixed in the reference
LEAKY_SLOPE = 0.01  # the discriminator's LeakyReLU (not pix2pix's 0.2)


def _instance_norm(init_type: str, gain: float, name: str) -> layers.InstanceNorm:
  return layers.InstanceNorm(affine=True, track_running_stats=True,
                             scale_init=layers.norm_scale_init(init_type, gain), name=name)


class ResidualBlock(nn.Module):
  """`x + (conv3x3, IN, ReLU, conv3x3, IN)(x)`, zero padding, no biases."""
  init_type: str = "default"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, use_running_average: bool = False) -> Array:
    c = x.shape[-1]
    init = layers.kernel_init(self.init_type, self.init_gain)
    y = layers.Conv2d(c, 3, padding=1, use_bias=False, kernel_init=init, name="conv1")(x)
    y = _instance_norm(self.init_type, self.init_gain, "norm1")(y, use_running_average)
    y = nn.relu(y)
    y = layers.Conv2d(c, 3, padding=1, use_bias=False, kernel_init=init, name="conv2")(y)
    y = _instance_norm(self.init_type, self.init_gain, "norm2")(y, use_running_average)
    return x + y


class Generator(nn.Module):
  """StarGAN generator: `G(x, c)` with x NHWC in [-1, 1] and c (B, c_dim) target labels (0/1 or soft).

  The output has the image's channel count (3 for RGB, as the reference's hard-coded 3) and its size;
  H and W must be divisible by 4. See the module docstring for `use_running_average` (default False:
  per-instance statistics, which is what the reference's solver uses at train and test time).
  """
  conv_dim: int = 64
  c_dim: int = 5
  repeat_num: int = 6
  init_type: str = "default"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, c: Array, use_running_average: bool = False) -> Array:
    b, h, w, image_channels = x.shape
    if c.shape != (b, self.c_dim):
      raise ValueError(f"c must be (batch, c_dim) = {(b, self.c_dim)}, got {tuple(c.shape)}.")
    if h % 2 ** N_SAMPLING or w % 2 ** N_SAMPLING:
      raise ValueError(f"The StarGAN generator needs H and W divisible by {2 ** N_SAMPLING} to return "
                       f"an image of the input's size; got {h}x{w}.")
    if self.repeat_num < 0:
      raise ValueError(f"repeat_num must be >= 0, got {self.repeat_num}.")
    init = layers.kernel_init(self.init_type, self.init_gain)

    def norm(name):
      return _instance_norm(self.init_type, self.init_gain, name)

    # Labels tiled over the image, AFTER the image channels (torch: cat([x, c], dim=1)).
    label_map = jnp.broadcast_to(c[:, None, None, :].astype(x.dtype), (b, h, w, self.c_dim))
    y = jnp.concatenate([x, label_map], axis=-1)

    y = layers.Conv2d(self.conv_dim, 7, padding=3, use_bias=False, kernel_init=init,
                      name="conv_in")(y)
    y = nn.relu(norm("norm_in")(y, use_running_average))
    dim = self.conv_dim
    for i in range(N_SAMPLING):
      dim *= 2
      y = layers.Conv2d(dim, 4, stride=2, padding=1, use_bias=False, kernel_init=init,
                        name=f"down{i}")(y)
      y = nn.relu(norm(f"down{i}_norm")(y, use_running_average))
    for i in range(self.repeat_num):
      y = ResidualBlock(self.init_type, self.init_gain, name=f"res{i}")(y, use_running_average)
    for i in range(N_SAMPLING):
      dim //= 2
      y = layers.ConvTranspose2d(dim, 4, stride=2, padding=1, use_bias=False, kernel_init=init,
                                 name=f"up{i}")(y)
      y = nn.relu(norm(f"up{i}_norm")(y, use_running_average))
    y = layers.Conv2d(image_channels, 7, padding=3, use_bias=False, kernel_init=init,
                      name="conv_out")(y)
    return jnp.tanh(y)


def _torch_default_bias_init(fan_in: int) -> layers.Initializer:
  """torch's default Conv2d bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Discriminator(nn.Module):
  """StarGAN discriminator (PatchGAN source head + domain classifier head).

  Returns `(out_src, out_cls)`: out_src NHWC (B, H/2^r, W/2^r, 1) logits (WGAN-GP critic values in
  the reference), out_cls (B, c_dim) domain logits. The input must be image_size x image_size (the
  classifier's kernel is sized for it) and image_size divisible by 2^repeat_num.
  With init_type='default' conv biases get torch's default init; otherwise zeros (as `init_weights`).
  """
  image_size: int = 128
  conv_dim: int = 64
  c_dim: int = 5
  repeat_num: int = 6
  init_type: str = "default"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    if self.repeat_num < 1:
      raise ValueError(f"repeat_num must be >= 1, got {self.repeat_num}.")
    factor = 2 ** self.repeat_num
    if self.image_size % factor:
      raise ValueError(f"image_size={self.image_size} must be divisible by 2**repeat_num = {factor} "
                       f"(repeat_num={self.repeat_num} stride-2 convs; the classifier kernel is "
                       f"image_size / 2**repeat_num).")
    if x.shape[1:3] != (self.image_size, self.image_size):
      raise ValueError(f"The discriminator was built for {self.image_size}x{self.image_size} images "
                       f"(its classifier kernel covers the whole final feature map); got "
                       f"{x.shape[1]}x{x.shape[2]}.")
    init = layers.kernel_init(self.init_type, self.init_gain)
    h = x
    dim = self.conv_dim
    for i in range(self.repeat_num):
      fan_in = h.shape[-1] * 4 * 4
      bias_init = (_torch_default_bias_init(fan_in) if self.init_type == "default"
                   else layers.zeros)
      h = layers.Conv2d(dim, 4, stride=2, padding=1, use_bias=True, kernel_init=init,
                        bias_init=bias_init, name=f"conv{i}")(h)
      h = nn.leaky_relu(h, LEAKY_SLOPE)
      dim *= 2
    out_src = layers.Conv2d(1, 3, padding=1, use_bias=False, kernel_init=init, name="conv_src")(h)
    out_cls = layers.Conv2d(self.c_dim, self.image_size // factor, use_bias=False, kernel_init=init,
                            name="conv_cls")(h)
    return out_src, out_cls.reshape(out_cls.shape[0], self.c_dim)


# ----------------------------------------------------------------------------------------------------
# Loading the reference's state dicts
# ----------------------------------------------------------------------------------------------------
def _build_generator(conv_dim=64, c_dim=5, repeat_num=6):
  module = Generator(conv_dim=conv_dim, c_dim=c_dim, repeat_num=repeat_num)
  size = 4 * 2 ** N_SAMPLING  # shapes only
  args = (jnp.zeros((1, size, size, 3), jnp.float32), jnp.zeros((1, c_dim), jnp.float32))
  return module, args, {}


def _map_generator(conv: convert.Converter, repeat_num=6, **_):
  # `main` Sequential: (conv, IN, ReLU) x 3, residual blocks, (convT, IN, ReLU) x 2, conv, tanh.
  conv.conv("main.0", ("conv_in",), bias=False)
  conv.norm("main.1", ("norm_in",))
  for i in range(N_SAMPLING):
    conv.conv(f"main.{3 + 3 * i}", (f"down{i}",), bias=False)
    conv.norm(f"main.{4 + 3 * i}", (f"down{i}_norm",))
  first_res = 3 + 3 * N_SAMPLING
  for i in range(repeat_num):
    prefix, path = f"main.{first_res + i}.main", f"res{i}"
    conv.conv(f"{prefix}.0", (path, "conv1"), bias=False)
    conv.norm(f"{prefix}.1", (path, "norm1"))
    conv.conv(f"{prefix}.3", (path, "conv2"), bias=False)
    conv.norm(f"{prefix}.4", (path, "norm2"))
  first_up = first_res + repeat_num
  for i in range(N_SAMPLING):
    conv.conv_transpose(f"main.{first_up + 3 * i}", (f"up{i}",), bias=False)
    conv.norm(f"main.{first_up + 3 * i + 1}", (f"up{i}_norm",))
  conv.conv(f"main.{first_up + 3 * N_SAMPLING}", ("conv_out",), bias=False)


def _build_discriminator(image_size=128, conv_dim=64, c_dim=5, repeat_num=6):
  module = Discriminator(image_size=image_size, conv_dim=conv_dim, c_dim=c_dim,
                         repeat_num=repeat_num)
  return module, (jnp.zeros((1, image_size, image_size, 3), jnp.float32),), {}


def _map_discriminator(conv: convert.Converter, repeat_num=6, **_):
  for i in range(repeat_num):  # `main` Sequential: (conv, LeakyReLU) per stage
    conv.conv(f"main.{2 * i}", (f"conv{i}",), bias=True)
  conv.conv("conv1", ("conv_src",), bias=False)
  conv.conv("conv2", ("conv_cls",), bias=False)


convert.register_arch("stargan_generator", _build_generator, _map_generator)
convert.register_arch("stargan_discriminator", _build_discriminator, _map_discriminator)
