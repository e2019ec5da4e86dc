"""U-GAT-IT networks (Kim et al. 2020), NHWC, equal to znxlwm/UGATIT-pytorch `networks.py`.

Generator: an encoder (7x7 conv, two reflection-padded stride-2 convs, residual blocks; instance norm
without affine, no conv biases), CAM attention on the bottleneck (whose logits feed an auxiliary
classifier loss and whose summed features are the attention heatmap), an MLP that turns the
attended features into per-sample AdaLIN gamma/beta, residual blocks with AdaLIN, and a decoder of
nearest-upsample + conv + ILN stages with a 7x7 tanh output conv.

Discriminator: reflection-padded, spectrally normalised k4 convs with LeakyReLU(0.2), CAM attention
with spectrally normalised logits, and a final spectrally normalised k4 conv giving a patch map.
The local discriminator of the paper is `n_layers=5`, the global one `n_layers=7`.

Both return `(output, cam_logit, heatmap)`: output NHWC, cam_logit (B, 2), heatmap (B, h, w, 1) at the
bottleneck resolution.

`translate.convert` can load the reference's state dicts ('ugatit_generator', 'ugatit_discriminator').
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from translate import convert, layers

Array = layers.Array

N_DOWNSAMPLING = 2  # fixed in the reference: the bottleneck is img_size / 4 with 4 * ngf channels


class _ResnetBlock(nn.Module):
  """Encoder residual block: (reflect pad, conv3x3, IN, ReLU, reflect pad, conv3x3, IN) + skip."""
  kernel_init: layers.Initializer

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    y = layers.Conv2d(c, 3, padding=1, padding_mode="reflect", use_bias=False,
                      kernel_init=self.kernel_init, name="conv1")(x)
    y = nn.relu(layers.InstanceNorm()(y))
    y = layers.Conv2d(c, 3, padding=1, padding_mode="reflect", use_bias=False,
                      kernel_init=self.kernel_init, name="conv2")(y)
    y = layers.InstanceNorm()(y)
    return x + y


class _ResnetAdaLINBlock(nn.Module):
  """Decoder residual block with AdaLIN driven by the per-sample gamma/beta (`ResnetAdaILNBlock`)."""
  kernel_init: layers.Initializer

  @nn.compact
  def __call__(self, x: Array, gamma: Array, beta: Array) -> Array:
    c = x.shape[-1]
    y = layers.Conv2d(c, 3, padding=1, padding_mode="reflect", use_bias=False,
                      kernel_init=self.kernel_init, name="conv1")(x)
    y = nn.relu(layers.AdaLIN(rho_init=0.9, name="norm1")(y, gamma, beta))
    y = layers.Conv2d(c, 3, padding=1, padding_mode="reflect", use_bias=False,
                      kernel_init=self.kernel_init, name="conv2")(y)
    y = layers.AdaLIN(rho_init=0.9, name="norm2")(y, gamma, beta)
    return y + x


class Generator(nn.Module):
  """U-GAT-IT generator (`ResnetGenerator`). The input channel count is taken from the input.

  `light=False` (the paper's full model) feeds the whole flattened bottleneck to the gamma/beta MLP, so
  its first layer has (img_size/4)^2 * 4ngf inputs and the network only accepts img_size x img_size
  images; `light=True` averages the bottleneck over H, W first and accepts any size divisible by 4.
  """
  output_nc: int = 3
  ngf: int = 64
  n_blocks: int = 6
  img_size: int = 256
  light: bool = False
  init_type: str = "default"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array, Array]:
    if not self.light and (x.shape[1] != self.img_size or x.shape[2] != self.img_size):
      raise ValueError(
          f"The full U-GAT-IT generator (light=False) was built for img_size={self.img_size} and only "
          f"accepts {self.img_size}x{self.img_size} inputs (its gamma/beta MLP sees the flattened "
          f"bottleneck); got {x.shape[1]}x{x.shape[2]}. Build it with img_size={x.shape[1]} or use "
          "light=True.")
    init = layers.kernel_init(self.init_type, self.init_gain)
    ngf = self.ngf

    # Encoder ('DownBlock').
    h = layers.Conv2d(ngf, 7, padding=3, padding_mode="reflect", use_bias=False, kernel_init=init,
                      name="down_conv0")(x)
    h = nn.relu(layers.InstanceNorm()(h))
    for i in range(N_DOWNSAMPLING):
      # Reflection pad 1 then a stride-2 conv with no padding (CycleGAN zero-pads inside the conv).
      h = layers.Conv2d(ngf * 2 ** (i + 1), 3, stride=2, padding=1, padding_mode="reflect",
                        use_bias=False, kernel_init=init, name=f"down_conv{i + 1}")(h)
      h = nn.relu(layers.InstanceNorm()(h))
    for i in range(self.n_blocks):
      h = _ResnetBlock(init, name=f"down_res{i}")(h)

    # Class activation map attention.
    h, cam_logit, heatmap = layers.CAMAttention(kernel_init=init, name="cam")(h)

    # gamma/beta MLP ('FC', 'gamma', 'beta').
    c = h.shape[-1]
    if self.light:
      flat = jnp.mean(h, axis=(1, 2))
    else:
      bottleneck = self.img_size // 2 ** N_DOWNSAMPLING
      if h.shape[1:3] != (bottleneck, bottleneck):
        raise ValueError(
            f"img_size={self.img_size} gives a {h.shape[1]}x{h.shape[2]} bottleneck, but the reference "
            f"sizes its MLP for {bottleneck}x{bottleneck}: img_size must be divisible by 4.")
      # torch flattens NCHW in (C, H, W) order; flattening the same order keeps FC.0.weight as is.
      flat = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)
    z = nn.relu(layers.Dense(c, use_bias=False, kernel_init=init, name="fc1")(flat))
    z = nn.relu(layers.Dense(c, use_bias=False, kernel_init=init, name="fc2")(z))
    gamma = layers.Dense(c, use_bias=False, kernel_init=init, name="gamma")(z)
    beta = layers.Dense(c, use_bias=False, kernel_init=init, name="beta")(z)

    # Decoder: AdaLIN residual blocks ('UpBlock1_*'), then upsampling stages ('UpBlock2').
    for i in range(self.n_blocks):
      h = _ResnetAdaLINBlock(init, name=f"up_res{i}")(h, gamma, beta)
    for i in range(N_DOWNSAMPLING):
      h = layers.upsample_nearest(h, 2)
      h = layers.Conv2d(c // 2 ** (i + 1), 3, padding=1, padding_mode="reflect", use_bias=False,
                        kernel_init=init, name=f"up_conv{i}")(h)
      h = nn.relu(layers.ILN(rho_init=0.0, name=f"up_norm{i}")(h))
    h = layers.Conv2d(self.output_nc, 7, padding=3, padding_mode="reflect", use_bias=False,
                      kernel_init=init, name="out_conv")(h)
    return jnp.tanh(h), cam_logit, heatmap


class Discriminator(nn.Module):
  """U-GAT-IT discriminator (`Discriminator`); the input channel count is taken from the input.

  `n_layers - 2` stride-2 convs and one stride-1 conv bring the input to ndf * 2^(n_layers-2) channels
  at H / 2^(n_layers-2) - 1; the output patch map is 3 pixels smaller again. Needs
  H, W >= 3 * 2^(n_layers-2) (24 px for n_layers=5, 96 px for n_layers=7).

  `update_stats=True` (training) runs one power iteration per spectrally normalised layer before using
  its weight and stores the new vectors when `spectral` is mutable; `False` uses the stored vectors
  unchanged, as torch does in eval mode.
  """
  ndf: int = 64
  n_layers: int = 5
  init_type: str = "default"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array, update_stats: bool = False) -> tuple[Array, Array, Array]:
    if self.n_layers < 3:
      raise ValueError(f"n_layers must be >= 3, got {self.n_layers}.")
    init = layers.kernel_init(self.init_type, self.init_gain)
    h = x
    for j, (features, stride) in enumerate(_discriminator_convs(self.ndf, self.n_layers)):
      h = layers.Conv2d(features, 4, stride=stride, padding=1, padding_mode="reflect", use_bias=True,
                        spectral_norm=True, kernel_init=init, name=f"conv{j}")(h, update_stats)
      h = nn.leaky_relu(h, 0.2)
    h, cam_logit, heatmap = layers.CAMAttention(
        spectral_norm=True, leaky_slope=0.2, kernel_init=init, name="cam")(h, update_stats)
    out = layers.Conv2d(1, 4, padding=1, padding_mode="reflect", use_bias=False, spectral_norm=True,
                        kernel_init=init, name="out_conv")(h, update_stats)
    return out, cam_logit, heatmap


def _discriminator_convs(ndf: int, n_layers: int) -> list[tuple[int, int]]:
  """(out channels, stride) of the discriminator's body convs, in order."""
  convs = [(ndf * 2 ** i, 2) for i in range(n_layers - 2)]
  convs.append((ndf * 2 ** (n_layers - 2), 1))
  return convs


# ----------------------------------------------------------------------------------------------------
# Loading the reference's state dicts
# ----------------------------------------------------------------------------------------------------
def discriminator_torch_paths(n_layers: int) -> dict[str, tuple[str, ...]]:
  """Torch module prefix -> Flax module path of every spectrally normalised layer of the discriminator.
  The converter uses it, and so can anything that pairs torch's per-layer values (sigma, u, v) with
  ours."""
  paths = {f"model.{1 + 3 * j}": (f"conv{j}",) for j in range(n_layers - 1)}
  paths["gap_fc"] = ("cam", "gap_fc")
  paths["gmp_fc"] = ("cam", "gmp_fc")
  paths["conv"] = ("out_conv",)
  return paths


def _build_generator(input_nc=3, output_nc=3, ngf=64, n_blocks=6, img_size=256, light=False):
  module = Generator(output_nc=output_nc, ngf=ngf, n_blocks=n_blocks, img_size=img_size, light=light)
  return module, (jnp.zeros((1, img_size, img_size, input_nc), jnp.float32),), {}


def _map_generator(conv: convert.Converter, n_blocks=6, **_):
  conv.linear("gap_fc", ("cam", "gap_fc"), bias=False)
  conv.linear("gmp_fc", ("cam", "gmp_fc"), bias=False)
  conv.conv("conv1x1", ("cam", "conv1x1"), bias=True)
  conv.linear("gamma", ("gamma",), bias=False)
  conv.linear("beta", ("beta",), bias=False)
  for i in range(n_blocks):
    prefix, path = f"UpBlock1_{i + 1}", f"up_res{i}"
    for k in (1, 2):
      conv.conv(f"{prefix}.conv{k}", (path, f"conv{k}"), bias=False)
      conv.put(f"{prefix}.norm{k}.rho", ("params", path, f"norm{k}", "rho"), "vector")
  # DownBlock Sequential: pad, conv, IN, ReLU per stage (conv at 1 + 4i), then the residual blocks.
  for i in range(N_DOWNSAMPLING + 1):
    conv.conv(f"DownBlock.{1 + 4 * i}", (f"down_conv{i}",), bias=False)
  first_res = 4 * (N_DOWNSAMPLING + 1)
  for i in range(n_blocks):
    conv.conv(f"DownBlock.{first_res + i}.conv_block.1", (f"down_res{i}", "conv1"), bias=False)
    conv.conv(f"DownBlock.{first_res + i}.conv_block.5", (f"down_res{i}", "conv2"), bias=False)
  conv.linear("FC.0", ("fc1",), bias=False)
  conv.linear("FC.2", ("fc2",), bias=False)
  # UpBlock2 Sequential: upsample, pad, conv, ILN, ReLU per stage, then pad, conv, tanh.
  for i in range(N_DOWNSAMPLING):
    conv.conv(f"UpBlock2.{2 + 5 * i}", (f"up_conv{i}",), bias=False)
    norm, path = f"UpBlock2.{3 + 5 * i}", ("params", f"up_norm{i}")
    conv.put(f"{norm}.rho", (*path, "rho"), "vector")
    conv.put(f"{norm}.gamma", (*path, "scale"), "vector")
    conv.put(f"{norm}.beta", (*path, "bias"), "vector")
  conv.conv(f"UpBlock2.{1 + 5 * N_DOWNSAMPLING}", ("out_conv",), bias=False)


def _build_discriminator(input_nc=3, ndf=64, n_layers=5):
  module = Discriminator(ndf=ndf, n_layers=n_layers)
  size = 2 ** n_layers  # comfortably above the 3 * 2^(n_layers-2) minimum; shapes only
  return module, (jnp.zeros((1, size, size, input_nc), jnp.float32),), {}


def _map_discriminator(conv: convert.Converter, n_layers=5, **_):
  for prefix, path in discriminator_torch_paths(n_layers).items():
    if prefix.startswith("model."):
      conv.spectral(prefix, path, "conv", bias=True)
    elif prefix == "conv":
      conv.spectral(prefix, path, "conv", bias=False)
    else:  # gap_fc / gmp_fc: Linear(C, 1, bias=False)
      conv.spectral(prefix, path, "linear", bias=False)
  conv.conv("conv1x1", ("cam", "conv1x1"), bias=True)  # the only layer without spectral norm


convert.register_arch("ugatit_generator", _build_generator, _map_generator)
convert.register_arch("ugatit_discriminator", _build_discriminator, _map_discriminator)
