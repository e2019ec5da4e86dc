"""PhotoWCT time per image of each step on this machine, and the docs figure.

    .venv/bin/python benchmarks/photowct_stylize.py --workdir=runs/photowct_photos \
        [--size=512] [--figure=docs/figures/photowct.png] [--skip_direct]

--workdir: decoders trained by `configs/photowct.py` (or FastPhotoStyle's photo_wct.pth). Content:
scikit-image's `astronaut` (512 x 512), style: `coffee`; both resized so their longer side is --size.
Steps, each timed as the median of --repeats runs after one warm-up run (the warm-up's time, which
includes jit compilation, is printed as `first`):
  stylization        the PhotoWCT cascade relu4_1 -> relu1_1 (4 encoders, 4 WCTs, 4 decoders), JAX
  matting_direct     closed-form smoothing, affinity + SuperLU solve (scipy, float64, host): exact
  matting_cg         the same system, JAX Jacobi-preconditioned CG in float64 (--cg_tol), timed
                     once; its max abs difference from matting_direct is printed
  guided             the guided-filter smoothing (radius 35), JAX
--figure writes content | style | PhotoWCT | + matting | + guided filter.
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
from PIL import Image, ImageDraw  # noqa: E402

from translate.photowct import data as photo_data  # noqa: E402
from translate.photowct import pipeline, smoothing  # noqa: E402


def _fit(image: np.ndarray, size: int) -> np.ndarray:
  h, w = image.shape[:2]
  scale = size / max(h, w)
  if scale != 1:
    image = np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)),
                                                     Image.BICUBIC))
  return image.astype(np.float32) / 255.0


def timed(fn, repeats: int):
  t = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t
  runs = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    runs.append(time.perf_counter() - t)
  return out, first, statistics.median(runs) if runs else first


def figure(panels: list[tuple[str, np.ndarray]], path: str, height: int = 256) -> None:
  tiles = []
  for title, img in panels:
    u8 = np.uint8(np.clip(img * 255.0, 0, 255))
    im = Image.fromarray(u8)
    im = im.resize((round(im.width * height / im.height), height), Image.BICUBIC)
    canvas = Image.new("RGB", (im.width, height + 18), "white")
    canvas.paste(im, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill="black")
    tiles.append(canvas)
  out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height + 18), "white")
  x = 0
  for t in tiles:
    out.paste(t, (x, 0))
    x += t.width + 4
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  out.save(path, optimize=True)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--content", default="astronaut")
  p.add_argument("--style", default="coffee")
  p.add_argument("--figure", default="")
  p.add_argument("--skip_direct", action="store_true", help="skip the SuperLU solve (slow)")
  p.add_argument("--skip_cg", action="store_true", help="skip the CG solve (slow on CPU)")
  p.add_argument("--cg_tol", type=float, default=1e-6)
  args = p.parse_args(argv)
  model = pipeline.load(args.workdir)
  content = _fit(photo_data.photo(args.content), args.size)
  style = _fit(photo_data.photo(args.style), args.size)
  print(f"{jax.devices()[0].platform}, {os.cpu_count()} cpus; content {args.content} "
        f"{content.shape[1]}x{content.shape[0]}, style {args.style} {style.shape[1]}x{style.shape[0]}; "
        f"model {args.workdir} ({model.arch}, levels {model.levels})")
  rows = {}
  stylized, first, median = timed(lambda: pipeline.transform(model, content, style), args.repeats)
  stylized = np.clip(np.asarray(stylized), 0, 1)
  rows["stylization"] = (first, median)
  print(f"stylization: first {first:.2f}s, median {median:.2f}s", flush=True)
  exact = None
  if not args.skip_direct:
    exact, first, median = timed(lambda: smoothing.matting_smooth(stylized, content), 0)
    rows["matting_direct"] = (first, median)
    print(f"matting_direct: {first:.2f}s", flush=True)
  cg = None
  if not args.skip_cg:
    cg, first, median = timed(lambda: smoothing.matting_smooth_cg(stylized, content, tol=args.cg_tol), 0)
    rows["matting_cg"] = (first, median)
    print(f"matting_cg: {first:.2f}s (with compilation)", flush=True)
  gf_fn = jax.jit(smoothing.guided_filter, static_argnums=2)
  guided, first, median = timed(lambda: gf_fn(jnp.asarray(stylized), jnp.asarray(content),
                                              smoothing.GIF_RADIUS, smoothing.GIF_EPS), args.repeats)
  rows["guided"] = (first, median)
  print(f"{'step':<16} {'first (s)':>10} {'median (s)':>11}")
  for name, (first, median) in rows.items():
    print(f"{name:<16} {first:>10.2f} {median:>11.2f}")
  if exact is not None and cg is not None:
    print(f"matting_cg vs matting_direct: max |diff| {np.max(np.abs(np.asarray(cg) - exact)):.2e}, "
          f"mean {np.mean(np.abs(np.asarray(cg) - exact)):.2e}")
  if args.figure and (exact is not None or cg is not None):
    panels = [("content", content), ("style", style), ("PhotoWCT", stylized),
              ("+ matting smoothing", np.asarray(exact if exact is not None else cg)),
              ("+ guided filter", np.asarray(guided))]
    figure(panels, args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
  main()
