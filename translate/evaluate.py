"""Evaluation of a trained translator on the test split of its config's data.

`METRICS` maps a metric name to a function `(config, method, state) -> {name: value}`; training runs
`evaluate` every `config.eval_every` steps and at the end, and appends results to `eval.json` in the
workdir. Metrics:
  label_acc  share of A->B translations that the project's digit classifier (trained on real MNIST)
             labels as the source digit: the DTN paper's SVHN->MNIST protocol, on the embedded digits.
"""
from __future__ import annotations

import functools
import json
import os

import jax
import numpy as np


def _translations(config, method, state, direction="AtoB"):
  """Yields (source batch, translated images as numpy) over the whole test split (or eval.max_images)."""
  from translate.data import input_pipeline
  ds = input_pipeline.create_dataset(config.data, "test", config.eval.batch_size, seed=config.seed,
                                     train=False)
  fn = jax.jit(functools.partial(method.translate, config, direction=direction))
  seen = 0
  for batch in ds.as_numpy_iterator():
    if config.eval.max_images and seen >= config.eval.max_images:
      break
    yield batch, np.asarray(fn(state, batch["A"]))
    seen += len(batch["A"])


def label_accuracy(config, method, state) -> dict:
  from translate.metrics import digit_classifier
  _, params, _ = digit_classifier.load_or_train()
  correct = total = 0
  for batch, fake_B in _translations(config, method, state):
    if "label_A" not in batch:
      raise ValueError("label_acc needs a data source with digit labels (data.source='digits').")
    n = len(batch["A"])
    if config.eval.max_images:
      n = min(n, config.eval.max_images - total)
    pred = digit_classifier.predict(params, fake_B[:n])
    correct += int(np.sum(pred == batch["label_A"][:n]))
    total += n
  return {"label_acc": correct / max(total, 1)}


METRICS = {"label_acc": label_accuracy}


def metrics_for(method=None) -> dict:
  """The engine's metrics plus the method module's own `METRICS` (name -> fn(config, method, state)),
  for metrics that need the method's own data (e.g. a target-domain accuracy)."""
  return {**METRICS, **getattr(method, "METRICS", {})}


def evaluate(config, method, state) -> dict:
  registry = metrics_for(method)
  results = {}
  for name in config.eval.metrics:
    results.update(registry[name](config, method, state))
  return results


def append_results(workdir: str, step: int, results: dict) -> None:
  """Appends {'step': step, **results} to workdir/eval.json (a JSON list), atomically."""
  path = os.path.join(workdir, "eval.json")
  history = []
  if os.path.exists(path):
    with open(path) as f:
      history = json.load(f)
  history.append({"step": int(step), **{k: float(v) for k, v in results.items()}})
  with open(path + ".tmp", "w") as f:
    json.dump(history, f, indent=1)
  os.replace(path + ".tmp", path)
