"""The functional core shared by every GAN method: train state, optimisers, image pool, net application.

A method owns several networks (e.g. CycleGAN's G_A, G_B, D_A, D_B) grouped by optimiser (`G`, `D`).
Everything that changes during training lives in one `TrainState` pytree, so a train step is a pure
function `(state, batch) -> (state, metrics)` that the engine jits, shards and checkpoints as a whole:
parameters, optimiser states, non-parameter collections (batch statistics, spectral-norm vectors),
method extras such as image pools, the step and the RNG key.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate import layers

PyTree = Any


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict  # group -> net name -> params, e.g. {'G': {'G_A': ..., 'G_B': ...}, 'D': {...}}
  collections: dict  # net name -> {'batch_stats': ..., 'spectral': ...} (may be empty dicts)
  opt_state: dict  # group -> optax state
  extra: dict  # method state that is not learned: image pools, counters
  rng: jax.Array


# ----------------------------------------------------------------------------------------------------
# Optimisers
# ----------------------------------------------------------------------------------------------------
def lr_schedule(base_lr: float, steps_per_epoch: int, n_epochs: int, n_epochs_decay: int,
                policy: str = "linear") -> optax.Schedule:
  """The reference `linear` policy: `base_lr` for `n_epochs`, then linear decay to zero over
  `n_epochs_decay` epochs (per step rather than per epoch, so it is smooth and step-exact on resume).
  `constant` keeps `base_lr`."""
  if policy == "constant" or n_epochs_decay <= 0:
    return optax.constant_schedule(base_lr)
  if policy != "linear":
    raise ValueError(f"Unknown lr policy {policy!r}; expected 'linear' or 'constant'.")
  hold = n_epochs * steps_per_epoch
  decay = max(1, n_epochs_decay * steps_per_epoch)
  return optax.join_schedules(
      [optax.constant_schedule(base_lr), optax.linear_schedule(base_lr, 0.0, decay)], [hold])


def adam(schedule: optax.Schedule, b1: float = 0.5, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0) -> optax.GradientTransformation:
  """torch.optim.Adam: `weight_decay` is an L2 term added to the gradient before the moments (as
  torch's Adam does, and as U-GAT-IT uses it), not decoupled AdamW decay."""
  parts = []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  parts += [optax.scale_by_adam(b1=b1, b2=b2, eps=eps), optax.scale_by_learning_rate(schedule)]
  return optax.chain(*parts)


def final_decay_optimizers(optim_config, total_steps: int, groups=("G", "D")) -> dict:
  """Adam per group (optim.lr_<group>, else optim.lr; b1, b2), constant, then linear decay to 0 over
  the last round(total_steps * optim.decay_fraction) steps: a schedule in steps, for methods whose runs
  are set in steps rather than epochs (DTN, DIAT)."""
  o = optim_config
  decay = int(round(total_steps * o.decay_fraction))
  out = {}
  for group in groups:
    lr = o.get(f"lr_{group}", 0.0) or o.lr
    schedule = optax.constant_schedule(lr)
    if decay > 0:
      schedule = optax.join_schedules(
          [schedule, optax.linear_schedule(lr, 0.0, decay)], [total_steps - decay])
    out[group] = adam(schedule, o.b1, o.b2)
  return out


def make_optimizers(optim_config, steps_per_epoch: int, groups=("G", "D")) -> dict:
  """One Adam per group from `config.optim` (lr, b1, b2, weight_decay, n_epochs, n_epochs_decay,
  lr_policy; per-group `lr_G`/`lr_D` override `lr` when present and > 0)."""
  out = {}
  for group in groups:
    lr = optim_config.get(f"lr_{group}", 0.0) or optim_config.lr
    schedule = lr_schedule(lr, steps_per_epoch, optim_config.n_epochs, optim_config.n_epochs_decay,
                           optim_config.lr_policy)
    out[group] = adam(schedule, optim_config.b1, optim_config.b2,
                      weight_decay=optim_config.get("weight_decay", 0.0))
  return out


def apply_updates(optimizer: optax.GradientTransformation, params: PyTree, opt_state: PyTree,
                  grads: PyTree) -> tuple[PyTree, PyTree]:
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


# ----------------------------------------------------------------------------------------------------
# Networks inside a state
# ----------------------------------------------------------------------------------------------------
def init_net(module: nn.Module, rng: jax.Array, *args, **kwargs) -> tuple[PyTree, dict]:
  """Initialises a module; returns (params, other collections).

  The weights are drawn with an `rbg` key seeded from `rng`: the same distributions, but XLA compiles
  the many differently-shaped draws of a network's init much faster than with threefry on CPU. The
  result is deterministic for a given `rng` (init runs replicated, never partitioned).
  """
  key = jax.random.key(jax.random.bits(rng, (), jnp.uint32), impl="rbg")
  variables = flax.core.unfreeze(module.init({"params": key, "dropout": key}, *args, **kwargs))
  params = variables.pop("params")
  return params, variables


# The mixed-precision policy in force while a train step is traced (`mixed_precision`): None, or the
# dtype that `run_net` computes networks in.
_COMPUTE_DTYPE: list = [None]
COMPUTE_DTYPES = ("float32", "bfloat16")


@contextlib.contextmanager
def mixed_precision(dtype: str = "float32"):
  """Within this context `run_net` computes networks in `dtype` (`config.dtype`).

  "bfloat16": the usual TPU/GPU policy. Floating inputs are cast to bfloat16, so convolutions and
  matmuls run in bfloat16 (layers cast their float32 parameters to the input's dtype); norms compute
  their statistics in float32 (`layers.upcast`); floating outputs come back as float32, so losses,
  gradients, optimiser states and checkpoints stay float32. "float32" (default) changes nothing.
  Raises ValueError for any other name (float16 would need loss scaling, which no method has).
  """
  if dtype not in COMPUTE_DTYPES:
    raise ValueError(f"config.dtype must be one of {COMPUTE_DTYPES}, got {dtype!r}.")
  previous = _COMPUTE_DTYPE[0]
  _COMPUTE_DTYPE[0] = None if dtype == "float32" else jnp.dtype(dtype)
  try:
    yield
  finally:
    _COMPUTE_DTYPE[0] = previous


def _cast_floats(tree: Any, dtype, only_from=None) -> Any:
  def cast(x):
    if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating) and (
        only_from is None or x.dtype == only_from):
      return x.astype(dtype)
    return x
  return jax.tree_util.tree_map(cast, tree)


