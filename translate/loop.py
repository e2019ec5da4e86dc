"""The training loop: config -> input pipeline -> method state -> jitted step -> writers and checkpoints.

`train_and_evaluate(config, workdir)` trains `config.method` (a `translate.methods.base.Method`) in
`workdir`. A workdir that holds a checkpoint is resumed: same step, parameters, optimiser states, image
pools and RNG, and the data stream continues where it stopped. SIGTERM (preemption) checkpoints and
stops cleanly. The method's frozen pretrained networks are loaded once, replicated over the devices and
passed to the jitted step as their own argument (not part of the checkpointed, donated state).
The command line is `python -m translate.train` (translate/train.py).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from translate import checkpoint, evaluation, methods, parallel, training, visualize, workdir as workdirs
from translate.methods import base


def validate_config(config: ml_collections.ConfigDict, method: base.Method) -> dict:
  """Checks that fail at start-up rather than hours into a run; returns the method's derived values."""
  if config.batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {config.batch_size}.")
  for key in ("log_every", "checkpoint_every"):
    if config[key] < 1:
      raise ValueError(f"{key} must be >= 1 (steps), got {config[key]}.")
  for key in ("sample_every", "eval_every"):
    if config[key] < 0:
      raise ValueError(f"{key} must be >= 0 (steps; 0: only at the end), got {config[key]}.")
  dtype = config.get("dtype", "float32")
  if dtype not in training.COMPUTE_DTYPES:
    raise ValueError(f"config.dtype must be one of {training.COMPUTE_DTYPES}, got {dtype!r}.")
  known = evaluation.metrics_for(method)
  unknown = [m for m in config.eval.metrics if m not in known]
  if unknown:
    raise ValueError(f"Unknown eval metric(s) {unknown}; expected some of {sorted(known)}.")
  return method.check_config(config) or {}


_all_finite_params = jax.jit(lambda params: training.all_finite(params))
SKIPPED = "nonfinite_skipped"  # metric of a step that skip_nonfinite_steps left out


class NonFiniteLossError(FloatingPointError):
  """A training step produced a non-finite loss (or parameters); the run stops before saving it."""


def _check_finite(host_metrics: list[dict], first_step: int, skip: bool) -> None:
  """Raises NonFiniteLossError naming the first step whose loss terms are not all finite; with
  `skip` (skip_nonfinite_steps) such steps were left out by the step itself and are only reported."""
  for i, m in enumerate(host_metrics):
    bad = sorted(k for k, v in m.items() if k != SKIPPED and not np.all(np.isfinite(v)))
    if not bad:
      continue
    terms = ", ".join(f"{k} = {float(np.mean(m[k]))}" for k in bad)
    if skip:
      logging.warning("Step %d skipped (skip_nonfinite_steps): %s", first_step + i, terms)
      continue
    raise NonFiniteLossError(
        f"Non-finite loss at step {first_step + i}: {terms}. The run stopped without saving this "
        f"state: the latest checkpoint holds the last good one. Lower the learning rate, or set "
        f"--config.skip_nonfinite_steps=True to leave such steps out.")


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


def create_train_state(config, method: base.Method, mesh, optimizers, example_batch, frozen=None):
  """The method's state at step 0, replicated over `mesh`."""
  rng = jax.random.PRNGKey(config.seed)
  create = jax.jit(lambda key, frozen: method.create_state(config, key, optimizers, example_batch,
                                                           frozen),
                   out_shardings=parallel.replicated(mesh))
  return create(rng, frozen or {})


def make_sample_fn(config, method: base.Method):
  """Jitted `method.sample_images(config, state, batch, frozen)` that keeps the method's column order
  (a jitted function returns dicts with sorted keys; the order is recorded when it is traced)."""
  order: list[str] = []

  def sample(state, batch, frozen):
    images = method.sample_images(config, state, batch, frozen)
    order[:] = list(images)
    return images

  jitted = jax.jit(sample)

  def run(state, batch, frozen=None) -> dict:
    images = jitted(state, batch, frozen or {})
    return {k: images[k] for k in order}

  return run


