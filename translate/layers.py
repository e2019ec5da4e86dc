"""Layers shared by every network, NHWC, with the semantics of the PyTorch reference code.

Conventions (the converter in `translate.convert` relies on them):
  * Convolution kernels are HWIO (`kernel`), biases `bias`. Transposed convolutions store the kernel in
    *correlation* form (spatially flipped, HWIO with I = input channels), so the forward pass is one
    dilated convolution that reproduces torch's `ConvTranspose2d(k, s, padding, output_padding)` exactly.
  * Normalisation affine parameters are `scale` and `bias`; running statistics live in the
    `batch_stats` collection as `mean` and `var`.
  * Spectral-norm power-iteration vectors live in their own collection, `spectral`, as `u` (out,) and
    `v` (in*kh*kw,) in torch's order, so a torch `weight_u`/`weight_v` pair is copied as is.
  * AdaLIN/ILN `rho` parameters are named `rho`; `clip_rho` clamps every one of them to [0, 1].
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Initializer = Callable[..., Array]
PaddingMode = Literal["zeros", "reflect", "replicate"]

TORCH_EPS = 1e-5  # eps of torch's BatchNorm/InstanceNorm, inside sqrt(var + eps)
SPECTRAL = "spectral"  # collection holding spectral-norm power-iteration vectors


# ----------------------------------------------------------------------------------------------------
# Weight initialisation (CycleGAN's `init_weights`: normal / xavier / kaiming / orthogonal)
# ----------------------------------------------------------------------------------------------------
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal", "default")


def upcast(x: Array) -> Array:
  """`x` in at least float32: norms and spectral norm compute in float32 for bf16/f32 inputs, and in
  float64 when the model runs in float64 (exactness tests)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def kernel_init(init_type: str = "normal", gain: float = 0.02) -> Initializer:
  """Initialiser for conv/dense kernels, as the CycleGAN/pix2pix `init_weights(net, init_type, gain)`.

  `normal`: N(0, gain); `xavier`: xavier_normal with `gain`; `kaiming`: kaiming_normal (a=0, fan_in);
  `orthogonal`: orthogonal with `gain`; `default`: torch's own default for Conv/Linear
  (kaiming_uniform with a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
  Fan-in/fan-out are computed from HWIO/IO shapes exactly as torch computes them from OIHW/OI;
  `ConvTranspose2d` draws its kernel transposed so that it gets torch's (in, out, kh, kw) fans too.
  """
  if init_type == "normal":
    return jax.nn.initializers.normal(stddev=gain)
  if init_type == "xavier":
    return jax.nn.initializers.variance_scaling(gain**2, "fan_avg", "normal")
  if init_type == "kaiming":
    return jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
  if init_type == "orthogonal":
    return jax.nn.initializers.orthogonal(scale=gain)
  if init_type == "default":
    return jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
  raise ValueError(f"Unknown init_type {init_type!r}; expected one of {INIT_TYPES}.")


def norm_scale_init(init_type: str = "normal", gain: float = 0.02) -> Initializer:
  """BatchNorm weight init of `init_weights`: N(1, gain) for every init_type (the reference applies
  normal_(1.0, gain) to BatchNorm2d weights whatever the conv init is); ones for torch's `default`."""
  if init_type == "default":
    return jax.nn.initializers.ones

  def init(key, shape, dtype=jnp.float32):
    return 1.0 + gain * jax.random.normal(key, shape, dtype)

  return init


zeros = jax.nn.initializers.zeros


# ----------------------------------------------------------------------------------------------------
# Padding and convolutions
# ----------------------------------------------------------------------------------------------------
def pad2d(x: Array, pad: int | tuple[int, int, int, int], mode: PaddingMode = "zeros") -> Array:
  """Pads H and W of an NHWC array. `pad` is p or (top, bottom, left, right).

  `reflect` equals torch's ReflectionPad2d (edge not repeated), `replicate` ReplicationPad2d.
  """
  if mode not in ("zeros", "reflect", "replicate"):  # checked first, so padding 0 does not hide it
    raise ValueError(f"Unknown padding mode {mode!r}; expected 'zeros', 'reflect' or 'replicate'.")
  if isinstance(pad, int):
    pad = (pad, pad, pad, pad)
  top, bottom, left, right = pad
  if not any(pad):
    return x
  widths = ((0, 0), (top, bottom), (left, right), (0, 0))
  if mode == "zeros":
    return jnp.pad(x, widths)
  if mode == "reflect":
    if max(top, bottom) >= x.shape[1] or max(left, right) >= x.shape[2]:
      raise ValueError(
          f"Reflection padding {pad} needs a larger input than {x.shape[1]}x{x.shape[2]} "
          "(the image is too small for this network).")
    return jnp.pad(x, widths, mode="reflect")
  return jnp.pad(x, widths, mode="edge")  # replicate