def run_net(module: nn.Module, params: PyTree, collections: Mapping, *args,
            update: tuple[str, ...] = (), rng: jax.Array | None = None, **kwargs):
  """Applies a module. Collections named in `update` (e.g. 'batch_stats' when training, 'spectral' when
  the power iteration runs) come back updated; returns (output, collections). Under
  `mixed_precision("bfloat16")` the floating inputs are cast to bfloat16 and the outputs back to
  float32."""
  variables = {"params": params, **collections}
  mutable = [c for c in update if c in collections]
  rngs = {"dropout": rng} if rng is not None else None
  compute = _COMPUTE_DTYPE[0]
  if compute is not None:
    args, kwargs = _cast_floats((args, kwargs), compute)
  if mutable:
    out, new = module.apply(variables, *args, mutable=mutable, rngs=rngs, **kwargs)
    result = out, {**collections, **flax.core.unfreeze(new)}
  else:
    result = module.apply(variables, *args, rngs=rngs, **kwargs), dict(collections)
  if compute is not None:
    result = (_cast_floats(result[0], jnp.float32, only_from=compute), result[1])
  return result


def new_state(params: dict, collections: dict, optimizers: dict, rng: jax.Array,
              extra: dict | None = None) -> TrainState:
  """The state at step 0: `params` by group, each group's optimiser state initialised."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, collections=collections,
                    opt_state={g: optimizers[g].init(params[g]) for g in params},
                    extra={} if extra is None else extra, rng=rng)


def init_networks(nets: Mapping[str, nn.Module], inputs: Mapping[str, tuple], rng: jax.Array,
                  group_of: Callable[[str], str]) -> tuple[dict, dict]:
  """Initialises every net of `nets` on its example `inputs[name]` (a tuple of arguments) with its own
  key split from `rng` (in sorted name order); returns (params by group -> net, collections by net)."""
  params: dict = {}
  collections = {}
  for name, key in zip(sorted(nets), jax.random.split(rng, len(nets))):
    p, collections[name] = init_net(nets[name], key, *inputs[name])
    params.setdefault(group_of(name), {})[name] = p
  return params, collections


def update_group(optimizer: optax.GradientTransformation, state: TrainState, group: str,
                 grads: PyTree, params: PyTree | None = None, opt_state: PyTree | None = None
                 ) -> tuple[PyTree, PyTree]:
  """One optimiser step of `group` (its params and optimiser state from `state` unless given):
  (new params, new optimiser state)."""
  params = state.params[group] if params is None else params
  opt_state = state.opt_state[group] if opt_state is None else opt_state
  return apply_updates(optimizer, params, opt_state, grads)


# ----------------------------------------------------------------------------------------------------
# Image pool (Shrivastava et al.; CycleGAN's ImagePool), jit-safe
# ----------------------------------------------------------------------------------------------------
def pool_init(pool_size: int, image_shape: tuple[int, ...], dtype=jnp.float32) -> dict:
  return {"images": jnp.zeros((max(pool_size, 1), *image_shape), dtype),
          "count": jnp.zeros((), jnp.int32)}


def pool_query(pool: dict, images: jax.Array, rng: jax.Array, pool_size: int):
  """CycleGAN's ImagePool.query for a batch, image by image in order: while the pool is not full, each
  image is stored and returned; afterwards, with probability 1/2 a random stored image is returned and
  replaced by the new one, otherwise the new image is returned. Returns (pool, images for D)."""
  if pool_size == 0:
    return pool, images

  def one(carry, inputs):
    stored, count = carry
    image, key = inputs
    k_coin, k_idx = jax.random.split(key)
    not_full = count < pool_size
    swap = jax.random.uniform(k_coin) > 0.5
    idx = jnp.where(not_full, count, jax.random.randint(k_idx, (), 0, pool_size))
    old = stored[idx]
    write = not_full | swap
    stored = stored.at[idx].set(jnp.where(write, image, old))
    out = jnp.where(not_full | ~swap, image, old)
    return (stored, count + not_full.astype(jnp.int32)), out

  keys = jax.random.split(rng, images.shape[0])
  (stored, count), out = jax.lax.scan(one, (pool["images"], pool["count"]),
                                      (jax.lax.stop_gradient(images), keys))
  return {"images": stored, "count": count}, out


def clip_rho(params: PyTree) -> PyTree:
  return layers.clip_rho(params)


def all_finite(tree: PyTree) -> jax.Array:
  """True (a bool scalar) when every floating leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def count_params(params: PyTree) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


def mean_metrics(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  return {k: jnp.mean(v) for k, v in metrics.items()}


def grad_and_aux(loss_fn: Callable, params: PyTree, *args):
  """(loss, aux), grads of `loss_fn(params, *args) -> (loss, aux)`."""
  return jax.value_and_grad(loss_fn, has_aux=True)(params, *args)
