"""MUNIT and UNIT networks (NHWC), equal to NVlabs/MUNIT and mingyuliutw/UNIT (master) `networks.py`.

Both repos share one `networks.py` (UNIT's is MUNIT's without spectral norm), so the building blocks are
written once here:

  Conv2dBlock   its own padding (reflect / replicate / zero), a conv WITH bias (also before a norm),
                then a norm ('none', 'in', 'ln', 'adain') and an activation ('relu', 'lrelu' = 0.2,
                'selu', 'tanh', 'none').
  LayerNorm     MUNIT's own layer norm: per sample over (H, W, C), `(x - mean) / (std + eps)` with the
                UNBIASED std and eps ADDED to the std (not torch's sqrt(var + eps)), then a per-channel
                gamma (init U(0, 1)) and beta (init 0).
  AdaIN         instance statistics over (H, W) (biased variance, eps 1e-5 inside the sqrt), then a
                per-sample weight and bias that the MLP produces from the style code.
  ResBlock      Conv2dBlock(3x3, norm, relu) -> Conv2dBlock(3x3, norm, none), `x + block(x)`.
  ContentEncoder  7x7 conv, `n_downsample` 4x4 stride-2 convs (channels double), `n_res` ResBlocks;
                instance norm throughout. Output (B, H/2^n, W/2^n, dim * 2^n).
  StyleEncoder  7x7 conv, 4x4 stride-2 convs (channels double twice, then stay), global average pool,
                1x1 conv -> the style code (B, style_dim). No norm. AdaINGen always uses 4 downsamplings.
  Decoder       `n_res` ResBlocks (AdaIN for MUNIT, IN for UNIT), then per upsampling: nearest x2 and a
                5x5 conv + LayerNorm + relu (channels halve); a 7x7 conv + tanh to the image.

Networks:
  AdaINGen      MUNIT's generator of one domain: `encode(x) -> (content, style)`, `decode(content,
                style)`, `__call__(x)` = decode(*encode(x)). An MLP (style_dim -> mlp_dim -> mlp_dim ->
                n_adain_params, relu between) gives the AdaIN parameters of the decoder's ResBlocks.
  VAEGen        UNIT's generator of one domain: `encode(x) -> hiddens` (the content encoder), `decode(h)`.
                The "VAE" has unit variance: the trainer adds N(0, I) noise to `hiddens`, not this net.
  MsImageDis    both repos' multi-scale discriminator: `num_scales` copies of [n_layer 4x4 stride-2
                Conv2dBlocks (channels double), 1x1 conv to one channel], the image average-pooled
                (3x3, stride 2, pad 1, count_include_pad=False) between scales. Returns the list of raw
                score maps, finest first. `calc_dis_loss` / `calc_gen_loss` give the reference losses
                (summed over scales; lsgan or nsgan).

Images are NHWC in [-1, 1]; every network is fully convolutional (any H, W divisible by
2^n_downsample; the style encoder pools globally). `translate.convert` loads the reference checkpoints'
state dicts: archs 'munit_generator' (AdaINGen: `gen_a` / `gen_b` of MUNIT's gen_*.pt), 'unit_generator'
(VAEGen) and 'munit_discriminator' (MsImageDis: `dis_a` / `dis_b` of dis_*.pt), with the reference's
constructor arguments `input_dim` and `params` (the yaml's `gen` / `dis` dict).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from translate import convert, layers, losses

Array = layers.Array

PAD_TYPES = ("reflect", "replicate", "zero")
NORMS = ("none", "in", "ln", "adain")
ACTIVATIONS = ("relu", "lrelu", "selu", "tanh", "none")
GAN_TYPES = ("lsgan", "nsgan")
STYLE_DOWNSAMPLE = 4  # AdaINGen hard-codes StyleEncoder(4, ...)


def _padding_mode(pad_type: str) -> str:
  if pad_type not in PAD_TYPES:
    raise ValueError(f"Unknown pad_type {pad_type!r}; expected one of {PAD_TYPES}.")
  return "zeros" if pad_type == "zero" else pad_type


def activation(x: Array, name: str) -> Array:
  if name == "relu":
    return nn.relu(x)
  if name == "lrelu":
    return nn.leaky_relu(x, 0.2)
  if name == "selu":
    return nn.selu(x)
  if name == "tanh":
    return jnp.tanh(x)
  if name == "none":
    return x
  raise ValueError(f"Unknown activation {name!r}; expected one of {ACTIVATIONS}.")


class LayerNorm(nn.Module):
  """MUNIT/UNIT's `LayerNorm(C, eps=1e-5)`: per sample, `(x - mean) / (std + eps)` over (H, W, C) with
  the unbiased std (N - 1), then `gamma[c] * y + beta[c]` (gamma ~ U(0, 1), beta = 0 at init)."""
  eps: float = 1e-5
  affine: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    axes = tuple(range(1, x.ndim))
    x32 = layers.upcast(x)
    n = x[0].size
    mean = jnp.mean(x32, axis=axes, keepdims=True)
    var = jnp.sum(jnp.square(x32 - mean), axis=axes, keepdims=True) / max(n - 1, 1)
    y = (x32 - mean) / (jnp.sqrt(var) + self.eps)
    if self.affine:
      y = y * self.param("gamma", jax.nn.initializers.uniform(1.0), (c,))
      y = y + self.param("beta", jax.nn.initializers.zeros, (c,))
    return y.astype(x.dtype)


def adain(x: Array, weight: Array, bias: Array, eps: float = layers.TORCH_EPS) -> Array:
  """AdaptiveInstanceNorm2d: IN(x) (biased variance, eps inside the sqrt) * weight + bias, with
  per-sample weight and bias (B, C), used as they are (no 1 + weight, may be negative)."""
  x32 = layers.upcast(x)
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
  y = (x32 - mean) * lax.rsqrt(var + eps)
  y = y * layers.upcast(weight)[:, None, None, :] + layers.upcast(bias)[:, None, None, :]
  return y.astype(x.dtype)


class Conv2dBlock(nn.Module):
  """pad -> conv (bias) -> norm -> activation. With norm 'adain', call with `adain_params=(weight,
  bias)`, each (B, features)."""
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  norm: str = "none"
  activation: str = "relu"
  pad_type: str = "zero"
  kernel_init: Any = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array, adain_params: tuple[Array, Array] | None = None) -> Array:
    if self.norm not in NORMS:
      raise ValueError(f"Unknown norm {self.norm!r}; expected one of {NORMS}.")
    mode = _padding_mode(self.pad_type)
    x = layers.Conv2d(self.features, self.kernel_size, self.stride, self.padding, mode, use_bias=True,
                      kernel_init=self.kernel_init, name="conv")(x)  # bias 0 as weights_init
    if self.norm == "in":
      x = layers.InstanceNorm()(x)
    elif self.norm == "ln":
      x = LayerNorm(name="norm")(x)
    elif self.norm == "adain":
      if adain_params is None:
        raise ValueError("An AdaIN Conv2dBlock needs its adain_params (weight, bias).")
      x = adain(x, *adain_params)
    return activation(x, self.activation)


class ResBlock(nn.Module):
  norm: str = "in"
  activation: str = "relu"
  pad_type: str = "zero"
  kernel_init: Any = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array, adain_params: Sequence[tuple[Array, Array]] | None = None) -> Array:
    c = x.shape[-1]
    kw = dict(norm=self.norm, pad_type=self.pad_type, kernel_init=self.kernel_init)
    p = adain_params or (None, None)
    y = Conv2dBlock(c, 3, 1, 1, activation=self.activation, name="block0", **kw)(x, p[0])
    y = Conv2dBlock(c, 3, 1, 1, activation="none", name="block1", **kw)(y, p[1])
    return x + y


class ContentEncoder(nn.Module):
  n_downsample: int = 2
  n_res: int = 4
  dim: int = 64
  norm: str = "in"
  activation: str = "relu"
  pad_type: str = "reflect"
  kernel_init: Any = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kw = dict(norm=self.norm, activation=self.activation, pad_type=self.pad_type,
              kernel_init=self.kernel_init)
    dim = self.dim
    x = Conv2dBlock(dim, 7, 1, 3, name="conv0", **kw)(x)
    for i in range(self.n_downsample):
      dim *= 2
      x = Conv2dBlock(dim, 4, 2, 1, name=f"conv{i + 1}", **kw)(x)
    for i in range(self.n_res):
      x = ResBlock(self.norm, self.activation, self.pad_type, self.kernel_init, name=f"res{i}")(x)
    return x


class StyleEncoder(nn.Module):
  n_downsample: int = STYLE_DOWNSAMPLE
  dim: int = 64
  style_dim: int = 8
  norm: str = "none"
  activation: str = "relu"
  pad_type: str = "reflect"
  kernel_init: Any = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kw = dict(norm=self.norm, activation=self.activation, pad_type=self.pad_type,
              kernel_init=self.kernel_init)
    dim = self.dim
    x = Conv2dBlock(dim, 7, 1, 3, name="conv0", **kw)(x)
    for i in range(self.n_downsample):
      if i < 2:
        dim *= 2
      x = Conv2dBlock(dim, 4, 2, 1, name=f"conv{i + 1}", **kw)(x)
    x = jnp.mean(x, axis=(1, 2), keepdims=True)  # AdaptiveAvgPool2d(1)
    x = layers.Conv2d(self.style_dim, 1, kernel_init=self.kernel_init, name="out")(x)
    return x.reshape(x.shape[0], self.style_dim)


class Decoder(nn.Module):
  """`n_res` ResBlocks (norm `res_norm`; 'adain' takes `adain_params`, one (weight, bias) per AdaIN
  layer in order), `n_upsample` x [nearest x2, 5x5 conv + LayerNorm + activation], 7x7 conv + tanh."""
  n_upsample: int = 2
  n_res: int = 4
  output_dim: int = 3
  res_norm: str = "adain"
  activation: str = "relu"
  pad_type: str = "reflect"
  kernel_init: Any = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array, adain_params: Sequence[tuple[Array, Array]] | None = None) -> Array:
    dim = x.shape[-1]
    for i in range(self.n_res):
      p = adain_params[2 * i:2 * i + 2] if self.res_norm == "adain" else None
      x = ResBlock(self.res_norm, self.activation, self.pad_type, self.kernel_init, name=f"res{i}")(x, p)
    for i in range(self.n_upsample):
      x = layers.upsample_nearest(x, 2)
      dim //= 2
      x = Conv2dBlock(dim, 5, 1, 2, norm="ln", activation=self.activation, pad_type=self.pad_type,
                      kernel_init=self.kernel_init, name=f"up{i}")(x)
    return Conv2dBlock(self.output_dim, 7, 1, 3, norm="none", activation="tanh",
                       pad_type=self.pad_type, kernel_init=self.kernel_init, name="out")(x)


class MLP(nn.Module):
  """Linear + activation blocks: input -> dim (n_blk - 2 times dim -> dim) -> output_dim (no norm, the
  last without activation)."""
  output_dim: int
  dim: int = 256
  n_blk: int = 3
  activation: str = "relu"
  kernel_init: Any = layers.kernel_init("default")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = x.reshape(x.shape[0], -1)
    for i in range(self.n_blk - 1):
      x = activation(layers.Dense(self.dim, kernel_init=self.kernel_init, name=f"fc{i}")(x),
                     self.activation)
    return layers.Dense(self.output_dim, kernel_init=self.kernel_init, name=f"fc{self.n_blk - 1}")(x)


def num_adain_params(n_res: int, dim: int) -> int:
  """Columns of the MLP output: 2 * C per AdaIN layer, 2 AdaIN layers per decoder ResBlock."""
  return 2 * 2 * n_res * dim


def assign_adain_params(params: Array, n_layers: int, dim: int) -> list[tuple[Array, Array]]:
  """The reference's `assign_adain_params`: layer k (in the decoder's module order) takes the first C
  columns left as its bias (the 'mean') and the next C as its weight (the 'std'); returns
  [(weight, bias)] per layer, each (B, C)."""
  out = []
  for k in range(n_layers):
    block = params[:, 2 * dim * k:2 * dim * (k + 1)]
    out.append((block[:, dim:], block[:, :dim]))
  return out


class AdaINGen(nn.Module):
  """MUNIT's generator of one domain (see the module docstring). `params` are the yaml's `gen` fields:
  dim, style_dim, n_downsample, n_res, activ, pad_type, mlp_dim."""
  input_dim: int = 3
  dim: int = 64
  style_dim: int = 8
  n_downsample: int = 2
  n_res: int = 4
  activ: str = "relu"
  pad_type: str = "reflect"
  mlp_dim: int = 256
  init_type: str = "default"
  init_gain: float = 0.02

  def setup(self):
    init = layers.kernel_init(self.init_type, self.init_gain)
    self.enc_style = StyleEncoder(STYLE_DOWNSAMPLE, self.dim, self.style_dim, "none", self.activ,
                                  self.pad_type, init)
    self.enc_content = ContentEncoder(self.n_downsample, self.n_res, self.dim, "in", self.activ,
                                      self.pad_type, init)
    self.content_dim = self.dim * 2 ** self.n_downsample
    self.dec = Decoder(self.n_downsample, self.n_res, self.input_dim, "adain", self.activ,
                       self.pad_type, init)
    self.mlp = MLP(num_adain_params(self.n_res, self.content_dim), self.mlp_dim, 3, self.activ, init)

  def encode(self, x: Array) -> tuple[Array, Array]:
    """images (B, H, W, input_dim) -> (content (B, H/2^n, W/2^n, dim*2^n), style (B, style_dim))."""
    return self.enc_content(x), self.enc_style(x)

  def encode_content(self, x: Array) -> Array:
    return self.enc_content(x)

  def encode_style(self, x: Array) -> Array:
    return self.enc_style(x)

  def adain_params(self, style: Array) -> Array:
    """The MLP output for style codes (B, style_dim): (B, 4 * n_res * content channels)."""
    return self.mlp(style)

  def decode(self, content: Array, style: Array) -> Array:
    """(content, style (B, style_dim)) -> images (B, H, W, input_dim) in [-1, 1]."""
    p = assign_adain_params(self.mlp(style), 2 * self.n_res, self.content_dim)
    return self.dec(content, p)

  def __call__(self, x: Array) -> Array:
    content, style = self.encode(x)
    return self.decode(content, style)


class VAEGen(nn.Module):
  """UNIT's generator of one domain: content encoder -> hiddens, decoder with IN residual blocks."""
  input_dim: int = 3
  dim: int = 64
  n_downsample: int = 2
  n_res: int = 4
  activ: str = "relu"
  pad_type: str = "reflect"
  init_type: str = "default"
  init_gain: float = 0.02

  def setup(self):
    init = layers.kernel_init(self.init_type, self.init_gain)
    self.enc = ContentEncoder(self.n_downsample, self.n_res, self.dim, "in", self.activ,
                              self.pad_type, init)
    self.dec = Decoder(self.n_downsample, self.n_res, self.input_dim, "in", self.activ, self.pad_type,
                       init)

  def encode(self, x: Array) -> Array:
    """images -> hiddens (B, H/2^n, W/2^n, dim*2^n): the latent mean (the noise is the trainer's)."""
    return self.enc(x)

  def decode(self, hiddens: Array) -> Array:
    return self.dec(hiddens)

  def __call__(self, x: Array) -> Array:
    return self.decode(self.encode(x))


