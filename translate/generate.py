"""Generate digits with a trained (conditional) GAN: the cgan/gan counterpart of translate.translate.

    python -m translate.generate --workdir=runs/cgan --class=3 --num=64 --output=threes.png
    python -m translate.generate --workdir=runs/cgan --class=all --num=8 --output=grid.png
    python -m translate.generate --workdir=runs/gan --num=64 --output=samples.png

Writes one PNG grid: `--num` images of class `--class` (cgan), `--num` per class with a row per class
for `--class=all`, or `--num` unconditional samples (gan, no --class). `--seed` picks the noise. As a
library: `generate_grid(workdir, num, digit, seed)` returns the uint8 grid.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from translate import visualize


def _load(workdir: str):
  from translate import translate as translate_lib
  translator = translate_lib.Translator(workdir)
  if not hasattr(translator.method, "sample_z"):
    raise ValueError(f"{workdir} holds a {translator.config.method!r} model, which translates images; "
                     f"use python -m translate.translate for it.")
  return translator


def generate_images(workdir: str, labels, seed: int = 0) -> np.ndarray:
  """float images (N, s, s, 1) in [-1, 1], one per entry of `labels` (class ids; for 'gan' only their
  number counts)."""
  translator = _load(workdir)
  config, method = translator.config, translator.method
  labels = jnp.asarray(labels, jnp.int32)
  z = method.sample_z(config, jax.random.PRNGKey(seed), labels.shape[0])
  return np.asarray(jax.jit(lambda s, y, z: method.generate(config, s, y, z=z))(
      translator.state, labels, z))


def generate_grid(workdir: str, num: int, digit: str | int | None = None, seed: int = 0) -> np.ndarray:
  """The uint8 grid the command line writes (see the module docstring)."""
  if num < 1:
    raise ValueError(f"--num must be >= 1, got {num}.")
  from translate import train
  config = train.load_config(workdir)
  conditional = config.method == "cgan"
  if conditional and digit is None:
    raise ValueError("a cgan model needs --class: a digit 0-9, or 'all'.")
  if not conditional and digit is not None:
    raise ValueError(f"a {config.method!r} model is unconditional; leave out --class.")
  if digit == "all":  # a row per class, `num` columns; a column shares one z
    rows = 10
    labels = np.tile(np.arange(rows), num)
    translator = _load(workdir)
    z = translator.method.sample_z(translator.config, jax.random.PRNGKey(seed), num)
    images = np.asarray(translator.method.generate(translator.config, translator.state,
                                                   jnp.asarray(labels), z=jnp.repeat(z, rows, 0)))
    columns = images.reshape(num, rows, *images.shape[1:])
  else:
    if digit is not None:
      try:
        digit = int(digit)
      except ValueError:
        digit = -1
      if not 0 <= digit <= 9:
        raise ValueError(f"--class must be a digit 0-9 or 'all', got {digit!r}.")
    rows = math.ceil(math.sqrt(num))
    images = generate_images(workdir, np.full((num,), digit or 0), seed)
    cols = math.ceil(num / rows)
    pad = rows * cols - num  # blank cells (white, as the grid's border) fill the last column
    images = np.concatenate([images, np.ones((pad, *images.shape[1:]), images.dtype)])
    columns = images.reshape(cols, rows, *images.shape[1:])
  return visualize.make_grid({f"c{j}": c for j, c in enumerate(columns)}, max_rows=rows)


def main(argv=None) -> None:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="training workdir of a cgan/gan run")
  parser.add_argument("--class", dest="digit", default=None, help="digit 0-9 or 'all' (cgan only)")
  parser.add_argument("--num", type=int, default=64, help="images (per class with --class=all)")
  parser.add_argument("--seed", type=int, default=0, help="noise seed")
  parser.add_argument("--output", required=True, help="PNG file to write")
  args = parser.parse_args(argv)
  grid = generate_grid(args.workdir, args.num, args.digit, args.seed)
  visualize.save_png(grid, args.output)
  print(f"wrote {args.output} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
  main()
