"""Command line for inference with a trained run: any method, through its named predicts.

    python -m translate.translate --workdir=runs/h2z --input=photo.jpg --output=out/ [--direction=BtoA]
    python -m translate.translate --workdir=runs/s2a --input=faces/ --output=out/ --attention
    python -m translate.translate --workdir=runs/celeba --input=face.jpg --output=out/ \
        --target=Black_Hair,Male                     # labels for a label-conditioned predict
    python -m translate.translate --workdir=runs/celeba --input=face.jpg --output=grid/  # every target
    python -m translate.translate --workdir=runs/cgan --class=3 --num=64 --output=threes.png
    python -m translate.translate --workdir=runs/x --predict=NAME --input=content.png --style=style.png \
        --output=out/
    python -m translate.translate --workdir=runs/e2s --predict=random_styles --num_styles=8 \
        --input=edges/ --output=out/                  # several outputs per input: one grid each

One image or a folder (png/jpg/bmp/webp/tif), sides divisible by 4 (a size-bound network, DTN's f,
takes its 32x32 training size only), grey or RGB (converted to the model's channel count); outputs
are PNGs with the input's base name. `--predict` names what to compute (the method's predicts, listed
in errors); without it, --target/--class picks the predict that takes labels, --direction the
predict of that name, else the method's default. --attention also writes the predict's extra outputs
(e.g. U-GAT-IT's attention map) as <name>_<extra>.png. Generation (no --input)
writes one grid: --num images of --class (or a row per class for --class=all). The library is
`translate.inference` (`Predictor(workdir).translate(images, direction)`). Every input is checked
before anything is written (a bad file: one line naming it, exit status 1); hidden files (.DS_Store,
._x.png) are ignored. --verbose also shows the libraries' INFO logs and tracebacks (`translate.cli`).
"""
from __future__ import annotations

import argparse

if __name__ == "__main__":  # before tensorflow/jax are imported: their C++ logs (translate.cli)
  from translate import cli
  cli.quiet_native_logs()

from translate import cli  # noqa: E402
# Predictor, Translator and read_image are re-exported: the library names the README documents.
from translate.inference import Predictor, Translator, read_image, run_files  # noqa: E402,F401


def translate_files(workdir: str, input_path: str | None, output_dir: str,
                    direction: str | None = None, target: str | None = None, attention: bool = False,
                    predict: str | None = None, style: str | None = None, num: int = 1,
                    seed: int = 0) -> list[str]:
  """What the command line does; returns the written paths."""
  return run_files(Predictor(workdir), input_path, output_dir, predict=predict, direction=direction,
                   target=target, style=style, extras=attention, num=num, seed=seed)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints)")
  parser.add_argument("--input", default=None, help="an image file or a folder of images")
  parser.add_argument("--output", required=True, help="output folder (or a .png file when generating)")
  parser.add_argument("--predict", default=None, help="which of the method's predicts to run")
  parser.add_argument("--direction", default=None, help="AtoB or BtoA (a predict name)")
  parser.add_argument("--target", default=None,
                      help="labels for label-conditioned predicts, e.g. Black_Hair,Male; 'all' = a grid "
                           "of every single-label target (the default for such methods)")
  parser.add_argument("--class", dest="digit", default=None,
                      help="generation: a class label (e.g. a digit 0-9) or 'all' (a row per class)")
  parser.add_argument("--num", type=int, default=1,
                      help="generation: images (per class with --class=all); samples per input")
  parser.add_argument("--seed", type=int, default=0, help="noise seed (predicts with random inputs)")
  parser.add_argument("--style", default=None, help="second image for two-image predicts (a style)")
  parser.add_argument("--num_styles", type=int, default=None,
                      help="results per input for predicts with a count input (e.g. MUNIT's "
                           "random_styles); the same value as --num")
  parser.add_argument("--style_image", default=None, help="the same as --style")
  parser.add_argument("--attention", action="store_true",
                      help="also write the predict's extra outputs (e.g. attention maps)")
  cli.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  cli.setup_logging(args.verbose)
  if args.digit is not None and args.target is not None:
    parser.error("give --class or --target, not both")
  target = args.digit if args.digit is not None else args.target
  if args.num_styles is not None and args.num != 1 and args.num != args.num_styles:
    parser.error("give --num or --num_styles, not both")
  if args.style_image is not None and args.style is not None:
    parser.error("give --style or --style_image, not both")
  num = args.num_styles if args.num_styles is not None else args.num
  style = args.style_image if args.style_image is not None else args.style
  with cli.errors_as_messages(args.verbose):
    written = translate_files(args.workdir, args.input, args.output, args.direction, target,
                              args.attention, args.predict, style, num, args.seed)
  print(f"Wrote {len(written)} image(s) to {args.output}")


if __name__ == "__main__":
  main()