def avg_pool_exclude_pad(x: Array) -> Array:
  """AvgPool2d(3, stride=2, padding=1, count_include_pad=False) of NHWC images."""
  window, strides = (1, 3, 3, 1), (1, 2, 2, 1)
  pads = ((0, 0), (1, 1), (1, 1), (0, 0))
  total = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
  count = lax.reduce_window(jnp.ones_like(x[:1, :, :, :1]), 0.0, lax.add, window, strides, pads)
  return total / count


class MsImageDis(nn.Module):
  """Multi-scale discriminator (see the module docstring); `params` are the yaml's `dis` fields."""
  input_dim: int = 3
  dim: int = 64
  n_layer: int = 4
  norm: str = "none"
  activ: str = "lrelu"
  gan_type: str = "lsgan"
  num_scales: int = 3
  pad_type: str = "reflect"
  init_type: str = "default"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: Array) -> list[Array]:
    if self.gan_type not in GAN_TYPES:
      raise ValueError(f"Unknown gan_type {self.gan_type!r}; expected one of {GAN_TYPES}.")
    if self.norm not in ("none", "in", "ln"):
      raise ValueError(f"MsImageDis norm {self.norm!r} is not supported; use 'none', 'in' or 'ln'.")
    init = layers.kernel_init(self.init_type, self.init_gain)
    outputs = []
    for s in range(self.num_scales):
      h, dim = x, self.dim
      for i in range(self.n_layer):
        h = Conv2dBlock(dim, 4, 2, 1, norm=self.norm, activation=self.activ, pad_type=self.pad_type,
                        kernel_init=init, name=f"scale{s}_conv{i}")(h)
        dim *= 2
      outputs.append(layers.Conv2d(1, 1, kernel_init=init, name=f"scale{s}_out")(h))
      x = avg_pool_exclude_pad(x)
    return outputs


