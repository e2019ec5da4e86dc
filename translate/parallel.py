"""Devices, processes and sharding: the one place that knows about them.

Data parallelism as `jax.jit` over a 1-D device mesh: the train state is replicated on every device, the
global batch is split along its first axis over the `data` axis, and XLA partitions the step. This is the
current form of `pmap` (one replica per device): each device computes its share of the batch and the
gradient of the mean loss is the average of the per-device gradients, reduced by XLA. Batch-norm
statistics are those of the global batch (synchronised BN), so a step on N devices equals the same step
on one device with the same global batch.

Methods never see any of this: they write train steps for a global batch; the engine places data and
state with the helpers below and jits the step with the shardings returned here.

Several processes (multi-host, `jax.distributed.initialize`): the mesh holds every process's devices,
process p's in one block, so process p feeds rows [p * L, (p + 1) * L) of each global batch of
P * L rows (`check_batch_size` verifies it); the data modules give each process exactly those rows of
one global stream, so P processes train on the same global batches as one. `split_batch` and
`gather_batch` run evaluation batches over all devices of all processes and bring the results back to
every process.
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
    if jax.process_count() > 1 and num_devices != len(devices):
      raise ValueError(f"num_devices={num_devices} with {jax.process_count()} processes: a "
                       f"multi-process run uses all {len(devices)} devices.")
    devices = devices[:num_devices]
  mesh = jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)
  if jax.process_count() > 1:  # each process's devices in one block, in process order (stable sort)
    ordered = sorted(mesh.devices.flat, key=lambda d: d.process_index)
    mesh = Mesh(np.array(ordered), (DATA_AXIS,), axis_types=(AxisType.Auto,))
  return mesh


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Returns the per-process batch size L; the global batch must split evenly over devices, and this
  process's devices must hold rows [process_index * L, (process_index + 1) * L) of it (the rows its
  input pipeline reads)."""
  n_dev = mesh.devices.size
  if global_batch_size % n_dev:
    raise ValueError(f"The global batch size {global_batch_size} is not divisible by the "
                     f"{n_dev} devices; use a multiple of {n_dev} (one share per device).")
  local = global_batch_size // jax.process_count()
  rows = process_rows(mesh, global_batch_size)
  expected = range(jax.process_index() * local, (jax.process_index() + 1) * local)
  if rows != expected:
    raise ValueError(f"Process {jax.process_index()}'s devices hold rows {rows} of the global batch, "
                     f"not {expected}: every process needs the same number of devices.")
  return local


def process_rows(mesh: Mesh, global_batch_size: int) -> range:
  """Rows of a batch-sharded global batch that live on this process's devices (a range; raises if
  they are not contiguous)."""
  index_map = batch_sharded(mesh).addressable_devices_indices_map((global_batch_size,))
  starts = sorted({(i[0].start or 0, global_batch_size if i[0].stop is None else i[0].stop)
                   for i in index_map.values()})
  for (_, stop), (start, _) in zip(starts, starts[1:]):
    if stop != start:
      raise ValueError(f"This process's devices hold rows {starts} of the global batch: not one "
                       f"block, which the input pipeline's per-process rows assume.")
  return range(starts[0][0], starts[-1][1])


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Places this process's part of the global batch on its devices, split along the batch axis."""
  sharding = batch_sharded(mesh)
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Copies a pytree onto every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def to_host(tree: Any) -> Any:
  """Fetches a pytree to numpy on every process: arrays on this process's devices, replicated ones,
  and arrays split over several processes (gathered from all of them, a collective: every process
  must call it)."""
  return jax.tree_util.tree_map(_fetch, tree)


def _fetch(x: Any) -> np.ndarray:
  if (isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated):
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def gather_batch(x: jax.Array) -> np.ndarray:
  """All rows of a batch-sharded array on this host (multi-host safe)."""
  return _fetch(x)


def split_batch(tree: Any, mesh: Mesh) -> tuple[Any, int]:
  """A host batch that every process holds whole (e.g. a test batch), split over all devices of the
  mesh: rows padded (repeating the last row) to a multiple of the device count. Returns the global
  arrays and the number of real rows; cut the results of `gather_batch` to it. Only for computations
  where each row is independent of the others (the padding rows must not change the real ones)."""
  leaves = jax.tree_util.tree_leaves(tree)
  n = len(leaves[0])
  pad = -n % mesh.devices.size
  sharding = batch_sharded(mesh)

  def place(x):
    x = np.asarray(x)
    if pad:
      x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(place, tree), n


def mesh_of(tree: Any) -> Mesh | None:
  """The mesh the first array of `tree` is placed on with a NamedSharding (None otherwise)."""
  for leaf in jax.tree_util.tree_leaves(tree):
    sharding = getattr(leaf, "sharding", None)
    if isinstance(sharding, NamedSharding):
      return sharding.mesh
  return None


def is_main_process() -> bool:
  return jax.process_index() == 0


_barriers = 0


def barrier(name: str, timeout_s: int = 3600) -> None:
  """Waits until every process gets here (the distributed runtime's coordination service, not a
  device collective); nothing with one process. Every process must call it in the same order."""
  global _barriers
  if jax.process_count() == 1:
    return
  import orbax.checkpoint as ocp
  _barriers += 1
  ocp.multihost.sync_global_processes(f"translate_{name}_{_barriers}", timeout=timeout_s,
                                      processes=set(range(jax.process_count())))


def compile_everywhere(jitted, *args, name: str = "compiled") -> Any:
  """`jitted` compiled for `args` (arrays or ShapeDtypeStructs with shardings) on every process, then a
  barrier. With several processes the first cross-process collective must not wait long for a peer
  that is still compiling (CPU's gloo collectives give up after 30 s). One process: `jitted` itself."""
  if jax.process_count() == 1:
    return jitted
  compiled = jitted.lower(*args).compile()
  barrier(name)
  return compiled


def global_batch_spec(local_spec: dict, global_batch_size: int, mesh: Mesh) -> dict:
  """ShapeDtypeStructs of global batches, batch-sharded over `mesh`, from a per-process dataset's
  element_spec (TensorSpecs of (L, ...) batches)."""
  sharding = batch_sharded(mesh)
  return {k: jax.ShapeDtypeStruct((global_batch_size, *v.shape[1:]), v.dtype.as_numpy_dtype,
                                  sharding=sharding) for k, v in local_spec.items()}
