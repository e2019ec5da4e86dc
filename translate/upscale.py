"""Command line for super-resolution with a trained srresnet / srgan run: any image size, tiled.

    python -m translate.upscale --workdir=runs/srresnet --input=photo.png --output=out/
    python -m translate.upscale --workdir=runs/srgan --input=photos/ --output=out/ --tile=512

One image or a folder (png/jpg/bmp/webp/tif), grey or RGB (grey is repeated to RGB), any size: the
output is `scale` times larger in each side, a PNG with the input's base name. Images larger than
--tile LR pixels in a side are upscaled in --tile x --tile tiles, each read with --overlap pixels of
context on every side (default: the generator's receptive radius, so the result equals the untiled
one; `translate.methods.srresnet.upscale`). --tile=0 upscales whole images (needs the memory for it).
The library: `Predictor(workdir).translate(lr_images)` (`translate.inference`). --verbose also shows
the libraries' INFO logs and tracebacks (`translate.cli`).
"""
from __future__ import annotations

import argparse
import os

if __name__ == "__main__":  # before tensorflow/jax are imported: their C++ logs (translate.cli)
  from translate import cli
  cli.quiet_native_logs()

from translate import cli, inference  # noqa: E402


def upscale_files(workdir: str, input_path: str, output_dir: str, tile: int = 512,
                  overlap: int | None = None) -> list[str]:
  """What the command line does; returns the written paths. ValueError for a workdir of another
  method, a negative --tile or unreadable images (before anything is written)."""
  from translate.methods import srresnet
  predictor = inference.Predictor(workdir)
  if predictor.method.name not in ("srresnet", "srgan") and "AtoB" not in predictor.method.predicts:
    raise ValueError(f"{workdir} holds a {predictor.method.name!r} run, not a super-resolution one.")
  if tile < 0:
    raise ValueError(f"--tile must be >= 0 (0 = whole images), got {tile}.")
  scale = predictor.config.model.scaling_factor
  if overlap is None:
    overlap = srresnet.receptive_radius(predictor.config)
  inputs = inference.list_inputs(input_path)
  images = [inference.read_image(p, 3) for p in inputs]  # bad files fail before anything is written
  os.makedirs(output_dir, exist_ok=True)
  written = []
  for path, x in zip(inputs, images):
    y = srresnet.upscale(lambda lr: predictor.translate(lr, "AtoB"), x, scale, tile, overlap)
    out = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
    inference.write_png(y, out)
    written.append(out)
  return written


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="a srresnet or srgan training workdir")
  parser.add_argument("--input", required=True, help="an image file or a folder of images")
  parser.add_argument("--output", required=True, help="output folder")
  parser.add_argument("--tile", type=int, default=512,
                      help="LR tile side in pixels for large images (0: whole images)")
  parser.add_argument("--overlap", type=int, default=None,
                      help="LR context pixels around each tile (default: the receptive radius)")
  cli.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  cli.setup_logging(args.verbose)
  with cli.errors_as_messages(args.verbose):
    written = upscale_files(args.workdir, args.input, args.output, args.tile, args.overlap)
  print(f"Wrote {len(written)} image(s) to {args.output}")


if __name__ == "__main__":
  main()