def calc_dis_loss(outs_fake: Sequence[Array], outs_real: Sequence[Array], gan_type: str) -> Array:
  """The reference `MsImageDis.calc_dis_loss`, summed over scales: lsgan mean(D(fake)^2) +
  mean((D(real) - 1)^2); nsgan BCE(sigmoid(D(fake)), 0) + BCE(sigmoid(D(real)), 1)."""
  loss = 0.0
  for fake, real in zip(outs_fake, outs_real):
    if gan_type == "lsgan":
      loss += jnp.mean(jnp.square(layers.upcast(fake))) + jnp.mean(jnp.square(layers.upcast(real) - 1))
    elif gan_type == "nsgan":
      loss += losses.bce_with_logits(fake, 0.0) + losses.bce_with_logits(real, 1.0)
    else:
      raise ValueError(f"Unknown gan_type {gan_type!r}; expected one of {GAN_TYPES}.")
  return loss


def calc_gen_loss(outs_fake: Sequence[Array], gan_type: str) -> Array:
  """The reference `MsImageDis.calc_gen_loss`, summed over scales: lsgan mean((D(fake) - 1)^2), nsgan
  BCE(sigmoid(D(fake)), 1)."""
  loss = 0.0
  for fake in outs_fake:
    if gan_type == "lsgan":
      loss += jnp.mean(jnp.square(layers.upcast(fake) - 1))
    elif gan_type == "nsgan":
      loss += losses.bce_with_logits(fake, 1.0)
    else:
      raise ValueError(f"Unknown gan_type {gan_type!r}; expected one of {GAN_TYPES}.")
  return loss