def _conv(x: Array, kernel: Array, stride: int = 1, padding=((0, 0), (0, 0)),
          lhs_dilation: int = 1) -> Array:
  crop = None
  if (jax.default_backend() == "cpu" and lhs_dilation == 1 and kernel.shape[0] > 1
      and all(int(v) == 0 for pair in padding for v in pair)):
    # XLA:CPU runs an unpadded ('VALID') convolution on a much slower path than the same convolution
    # with any zero padding: the 7x7 64 -> 3 output layer of CycleGAN's generator on a reflect-padded
    # 128 px input took 171 ms, with one zero row and column added below and right (then cut off
    # again) 8 ms; a 3x3 256 -> 256 residual conv at 32 px 32 -> 24 ms (benchmarks/conv_grads.py).
    # The values are identical: the extra output row and column are dropped.
    k = kernel.shape[0]
    crop = ((x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1)
    padding = ((0, 1), (0, 1))
  y = lax.conv_general_dilated(
      x, kernel.astype(x.dtype), window_strides=(stride, stride), padding=padding,
      lhs_dilation=(lhs_dilation, lhs_dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y if crop is None else y[:, :crop[0], :crop[1]]


# How `conv` computes its kernel gradient: "auto" (per-tap matmuls on CPU where the measured rule of
# `_taps_pay_off` says so, XLA's own gradient elsewhere), "taps" or "xla". Set it to measure one against
# the other (benchmarks/conv_grads.py).
CONV_KERNEL_GRAD = "auto"


def _channels_first(a: Array) -> Array:
  """(..., C) -> (C, prod(...)), materialised. A product over pixels of two NHWC arrays contracts the
  leading dimension of both; XLA:CPU runs that form on Eigen, about 1.5x slower than the row-major
  product it hands to YNNPACK, which needs one operand with the pixels contiguous. A transpose of its
  own costs little (0.3 ms for CycleGAN's 128 px x 128 channel map); the barrier keeps XLA from folding
  it back into the product."""
  return lax.optimization_barrier(a.reshape(-1, a.shape[-1]).T)


def _conv_kernel_grad_taps(x: Array, dy: Array, k: int, stride: int, padding) -> Array:
  """dL/dK of `_conv(x, K, stride, padding)` given dL/dy, as matrix products.

  Strided: per tap (i, j), the input pixels that tap sees, (C, N*Ho*Wo), times dy, (N*Ho*Wo, O).
  Stride 1, at most 4 output channels (an image-producing last layer, 64 -> 3): one product of the k*k
  shifted copies of dy, channels-first (k*k*O, N*Hp*Wp), with x, (N*Hp*Wp, C). Stride 1, other layers
  with fewer output than input channels: one product of x, (C, N*H*W), with the k*k shifted copies of
  dy, (N*H*W, k*k*O). Other stride-1 layers: one product of the k row blocks of the padded x (rows
  i .. i+Ho-1 for kernel row i), (k*C, N*Ho*Wp), with k shifted copies of dy, (N*Ho*Wp, k*O).
  """
  n, ho, wo, o = dy.shape
  c = x.shape[-1]
  accumulate = jnp.promote_types(x.dtype, jnp.float32)  # float32 for bf16/f32, float64 stays float64
  if stride == 1 and o <= 4 < c:
    # Flat indexing of the padded x, q = row * Wp + column: tap (i, j) pairs x[q + i*Wp + j] with
    # dy[q], dy written on the padded grid (zeros past its Ho x Wo). The k*k shifted copies of dy are
    # then contiguous slices of one flat row per channel, stacked channels-first, (k*k*O, N*Hp*Wp):
    # plain copies, where shifting the NHWC array interleaved O (3) channels per pixel. CycleGAN's
    # 7x7 64 -> 3 output layer at 256 px: 43 -> 36 ms, at 128 px 3.6 -> 2.3 ms; PatchGAN's 512 -> 1
    # 0.8 -> 0.2 ms. With more output channels the NHWC form below is as fast or faster (U-GAT-IT's
    # whole step 2.36 s against 2.67 s with this form for all O < C).
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    hp, wp = xp.shape[1:3]
    top = (k - 1) * wp + k - 1
    d = jnp.pad(dy, ((0, 0), (0, hp - ho), (0, wp - wo), (0, 0))).transpose(3, 0, 1, 2)
    d = jnp.pad(d.reshape(o, n, hp * wp), ((0, 0), (0, 0), (top, 0)))
    shifted = jnp.stack([lax.slice_in_dim(d, top - i * wp - j, top - i * wp - j + hp * wp, axis=2)
                         for i in range(k) for j in range(k)])  # (k*k, O, N, Hp*Wp)
    dk = lax.dot_general(shifted.reshape(k * k * o, -1), xp.reshape(-1, c), (((1,), (0,)), ((), ())),
                         preferred_element_type=accumulate)  # (k*k*O, C)
    return dk.reshape(k, k, o, c).transpose(0, 1, 3, 2)
  if stride == 1 and o < c:  # (U-GAT-IT's 3x3 256 -> 128 and 128 -> 64 after upsampling)
    (lo_h, hi_h), (lo_w, hi_w) = padding
    # dy_ext[q + k-1-i] = dy[q - i + lo]: pixel q of x meets dy pixel q - i + lo through tap i
    dy_ext = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), (k - 1 - lo_h, k - 1 - hi_h, 0),
                                                   (k - 1 - lo_w, k - 1 - hi_w, 0), (0, 0, 0)))
    h, w = x.shape[1:3]
    shifted = jnp.concatenate([dy_ext[:, k - 1 - i:k - 1 - i + h, k - 1 - j:k - 1 - j + w]
                               for i in range(k) for j in range(k)], axis=-1)
    dk = lax.dot_general(x.reshape(-1, c), shifted.reshape(-1, k * k * o), (((0,), (0,)), ((), ())),
                         preferred_element_type=accumulate)  # (C, k*k*O)
    return dk.reshape(c, k, k, o).transpose(1, 2, 0, 3)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  if stride == 1:
    # One product for the whole kernel: row block i (rows i .. i+Ho-1 of the padded x, all Wp columns)
    # sits in channels i*C .. (i+1)*C of one (N*Ho*Wp, k*C) array; dy is written k times into a Wp-wide
    # grid, shifted right by j = 0..k-1 (the Wp - Wo columns past each copy are zeros, so the wrapped x
    # columns they meet add nothing), as channels j*O .. (j+1)*O. Entry (i*C + c, j*O + o) of the
    # product is then dK[i, j, c, o]. Fewer, larger products and k instead of k*k slices of x:
    # CycleGAN's 3x3 256 -> 256 residual conv at 64 px took 26 ms per tap, 15 ms so; one product
    # instead of one per kernel row: 3.9 -> 3.5 ms at 32 px, the same at 64 px.
    wp = x.shape[2]
    zero = jnp.zeros((), dy.dtype)
    shifted = jnp.concatenate(
        [lax.pad(dy, zero, ((0, 0, 0), (0, 0, 0), (j, wp - wo - j, 0), (0, 0, 0))) for j in range(k)],
        axis=-1).reshape(-1, k * o)
    rows = jnp.concatenate([x[:, i:i + ho] for i in range(k)], axis=-1).reshape(-1, k * c)
    dk = lax.dot_general(rows, shifted, (((0,), (0,)), ((), ())),
                         preferred_element_type=accumulate)  # (k*C, k*O)
    return dk.reshape(k, c, k, o).transpose(0, 2, 1, 3)
  seen = [lax.slice(x, (0, i, j, 0), (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c),
                    (1, stride, stride, 1)).reshape(-1, c) for i in range(k) for j in range(k)]
  if k % stride:
    # dy channels-first (`_channels_first`) times each tap's pixels: CycleGAN's 3x3 s2 64 -> 128 at
    # 256 px 12.8 -> 11.1 ms, 128 -> 256 at 128 px 9.0 -> 7.5 ms; PatchGAN's 4x4 s2 layers were as
    # fast or slower so (5.1 / 5.2 ms), and keep the form below.
    dyt = _channels_first(dy)
    taps = [lax.dot(dyt, tap, preferred_element_type=accumulate) for tap in seen]  # each (O, C)
    return jnp.stack(taps).reshape(k, k, o, c).transpose(0, 1, 3, 2)
  dy = dy.reshape(-1, o)
  taps = [lax.dot_general(tap, dy, (((0,), (0,)), ((), ())), preferred_element_type=accumulate)
          for tap in seen]
  return jnp.stack(taps).reshape(k, k, c, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_fast_grad(x, kernel, stride, padding):
  return _conv(x, kernel, stride, padding)


def _cv_fwd(x, kernel, stride, padding):
  return _conv(x, kernel, stride, padding), (x, kernel)


def _conv_input_grad_taps(dy: Array, kernel: Array, x_shape, stride: int, padding) -> Array:
  """dL/dx of `_conv(x, K, stride, padding)` given dL/dy, as k*k matrix products: tap (i, j) sends
  dy, (N*Ho*Wo, O), times its kernel slice transposed, (O, C), to the input pixels it saw."""
  n, ho, wo, o = dy.shape
  k, c = kernel.shape[0], kernel.shape[2]
  (lo_h, hi_h), (lo_w, hi_w) = padding
  hp, wp = x_shape[1] + lo_h + hi_h, x_shape[2] + lo_w + hi_w
  flat = dy.reshape(-1, o)
  zero = jnp.zeros((), dy.dtype)
  dxp = None
  for i in range(k):
    for j in range(k):
      part = (flat @ kernel[i, j].T.astype(dy.dtype)).reshape(n, ho, wo, c)
      last_h, last_w = i + (ho - 1) * stride, j + (wo - 1) * stride
      part = lax.pad(part, zero, ((0, 0, 0), (i, hp - 1 - last_h, stride - 1),
                                  (j, wp - 1 - last_w, stride - 1), (0, 0, 0)))
      dxp = part if dxp is None else dxp + part
  return dxp[:, lo_h:lo_h + x_shape[1], lo_w:lo_w + x_shape[2]]


def _space_to_depth(x: Array, k: int, stride: int, padding) -> Array:
  """The zero-padded x of a stride-s, k x k convolution as (N, Ho+M-1, Wo+M-1, s*s*C), M = ceil(k/s):
  padded pixel (s*u + r, s*v + t) becomes pixel (u, v), channels (r, t, c). Rows and columns the
  convolution never reads are cut, missing ones are zeros."""
  (lo_h, hi_h), (lo_w, hi_w) = padding
  n, h, w, c = x.shape
  m = -(-k // stride)
  hs = (h + lo_h + hi_h - k) // stride + m
  ws = (w + lo_w + hi_w - k) // stride + m
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (lo_h, stride * hs - h - lo_h, 0),
                                           (lo_w, stride * ws - w - lo_w, 0), (0, 0, 0)))
  xs = xp.reshape(n, hs, stride, ws, stride, c).transpose(0, 1, 3, 2, 4, 5)
  return xs.reshape(n, hs, ws, stride * stride * c)


