"""The MUNIT sample figure: per test input (printed digit), 5 random styles and 2 example-guided
translations (the styles of two MNIST test digits, shown in the header row).

    .venv/bin/python benchmarks/munit_figure.py --workdir=runs/munit_digits \
        --output=docs/figures/munit_digits.png
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from translate import inference, visualize


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--output", required=True)
  parser.add_argument("--rows", type=int, default=8)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  p = inference.Predictor(args.workdir)
  batch = next(p.method.data.create_dataset(p.config, "test", 64, seed=0, train=False)
               .as_numpy_iterator())
  # one input per digit class where possible, in class order
  labels = batch["label_A"]
  order = [int(np.flatnonzero(labels == d)[0]) for d in range(10) if np.any(labels == d)]
  images = batch["A"][order[:args.rows]]
  styles = p.predict("random_styles", images=images, rng=jax.random.PRNGKey(args.seed),
                     num_styles=5)["image"]
  columns = {"input": images, **{f"style {k + 1}": styles[k] for k in range(5)}}
  for k, index in enumerate((3, 11)):  # two MNIST test digits as style examples
    example = batch["B"][index:index + 1]
    guided = p.predict("example_guided", images=images, style_images=example)["image"]
    columns[f"guided {k + 1}"] = np.concatenate([example, guided])  # the example on top
  columns = {k: (v if v.shape[0] == len(images) + 1 else
                 np.concatenate([np.ones_like(v[:1]), v])) for k, v in columns.items()}
  visualize.save_png(visualize.make_grid(columns, max_rows=len(images) + 1), args.output)
  print(f"wrote {args.output} (step {p.step})")


if __name__ == "__main__":
  main()