# ----------------------------------------------------------------------------------------------------
# Loading the reference's state dicts (constructor arguments: input_dim, params = the yaml dict)
# ----------------------------------------------------------------------------------------------------
_GEN_FIELDS = ("dim", "style_dim", "n_downsample", "n_res", "activ", "pad_type", "mlp_dim")
_VAE_FIELDS = ("dim", "n_downsample", "n_res", "activ", "pad_type")
_DIS_FIELDS = ("dim", "n_layer", "norm", "activ", "gan_type", "num_scales", "pad_type")


def _fields(params: dict, names: Sequence[str], arch: str) -> dict:
  missing = [n for n in names if n not in params]
  if missing:
    raise ValueError(f"{arch}: params is missing {missing} (the reference yaml's fields {list(names)}).")
  return {n: params[n] for n in names}


def _build_generator(input_dim=3, params=None):
  module = AdaINGen(input_dim=input_dim, **_fields(params or {}, _GEN_FIELDS, "munit_generator"))
  return module, (jnp.zeros((1, 64, 64, input_dim), jnp.float32),), {}


def _block(conv: convert.Converter, prefix: str, path: tuple[str, ...], ln: bool = False) -> None:
  conv.conv(f"{prefix}.conv", (*path, "conv"))
  if ln:
    conv.put(f"{prefix}.norm.gamma", ("params", *path, "norm", "gamma"), "vector")
    conv.put(f"{prefix}.norm.beta", ("params", *path, "norm", "beta"), "vector")