def _space_to_depth_kernel(kernel: Array, stride: int) -> Array:
  """(k, k, C, O) -> (M, M, s*s*C, O): tap (s*a + r, s*b + t) of the strided kernel is tap (a, b),
  channels (r, t, c), of the stride-1 kernel on `_space_to_depth`'s input (zero past k)."""
  k, _, c, o = kernel.shape
  m = -(-k // stride)
  kp = jnp.pad(kernel, ((0, m * stride - k), (0, m * stride - k), (0, 0), (0, 0)))
  kp = kp.reshape(m, stride, m, stride, c, o).transpose(0, 2, 1, 3, 4, 5)
  return kp.reshape(m, m, stride * stride * c, o)


# `conv`'s input gradient of a strided layer goes through the space-to-depth form (a stride-1
# convolution, whose input gradient XLA:CPU runs on its fast path; the strided form's is an
# input-dilated convolution) when the kernel size is a multiple of the stride (no extra work), or when
# the output has at least this many pixels (the zero taps of a 3x3 kernel cost less than the slow path).
S2D_MIN_OUTPUTS = 128 * 128


def _small_map(shape) -> bool:
  """At most 64 pixels (H*W of an NHWC shape): maps on which XLA:CPU's convolutions take slow paths.
  A conv's input gradient on such an output map: U-GAT-IT's 4x4 1024 -> 2048 discriminator conv on a
  6x6 map took 2-3 s. Transposed convolutions on such an input map (U-Net's innermost, 1x1 to 8x8):
  alone, XLA:CPU's form of the 2x2 -> 4x4, 1024 -> 512 layer took 35 ms, the per-tap one 9 ms (but 5
  against 10 ms at 4x4), and their input gradients 21-42 ms against 10-14 ms; inside pix2pix's whole
  step, taps on all of them measured best (0.374-0.387 s against 0.396-0.425 s with taps only on <= 4
  pixels for the forward pass)."""
  return shape[1] * shape[2] <= 64


def _cv_bwd(stride, padding, residuals, dy):
  x, kernel = residuals
  k = kernel.shape[0]
  if _small_map(dy.shape):
    # XLA:CPU turns the input gradient into a convolution with dy as its window, off the fast path
    dx = _conv_input_grad_taps(dy, kernel, x.shape, stride, padding)
  elif stride > 1 and (k % stride == 0 or dy.shape[1] * dy.shape[2] >= S2D_MIN_OUTPUTS):
    # CycleGAN's 3x3 s2 64 -> 128 conv at 256 px: dx 26 -> 11 ms; PatchGAN's 4x4 s2 64 -> 128 at
    # 128 px 3.6 -> 2.5 ms; but a 3x3 s2 64 -> 128 at 128 px 1.7 -> 3.0 ms (benchmarks/conv_grads.py).
    sub = _space_to_depth_kernel(kernel, stride)
    _, vjp_x = jax.vjp(lambda x_: _conv(_space_to_depth(x_, k, stride, padding), sub), x)
    dx = vjp_x(dy)[0]
  else:
    _, vjp_x = jax.vjp(lambda x_: _conv(x_, kernel, stride, padding), x)
    dx = vjp_x(dy)[0]
  dk = _conv_kernel_grad_taps(x, dy, k, stride, padding)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_conv_fast_grad.defvjp(_cv_fwd, _cv_bwd)


def _taps_pay_off(x_shape, kernel_shape) -> bool:
  """Whether the matmul kernel gradient beats XLA:CPU's own: everywhere but on a handful of input
  channels (an image-reading first layer), by benchmarks/conv_grads.py at 256 px, 2 cores (dK ms, XLA's
  / matmuls): 3x3 256 -> 256 at 64 px 124 / 49, 7x7 64 -> 3 at 256 px 754 / 81, 4x4 512 -> 1 23 / 1.1,
  3x3 s2 64 -> 128 65 / 40; but 7x7 3 -> 64 58 / 68 and 4x4 s2 3 -> 64 4.6 / 6.6."""
  return kernel_shape[2] > 8


# Winograd F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016):
# a 3x3 stride-1 convolution over 2x2 output tiles as 16 matrix products of (tiles, C) x (C, O), 2.25x
# fewer multiplications than the direct form, with cheap transforms around them. `conv` uses it on CPU
# for 3x3 stride-1 float32 layers ("auto": with at least `WINOGRAD_MIN_CHANNELS` input and output
# channels), "on" everywhere it applies, "off" never. The 1-D transforms, along one spatial axis:
#   input   d (4 values per tile, tiles 2 apart) -> (d0 - d2, d1 + d2, d2 - d1, d1 - d3)   B^T d
#   kernel  g (3 taps)                             -> (g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2)  G g
#   output  m (4 products)                         -> (m0 + m1 + m2, m1 - m2 - m3)          A^T m
# Values equal the direct convolution up to float rounding (about 1e-6 relative in float32).
WINOGRAD = "auto"
WINOGRAD_MIN_CHANNELS = 128


def _winograd_input(x: Array, axis: int) -> Array:
  """B^T along `axis` (length 2t + 2) -> (4, ..., t at `axis`, ...): tile i reads rows 2i .. 2i+3."""
  t = (x.shape[axis] - 2) // 2
  even = lax.slice_in_dim(x, 0, 2 * t + 2, 2, axis=axis)
  odd = lax.slice_in_dim(x, 1, 2 * t + 2, 2, axis=axis)
  d0, d2 = lax.slice_in_dim(even, 0, t, axis=axis), lax.slice_in_dim(even, 1, t + 1, axis=axis)
  d1, d3 = lax.slice_in_dim(odd, 0, t, axis=axis), lax.slice_in_dim(odd, 1, t + 1, axis=axis)
  return jnp.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3])


def _winograd_input_adjoint(v: Array, axis: int) -> Array:
  """The transpose of `_winograd_input`: (4, ..., t at `axis`, ...) -> (..., 2t + 2, ...), the
  overlapping tiles summed."""
  e0, o0 = v[0], v[1] - v[2] + v[3]  # rows 2i and 2i + 1 of tile i
  e1, o1 = v[1] + v[2] - v[0], -v[3]  # rows 2i + 2 and 2i + 3
  zero = jnp.zeros((), v.dtype)
  widths = [(0, 0, 0)] * e0.ndim

  def shifted(a, lo):
    widths[axis] = (lo, 1 - lo, 0)
    return lax.pad(a, zero, widths)

  even, odd = shifted(e0, 0) + shifted(e1, 1), shifted(o0, 0) + shifted(o1, 1)
  shape = list(even.shape)
  shape[axis] *= 2
  return jnp.stack([even, odd], axis=axis + 1).reshape(shape)


def _winograd_output(m: Array, axis: int) -> Array:
  """A^T along the leading 4 -> two outputs per tile, interleaved along `axis` (t -> 2t)."""
  y = jnp.stack([m[0] + m[1] + m[2], m[1] - m[2] - m[3]], axis=axis + 1)
  shape = list(m.shape[1:])
  shape[axis] *= 2
  return y.reshape(shape)


