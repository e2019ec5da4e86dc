"""The digits comparison table: label_acc and lpips_diversity of trained runs beside the identity baseline.

    .venv/bin/python benchmarks/digits_table.py --run munit=runs/munit_digits --run unit=runs/unit_digits \
        --run cyclegan=runs/cyclegan_digits [--num_outputs=10 --num_inputs=100]

Every run is a workdir trained on the embedded digits (printed -> MNIST, the same 1000 printed test
digits). label_acc: the engine's built-in metric (`translate.evaluation`, the MNIST judge of
`translate.pretrained.classifiers` reading each translation as its source digit). identity: the same
judge on the untranslated printed test digits. lpips_diversity: MUNIT's protocol (mean LPIPS between the
outputs of one input, over the first `--num_inputs` test inputs, `--num_outputs` outputs each, all pairs
averaged; `translate.metrics.diversity`): a method's multi-output predict where it has one (MUNIT
`random_styles`, UNIT `random_samples`: fresh styles / latent noise per output), else its AtoB predict run
`--num_outputs` times on the same inputs (a deterministic translator, e.g. CycleGAN, scores 0).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from translate import evaluation, inference  # noqa: E402
from translate.data import digits  # noqa: E402
from translate.metrics import diversity, lpips  # noqa: E402
from translate.pretrained import classifiers  # noqa: E402

MULTI_OUTPUT = ("random_styles", "random_samples")  # predicts taking (images, rng, num_styles)


def identity_label_acc() -> float:
  """The judge's accuracy on the untranslated printed test digits (the split label_acc uses)."""
  params, _ = classifiers.cached(classifiers.DIGITS)
  return classifiers.identity_baseline(params, digits.load_split("test"))


def outputs_per_input(p: inference.Predictor, images: np.ndarray, k: int, seed: int
                      ) -> tuple[np.ndarray, str]:
  """(K, B, H, W, C) outputs of each image and how they were made."""
  for name in MULTI_OUTPUT:
    if name in p.method.predicts:
      out = p.predict(name, images=images, rng=jax.random.PRNGKey(seed), num_styles=k)["image"]
      return out, name
  return np.stack([p.translate(images, "AtoB") for _ in range(k)]), f"AtoB run {k} times"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", action="append", default=[], help="NAME=WORKDIR (repeatable)")
  parser.add_argument("--num_outputs", type=int, default=10)
  parser.add_argument("--num_inputs", type=int, default=100)
  parser.add_argument("--seed", type=int, default=1)
  args = parser.parse_args(argv)
  network = lpips.load_network(None)
  rows = [("identity (untranslated printed digits)", identity_label_acc(), 0.0, "one output", "-")]
  for item in args.run:
    name, _, workdir = item.partition("=")
    if not workdir:
      parser.error(f"--run takes NAME=WORKDIR, got {item!r}")
    record = evaluation.evaluate_workdir(workdir, ["label_acc"])
    p = inference.Predictor(workdir)
    test = next(p.method.data.create_dataset(p.config, "test", args.num_inputs, seed=0, train=False)
                .as_numpy_iterator())
    samples, how = outputs_per_input(p, test["A"][:args.num_inputs], args.num_outputs, args.seed)
    score = float(np.mean(diversity.pairwise_lpips(network, samples)))
    rows.append((f"{name} ({p.method.name}, step {p.step})", record["results"]["label_acc"], score, how,
                 workdir))
  print(f"| run | label_acc | lpips_diversity ({args.num_outputs} outputs x {args.num_inputs} inputs) "
        "| outputs from | workdir |")
  print("| --- | --- | --- | --- | --- |")
  for name, acc, div, how, workdir in rows:
    print(f"| {name} | {acc:.3f} | {div:.4f} | {how} | {workdir} |")


if __name__ == "__main__":
  main()