def _map_content_encoder(conv, prefix, path, n_downsample, n_res):
  for i in range(n_downsample + 1):
    _block(conv, f"{prefix}.model.{i}", (*path, f"conv{i}"))
  for j in range(n_res):
    for k in range(2):
      _block(conv, f"{prefix}.model.{n_downsample + 1}.model.{j}.model.{k}",
             (*path, f"res{j}", f"block{k}"))


def _map_decoder(conv, prefix, path, n_upsample, n_res, adain):
  for j in range(n_res):
    for k in range(2):
      block = f"{prefix}.model.0.model.{j}.model.{k}"
      _block(conv, block, (*path, f"res{j}", f"block{k}"))
      if adain:  # AdaptiveInstanceNorm2d's running buffers are dummies (the forward uses copies)
        conv.skip(f"{block}.norm.running_mean")
        conv.skip(f"{block}.norm.running_var")
  for i in range(n_upsample):
    _block(conv, f"{prefix}.model.{2 + 2 * i}", (*path, f"up{i}"), ln=True)
  _block(conv, f"{prefix}.model.{1 + 2 * n_upsample}", (*path, "out"))


def _map_generator(conv: convert.Converter, input_dim=3, params=None):
  p = params
  for i in range(STYLE_DOWNSAMPLE + 1):
    _block(conv, f"enc_style.model.{i}", ("enc_style", f"conv{i}"))
  conv.conv(f"enc_style.model.{STYLE_DOWNSAMPLE + 2}", ("enc_style", "out"))
  _map_content_encoder(conv, "enc_content", ("enc_content",), p["n_downsample"], p["n_res"])
  _map_decoder(conv, "dec", ("dec",), p["n_downsample"], p["n_res"], adain=True)
  for i in range(3):
    conv.linear(f"mlp.model.{i}.fc", ("mlp", f"fc{i}"))