def _winograd_output_adjoint(dy: Array, axis: int) -> Array:
  """The transpose of `_winograd_output`: (..., 2t at `axis`, ...) -> (4, ..., t, ...)."""
  y0 = lax.slice_in_dim(dy, 0, dy.shape[axis], 2, axis=axis)
  y1 = lax.slice_in_dim(dy, 1, dy.shape[axis], 2, axis=axis)
  return jnp.stack([y0, y0 + y1, y0 - y1, -y1])


def _winograd_kernel(kernel: Array) -> Array:
  """(3, 3, C, O) -> (16, C, O), entry 4 * b + a = (G K G^T)[a, b] (a: rows, b: columns)."""
  def g(k0, k1, k2):
    return [k0, (k0 + k1 + k2) * 0.5, (k0 - k1 + k2) * 0.5, k2]
  rows = g(kernel[0], kernel[1], kernel[2])  # each (3, C, O), along the kernel's columns
  table = [g(r[0], r[1], r[2]) for r in rows]  # table[a][b]
  return jnp.stack([table[a][b] for b in range(4) for a in range(4)])


def _winograd_kernel_adjoint(du: Array) -> Array:
  """The transpose of `_winograd_kernel`: (16, C, O) -> (3, 3, C, O)."""
  def g_t(t0, t1, t2, t3):
    half = (t1 + t2) * 0.5
    return [t0 + half, (t1 - t2) * 0.5, t3 + half]
  per_a = [g_t(*(du[4 * b + a] for b in range(4))) for a in range(4)]  # per_a[a][j]
  per_j = [g_t(*(per_a[a][j] for a in range(4))) for j in range(3)]  # per_j[j][i]
  return jnp.stack([jnp.stack([per_j[j][i] for j in range(3)]) for i in range(3)])


def _winograd_tiles(x: Array) -> Array:
  """Padded NHWC x (N, 2t + 2, 2s + 2, C) -> (16, N*t*s, C), entry 4 * b + a as in the kernel."""
  v = _winograd_input(_winograd_input(x, 1), 3)  # (4 b, 4 a, N, t, s, C)
  return v.reshape(16, -1, x.shape[-1])


