"""Devices, processes and sharding: the one place that knows about them.

Data parallelism as `jax.jit` over a 1-D device mesh: the train state is replicated on every device, the
global batch is split along its first axis over the `data` axis, and XLA partitions the step. This is the
current form of `pmap` (one replica per device): each device computes its share of the batch and the
gradient of the mean loss is the average of the per-device gradients, reduced by XLA. Batch-norm
statistics are those of the global batch (synchronised BN), so a step on N devices equals the same step
on one device with the same global batch.

Methods never see any of this: they write train steps for a global batch; the engine places data and
state with the helpers below and jits the step with the shardings returned here.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over all devices (or the first `num_devices`), with the Auto axis type so that
  jit-partitioned code needs no explicit sharding annotations inside methods."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(f"Asked for {num_devices} devices, only {len(devices)} are present.")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Returns the per-process batch size; the global batch must split evenly over devices."""
  n_dev = mesh.devices.size
  if global_batch_size % n_dev:
    raise ValueError(f"The global batch size {global_batch_size} is not divisible by the "
                     f"{n_dev} devices; use a multiple of {n_dev} (one share per device).")
  return global_batch_size // jax.process_count()


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Places this process's part of the global batch on its devices, split along the batch axis."""
  sharding = batch_sharded(mesh)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Copies a pytree onto every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_host(tree: Any) -> Any:
  """Fetches a (replicated or fully addressable) pytree to numpy."""
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)


def gather_batch(x: jax.Array) -> np.ndarray:
  """All rows of a batch-sharded array on this host (multi-host safe)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def is_main_process() -> bool:
  return jax.process_index() == 0
