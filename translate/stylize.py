"""Photorealistic stylization with PhotoWCT (Li et al. ECCV 2018; NVIDIA/FastPhotoStyle's demo.py).

    python -m translate.stylize --workdir=runs/photowct --content=content.jpg --style=style.jpg \
        --output=out.png [--smoothing=matting|guided|none] [--content_seg=c.png --style_seg=s.png]
    python -m translate.stylize --workdir=photo_wct.pth ...       # FastPhotoStyle's released weights

--workdir is a training workdir of `configs/photowct.py` (decoders + their frozen encoder) or
FastPhotoStyle's `photo_wct.pth` file (read without running pickle code). Steps: the PhotoWCT cascade
relu4_1 -> relu1_1 (`translate.photowct.pipeline`), then the smoothing:
  matting  the closed-form smoothing (I - beta S) R = (1 - beta) Y, exact (SuperLU, scipy, float64;
           the reference's default, beta 0.9999); --matting_solver=cg solves it with JAX's conjugate
           gradients instead (approximate, --cg_tol);
  guided   the fast variant: a colour guided filter of the stylized image guided by the content
           (radius 35, eps 1e-3 on 0..255 values, as the reference's `--fast`);
  none     the stylized image as decoded.
Segmentation maps (label images: grey/palette labels or colours; both or neither) give per-label WCT.
Images of any size are processed whole; --size_cap applies the reference's cap (images whose shorter
side exceeds 960 px are shrunk so the longer side is 960 px, stylized, then resized back; smoothing runs
at the content's full size). Prints the time of each step. The output is the smoothed image in
[0, 1] written as an 8-bit PNG (values truncated as the reference's np.uint8(clip(x * 255)) does).
--verbose also shows the libraries' INFO logs and tracebacks (`translate.cli`).
"""
from __future__ import annotations

import argparse
import os
import time

if __name__ == "__main__":  # before tensorflow/jax are imported: their C++ logs (translate.cli)
  from translate import cli
  cli.quiet_native_logs()

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from translate import cli  # noqa: E402

SMOOTHINGS = ("matting", "guided", "none")
MAX_SIZE = 960  # the reference's memory_limit_image_resize MAXSIZE


def read_rgb(path: str) -> np.ndarray:
  """An image file as float32 (H, W, 3) in [0, 1], upright (EXIF orientation applied). The file is
  checked as training and translate check theirs (`images.inspect_image`): ValueError naming it for
  an empty, corrupt or truncated file, an alpha channel, 16-bit or float samples."""
  from translate.data import images as image_files
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such image file.")
  image_files.validate_images([path])
  try:
    with Image.open(path) as img:
      img = ImageOps.exif_transpose(img)
      return np.asarray(img.convert("RGB"), np.float32) / 255.0
  except (OSError, SyntaxError) as e:
    raise ValueError(f"{path}: not a readable image ({e}).") from None