def make_train_step(config, method: base.Method, mesh, optimizers):
  """The jitted data-parallel step `(state, batch, frozen) -> (state, metrics)`: the state and the
  frozen networks replicated, the batch split over the devices; only the state is donated. Networks
  compute in `config.dtype` (`training.mixed_precision`)."""
  dtype = config.get("dtype", "float32")

  skip_nonfinite = bool(config.get("skip_nonfinite_steps", False))

  def step(state, batch, frozen):
    with training.mixed_precision(dtype):  # traced once: the policy is read while tracing
      new_state, metrics = method.train_step(config, optimizers, state, batch, frozen)
    if skip_nonfinite:  # a step with a non-finite loss or parameter leaves the learned state as it was
      ok = jnp.logical_and(training.all_finite(metrics), training.all_finite(new_state.params))
      kept = jax.tree_util.tree_map(lambda new, old: jnp.where(ok, new, old), new_state, state)
      new_state = kept.replace(step=new_state.step, rng=new_state.rng)  # the run still moves on
      metrics = {**metrics, SKIPPED: 1.0 - ok.astype(jnp.float32)}
    return new_state, metrics

  return jax.jit(step,
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh),
                               parallel.replicated(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=(0,))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict:
  """Trains `config.method` in `workdir` (resuming a checkpoint there) and returns the last evaluation.

  `num_devices` restricts the mesh to the first devices (tests, benchmarks); default: all devices.
  """
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy, then locked: typos fail
  config.lock()
  method = methods.get(config.method)
  derived = validate_config(config, method)
  if derived:
    logging.info("Derived from the data: %s", derived)
    workdirs.set_derived(config, derived)
  data = method.data
  mesh = parallel.make_mesh(num_devices)
  local_batch = parallel.check_batch_size(config.batch_size, mesh)
  steps_per_epoch = max(1, math.ceil(data.dataset_size(config, "train") / config.batch_size))
  total_steps = run_length(config, steps_per_epoch)
  schedule_steps = (config.optim.n_epochs + config.optim.n_epochs_decay) * steps_per_epoch
  if method.make_optimizers is None and total_steps > schedule_steps:
    raise ValueError(
        f"num_train_steps={config.num_train_steps} is past the end of the learning-rate schedule "
        f"({schedule_steps} steps: optim.n_epochs={config.optim.n_epochs} + "
        f"optim.n_epochs_decay={config.optim.n_epochs_decay} epochs of {steps_per_epoch} steps): the "
        f"last {total_steps - schedule_steps} steps would train at learning rate 0. num_train_steps "
        f"caps a run; lengthen it with the epochs instead.")
  optimizers = method.optimizers(config, steps_per_epoch, total_steps)
  logging.info("%s on %s; %d steps (%d per epoch), global batch %d on %d device(s)", config.method,
               data.describe(config), total_steps, steps_per_epoch, config.batch_size,
               mesh.devices.size)

  def train_dataset(start_batch=0):
    return data.create_dataset(
        config, "train", local_batch, seed=config.seed, train=True,
        process_index=jax.process_index(), process_count=jax.process_count(),
        start_batch=start_batch)

  first_dataset = train_dataset()
  example = _example_batch(first_dataset, method.input_keys)
  meta = {"method": config.method, "model": config.model.to_dict(),
          "image_shapes": {k: list(v.shape[1:]) for k, v in example.items()}}
  # What fixes the learning-rate schedule and the data position (batch b of step s is the stream's
  # s-th batch): a resume must not change it silently.
  meta["schedule"] = {"batch_size": config.batch_size, "steps_per_epoch": steps_per_epoch,
                      "optim": config.optim.to_dict()}
  ckpt = checkpoint.Checkpointer(workdir, meta, max_to_keep=config.keep_checkpoints)
  ckpt.check_compatible()  # before anything is written to the workdir
  ckpt.check_resume("schedule")

  frozen = workdirs.load_frozen(method, config, mesh)
  state = create_train_state(config, method, mesh, optimizers, example, frozen)
  if ckpt.latest_step() is not None:
    state = ckpt.restore_latest(state)
  start_step = int(jax.device_get(state.step))
  if parallel.is_main_process():
    workdirs.save_config(config, workdir)
  logging.info("Parameters: %s", {g: training.count_params(p) for g, p in state.params.items()})

  sample_batch = next(iter(data.create_dataset(
      config, "test", min(8, config.eval.batch_size), seed=config.seed, train=False)
      .take(1).as_numpy_iterator()))
  sample_fn = make_sample_fn(config, method)
  train_step = make_train_step(config, method, mesh, optimizers)
  if start_step < total_steps:  # several processes: all compile before any step runs
    train_step = parallel.compile_everywhere(train_step, state, parallel.global_batch_spec(
        first_dataset.element_spec, config.batch_size, mesh), frozen, name="train_step")
  # The stream is deterministic for a seed, so a resumed run skips the batches it already used.
  batches = train_dataset(start_step).as_numpy_iterator()

  from clu import metric_writers
  writer = metric_writers.create_default_writer(workdir, just_logging=not parallel.is_main_process())
  if start_step == 0:
    writer.write_hparams({k: v for k, v in _flatten(config.to_dict()).items()
                          if isinstance(v, (int, float, str, bool))})

  def write_samples(step):
    # Column by column: to_host on the whole dict would rebuild it with sorted keys.
    images = {k: parallel.to_host(v) for k, v in sample_fn(state, sample_batch, frozen).items()}
    grid = visualize.make_grid(images, max_rows=method.sample_grid_rows)
    if parallel.is_main_process():
      writer.write_images(step, {"samples": grid[None]})
      visualize.save_png(grid, os.path.join(workdir, "samples", f"step_{step:08d}.png"))

  def run_eval(step):
    results = evaluation.evaluate(config, method, state, frozen)
    if results and parallel.is_main_process():
      writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
      evaluation.append_results(workdir, step, results)
      logging.info("eval at step %d: %s", step, results)
    return results

  if start_step >= total_steps:
    logging.warning("Nothing to train: the checkpoint in %s is at step %d and this run has %d steps.",
                    workdir, start_step, total_steps)
  skip = bool(config.get("skip_nonfinite_steps", False))
  results: dict = {}
  pending: list = []  # device metrics of the steps since the last log line
  checked: list = []  # the same on the host, once checked to be finite
  t_last, step_last = time.time(), start_step
  step = start_step

  def check_pending():
    """Brings the pending metrics to the host and stops the run at a non-finite loss."""
    host = [parallel.to_host(m) for m in pending[len(checked):]]
    _check_finite(host, step - len(pending) + len(checked) + 1, skip)
    checked.extend(host)

  try:
    with _Preemption() as preemption:
      while step < total_steps:
        batch = parallel.shard_batch(next(batches), mesh)
        state, metrics = train_step(state, batch, frozen)
        step += 1
        pending.append(metrics)
        if step % config.log_every == 0 or step == total_steps:
          check_pending()
          scalars = {k: _finite_mean([m[k] for m in checked]) for k in checked[0]}
          now = time.time()
          rate = (step - step_last) / max(now - t_last, 1e-9)
          t_last, step_last, pending, checked = now, step, [], []
          scalars["steps_per_sec"] = rate
          writer.write_scalars(step, scalars)
          eta = (total_steps - step) / max(rate, 1e-9)
          logging.info("step %d/%d | %.2f steps/s | ETA %s | %s", step, total_steps, rate,
                       _format_seconds(eta), " ".join(f"{k} {v:.3f}" for k, v in
                                                      sorted(scalars.items()) if k.startswith("loss_")))
        paused = time.time()
        if (config.sample_every > 0 and step % config.sample_every == 0) or step == total_steps:
          write_samples(step)
        if config.eval_every > 0 and step % config.eval_every == 0 and step != total_steps:
          results = run_eval(step)
        t_last += time.time() - paused  # steps/s and the ETA count training time only
        stop = preemption.requested or ckpt.reached_preemption(step)
        if step % config.checkpoint_every == 0 or step == total_steps or stop:
          check_pending()  # never save a state that came from a non-finite step
          if not skip and not bool(jax.device_get(_all_finite_params(state.params))):
            raise NonFiniteLossError(
                f"Non-finite parameters after step {step}; not saved: the latest checkpoint holds "
                f"the last good state. Lower the learning rate, or set "
                f"--config.skip_nonfinite_steps=True.")
          ckpt.save(step, state, force=True)
        if stop:
          logging.warning("Stopped at step %d after a preemption request; rerun to resume.", step)
          return results
    if total_steps > start_step or not results:
      results = run_eval(step)
  finally:
    ckpt.close()  # waits for a checkpoint being written
    writer.flush()
  return results


def _finite_mean(values: list) -> float:
  """The mean over the steps whose value is finite (steps left out by skip_nonfinite_steps are not
  averaged in); NaN when there is none."""
  finite = [float(np.mean(v)) for v in values if np.all(np.isfinite(v))]
  return float(np.mean(finite)) if finite else float("nan")


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
