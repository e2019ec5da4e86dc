"""Methods by name: `get(name)` returns a `base.Method`, `names()` lists the built-in ones.

A name is one of: a module `translate/methods/<name>.py` (which defines `METHOD`), a method added with
`register(method)` (e.g. by a test or a user's script before training), or a dotted module path
(`my_project.my_method`) of a module that defines `METHOD`, so that methods outside this package train,
resume and translate through the same CLIs without any shared file knowing their names.
"""
from __future__ import annotations

import importlib
import os

from translate.methods.base import Method

_REGISTERED: dict[str, Method] = {}


def names() -> list[str]:
  """The built-in methods (modules of this package) and the registered ones."""
  here = os.path.dirname(__file__)
  builtin = [f[:-3] for f in os.listdir(here)
             if f.endswith(".py") and not f.startswith("_") and f != "base.py"]
  return sorted(set(builtin) | set(_REGISTERED))


def register(method: Method) -> Method:
  """Makes `method` findable by `get(method.name)` in this process; returns it."""
  if not isinstance(method, Method):
    raise TypeError(f"register takes a translate.methods.base.Method, got {type(method).__name__}.")
  _REGISTERED[method.name] = method
  return method


def _from_module(module_name: str, name: str) -> Method:
  module = importlib.import_module(module_name)
  method = getattr(module, "METHOD", None)
  if not isinstance(method, Method):
    raise ValueError(f"Module {module_name} defines no METHOD (a translate.methods.base.Method), so "
                     f"it is not a method.")
  return method


def get(name: str) -> Method:
  """The method called `name` (see the module docstring); ValueError naming the known ones if none."""
  if name in _REGISTERED:
    return _REGISTERED[name]
  if "." in name:
    try:
      return _from_module(name, name)
    except ModuleNotFoundError as e:
      if e.name is None or not name.startswith(e.name):
        raise
      raise ValueError(f"Unknown method {name!r}: no module {e.name!r}.") from None
  try:
    return _from_module(f"translate.methods.{name}", name)
  except ModuleNotFoundError as e:
    if e.name != f"translate.methods.{name}":
      raise
    raise ValueError(f"Unknown method {name!r}; expected one of {names()}.") from None