def read_labels(path: str, size: tuple[int, int]) -> np.ndarray:
  """A segmentation map file as (H, W) labels (grey/palette) or (H, W, 3) colours, resized (nearest)
  to `size` (H, W) when it differs."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such segmentation file.")
  try:
    with Image.open(path) as img:
      img.load()
      if img.mode not in ("L", "P", "I", "I;16", "RGB", "RGBA"):
        img = img.convert("RGB")
      if img.mode == "RGBA":
        img = img.convert("RGB")
      if (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), Image.NEAREST)
      return np.asarray(img)
  except (OSError, SyntaxError) as e:
    raise ValueError(f"{path}: not a readable segmentation image ({e}).") from None


def capped_size(h: int, w: int) -> tuple[int, int]:
  """The reference's size cap: a shorter side over 960 px shrinks the image so its longer side is
  960 px (PIL thumbnail; images are never enlarged)."""
  if min(h, w) <= MAX_SIZE:
    return h, w
  if w > h:
    return max(1, round(h * MAX_SIZE / w)), MAX_SIZE
  return MAX_SIZE, max(1, round(w * MAX_SIZE / h))


def _resize(x: np.ndarray, hw: tuple[int, int], resample=Image.BICUBIC) -> np.ndarray:
  if x.shape[:2] == tuple(hw):
    return x
  u8 = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return np.asarray(Image.fromarray(u8).resize((hw[1], hw[0]), resample), np.float32) / 255.0


def stylize_files(model_path: str, content_path: str, style_path: str, output: str,
                  content_seg: str | None = None, style_seg: str | None = None,
                  smoothing: str = "matting", size_cap: bool = False, beta: float = 0.9999,
                  matting_solver: str = "direct", cg_tol: float = 1e-6, gif_radius: int = 35,
                  gif_eps: float | None = None, log=print) -> dict:
  """The command line's work; returns {step: seconds}. Errors are raised before anything is written."""
  import jax
  import jax.numpy as jnp
  from translate.photowct import pipeline, smoothing as smooth
  if smoothing not in SMOOTHINGS:
    raise ValueError(f"--smoothing must be one of {SMOOTHINGS}, got {smoothing!r}.")
  if matting_solver not in ("direct", "cg"):
    raise ValueError(f"--matting_solver must be 'direct' or 'cg', got {matting_solver!r}.")
  if (content_seg is None) != (style_seg is None):
    raise ValueError("Give both --content_seg and --style_seg, or neither.")
  times = {}
  t = time.perf_counter()
  model = pipeline.load(model_path)
  times["load"] = time.perf_counter() - t
  content, style = read_rgb(content_path), read_rgb(style_path)
  full_hw = content.shape[:2]
  work_c, work_s = content, style
  if size_cap:
    work_c = _resize(content, capped_size(*content.shape[:2]))
    work_s = _resize(style, capped_size(*style.shape[:2]))
  segs = (None, None)
  if content_seg is not None:
    segs = (read_labels(content_seg, work_c.shape[:2]), read_labels(style_seg, work_s.shape[:2]))
  t = time.perf_counter()
  out = np.asarray(jax.block_until_ready(pipeline.transform(model, work_c, work_s, *segs)))
  times["stylization"] = time.perf_counter() - t
  out = np.clip(out, 0.0, 1.0)
  if out.shape[:2] != full_hw:
    out = _resize(out, full_hw, Image.BILINEAR)
  t = time.perf_counter()
  if smoothing == "matting":
    if matting_solver == "direct":
      out = smooth.matting_smooth(out, content, beta=beta)
    else:
      out = smooth.matting_smooth_cg(out, content, beta=beta, tol=cg_tol)
  elif smoothing == "guided":
    eps = smooth.GIF_EPS if gif_eps is None else gif_eps
    out = np.asarray(jax.jit(smooth.guided_filter, static_argnums=2)(
        jnp.asarray(out), jnp.asarray(content), gif_radius, eps))
  times[f"smoothing_{smoothing}"] = time.perf_counter() - t
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  Image.fromarray(np.uint8(np.clip(out * 255.0, 0, 255))).save(output)
  log(f"wrote {output} ({full_hw[1]}x{full_hw[0]}); " + ", ".join(
      f"{k} {v:.2f}s" for k, v in times.items()))
  return times


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True,
                      help="training workdir of configs/photowct.py, or FastPhotoStyle's photo_wct.pth")
  parser.add_argument("--content", required=True, help="content image file")
  parser.add_argument("--style", required=True, help="style image file")
  parser.add_argument("--content_seg", default=None, help="content label map (with --style_seg)")
  parser.add_argument("--style_seg", default=None, help="style label map (with --content_seg)")
  parser.add_argument("--smoothing", default="matting", choices=SMOOTHINGS)
  parser.add_argument("--output", required=True, help="output PNG")
  parser.add_argument("--size_cap", action="store_true",
                      help="the reference's cap: shorter side > 960 px -> longer side 960 px")
  parser.add_argument("--beta", type=float, default=0.9999, help="matting smoothing beta")
  parser.add_argument("--matting_solver", default="direct", choices=("direct", "cg"))
  parser.add_argument("--cg_tol", type=float, default=1e-6)
  parser.add_argument("--gif_radius", type=int, default=35)
  parser.add_argument("--gif_eps", type=float, default=None,
                      help="guided-filter eps in [0, 1] units (default 1e-3 / 255^2, the reference's)")
  cli.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  cli.setup_logging(args.verbose)
  with cli.errors_as_messages(args.verbose):
    stylize_files(args.workdir, args.content, args.style, args.output, args.content_seg,
                  args.style_seg, args.smoothing, args.size_cap, args.beta, args.matting_solver,
                  args.cg_tol, args.gif_radius, args.gif_eps)


if __name__ == "__main__":
  main()
