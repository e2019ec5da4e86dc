"""Orbax checkpoints of a whole `TrainState`, with the run's identity stored beside it.

Each checkpoint holds two items: `state` (the train state pytree: parameters, optimiser states, pools,
step, RNG) and `meta` (JSON: method, model config, data shapes). Restoring first compares `meta` with the
current run, so a workdir holding another model's checkpoint is refused with a message that says what
differs, before anything is written: a checkpoint is never overwritten by a run it does not belong to.
Restoring targets an abstract state carrying the current shardings, so a run can resume on another
device count. Saving is asynchronous; `wait()` blocks until the last save is on disk.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


# Meta entries compared by `check_resume`, not by `check_compatible`.
RESUME_KEYS = ("schedule",)


class CheckpointMismatchError(ValueError):
  """The checkpoint in a workdir belongs to another method or model configuration."""


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs with the shardings of `tree`: the restore target for any device layout."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)


class Checkpointer:

  def __init__(self, workdir: str, meta: dict, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.meta = json.loads(json.dumps(meta))  # normalised as it will read back
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def stored_meta(self, step: int | None = None) -> dict | None:
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return restored["meta"]

  def check_compatible(self, step: int | None = None) -> None:
    stored = self.stored_meta(step)
    if stored is None:
      return
    resume_keys = set(RESUME_KEYS)
    diffs = _diff({k: v for k, v in stored.items() if k not in resume_keys},
                  {k: v for k, v in self.meta.items() if k not in resume_keys})
    if diffs:
      raise CheckpointMismatchError(
          f"The checkpoint in {self.directory} belongs to another run: " + "; ".join(diffs[:10]) +
          ". Use another --workdir (the existing checkpoint is left untouched).")

  def check_resume(self, key: str = "schedule") -> None:
    """Refuses to resume when `meta[key]` (what fixes the learning-rate schedule and the data
    position: batch size, steps per epoch, optimiser settings) differs from the checkpoint's.
    Checkpoints written before this was stored are resumed as before."""
    stored = self.stored_meta()
    if stored is None or key not in stored:
      return
    diffs = _diff(stored[key], self.meta.get(key), key)
    if diffs:
      raise CheckpointMismatchError(
          f"Resuming the checkpoint in {self.directory} (step {self.latest_step()}) with other "
          f"settings would change its learning-rate schedule or its position in the data: "
          + "; ".join(diffs[:10]) + ". Rerun with the checkpoint's values (its config.json beside "
          "it), or use another --workdir to start afresh (the checkpoint is left untouched).")

  def restore(self, target_state: Any, step: int | None = None, check: bool = True) -> Any:
    """Restores the latest (or given) checkpoint onto the structure and shardings of `target_state`
    (arrays or ShapeDtypeStructs); `check` first compares the stored meta with this run's."""
    step = self.latest_step() if step is None else step
    if check:
      self.check_compatible(step)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_like(target_state))))
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointMismatchError(
          f"The checkpoint at step {step} in {self.directory} does not fit this model's state "
          f"({type(e).__name__}: {str(e)[:500]}). Use another --workdir.") from e
    logging.info("Restored checkpoint of step %d from %s", step, self.directory)
    return restored["state"]

  def save(self, step: int, state: Any, force: bool = False) -> bool:
    saved = self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(self.meta)), force=force)
    if saved:
      logging.info("Saving checkpoint of step %d", step)
    return saved

  def reached_preemption(self, step: int) -> bool:
    return self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _diff(stored: Any, current: Any, prefix: str = "") -> list[str]:
  if isinstance(stored, dict) and isinstance(current, dict):
    out = []
    for k in sorted(set(stored) | set(current)):
      name = f"{prefix}.{k}" if prefix else k
      if k not in stored:
        out.append(f"{name} is new in this run")
      elif k not in current:
        out.append(f"{name} is missing in this run")
      else:
        out += _diff(stored[k], current[k], name)
    return out
  if stored != current:
    return [f"{prefix}: checkpoint has {stored!r}, this run has {current!r}"]
  return []
