"""Training engine: config -> input pipeline -> method state -> jitted step -> writers and checkpoints.

    python -m translate.train --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z \
        [--config.model.ngf=32 --config.num_train_steps=1000]

A workdir that holds a checkpoint is resumed: same step, parameters, optimiser states, image pools and
RNG, and the data stream continues where it stopped. As a library: `train_and_evaluate(config, workdir)`.
"""
from __future__ import annotations

import functools
import importlib
import json
import logging
import math
import os
import signal
import sys
import time

import jax
import ml_collections
import numpy as np

from translate import checkpoint, parallel, training, visualize


def get_method(name: str):
  """The method module `translate.methods.<name>` (create_state, train_step, translate, ...)."""
  try:
    return importlib.import_module(f"translate.methods.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"translate.methods.{name}":
      raise
    methods_dir = os.path.join(os.path.dirname(__file__), "methods")
    known = sorted(f[:-3] for f in os.listdir(methods_dir) if f.endswith(".py") and f[0] != "_")
    raise ValueError(f"Unknown method {name!r}; expected one of {known}.") from None


def validate_config(config: ml_collections.ConfigDict, method=None) -> None:
  """Checks that fail at start-up rather than hours into a run."""
  from translate import evaluate as evaluation
  if config.batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {config.batch_size}.")
  known = evaluation.metrics_for(method)
  unknown = [m for m in config.eval.metrics if m not in known]
  if unknown:
    raise ValueError(f"Unknown eval metric(s) {unknown}; expected some of {sorted(known)}.")


class _DefaultData:
  """The engine's unpaired/paired A/B pipeline, called with `config.data`. A method that needs other
  data (labels per image, several data sets) defines `create_dataset(config, split, batch_size, **kw)`,
  `dataset_size(config, split)` and `describe(config)` in its module, and the engine uses those."""

  @staticmethod
  def create_dataset(config, split, batch_size, **kwargs):
    from translate.data import input_pipeline
    return input_pipeline.create_dataset(config.data, split, batch_size, **kwargs)

  @staticmethod
  def dataset_size(config, split):
    from translate.data import input_pipeline
    return input_pipeline.dataset_size(config.data, split)

  @staticmethod
  def describe(config):
    from translate.data import input_pipeline
    return input_pipeline.describe(config.data)


def data_functions(method):
  """The method's own data functions if it has them, else the engine's A/B pipeline."""
  return method if hasattr(method, "create_dataset") else _DefaultData


def run_length(config, steps_per_epoch: int) -> int:
  epochs = config.optim.n_epochs + config.optim.n_epochs_decay
  total = epochs * steps_per_epoch
  return config.num_train_steps if config.num_train_steps > 0 else total


class _Preemption:
  """Turns SIGTERM (preemption, `kill`) into a request to checkpoint and stop at the next step."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not in the main thread (e.g. called from a worker): nothing to install
      self._previous = None
    return self

  def _handle(self, signum, frame):
    logging.warning("SIGTERM received: checkpointing and stopping after this step.")
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _example_batch(dataset, keys=("A", "B")) -> dict:
  spec = dataset.element_spec
  return {k: np.zeros((1, *v.shape[1:]), v.dtype.as_numpy_dtype) for k, v in spec.items()
          if k in keys}


def save_config(config, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  os.replace(path + ".tmp", path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} holds no config.json: is it a translate training workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def create_train_state(config, method, mesh, optimizers, example_batch):
  rng = jax.random.PRNGKey(config.seed)
  create = jax.jit(lambda key: method.create_state(config, key, optimizers, example_batch),
                   out_shardings=parallel.replicated(mesh))
  return create(rng)


def make_sample_fn(config, method):
  """Jitted `method.sample_images` that keeps the method's column order (a jitted function returns
  dicts with sorted keys; the order is recorded when the function is traced)."""
  order: list[str] = []

  def sample(state, batch):
    images = method.sample_images(config, state, batch)
    order[:] = list(images)
    return images

  jitted = jax.jit(sample)

  def run(state, batch) -> dict:
    images = jitted(state, batch)
    return {k: images[k] for k in order}

  return run


def make_train_step(config, method, mesh, optimizers):
  return jax.jit(functools.partial(method.train_step, config, optimizers),
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=(0,))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict:
  """Trains `config.method` in `workdir` (resuming a checkpoint there) and returns the last evaluation.

  `num_devices` restricts the mesh to the first devices (tests, benchmarks); default: all devices.
  """
  from translate import evaluate as evaluation

  config = ml_collections.ConfigDict(config.to_dict())  # a private copy, then locked: typos fail
  config.lock()
  method = get_method(config.method)
  validate_config(config, method)
  if hasattr(method, "check_config"):
    method.check_config(config)
  data = data_functions(method)
  mesh = parallel.make_mesh(num_devices)
  local_batch = parallel.check_batch_size(config.batch_size, mesh)
  steps_per_epoch = max(1, math.ceil(data.dataset_size(config, "train") / config.batch_size))
  total_steps = run_length(config, steps_per_epoch)
  # A method with its own schedule (e.g. StarGAN's, in iterations) builds its optimisers itself.
  if hasattr(method, "make_optimizers"):
    optimizers = method.make_optimizers(config, steps_per_epoch)
  else:
    optimizers = training.make_optimizers(config.optim, steps_per_epoch, method.GROUPS)
  logging.info("%s on %s; %d steps (%d per epoch), global batch %d on %d device(s)", config.method,
               data.describe(config), total_steps, steps_per_epoch, config.batch_size,
               mesh.devices.size)

  def train_dataset(start_batch=0):
    return data.create_dataset(
        config, "train", local_batch, seed=config.seed, train=True,
        process_index=jax.process_index(), process_count=jax.process_count(),
        start_batch=start_batch)

  example = _example_batch(train_dataset(), getattr(method, "INPUT_KEYS", ("A", "B")))
  meta = {"method": config.method, "model": config.model.to_dict(),
          "image_shapes": {k: list(v.shape[1:]) for k, v in example.items()}}
  ckpt = checkpoint.Checkpointer(workdir, meta, max_to_keep=config.keep_checkpoints)
  ckpt.check_compatible()  # before anything is written to the workdir

  state = create_train_state(config, method, mesh, optimizers, example)
  if ckpt.latest_step() is not None:
    state = ckpt.restore(state)
  start_step = int(jax.device_get(state.step))
  if parallel.is_main_process():
    save_config(config, workdir)
  logging.info("Parameters: %s", {g: training.count_params(p) for g, p in state.params.items()})

  sample_batch = next(iter(data.create_dataset(
      config, "test", min(8, config.eval.batch_size), seed=config.seed, train=False)
      .take(1).as_numpy_iterator()))
  sample_fn = make_sample_fn(config, method)
  train_step = make_train_step(config, method, mesh, optimizers)
  # The stream is deterministic for a seed, so a resumed run skips the batches it already used.
  batches = train_dataset(start_step).as_numpy_iterator()

  from clu import metric_writers
  writer = metric_writers.create_default_writer(workdir, just_logging=not parallel.is_main_process())
  if start_step == 0:
    writer.write_hparams({k: v for k, v in _flatten(config.to_dict()).items()
                          if isinstance(v, (int, float, str, bool))})

  def write_samples(step):
    # Column by column: to_host on the whole dict would rebuild it with sorted keys.
    images = {k: parallel.to_host(v) for k, v in sample_fn(state, sample_batch).items()}
    # A method may show more than the default 8 samples per column (SAMPLE_GRID_ROWS).
    grid = visualize.make_grid(images, max_rows=getattr(method, "SAMPLE_GRID_ROWS", 8))
    if parallel.is_main_process():
      writer.write_images(step, {"samples": grid[None]})
      visualize.save_png(grid, os.path.join(workdir, "samples", f"step_{step:08d}.png"))

  def run_eval(step):
    results = evaluation.evaluate(config, method, state)
    if results and parallel.is_main_process():
      writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
      evaluation.append_results(workdir, step, results)
      logging.info("eval at step %d: %s", step, results)
    return results

  results: dict = {}
  pending: list = []
  t_last, step_last = time.time(), start_step
  step = start_step
  with _Preemption() as preemption:
    while step < total_steps:
      batch = parallel.shard_batch(next(batches), mesh)
      state, metrics = train_step(state, batch)
      step += 1
      pending.append(metrics)
      if step % config.log_every == 0 or step == total_steps:
        host = [parallel.to_host(m) for m in pending]
        scalars = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        now = time.time()
        rate = (step - step_last) / max(now - t_last, 1e-9)
        t_last, step_last, pending = now, step, []
        scalars["steps_per_sec"] = rate
        writer.write_scalars(step, scalars)
        eta = (total_steps - step) / max(rate, 1e-9)
        logging.info("step %d/%d | %.2f steps/s | ETA %s | %s", step, total_steps, rate,
                     _format_seconds(eta), " ".join(f"{k} {v:.3f}" for k, v in sorted(scalars.items())
                                                    if k.startswith("loss_")))
      if step % config.sample_every == 0 or step == total_steps:
        write_samples(step)
      if config.eval_every > 0 and step % config.eval_every == 0 and step != total_steps:
        results = run_eval(step)
      stop = preemption.requested or ckpt.reached_preemption(step)
      if step % config.checkpoint_every == 0 or step == total_steps or stop:
        ckpt.save(step, state, force=True)
      if stop:
        logging.warning("Stopped at step %d after a preemption request; rerun to resume.", step)
        ckpt.close()
        writer.flush()
        return results
  if total_steps > start_step or not results:
    results = run_eval(step)
  ckpt.close()
  writer.flush()
  return results


def _flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _format_seconds(s: float) -> str:
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def main(argv):
  from absl import flags
  if len(argv) > 1:
    raise ValueError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS
  logging.getLogger().setLevel(logging.INFO)
  # Orbax and clu log every save and every scalar through absl at INFO; the progress line says enough.
  logging.getLogger("absl").setLevel(logging.WARNING)
  if FLAGS.distributed:  # multi-host: TPU pods and Slurm/MPI GPU clusters are discovered by JAX
    jax.distributed.initialize()
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


def _define_flags():
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cyclegan.py:horse2zebra.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
