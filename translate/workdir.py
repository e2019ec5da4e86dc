"""A training workdir: its config.json and restoring the trained run it holds.

    workdir/config.json     the run's config (written by training, read by inference and evaluation)
    workdir/checkpoints/    Orbax checkpoints of the train state (translate.checkpoint)

`load(workdir)` gives a `TrainedRun`: config, method, restored state (on one device), the frozen
pretrained networks the method uses, and the data shapes it was trained on. A checkpoint of another
method than config.json names is refused (`checkpoint.CheckpointMismatchError`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from translate import checkpoint, methods, parallel
from translate.methods import base


def save_config(config, workdir: str) -> None:
  """Writes config.json atomically."""
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


def set_derived(config, derived: dict) -> None:
  """Sets a method's derived values ({'model.label_names': (...), ...}) in `config`."""
  for key, value in derived.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"check_config derived {key!r}, which is not a config field.")
    node[leaf] = value


def load_frozen(method: base.Method, config, mesh=None) -> dict:
  """The method's frozen pretrained networks, replicated over `mesh` when given."""
  frozen = method.frozen(config)
  if mesh is not None and frozen:
    frozen = parallel.replicate(frozen, mesh)
  return frozen


@dataclasses.dataclass
class TrainedRun:
  workdir: str
  config: Any
  method: base.Method
  state: Any
  step: int
  frozen: dict
  image_shapes: dict  # batch key -> [H, W, C] of the training data


def load(workdir: str, step: int | None = None) -> TrainedRun:
  """The latest (or `step`) checkpoint of `workdir`, restored on one device."""
  config = load_config(workdir)
  method = methods.get(config.method)
  ckpt = checkpoint.Checkpointer(workdir, meta={}, async_save=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{workdir} holds no checkpoint.")
    meta = ckpt.stored_meta(step)
    if meta.get("method") != config.method:
      raise checkpoint.CheckpointMismatchError(
          f"{workdir}: the checkpoint is of method {meta.get('method')!r} but config.json says "
          f"{config.method!r}.")
    mesh = parallel.make_mesh(1)
    frozen = load_frozen(method, config, mesh)
    example = {k: np.zeros((1, *shape), np.float32) for k, shape in meta["image_shapes"].items()}
    optimizers = method.optimizers(config, 1, 1)
    target = jax.eval_shape(
        lambda: method.create_state(config, jax.random.PRNGKey(0), optimizers, example, frozen))
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), target)
    state = ckpt.restore(target, step, check=False)
  finally:
    ckpt.close()
  return TrainedRun(workdir, config, method, state, int(step), frozen, meta["image_shapes"])
