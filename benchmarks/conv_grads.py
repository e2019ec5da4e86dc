"""Convolution gradients, layer by layer: forward, input gradient (dx) and kernel gradient (dK) in ms.

    .venv/bin/python benchmarks/conv_grads.py                  # the layers of CycleGAN/pix2pix at 256 px
    .venv/bin/python benchmarks/conv_grads.py --px=128 --iters=5

For every layer shape of the reference networks (batch 1, NHWC, float32) it times, side by side in one
run, each way `translate.layers` can compute it:
  conv:            XLA's own gradient of the convolution ('xla'), the kernel gradient as per-tap
                   matrix products ('taps', `layers.CONV_KERNEL_GRAD`), and for 3x3 stride-1 layers
                   the whole convolution as Winograd F(2x2, 3x3) ('winograd', `layers.WINOGRAD`);
                   the '3x3 C' rows (C -> C channels at half the resolution) set
                   `layers.WINOGRAD_MIN_CHANNELS`;
  conv_transpose:  the input-dilated convolution's own gradients ('dilated') and the kernel gradient
                   as per-tap matrix products ('taps', `layers.CONV_TRANSPOSE_GRAD`).
On XLA:CPU some kernel gradients fall off the fast convolution path (seconds instead of milliseconds);
this is the probe that finds them. Each figure is the median of `--iters` calls after one warm-up call.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from translate import layers  # noqa: E402


DEFAULTS = {"CONV_KERNEL_GRAD": "auto", "CONV_TRANSPOSE_GRAD": "auto", "WINOGRAD": "auto"}


def layer_shapes(px: int):
  """(name, kind, input px, cin, cout, k, stride, padding) of the reference nets at `px`."""
  q, e = px // 2, px // 4
  return [
      ("resnet c7s1-64", "conv", px, 3, 64, 7, 1, 3),
      ("resnet d128", "conv", px, 64, 128, 3, 2, 1),
      ("resnet d256", "conv", q, 128, 256, 3, 2, 1),
      ("resnet R256", "conv", e, 256, 256, 3, 1, 1),
      ("3x3 128", "conv", q, 128, 128, 3, 1, 1),
      ("3x3 64", "conv", q, 64, 64, 3, 1, 1),
      ("3x3 32", "conv", q, 32, 32, 3, 1, 1),
      ("resnet u128", "convT", e, 256, 128, 3, 2, 1),
      ("resnet u64", "convT", q, 128, 64, 3, 2, 1),
      ("resnet c7s1-3", "conv", px, 64, 3, 7, 1, 3),
      ("patchgan c64", "conv", px, 3, 64, 4, 2, 1),
      ("patchgan c128", "conv", q, 64, 128, 4, 2, 1),
      ("patchgan c256", "conv", e, 128, 256, 4, 2, 1),
      ("patchgan c512 s1", "conv", px // 8, 256, 512, 4, 1, 1),
      ("patchgan out 1", "conv", px // 8 - 1, 512, 1, 4, 1, 1),
      ("unet d1 (6->64)", "conv", px, 6, 64, 4, 2, 1),
      ("unet u-outermost", "convT", q, 128, 3, 4, 2, 1),
      ("unet u-2", "convT", e, 256, 64, 4, 2, 1),
  ]


def timed(fn, *args, iters: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--px", type=int, default=256)
  parser.add_argument("--iters", type=int, default=3)
  parser.add_argument("--only", default="", help="comma list of substrings of layer names")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f"backend {jax.default_backend()}, px {args.px}, median of {args.iters} (ms)")
  print(f"{'layer':20s} {'form':9s} {'fwd':>9s} {'dx':>9s} {'dK':>9s}")
  for name, kind, px, cin, cout, k, s, p in layer_shapes(args.px):
    if args.only and not any(o in name for o in args.only.split(",")):
      continue
    x = jnp.asarray(rng.normal(size=(1, px, px, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.05, jnp.float32)
    if kind == "conv":
      forms = {"xla": {"CONV_KERNEL_GRAD": "xla", "WINOGRAD": "off"},
               "taps": {"CONV_KERNEL_GRAD": "taps", "WINOGRAD": "off"}}
      if k == 3 and s == 1:
        forms["winograd"] = {"WINOGRAD": "on"}
      op = lambda x_, k_: layers.conv(x_, k_, s, ((p, p), (p, p)))  # noqa: E731
    else:
      forms = {"dilated": {"CONV_TRANSPOSE_GRAD": "dilated"}, "taps": {"CONV_TRANSPOSE_GRAD": "taps"}}
      op = lambda x_, k_: layers.conv_transpose(x_, k_, s, p, 1 if k == 3 else 0)  # noqa: E731
    for form, settings in forms.items():
      for setting, value in DEFAULTS.items():
        setattr(layers, setting, settings.get(setting, value))
      y = op(x, kernel)
      dy = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
      fwd = jax.jit(lambda x_, k_: op(x_, k_))  # a new function per form: jit caches by function
      dx = jax.jit(lambda x_, k_, dy_: jax.vjp(lambda a: op(a, k_), x_)[1](dy_)[0])
      dk = jax.jit(lambda x_, k_, dy_: jax.vjp(lambda b: op(x_, b), k_)[1](dy_)[0])
      print(f"{name:20s} {form:9s} {timed(fwd, x, kernel, iters=args.iters):9.1f} "
            f"{timed(dx, x, kernel, dy, iters=args.iters):9.1f} "
            f"{timed(dk, x, kernel, dy, iters=args.iters):9.1f}", flush=True)
  for setting, value in DEFAULTS.items():
    setattr(layers, setting, value)


if __name__ == "__main__":
  main()