@jax.custom_vjp
def _conv3x3_winograd(x: Array, kernel: Array) -> Array:
  """The unpadded ('VALID') 3x3 stride-1 convolution of x, (N, 2t + 2, 2s + 2, C), as Winograd
  F(2x2, 3x3): (N, 2t, 2s, O)."""
  n, hp, wp, _ = x.shape
  m = lax.dot_general(_winograd_tiles(x), _winograd_kernel(kernel), (((2,), (1,)), ((0,), (0,))))
  m = m.reshape(4, 4, n, (hp - 2) // 2, (wp - 2) // 2, kernel.shape[-1])  # (b, a, N, t, s, O)
  return _winograd_output(_winograd_output(m, 3), 1)  # columns (b), then rows (a)


def _cw_fwd(x, kernel):
  return _conv3x3_winograd(x, kernel), (x, kernel)


def _cw_bwd(residuals, dy):
  """dx = B dM U^T B^T and dK = G^T (V^T dM) G, dM = A dy A^T: the same 16 products, transposed."""
  x, kernel = residuals
  n, hp, wp, c = x.shape
  dm = _winograd_output_adjoint(_winograd_output_adjoint(dy, 1), 3)  # (4 b, 4 a, N, t, s, O)
  dm = dm.reshape(16, -1, dy.shape[-1])
  u_t = jnp.swapaxes(_winograd_kernel(kernel), 1, 2)  # (16, O, C)
  dv = lax.dot_general(dm, u_t, (((2,), (1,)), ((0,), (0,))))  # (16, T, C)
  dv = dv.reshape(4, 4, n, (hp - 2) // 2, (wp - 2) // 2, c)
  dx = _winograd_input_adjoint(_winograd_input_adjoint(dv, 3), 1)
  du = lax.dot_general(_winograd_tiles(x), dm, (((1,), (1,)), ((0,), (0,))))  # (16, C, O)
  return dx, _winograd_kernel_adjoint(du).astype(kernel.dtype)


_conv3x3_winograd.defvjp(_cw_fwd, _cw_bwd)


def _winograd_applies(x: Array, kernel: Array, stride: int) -> bool:
  mode = WINOGRAD
  if mode not in ("auto", "on", "off"):
    raise ValueError(f"WINOGRAD must be 'auto', 'on' or 'off', got {mode!r}.")
  if mode == "off" or stride != 1 or kernel.shape[:2] != (3, 3) or x.dtype != jnp.float32:
    return False
  if mode == "on":
    return True
  return (jax.default_backend() == "cpu"
          and min(kernel.shape[2], kernel.shape[3]) >= WINOGRAD_MIN_CHANNELS)


def _conv3x3_winograd_padded(x: Array, kernel: Array, padding) -> Array:
  """`_conv3x3_winograd` with zero `padding` and any output size: an odd output height or width gets
  one more zero row or column in, and its extra output is cut off."""
  (lo_h, hi_h), (lo_w, hi_w) = padding
  ho, wo = x.shape[1] + lo_h + hi_h - 2, x.shape[2] + lo_w + hi_w - 2
  x = jnp.pad(x, ((0, 0), (lo_h, hi_h + ho % 2), (lo_w, hi_w + wo % 2), (0, 0)))
  y = _conv3x3_winograd(x, kernel.astype(x.dtype))
  return y[:, :ho, :wo]


def conv(x: Array, kernel: Array, stride: int = 1, padding=((0, 0), (0, 0))) -> Array:
  """A convolution (cross-correlation, torch's `conv2d`) of NHWC `x` with an HWIO `kernel` (square),
  zero `padding` ((top, bottom), (left, right)).

  On XLA:CPU, 3x3 stride-1 float32 layers with at least `WINOGRAD_MIN_CHANNELS` channels in and out
  (residual blocks) run as Winograd F(2x2, 3x3), forward and backward (`WINOGRAD`): CycleGAN's
  256 -> 256 residual conv at 64 px, forward / dx / dK 13.4 / 15.0 / 21.3 -> 10.2 / 9.7 / 12.3 ms.
  Elsewhere the forward pass is XLA's. On XLA:CPU the kernel gradient of most layers is off the fast
  convolution path (the 7x7 64 -> 3 output layer of CycleGAN's generator most of all), so there it is
  taken as matrix products instead (`_conv_kernel_grad_taps`; see `CONV_KERNEL_GRAD`), and so is the
  input gradient on maps of at most 64 outputs; a strided layer's input gradient goes through the
  space-to-depth form (`S2D_MIN_OUTPUTS`). benchmarks/conv_grads.py times each form. Values are the
  same up to float rounding.
  """
  if _winograd_applies(x, kernel, stride):
    return _conv3x3_winograd_padded(x, kernel, padding)
  mode = CONV_KERNEL_GRAD
  if mode == "auto":
    mode = "taps" if jax.default_backend() == "cpu" and _taps_pay_off(x.shape, kernel.shape) else "xla"
  if mode == "xla":
    return _conv(x, kernel, stride, padding)
  if mode != "taps":
    raise ValueError(f"CONV_KERNEL_GRAD must be 'auto', 'taps' or 'xla', got {mode!r}.")
  padding = tuple(tuple(int(v) for v in pair) for pair in padding)
  return _conv_fast_grad(x, kernel.astype(x.dtype), int(stride), padding)


# How `conv_transpose` computes its gradients: "auto" (per-tap matmuls on CPU, the dilated convolution's
# own gradients elsewhere), "taps" or "dilated". Set it to measure one against the other.
CONV_TRANSPOSE_GRAD = "auto"


def _conv_transpose_dilated(x: Array, kernel: Array, stride: int, padding: int,
                            output_padding: int) -> Array:
  k = kernel.shape[0]
  lo, hi = k - 1 - padding, k - 1 - padding + output_padding
  return _conv(x, kernel, 1, ((lo, hi), (lo, hi)), lhs_dilation=stride)


def _conv_transpose_taps(x: Array, kernel: Array, stride: int, padding: int, output_padding: int) -> Array:
  """The same transposed convolution as k*k matrix products: input pixel q, through tap t, adds
  x[q] @ K[t] to output pixel lo + s*q - t (lo = k-1-padding). For tiny input maps only (U-Net's
  innermost layers), where XLA:CPU's convolution takes a slow path."""
  n, h, w, _ = x.shape
  k, s = kernel.shape[0], stride
  lo = k - 1 - padding
  ho, wo = (h - 1) * s - 2 * padding + k + output_padding, (w - 1) * s - 2 * padding + k + output_padding
  zero = jnp.zeros((), x.dtype)
  y = None
  for i in range(k):
    for j in range(k):
      part = x @ kernel[i, j].astype(x.dtype)  # (n, h, w, O)
      part = lax.pad(part, zero, ((0, 0, 0), (lo - i, ho - 1 - (lo - i + s * (h - 1)), s - 1),
                                  (lo - j, wo - 1 - (lo - j + s * (w - 1)), s - 1), (0, 0, 0)))
      y = part if y is None else y + part
  return y


def _dy_per_tap(dy: Array, k: int, stride: int, padding: int, x_shape) -> list[Array]:
  """For each tap t of a transposed convolution (row-major), the pixels of dy it wrote from the input
  pixels q: dy[lo + s*q - t], (N, H, W, O), zeros past dy (lo = k-1-padding)."""
  n, h, w, _ = x_shape
  lo = k - 1 - padding
  dyp = jnp.pad(dy, ((0, 0), (k, k), (k, k), (0, 0)))  # every index lo + s*q - t in range
  return [lax.slice(dyp, (0, lo - i + k, lo - j + k, 0),
                    (n, lo - i + k + stride * (h - 1) + 1, lo - j + k + stride * (w - 1) + 1, dy.shape[-1]),
                    (1, stride, stride, 1))
          for i in range(k) for j in range(k)]


def _conv_transpose_input_grad_taps(dy: Array, kernel: Array, x_shape, stride: int, padding: int) -> Array:
  """dL/dx of the transposed convolution given dL/dy: dx[q] = sum over taps t of dy[lo + s*q - t] @ K[t]^T."""
  k = kernel.shape[0]
  parts = [lax.dot_general(wrote, kernel[t // k, t % k].astype(dy.dtype), (((3,), (1,)), ((), ())))
           for t, wrote in enumerate(_dy_per_tap(dy, k, stride, padding, x_shape))]
  return functools.reduce(jnp.add, parts)


def _conv_transpose_kernel_grad_taps(x: Array, dy: Array, k: int, stride: int, padding: int) -> Array:
  """dL/dK of the transposed convolution given dL/dy, per tap t: x channels-first, (C, N*H*W), times the
  pixels of dy that tap wrote, dy[lo + s*q - t], (N*H*W, O): a strided slice of dy per tap, no patch
  matrix. With x channels-first (`_channels_first`), per layer: CycleGAN's 128 -> 64 at 128 px
  18.1 -> 11.4 ms, 256 -> 128 at 64 px 10.6 -> 7.5 ms; U-Net's outermost 128 -> 3 15.5 -> 3.3 ms."""
  o = dy.shape[-1]
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  xt = _channels_first(x)
  taps = [lax.dot(xt, wrote.reshape(-1, o), preferred_element_type=accumulate)
          for wrote in _dy_per_tap(dy, k, stride, padding, x.shape)]
  return jnp.stack(taps).reshape(k, k, x.shape[-1], o)


def _ct_forward(x, kernel, stride, padding, output_padding):
  if _small_map(x.shape):
    return _conv_transpose_taps(x, kernel, stride, padding, output_padding)
  return _conv_transpose_dilated(x, kernel, stride, padding, output_padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose_fast_grad(x, kernel, stride, padding, output_padding):
  return _ct_forward(x, kernel, stride, padding, output_padding)


def _ct_fwd(x, kernel, stride, padding, output_padding):
  return _ct_forward(x, kernel, stride, padding, output_padding), (x, kernel)


def _ct_bwd(stride, padding, output_padding, residuals, dy):
  x, kernel = residuals
  if _small_map(x.shape):
    dx = _conv_transpose_input_grad_taps(dy, kernel, x.shape, stride, padding)
  else:
    _, vjp_x = jax.vjp(lambda x_: _conv_transpose_dilated(x_, kernel, stride, padding, output_padding), x)
    dx = vjp_x(dy)[0]
  # Per tap, x channels-first. The sub-pixel form (one product of x's M x M patches with a (M*s)^2-tap
  # kernel, then depth-to-space) was slower on every layer measured: U-Net's 4x4 256 -> 64 at 64 px
  # 15.1 against 7.4 ms, 512 -> 128 at 32 px 9.6 / 5.9, 1024 -> 256 at 16 px 7.8 / 6.7, 1024 -> 512
  # at 8 px 7.0 / 6.5; for CycleGAN's 3x3 layers it computes 16 taps where 9 are needed.
  dk = _conv_transpose_kernel_grad_taps(x, dy, kernel.shape[0], stride, padding)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_conv_transpose_fast_grad.defvjp(_ct_fwd, _ct_bwd)


def conv_transpose(x: Array, kernel: Array, stride: int, padding: int = 0,
                   output_padding: int = 0) -> Array:
  """torch's `conv_transpose2d` for NHWC `x` and a correlation-form HWIO `kernel` (square).

  The forward pass and the input gradient are the input-dilated convolution. Its kernel gradient, on
  XLA:CPU, is a window-dilated convolution off the fast path (20 s instead of 0.2 s for a 128 -> 256 px,
  128 -> 64 channel layer of pix2pix's U-Net), so there the kernel gradient is taken as per-tap matrix
  products instead (`_conv_transpose_kernel_grad_taps`); see `CONV_TRANSPOSE_GRAD` and
  benchmarks/conv_grads.py. On inputs of at most 64 pixels the forward pass and the input gradient are
  per-tap matmuls there too (`_small_map`). Values are the same up to float rounding.
  """
  mode = CONV_TRANSPOSE_GRAD
  if mode == "auto":
    mode = "taps" if jax.default_backend() == "cpu" else "dilated"
  if mode == "dilated" or stride == 1:
    return _conv_transpose_dilated(x, kernel, stride, padding, output_padding)
  if mode != "taps":
    raise ValueError(f"CONV_TRANSPOSE_GRAD must be 'auto', 'taps' or 'dilated', got {mode!r}.")
  return _conv_transpose_fast_grad(x, kernel.astype(x.dtype), stride, padding, output_padding)


class SpectralNorm(nn.Module):
  """Spectral normalisation of a weight, as `torch.nn.utils.spectral_norm` (the hook API).

  Call it with the raw weight; it returns `weight / sigma` with `sigma = u . (W v)`, where W is the
  weight as torch's `(out, -1)` matrix. With `update_stats=True` (training) it first runs
  `n_power_iterations` steps of power iteration and stores the new `u`, `v` in the `spectral`
  collection (when that collection is mutable); with `update_stats=False` (inference) it uses the stored
  vectors exactly as they are, like torch in eval mode. The vectors never receive gradients.

  `layout` says how to read the weight as torch's matrix: 'hwio' for our conv kernels,
  'io' for our dense kernels.
  """
  n_power_iterations: int = 1
  eps: float = 1e-12
  layout: Literal["hwio", "io"] = "hwio"

  @nn.compact
  def __call__(self, weight: Array, update_stats: bool = False) -> Array:
    if self.layout == "hwio":  # (kh, kw, in, out) -> torch (out, in*kh*kw) with (in, kh, kw) order
      matrix = jnp.transpose(weight, (3, 2, 0, 1)).reshape(weight.shape[-1], -1)
    elif self.layout == "io":
      matrix = weight.T
    else:
      raise ValueError(f"Unknown spectral-norm layout {self.layout!r}.")
    n_out, n_in = matrix.shape

    def normalize(vec):
      return vec / jnp.maximum(jnp.linalg.norm(vec), self.eps)

    u_var = self.variable(SPECTRAL, "u", lambda: normalize(
        jax.random.normal(self.make_rng("params"), (n_out,), jnp.float32)))
    v_var = self.variable(SPECTRAL, "v", lambda: normalize(
        jax.random.normal(self.make_rng("params"), (n_in,), jnp.float32)))
    u, v = u_var.value, v_var.value
    if update_stats and not self.is_initializing():
      w = upcast(lax.stop_gradient(matrix))
      for _ in range(self.n_power_iterations):
        v = normalize(w.T @ u)
        u = normalize(w @ v)
      if self.is_mutable_collection(SPECTRAL):
        u_var.value, v_var.value = u, v
    u, v = lax.stop_gradient(u), lax.stop_gradient(v)
    sigma = jnp.dot(u, upcast(matrix) @ v)
    return weight / sigma.astype(weight.dtype)


class Conv2d(nn.Module):
  """torch.nn.Conv2d (+ the padding layer in front of it), NHWC.

  `padding_mode='zeros'` pads inside the convolution; 'reflect'/'replicate' pad explicitly first, which
  is what the reference code's `ReflectionPad2d` + `Conv2d(padding=0)` pairs do.
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  padding_mode: PaddingMode = "zeros"
  use_bias: bool = True
  spectral_norm: bool = False
  kernel_init: Initializer = kernel_init()
  bias_init: Initializer = zeros

  @nn.compact
  def __call__(self, x: Array, update_stats: bool = False) -> Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    if self.spectral_norm:
      kernel = SpectralNorm(layout="hwio", name="sn")(kernel, update_stats)
    if self.padding_mode == "zeros":
      pads = ((self.padding, self.padding),) * 2
    else:
      x = pad2d(x, self.padding, self.padding_mode)
      pads = ((0, 0), (0, 0))
    y = conv(x, kernel, self.stride, pads)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
    return y


class ConvTranspose2d(nn.Module):
  """torch.nn.ConvTranspose2d(k, stride, padding, output_padding), NHWC, exact geometry.

  Output size: (H - 1) * stride - 2 * padding + kernel_size + output_padding. Computed as a convolution
  of the input dilated by `stride`, padded by (k-1-p, k-1-p+output_padding), with the kernel stored in
  correlation form (HWIO, spatially flipped relative to torch's (in, out, kh, kw) weight).
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  output_padding: int = 0
  use_bias: bool = True
  kernel_init: Initializer = kernel_init()
  bias_init: Initializer = zeros

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, p, op = self.kernel_size, self.padding, self.output_padding
    if op >= self.stride:
      raise ValueError(f"output_padding ({op}) must be smaller than stride ({self.stride}).")
    kernel = self.param("kernel", self._torch_fan_kernel_init, (k, k, x.shape[-1], self.features))
    y = conv_transpose(x, kernel, self.stride, p, op)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
    return y

  def _torch_fan_kernel_init(self, key, shape, dtype=jnp.float32):
    # torch's weight is (in, out, kh, kw), so its fan_in is out*kh*kw and orthogonal_ makes the `in`
    # rows orthonormal; drawing in (kh, kw, out, in) and swapping gives the kernel initialisers the
    # same fans as torch (the spatial flip of the correlation form does not change the distribution).
    kh, kw, n_in, n_out = shape
    return jnp.swapaxes(self.kernel_init(key, (kh, kw, n_out, n_in), dtype), 2, 3)


class Dense(nn.Module):
  """torch.nn.Linear, optionally spectrally normalised. Kernel is (in, out)."""
  features: int
  use_bias: bool = True
  spectral_norm: bool = False
  kernel_init: Initializer = kernel_init()
  bias_init: Initializer = zeros

  @nn.compact
  def __call__(self, x: Array, update_stats: bool = False) -> Array:
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
    if self.spectral_norm:
      kernel = SpectralNorm(layout="io", name="sn")(kernel, update_stats)
    y = x @ kernel.astype(x.dtype)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,)).astype(y.dtype)
    return y


def upsample_nearest(x: Array, factor: int = 2) -> Array:
  """nn.Upsample(scale_factor=factor, mode='nearest') for NHWC."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def upsample_bilinear(x: Array, factor: int = 2) -> Array:
  """Bilinear upsampling with half-pixel centres (torch `align_corners=False`)."""
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, h * factor, w * factor, c), method="bilinear", antialias=False)


class ResizeConv2d(nn.Module):
  """Upsample then convolve: the checkerboard-free alternative to a transposed convolution."""
  features: int
  kernel_size: int = 3
  factor: int = 2
  mode: Literal["nearest", "bilinear"] = "nearest"
  padding_mode: PaddingMode = "reflect"
  use_bias: bool = True
  kernel_init: Initializer = kernel_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    up = upsample_nearest if self.mode == "nearest" else upsample_bilinear
    x = up(x, self.factor)
    return Conv2d(self.features, self.kernel_size, 1, self.kernel_size // 2, self.padding_mode,
                  self.use_bias, kernel_init=self.kernel_init, name="conv")(x)


# ----------------------------------------------------------------------------------------------------
# Normalisations (torch semantics: eps inside the sqrt, biased variance unless said otherwise)
# ----------------------------------------------------------------------------------------------------
def _moments(x: Array, axes: Sequence[int], unbiased: bool = False) -> tuple[Array, Array]:
  x32 = upcast(x)
  mean = jnp.mean(x32, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=axes, keepdims=True)  # two-pass: no cancellation
  if unbiased:
    n = math.prod(x.shape[a] for a in axes)
    var = var * (n / max(n - 1, 1))
  return mean, var


def _normalize(x: Array, mean: Array, var: Array, eps: float) -> Array:
  return ((upcast(x) - mean) * lax.rsqrt(var + eps)).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _standardize(x: Array, axes: tuple[int, ...], eps: float, unbiased: bool = False):
  """(x - mean) / sqrt(var + eps) over `axes`, with the mean and variance it used (float32 or wider,
  kept dims; `unbiased`: var times n / (n - 1)). The same values as `_normalize(x, *_moments(x, ...))`,
  with a hand-written gradient: XLA differentiates that composition into about eight passes over x (three
  reductions, five elementwise); this backward pass takes two reductions and one elementwise pass. An
  instance norm + ReLU + reflection pad, forward and backward, at 64 px x 256 channels: 3.7 -> 1.8 ms;
  at 256 px x 64 channels: 15.6 -> 10.4 ms (XLA:CPU, 2 cores)."""
  y, mean, var, _ = _standardize_parts(x, axes, eps, unbiased)
  return y, mean, var


def _standardize_parts(x, axes, eps, unbiased):
  mean, var = _moments(x, axes, unbiased)
  return _normalize(x, mean, var, eps), mean, var, lax.rsqrt(var + eps)  # (XLA computes rsqrt once)


def _standardize_fwd(x, axes, eps, unbiased):
  y, mean, var, inv = _standardize_parts(x, axes, eps, unbiased)
  return (y, mean, var), (x, mean, inv)


def _standardize_bwd(axes, eps, unbiased, residuals, cotangents):
  # With xhat = (x - mean) * inv and s = n / (n - 1) if unbiased else 1:
  #   dx = inv * (g - mean(g) - s * xhat * mean(g * xhat)) + g_mean / n + g_var * s * 2 (x - mean) / n.
  x, mean, inv = residuals
  g, g_mean, g_var = cotangents
  n = math.prod(x.shape[a] for a in axes)
  s = n / max(n - 1, 1) if unbiased else 1.0
  centred = upcast(x) - mean
  xhat = centred * inv
  g = upcast(g)
  mean_g = jnp.mean(g, axis=axes, keepdims=True)
  mean_gx = jnp.mean(g * xhat, axis=axes, keepdims=True)
  dx = inv * (g - mean_g - s * xhat * mean_gx) + g_mean / n + centred * ((2.0 * s / n) * g_var)
  return (dx.astype(x.dtype),)


_standardize.defvjp(_standardize_fwd, _standardize_bwd)


def _update_running_stats(module: nn.Module, ra_mean, ra_var, mean: Array, var: Array, n: int) -> None:
  """torch's running-statistics update: momentum convention `(1 - m) * old + m * new`, with the
  unbiased variance of the `n` values each statistic was computed over. Statistics move only where the
  caller lets them (mutable=['batch_stats']) and never at init."""
  if module.is_initializing() or not module.is_mutable_collection("batch_stats"):
    return
  m = module.momentum
  ra_mean.value = (1 - m) * ra_mean.value + m * mean.reshape(ra_mean.value.shape)
  unbiased = var.reshape(ra_var.value.shape) * (n / max(n - 1, 1))
  ra_var.value = (1 - m) * ra_var.value + m * unbiased


def _affine(module: nn.Module, y: Array, c: int) -> Array:
  """The optional learnable per-channel scale and bias of BatchNorm/InstanceNorm."""
  if not module.affine:
    return y
  y = y * module.param("scale", module.scale_init, (c,)).astype(y.dtype)
  return y + module.param("bias", module.bias_init, (c,)).astype(y.dtype)


class BatchNorm(nn.Module):
  """torch.nn.BatchNorm2d (affine, tracked running statistics), NHWC or (N, C).

  Training normalises with the batch statistics (over the *global* batch when the batch is sharded over
  devices, i.e. synchronised BN) and updates the running mean and the *unbiased* running variance with
  torch's momentum convention (`new = (1 - momentum) * old + momentum * batch`). Inference uses the
  running statistics.
  """
  momentum: float = 0.1
  eps: float = TORCH_EPS
  affine: bool = True
  scale_init: Initializer = jax.nn.initializers.ones
  bias_init: Initializer = zeros

  @nn.compact
  def __call__(self, x: Array, use_running_average: bool = False) -> Array:
    c = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      y, mean, var = _standardize(x, axes, self.eps)
      _update_running_stats(self, ra_mean, ra_var, mean.reshape(c), var.reshape(c), n=x.size // c)
      return _affine(self, y, c)
    return _affine(self, _normalize(x, mean, var, self.eps), c)


class InstanceNorm(nn.Module):
  """torch.nn.InstanceNorm2d, NHWC: per-sample, per-channel statistics over H and W.

  `affine`: learnable per-channel scale and bias (torch default False).
  `track_running_stats`: keep running mean/var in `batch_stats` (torch default False). As in torch,
  inference (`use_running_average=True`) then normalises with the running statistics, and training
  updates them with the batch mean of the per-instance mean and unbiased variance.
  """
  affine: bool = False
  track_running_stats: bool = False
  momentum: float = 0.1
  eps: float = TORCH_EPS
  scale_init: Initializer = jax.nn.initializers.ones
  bias_init: Initializer = zeros

  @nn.compact
  def __call__(self, x: Array, use_running_average: bool = False) -> Array:
    c = x.shape[-1]
    if self.track_running_stats:
      ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
      ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if self.track_running_stats and use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      y, mean, var = _standardize(x, (1, 2), self.eps)
      if self.track_running_stats:  # torch tracks the batch mean of the per-instance statistics
        _update_running_stats(self, ra_mean, ra_var, jnp.mean(mean, axis=(0, 1, 2)),
                              jnp.mean(var, axis=(0, 1, 2)), n=x.shape[1] * x.shape[2])
      return _affine(self, y, c)
    return _affine(self, _normalize(x, mean, var, self.eps), c)


class LayerNorm(nn.Module):
  """Layer norm of an NHWC feature map over (H, W, C) per sample, with a per-channel affine.

  This is the `ln` half of ILN (pass `unbiased=True` for U-GAT-IT's `torch.var` convention) and the
  layout of MUNIT/UNIT's image LayerNorm, but not its exact formula: MUNIT divides by
  (unbiased std + eps) and draws gamma from U(0, 1); this layer uses torch's sqrt(var + eps) and
  gamma = 1. For a plain (N, C) input it normalises over C.
  """
  affine: bool = True
  eps: float = TORCH_EPS
  unbiased: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    y, _, _ = _standardize(x, tuple(range(1, x.ndim)), self.eps, self.unbiased)
    if self.affine:
      y = y * self.param("scale", jax.nn.initializers.ones, (c,)).astype(y.dtype)
      y = y + self.param("bias", zeros, (c,)).astype(y.dtype)
    return y


def _instance_layer_mix(x: Array, rho: Array, eps: float) -> Array:
  """rho * IN(x) + (1 - rho) * LN(x), with U-GAT-IT's unbiased variances."""
  in_mean, in_var = _moments(x, (1, 2), unbiased=True)
  ln_mean, ln_var = _moments(x, (1, 2, 3), unbiased=True)
  x32 = upcast(x)
  out_in = (x32 - in_mean) * lax.rsqrt(in_var + eps)
  out_ln = (x32 - ln_mean) * lax.rsqrt(ln_var + eps)
  rho = upcast(rho)
  return rho * out_in + (1.0 - rho) * out_ln


class ILN(nn.Module):
  """Instance-Layer Norm of U-GAT-IT: learnable `rho` (init 0), `scale` (gamma, 1), `bias` (beta, 0)."""
  eps: float = TORCH_EPS
  rho_init: float = 0.0

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    rho = self.param("rho", jax.nn.initializers.constant(self.rho_init), (c,))
    gamma = self.param("scale", jax.nn.initializers.ones, (c,))
    beta = self.param("bias", zeros, (c,))
    y = _instance_layer_mix(x, rho, self.eps) * gamma + beta
    return y.astype(x.dtype)


class AdaLIN(nn.Module):
  """Adaptive Layer-Instance Norm of U-GAT-IT.

  `rho` is learnable, per channel, initialised to 0.9 as in the authors' code (the paper says 1 for the
  residual blocks); it is not clamped in the forward pass (as in the reference) but `clip_rho` keeps it
  in [0, 1] after every optimiser update. `gamma` and `beta` are per-sample (B, C) from the caller.
  """
  eps: float = TORCH_EPS
  rho_init: float = 0.9

  @nn.compact
  def __call__(self, x: Array, gamma: Array, beta: Array) -> Array:
    c = x.shape[-1]
    rho = self.param("rho", jax.nn.initializers.constant(self.rho_init), (c,))
    y = _instance_layer_mix(x, rho, self.eps)
    y = y * upcast(gamma[:, None, None, :]) + upcast(beta[:, None, None, :])
    return y.astype(x.dtype)


class AdaIN(nn.Module):
  """Adaptive Instance Norm (Huang & Belongie; MUNIT's decoder): IN(x) * gamma + beta, gamma/beta (B, C)."""
  eps: float = TORCH_EPS

  @nn.compact
  def __call__(self, x: Array, gamma: Array, beta: Array) -> Array:
    mean, var = _moments(x, (1, 2))
    y = (upcast(x) - mean) * lax.rsqrt(var + self.eps)
    y = y * upcast(gamma[:, None, None, :]) + upcast(beta[:, None, None, :])
    return y.astype(x.dtype)


def clip_rho(params: Any) -> Any:
  """Clamps every `rho` leaf of a parameter tree to [0, 1] (U-GAT-IT's `RhoClipper`)."""

  def clip(path, leaf):
    name = getattr(path[-1], "key", None)
    return jnp.clip(leaf, 0.0, 1.0) if name == "rho" else leaf

  return jax.tree_util.tree_map_with_path(clip, params)


def get_norm(norm: str, **kwargs) -> Callable[..., nn.Module]:
  """Norm layer factory by the reference's `--norm` names: instance, batch, none."""
  if norm == "instance":
    return functools.partial(InstanceNorm, affine=False, track_running_stats=False, **kwargs)
  if norm == "batch":
    return functools.partial(BatchNorm, **kwargs)
  if norm == "none":
    return None
  raise ValueError(f"Unknown norm {norm!r}; expected 'instance', 'batch' or 'none'.")


def apply_norm(norm_layer: nn.Module | None, x: Array, train: bool) -> Array:
  """Applies a norm made by `get_norm`: batch norm uses batch statistics only when training."""
  if norm_layer is None:
    return x
  return norm_layer(x, use_running_average=not train)


# ----------------------------------------------------------------------------------------------------
# Class-activation-map attention (U-GAT-IT)
# ----------------------------------------------------------------------------------------------------
class CAMAttention(nn.Module):
  """CAM attention of U-GAT-IT, for the generator (ReLU) and the discriminator (LeakyReLU 0.2, SN).

  Returns `(features, cam_logit, heatmap)`:
    cam_logit = [gap_fc(mean_hw(x)), gmp_fc(max_hw(x))]              (B, 2)
    features  = act(conv1x1([x * w_gap, x * w_gmp]))                 (B, H, W, C)
    heatmap   = sum_c(features)                                      (B, H, W, 1)
  The features are weighted with the *raw* fc weights even when the logits use spectrally normalised
  ones: the reference takes `list(gap_fc.parameters())[0]`, which under spectral norm is `weight_orig`.
  """
  spectral_norm: bool = False
  leaky_slope: float | None = None  # None: ReLU (generator); 0.2 in the discriminators
  kernel_init: Initializer = kernel_init()

  @nn.compact
  def __call__(self, x: Array, update_stats: bool = False) -> tuple[Array, Array, Array]:
    c = x.shape[-1]
    gap_fc = Dense(1, use_bias=False, spectral_norm=self.spectral_norm,
                   kernel_init=self.kernel_init, name="gap_fc")
    gmp_fc = Dense(1, use_bias=False, spectral_norm=self.spectral_norm,
                   kernel_init=self.kernel_init, name="gmp_fc")
    gap_logit = gap_fc(jnp.mean(x, axis=(1, 2)), update_stats)
    gmp_logit = gmp_fc(jnp.max(x, axis=(1, 2)), update_stats)
    w_gap = gap_fc.variables["params"]["kernel"][:, 0]
    w_gmp = gmp_fc.variables["params"]["kernel"][:, 0]
    cam_logit = jnp.concatenate([gap_logit, gmp_logit], axis=-1)
    weighted = jnp.concatenate([x * w_gap, x * w_gmp], axis=-1)
    y = Conv2d(c, 1, use_bias=True, kernel_init=self.kernel_init, name="conv1x1")(weighted)
    y = nn.relu(y) if self.leaky_slope is None else nn.leaky_relu(y, self.leaky_slope)
    heatmap = jnp.sum(y, axis=-1, keepdims=True)
    return y, cam_logit, heatmap


class ConditionalNorm(nn.Module):
  """Class-conditional batch/instance norm (BigGAN's `ccbn`; conditional IN of Dumoulin et al.): the
  norm without affine, then a per-sample gain and bias computed from the condition:

      y = norm(x) * (1 + W_gain c) + W_bias c

  `labels` are int class ids (B,) (taken one-hot, so W_gain/W_bias rows are per-class embeddings) or
  float vectors (B, D): one-hot/soft labels with D == num_classes, or, with `num_classes=0`, any
  conditioning vector (BigGAN's shared class embedding concatenated with a chunk of z). Both maps start
  at zero, so the gain starts at 1 and the bias at 0: an untrained layer is the plain norm.
  Batch norm has torch's conventions (momentum 0.1 on the running statistics, i.e. flax's 0.9; eps
  1e-5; running variance unbiased) and normalises with the batch statistics when `train`, with the
  running ones otherwise. Instance norm (eps 1e-5, biased variance) always uses the sample's own.
  """
  num_classes: int
  norm: Literal["batch", "instance"] = "batch"
  momentum: float = 0.1
  eps: float = TORCH_EPS

  @nn.compact
  def __call__(self, x: Array, labels: Array, train: bool = False) -> Array:
    c = x.shape[-1]
    if self.norm == "batch":
      y = BatchNorm(momentum=self.momentum, affine=False, eps=self.eps, name="norm")(
          x, use_running_average=not train)
    elif self.norm == "instance":
      y = InstanceNorm(affine=False, eps=self.eps, name="norm")(x)
    else:
      raise ValueError(f"Unknown conditional norm {self.norm!r}; expected 'batch' or 'instance'.")
    if labels.ndim == 1:
      if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"1-D labels must be int class ids, got {labels.dtype}.")
      if self.num_classes < 1:
        raise ValueError("int class labels need num_classes >= 1 (num_classes=0 takes conditioning "
                         "vectors (B, D)).")
      labels = jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
    if labels.ndim != 2 or labels.shape[0] != x.shape[0]:
      raise ValueError(f"labels of shape {labels.shape} do not fit a batch of {x.shape[0]}: expected "
                       f"class ids ({x.shape[0]},) or vectors ({x.shape[0]}, D).")
    if self.num_classes and labels.shape[-1] != self.num_classes:
      raise ValueError(f"labels have {labels.shape[-1]} classes, the layer has {self.num_classes}.")
    gain = 1.0 + Dense(c, use_bias=False, kernel_init=zeros, name="gain")(labels)
    bias = Dense(c, use_bias=False, kernel_init=zeros, name="bias")(labels)
    shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)  # NHWC or (N, C)
    return y * gain.reshape(shape).astype(y.dtype) + bias.reshape(shape).astype(y.dtype)


class ConditionalBatchNorm(ConditionalNorm):
  """`ConditionalNorm` with batch statistics (BigGAN's class-conditional BN)."""
  norm: Literal["batch", "instance"] = "batch"


class ConditionalInstanceNorm(ConditionalNorm):
  """`ConditionalNorm` with per-sample statistics (conditional instance norm)."""
  norm: Literal["batch", "instance"] = "instance"


class Maxout(nn.Module):
  """Maxout units (Goodfellow et al. 2013): a linear map to `units * pieces` values, then the max over
  each unit's `pieces`. Unit u takes the pieces [u * pieces, (u + 1) * pieces) of the linear output,
  as pylearn2's Maxout layer groups them. Input (B, D) -> (B, units)."""
  units: int
  pieces: int
  kernel_init: Initializer = kernel_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.pieces < 1 or self.units < 1:
      raise ValueError(f"Maxout needs units >= 1 and pieces >= 1, got {self.units}, {self.pieces}.")
    z = Dense(self.units * self.pieces, kernel_init=self.kernel_init, name="linear")(x)
    return jnp.max(z.reshape(*z.shape[:-1], self.units, self.pieces), axis=-1)
