"""PyTorch state dicts of the reference networks -> Flax modules and variables.

    module, variables = translate.convert.from_torch(arch, state_dict, **kwargs)
    y = module.apply(variables, x_nhwc)

`arch` names a reference network (see `ARCHS`), `state_dict` maps torch key names to arrays (numpy or
torch tensors), `kwargs` are the reference constructor's own argument names (ngf, n_blocks, ...).
Every torch key must be used and every Flax variable filled: a missing key, an unexpected key (a
checkpoint of another architecture) or a wrong shape raises `StateDictError` naming the key and the
shape expected in torch layout.

Each network module registers its architecture with `register_arch`; it provides a `build(**kwargs)`
returning the module and example inputs for shape inference, and a `mapping(converter, **kwargs)` that
moves torch keys onto Flax paths with the `Converter` helpers below.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import numpy as np


class StateDictError(ValueError):
  """A state dict that does not fit the architecture it is loaded into."""


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  name: str
  build: Callable[..., tuple[nn.Module, tuple, dict]]  # kwargs -> (module, init args, init kwargs)
  mapping: Callable[..., None]  # (converter, **kwargs) -> None
  ignore: tuple[str, ...] = (r"(^|\.)num_batches_tracked$",)  # torch keys that carry nothing we need


_REGISTRY: dict[str, ArchSpec] = {}
# Where each architecture is registered; imported on first use so `convert` has no import cycles.
ARCHS = {
    "cyclegan_resnet": "translate.networks.resnet",
    "pix2pix_unet": "translate.networks.unet",
    "patchgan": "translate.networks.patchgan",
    "ugatit_generator": "translate.networks.ugatit",
    "ugatit_discriminator": "translate.networks.ugatit",
    "stargan_generator": "translate.networks.stargan",
    "stargan_discriminator": "translate.networks.stargan",
    "photo_wct": "translate.networks.photowct",
    "srgan_generator": "translate.networks.srgan", "srgan_discriminator": "translate.networks.srgan",
    "munit_generator": "translate.networks.munit",
    "unit_generator": "translate.networks.munit",
    "munit_discriminator": "translate.networks.munit",
}


def register_arch(name: str, build, mapping, ignore: tuple[str, ...] | None = None) -> None:
  kwargs = {} if ignore is None else {"ignore": ignore}
  _REGISTRY[name] = ArchSpec(name, build, mapping, **kwargs)


def get_arch(name: str) -> ArchSpec:
  if name not in ARCHS:
    raise ValueError(f"Unknown architecture {name!r}; expected one of {sorted(ARCHS)}.")
  importlib.import_module(ARCHS[name])
  return _REGISTRY[name]


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor, without importing torch
    value = value.detach().cpu().numpy()
  return np.asarray(value)


# Each kind: torch array -> flax array, and flax shape -> the torch shape it comes from.
_KINDS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[tuple], tuple]]] = {
    # Conv2d.weight (out, in, kh, kw) -> HWIO
    "conv": (lambda w: w.transpose(2, 3, 1, 0), lambda s: (s[3], s[2], s[0], s[1])),
    # ConvTranspose2d.weight (in, out, kh, kw) -> correlation-form HWIO (flipped)
    "conv_transpose": (lambda w: w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1),
                       lambda s: (s[2], s[3], s[0], s[1])),
    # Linear.weight (out, in) -> (in, out)
    "linear": (lambda w: w.T, lambda s: (s[1], s[0])),
    # vectors and anything stored as is; (1, C, 1, 1) rho/gamma parameters flatten to (C,)
    "vector": (lambda w: w.reshape(-1), lambda s: s),
    "same": (lambda w: w, lambda s: s),
}


class Converter:
  """Moves torch state-dict entries onto a Flax variable tree, checking names and shapes."""

  def __init__(self, arch: str, state_dict: dict[str, Any], expected: dict,
               ignore: tuple[str, ...] = ()):
    if not isinstance(state_dict, dict):
      raise StateDictError(f"{arch}: expected a state dict (a mapping of key -> array), "
                           f"got {type(state_dict).__name__}.")
    self.arch = arch
    self.state_dict = state_dict
    self.expected = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected))
    self.out: dict[tuple[str, ...], np.ndarray] = {}
    self.used: set[str] = set()
    self.ignore = [re.compile(p) for p in ignore]

  # -- generic -------------------------------------------------------------------------------------
  def put(self, torch_key: str, path: tuple[str, ...], kind: str = "same") -> None:
    to_flax, torch_shape_of = _KINDS[kind]
    path = tuple(path)
    if path not in self.expected:
      raise StateDictError(f"{self.arch}: internal mapping error, no Flax variable at {'/'.join(path)} "
                           f"for torch key {torch_key!r}.")
    want = tuple(self.expected[path].shape)
    want_torch = torch_shape_of(want)
    if torch_key not in self.state_dict:
      raise StateDictError(
          f"{self.arch}: missing key {torch_key!r} (expected shape {want_torch}); "
          f"is this a checkpoint of another architecture or of other constructor arguments?")
    value = _to_numpy(self.state_dict[torch_key])
    if kind == "vector" and value.size == int(np.prod(want)):
      value = value.reshape(-1)
    elif tuple(value.shape) != want_torch:
      raise StateDictError(
          f"{self.arch}: key {torch_key!r} has shape {tuple(value.shape)}, expected {want_torch} "
          f"(the constructor arguments do not match the checkpoint?).")
    if not np.issubdtype(value.dtype, np.floating):
      raise StateDictError(f"{self.arch}: key {torch_key!r} has dtype {value.dtype}, expected floats.")
    self.out[path] = np.ascontiguousarray(to_flax(value)).astype(np.float32)
    self.used.add(torch_key)

  def skip(self, torch_key: str) -> None:
    """Marks a key as deliberately unused (it carries nothing our network needs)."""
    self.used.add(torch_key)

  # -- layer helpers: `prefix` is the torch module path, `path` the Flax module path -----------------
  def conv(self, prefix: str, path: tuple[str, ...], bias: bool = True,
           collection: str = "params") -> None:
    self.put(f"{prefix}.weight", (collection, *path, "kernel"), "conv")
    if bias:
      self.put(f"{prefix}.bias", (collection, *path, "bias"), "vector")

  def conv_transpose(self, prefix: str, path: tuple[str, ...], bias: bool = True) -> None:
    self.put(f"{prefix}.weight", ("params", *path, "kernel"), "conv_transpose")
    if bias:
      self.put(f"{prefix}.bias", ("params", *path, "bias"), "vector")

  def linear(self, prefix: str, path: tuple[str, ...], bias: bool = True) -> None:
    self.put(f"{prefix}.weight", ("params", *path, "kernel"), "linear")
    if bias:
      self.put(f"{prefix}.bias", ("params", *path, "bias"), "vector")

  def spectral(self, prefix: str, path: tuple[str, ...], kind: str, bias: bool = True) -> None:
    """A module under torch's hook-based spectral_norm: weight_orig, weight_u, weight_v (and bias)."""
    self.put(f"{prefix}.weight_orig", ("params", *path, "kernel"), kind)
    self.put(f"{prefix}.weight_u", ("spectral", *path, "sn", "u"), "vector")
    self.put(f"{prefix}.weight_v", ("spectral", *path, "sn", "v"), "vector")
    if bias:
      self.put(f"{prefix}.bias", ("params", *path, "bias"), "vector")

  def norm(self, prefix: str, path: tuple[str, ...], affine: bool = True,
           running: bool = True) -> None:
    """BatchNorm2d / InstanceNorm2d(affine, track_running_stats)."""
    if affine:
      self.put(f"{prefix}.weight", ("params", *path, "scale"), "vector")
      self.put(f"{prefix}.bias", ("params", *path, "bias"), "vector")
    if running:
      self.put(f"{prefix}.running_mean", ("batch_stats", *path, "mean"), "vector")
      self.put(f"{prefix}.running_var", ("batch_stats", *path, "var"), "vector")

  # -- result ---------------------------------------------------------------------------------------
  def finish(self) -> dict:
    unexpected = [k for k in self.state_dict if k not in self.used
                  and not any(p.search(k) for p in self.ignore)]
    if unexpected:
      shown = ", ".join(repr(k) for k in unexpected[:8])
      more = f" and {len(unexpected) - 8} more" if len(unexpected) > 8 else ""
      raise StateDictError(f"{self.arch}: unexpected key(s) {shown}{more} "
                           f"(a checkpoint of another architecture or of other constructor arguments?).")
    unfilled = [p for p in self.expected if p not in self.out]
    if unfilled:
      raise StateDictError(f"{self.arch}: internal mapping error, Flax variables not filled: "
                           f"{['/'.join(p) for p in unfilled[:8]]}.")
    return flax.traverse_util.unflatten_dict(self.out)


def from_torch(arch: str, state_dict: dict[str, Any], **kwargs) -> tuple[nn.Module, dict]:
  """Builds the Flax module of `arch` with the reference constructor arguments `kwargs` and fills its
  variables from a torch state dict. Returns `(module, variables)`."""
  spec = get_arch(arch)
  module, args, init_kwargs = spec.build(**kwargs)
  abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, **init_kwargs))
  conv = Converter(arch, dict(state_dict), abstract, spec.ignore)
  spec.mapping(conv, **kwargs)
  variables = jax.tree_util.tree_map(jax.numpy.asarray, conv.finish())
  return module, variables


def load_torch_checkpoint(path: str, arch: str, key: str | None = None, **kwargs):
  """Reads a `.pth` file safely (no pickle code execution) and converts it. `key` picks a sub-dict of
  a checkpoint that holds several networks (e.g. U-GAT-IT's `genA2B`)."""
  from translate import torch_io
  state = torch_io.load(path)
  if key is not None:
    if key not in state:
      raise StateDictError(f"{path}: no entry {key!r}; entries are {sorted(state)[:20]}.")
    state = state[key]
  return from_torch(arch, state, **kwargs)