def _build_vae(input_dim=3, params=None):
  module = VAEGen(input_dim=input_dim, **_fields(params or {}, _VAE_FIELDS, "unit_generator"))
  return module, (jnp.zeros((1, 64, 64, input_dim), jnp.float32),), {}


def _map_vae(conv: convert.Converter, input_dim=3, params=None):
  _map_content_encoder(conv, "enc", ("enc",), params["n_downsample"], params["n_res"])
  _map_decoder(conv, "dec", ("dec",), params["n_downsample"], params["n_res"], adain=False)


def _build_discriminator(input_dim=3, params=None):
  module = MsImageDis(input_dim=input_dim, **_fields(params or {}, _DIS_FIELDS, "munit_discriminator"))
  size = 2 ** (module.n_layer + module.num_scales)
  return module, (jnp.zeros((1, size, size, input_dim), jnp.float32),), {}


def _map_discriminator(conv: convert.Converter, input_dim=3, params=None):
  ln = params["norm"] == "ln"
  for s in range(params["num_scales"]):
    for i in range(params["n_layer"]):
      _block(conv, f"cnns.{s}.{i}", (f"scale{s}_conv{i}",), ln=ln)
    conv.conv(f"cnns.{s}.{params['n_layer']}", (f"scale{s}_out",))


convert.register_arch("munit_generator", _build_generator, _map_generator)
convert.register_arch("unit_generator", _build_vae, _map_vae)
convert.register_arch("munit_discriminator", _build_discriminator, _map_discriminator)
