"""Reads PyTorch `torch.save` files (.pth/.pt) into numpy, without torch and without running pickle code.

    state = translate.torch_io.load("latest_net_G_A.pth")            # {'model.1.weight': ndarray, ...}
    sd = translate.torch_io.load_state_dict("100_params.pt", key="genA2B")
    tensors = translate.torch_io.load_torchscript("default_1.pt")    # {'net.layers.conv.weight': ...}

Format (torch >= 1.6, `_use_new_zipfile_serialization=True`, the default): a zip archive whose entries
live under one top-level folder (`archive/` in recent torch, the file's stem in older ones):
  * `data.pkl`: a pickle (protocol 2) of the saved object. Tensors appear as
    `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)`
    (sometimes with a trailing metadata dict), and each storage as a *persistent id*
    `('storage', <torch.FloatStorage etc.>, key, location, numel)` that refers to
  * `data/<key>`: the storage's raw bytes, `numel` elements of the storage's dtype, in the byte order
    named by the optional `byteorder` entry ('little' when absent, as every file torch writes on
    x86/ARM).
  * bookkeeping entries (`version`, `.data/version`, `.format_version`, ...) that we do not need.

Safety: unpickling normally imports and calls whatever the pickle names. Here every global the pickle
asks for is looked up in a fixed allow-list and replaced by a stand-in of ours (an OrderedDict
stand-in, tensor-rebuild functions that build numpy arrays, storage-type markers, a few builtin
containers); any other global raises `UnsafeCheckpointError` naming it, before anything is imported or
called. Persistent ids are resolved only to storages read from the archive.

TorchScript archives (`torch.jit.save`, read by `load_torchscript`) use the same zip layout and the same
tensor/storage records; their `data.pkl` pickles the module tree instead of a dict: each module is a
`__torch__.<qualified class name>` object built with NEWOBJ and given its attributes (parameters,
buffers, submodules, flags) by BUILD. We map every `__torch__.*` name to an inert record of that name
and its attribute dict, so nothing of the archive's `code/` (the compiled TorchScript source) is read or
run; the tensors are then named by their attribute paths, as `module.state_dict()` names them
(`net.layers.conv.weight`). `torch.jit._pickle.build_{int,double,bool}list` (lists of plain numbers
in module attributes) are allowed too and checked to hold only such numbers. Tensors stored as code
constants (`constants.pkl`) are not parameters and are not read.

Tensors become independent, C-contiguous numpy arrays built from their storage with the saved offset,
shape and strides (views that shared a storage in torch no longer share memory). Dicts, including
OrderedDict state dicts, come back as plain dicts in the saved order, nested as saved; an
OrderedDict's `_metadata` attribute (module versions) is dropped.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import sys
import zipfile
from typing import Any, BinaryIO, Union

import ml_dtypes
import numpy as np

PathOrFile = Union[str, os.PathLike, BinaryIO]


class UnsafeCheckpointError(pickle.UnpicklingError):
  """The checkpoint's pickle references a global outside the allow-list (it was not imported/run)."""


class TorchFormatError(ValueError):
  """A file that is not a readable torch.save zip archive (legacy format, TorchScript, corrupt...)."""


# ----------------------------------------------------------------------------------------------------
# Stand-ins for the torch objects a weights pickle may name
# ----------------------------------------------------------------------------------------------------
class _Sealed:
  """Base of our stand-ins: a pickle's BUILD opcode cannot set attributes on them (the markers are
  shared module-level objects; letting a file change them would poison later loads)."""
  __slots__ = ()

  def __setstate__(self, state):
    raise UnsafeCheckpointError(f"the pickle tries to set state on {self!r}; torch never writes that.")


class _StorageType(_Sealed):
  """Marker for a `torch.<X>Storage` class: only its element dtype matters."""
  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype):
    self.name, self.dtype = name, np.dtype(dtype)

  def __repr__(self):
    return f"<storage type torch.{self.name} ({self.dtype})>"


class _DType(_Sealed):
  """Marker for a `torch.<dtype>` global (used by `_rebuild_tensor_v3`)."""
  __slots__ = ("name", "dtype")

  def __init__(self, name: str, dtype: np.dtype):
    self.name, self.dtype = name, np.dtype(dtype)

  def __repr__(self):
    return f"<dtype torch.{self.name} ({self.dtype})>"


class _TensorClass(_Sealed):
  """Marker for `torch.Tensor` / `torch.nn.parameter.Parameter` (the `new_type` of
  `_rebuild_from_type_v2`); not callable."""
  __slots__ = ("name",)

  def __init__(self, name: str):
    self.name = name

  def __repr__(self):
    return f"<tensor class {self.name}>"


class _Function(_Sealed):
  """One of our rebuild functions as the pickle sees it (a plain function's `__dict__` could be written
  by BUILD)."""
  __slots__ = ("name", "fn")

  def __init__(self, name: str, fn):
    self.name, self.fn = name, fn

  def __call__(self, *args):
    return self.fn(*args)

  def __repr__(self):
    return f"<{self.name}>"


class _OrderedDict(dict):
  """Stand-in for collections.OrderedDict: a dict that ignores pickled instance state (`_metadata`)."""

  def __setstate__(self, state):
    del state  # torch's `_metadata` (per-module version numbers): nothing a numpy state dict needs


class _Tensor(_Sealed):
  """A rebuilt tensor until the end of the load: pickled state never reaches a numpy array."""
  __slots__ = ("array",)

  def __init__(self, array: np.ndarray):
    self.array = array

  def __repr__(self):
    return f"<tensor {self.array.dtype}{list(self.array.shape)}>"


class _Storage(_Sealed):
  """A storage read from the archive: its bytes as a 1-D array of the storage's dtype."""
  __slots__ = ("key", "data")

  def __init__(self, key: str, data: np.ndarray):
    self.key, self.data = key, data

  def __repr__(self):
    return f"<storage data/{self.key}>"


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64,
    "ComplexDoubleStorage": np.complex128,
    # Untyped storages (torch >= 2 for dtypes without a legacy storage class) are bytes; the tensor's
    # dtype then comes with `_rebuild_tensor_v3`.
    "UntypedStorage": np.uint8,
}

_TORCH_DTYPES = {
    "float64": np.float64, "double": np.float64,
    "float32": np.float32, "float": np.float32,
    "float16": np.float16, "half": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32,
    "int16": np.int16, "short": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "bool": np.bool_,
    "complex64": np.complex64, "complex128": np.complex128,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
}


def _rebuild_tensor(storage, storage_offset, size, stride, dtype=None) -> np.ndarray:
  if not isinstance(storage, _Storage):
    raise TorchFormatError(f"a tensor's storage is {type(storage).__name__}, not a storage record.")
  data = storage.data
  if dtype is not None and data.dtype != dtype:
    if data.nbytes % dtype.itemsize:
      raise TorchFormatError(f"storage data/{storage.key} ({data.nbytes} bytes) cannot be read as "
                             f"{dtype}.")
    data = data.view(dtype)
  size = tuple(int(s) for s in size)
  stride = tuple(int(s) for s in stride)
  offset = int(storage_offset)
  if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
    raise TorchFormatError(f"invalid tensor geometry: size {size}, stride {stride}, offset {offset}.")
  if 0 in size:
    return _Tensor(np.zeros(size, data.dtype))
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= data.size:
    raise TorchFormatError(f"tensor (size {size}, stride {stride}, offset {offset}) reaches element "
                           f"{last} of storage data/{storage.key}, which has {data.size}.")
  view = np.lib.stride_tricks.as_strided(
      data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride), writeable=False)
  return _Tensor(np.array(view, order="C"))  # an independent, contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
  del requires_grad, backward_hooks, metadata
  if not isinstance(dtype, _DType):
    raise TorchFormatError(f"_rebuild_tensor_v3 got dtype {dtype!r}, not a torch dtype.")
  return _rebuild_tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  del requires_grad, backward_hooks, state
  return data


_REBUILD_FUNCTIONS = (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
                      _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
  """Tensors with Python attributes / Parameter subclasses: rebuild the plain tensor, drop the rest."""
  del state
  if (not isinstance(func, _Function) or func.fn not in _REBUILD_FUNCTIONS
      or not isinstance(new_type, _TensorClass)):
    raise UnsafeCheckpointError(f"_rebuild_from_type_v2 with {func!r} / {new_type!r} is not a plain "
                                "tensor rebuild.")
  return func(*args)


def _bytes_from_codecs(text, encoding="utf-8"):
  # Protocol-2 pickles store `bytes` as _codecs.encode(str, 'latin1'); nothing else is needed.
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise UnsafeCheckpointError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is outside "
                                "the allow-list (only latin1 bytes are).")
  return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
  functions = {
      ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
      ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
      ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
      ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
      ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
      ("_codecs", "encode"): _bytes_from_codecs,
  }
  allowed: dict[tuple[str, str], Any] = {
      key: _Function(".".join(key), fn) for key, fn in functions.items()}
  allowed.update({
      ("collections", "OrderedDict"): _OrderedDict,
      ("torch", "Tensor"): _TensorClass("torch.Tensor"),
      ("torch._tensor", "Tensor"): _TensorClass("torch.Tensor"),
      ("torch.nn.parameter", "Parameter"): _TensorClass("torch.nn.Parameter"),
      ("torch", "Size"): tuple,
  })
  for name, dtype in _STORAGE_DTYPES.items():
    allowed[("torch", name)] = _StorageType(name, dtype)
  allowed[("torch.storage", "UntypedStorage")] = allowed[("torch", "UntypedStorage")]
  for name, dtype in _TORCH_DTYPES.items():
    allowed[("torch", name)] = _DType(name, dtype)
  # Plain containers (protocol 2 pickles sets/frozensets via REDUCE); Python 3 writes protocol-2
  # GLOBALs of builtins under their Python 2 module name `__builtin__`.
  for module in ("builtins", "__builtin__"):
    for container in (set, frozenset, dict, list, tuple, bytearray):
      allowed[(module, container.__name__)] = container
  return allowed


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves globals only through the allow-list and storages only from the zip."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str, source: str):
    super().__init__(file)
    self._archive, self._prefix, self._byteorder, self._source = archive, prefix, byteorder, source
    self._raw: dict[str, bytes] = {}
    self._storages: dict[tuple[str, str], _Storage] = {}

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      pass
    if module == "torch" and name.endswith("Storage"):
      raise TorchFormatError(f"{self._source}: tensors of storage type torch.{name} (quantized or "
                             "otherwise unsupported) cannot be read without torch.")
    raise UnsafeCheckpointError(
        f"{self._source}: the checkpoint's pickle references the global '{module}.{name}', which is "
        "not on the allow-list of a weights-only load; it was neither imported nor run. Only tensors, "
        "(ordered) dicts and plain Python values can be read; if you trust the file, load it with "
        "torch and re-save just its state dict (torch.save(model.state_dict(), path)).")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid:
      raise UnsafeCheckpointError(f"{self._source}: unexpected persistent id {pid!r}.")
    typename = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
    if typename != "storage" or len(pid) < 5:
      raise TorchFormatError(f"{self._source}: unsupported persistent id {pid!r} (expected "
                             "('storage', type, key, location, numel)).")
    storage_type, key, _location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
      raise TorchFormatError(f"{self._source}: persistent id with storage type {storage_type!r}.")
    key = str(key)
    cached = self._storages.get((key, storage_type.name))
    if cached is not None:
      return cached
    if key not in self._raw:
      name = f"{self._prefix}data/{key}"
      try:
        self._raw[key] = self._archive.read(name)
      except KeyError:
        raise TorchFormatError(f"{self._source}: storage record {name!r} is missing.") from None
    raw = self._raw[key]
    dtype = storage_type.dtype
    if len(raw) != int(numel) * dtype.itemsize:
      raise TorchFormatError(f"{self._source}: storage data/{key} has {len(raw)} bytes, expected "
                             f"{numel} x {dtype.itemsize}.")
    data = np.frombuffer(raw, np.uint8).copy()  # own, writable memory
    if self._byteorder != sys.byteorder:
      # Swap each scalar (each half of a complex); done on unsigned ints so that it also works for
      # ml_dtypes types, whose non-native byte orders numpy cannot represent.
      unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
      if unit > 1:
        data = data.view(f"u{unit}").byteswap().view(np.uint8)
    storage = _Storage(key, data.view(dtype))
    self._storages[(key, storage_type.name)] = storage
    return storage


def _plain(obj):
  """Stand-ins -> plain Python: _OrderedDict -> dict, _Tensor -> ndarray (through containers)."""
  if isinstance(obj, dict):
    return {k: _plain(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_plain(v) for v in obj]
  if isinstance(obj, tuple):
    return tuple(_plain(v) for v in obj)
  if isinstance(obj, _Tensor):
    return obj.array
  if isinstance(obj, _Storage):
    return obj.data.copy()
  return obj


# A legacy (pre-1.6 / `_use_new_zipfile_serialization=False`) file starts with a protocol-2 pickle of
# the magic number 0x1950a86a20f9469cfc6c (LONG1, 10 bytes).
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _legacy_error(source: str) -> TorchFormatError:
  return TorchFormatError(
      f"{source} is in torch's legacy (pre-1.6, non-zip) serialization format, which this reader does "
      "not support. Re-save it with a recent torch: torch.save(torch.load(path), new_path).")


def load(path: PathOrFile) -> Any:
  """Loads a torch.save zip file (path or seekable binary file object) safely; see the module
  docstring.

  Returns the saved object with tensors as numpy arrays: usually a (nested) dict.
  Raises `UnsafeCheckpointError` for pickles that reference non-allow-listed globals and
  `TorchFormatError` for files that are not torch >= 1.6 zip archives (legacy, TorchScript, ...).
  """
  if isinstance(path, (str, os.PathLike)):
    with open(path, "rb") as f:
      return _load_stream(f, os.fspath(path))
  return _load_stream(path, str(getattr(path, "name", "<file object>")))


def _load_stream(stream: BinaryIO, source: str, torchscript: bool = False) -> Any:
  """The unpickled `data.pkl` of a torch zip archive, with stand-ins replaced by plain values (a
  TorchScript archive's root module stays a `_ScriptObject` when `torchscript`)."""
  head = stream.read(len(_LEGACY_MAGIC))
  stream.seek(0)
  if not zipfile.is_zipfile(stream):
    if head.startswith(_LEGACY_MAGIC) or _is_tar(stream):
      raise _legacy_error(source)
    if head[:1] == b"\x80":
      raise TorchFormatError(f"{source} is a bare pickle, not a torch.save zip archive (if torch "
                             "wrote it, it is the legacy pre-1.6 format: re-save it with a recent "
                             "torch: torch.save(torch.load(path), new_path)).")
    raise TorchFormatError(f"{source} is not a torch.save file (not a zip archive).")
  stream.seek(0)
  with zipfile.ZipFile(stream) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.count("/") == 1 and n.split("/")[1] == "data.pkl"]
    script = _is_torchscript_listing(names)
    if script and not torchscript:
      raise TorchFormatError(f"{source} is a TorchScript archive (torch.jit.save), not a torch.save "
                             "state dict; read its tensors by name with "
                             "translate.torch_io.load_torchscript, or save model.state_dict() with "
                             "torch.save instead.")
    if torchscript and not script:
      raise TorchFormatError(f"{source} is not a TorchScript archive (no code/ or constants.pkl "
                             "record); read a torch.save file with translate.torch_io.load.")
    if len(pickles) != 1:
      raise TorchFormatError(f"{source}: expected one '<archive>/data.pkl' record, found "
                             f"{pickles or 'none'} among {names[:10]}.")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "little"
    if f"{prefix}byteorder" in names:
      byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
      if byteorder not in ("little", "big"):
        raise TorchFormatError(f"{source}: unknown byteorder record {byteorder!r}.")
    cls = _TorchScriptUnpickler if torchscript else _RestrictedUnpickler
    unpickler = cls(io.BytesIO(archive.read(pickles[0])), archive, prefix, byteorder, source)
    obj = unpickler.load()
  return obj if torchscript else _plain(obj)


def _is_torchscript_listing(names: list[str]) -> bool:
  """Whether a zip listing is a TorchScript archive: `<archive>/code/...` or `<archive>/constants.pkl`."""
  for name in names:
    parts = name.split("/")
    if len(parts) >= 2 and (parts[1] == "code" or (len(parts) == 2 and parts[1] == "constants.pkl")):
      return True
  return False


def _is_tar(stream: BinaryIO) -> bool:
  # The oldest torch format (< 0.4) is a tar archive ('ustar' magic at offset 257).
  stream.seek(257)
  magic = stream.read(5)
  stream.seek(0)
  return magic == b"ustar"


def load_state_dict(path: PathOrFile, key: str | None = None) -> dict[str, np.ndarray]:
  """A flat state dict {torch key: ndarray} from a .pth file; `key` picks one entry of a checkpoint
  that holds several (U-GAT-IT's {'genA2B': ..., 'disGA': ...}, or {'state_dict': ...})."""
  obj = load(path)
  source = os.fspath(path) if isinstance(path, (str, os.PathLike)) else "<file object>"
  if key is not None:
    if not isinstance(obj, dict) or key not in obj:
      entries = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
      raise KeyError(f"{source}: no entry {key!r}; the file holds {entries}.")
    obj = obj[key]
  if not isinstance(obj, dict):
    raise TorchFormatError(f"{source}: expected a state dict, found {type(obj).__name__}.")
  not_arrays = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
  if not_arrays:
    nested = [k for k in not_arrays if isinstance(obj[k], dict)]
    hint = f" Pick one with key=..., e.g. key={nested[0]!r}." if nested and key is None else ""
    raise TorchFormatError(f"{source}: not a flat state dict; entries {not_arrays[:8]} are not "
                           f"tensors.{hint}")
  return obj


# ----------------------------------------------------------------------------------------------------
# TorchScript archives (torch.jit.save): tensors by name
# ----------------------------------------------------------------------------------------------------
class _ScriptObject:
  """Inert stand-in for one `__torch__.<qualified name>` object of a TorchScript pickle (a module):
  NEWOBJ creates it, BUILD gives it its attribute dict once. One subclass per qualified name per load
  carries the name (`type_name`); nothing is imported or called."""
  __slots__ = ("attributes",)
  type_name = "__torch__"

  def __setstate__(self, state):
    if getattr(self, "attributes", None) is not None:
      raise UnsafeCheckpointError(f"the pickle sets the state of {self.type_name} twice.")
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
      raise TorchFormatError(f"TorchScript object {self.type_name} has a state of type "
                             f"{type(state).__name__}, not an attribute dict (custom __getstate__, "
                             "e.g. packed quantized parameters, is not supported).")
    self.attributes = dict(state)

  def __repr__(self):
    return f"<script object {self.type_name}>"


def _number_list(kind: type):
  def build(values):
    if not isinstance(values, list) or not all(type(v) is kind for v in values):
      raise UnsafeCheckpointError(f"build_{kind.__name__}list got {type(values).__name__} with items "
                                  f"other than {kind.__name__}.")
    return values
  return build


def _tensor_list(values):
  if not isinstance(values, list) or not all(isinstance(v, _Tensor) for v in values):
    raise UnsafeCheckpointError("build_tensorlist got items that are not tensors.")
  return values


def _restore_type_tag(value, type_str):
  del type_str  # the TorchScript static type of a container attribute: nothing we need
  return value


_SCRIPT_FUNCTIONS = {
    ("torch.jit._pickle", "build_intlist"): _Function("build_intlist", _number_list(int)),
    ("torch.jit._pickle", "build_doublelist"): _Function("build_doublelist", _number_list(float)),
    ("torch.jit._pickle", "build_boollist"): _Function("build_boollist", _number_list(bool)),
    ("torch.jit._pickle", "build_tensorlist"): _Function("build_tensorlist", _tensor_list),
    ("torch.jit._pickle", "restore_type_tag"): _Function("restore_type_tag", _restore_type_tag),
}
_QUALIFIED_NAME = re.compile(r"^__torch__(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _TorchScriptUnpickler(_RestrictedUnpickler):
  """The weights-only allow-list plus inert `__torch__.*` module records and TorchScript's number-list
  builders."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._script_classes: dict[str, type] = {}

  def find_class(self, module: str, name: str):
    if _QUALIFIED_NAME.match(module) and _IDENTIFIER.match(name):
      qualified = f"{module}.{name}"
      cls = self._script_classes.get(qualified)
      if cls is None:
        cls = type("ScriptObject", (_ScriptObject,), {"__slots__": (), "type_name": qualified})
        self._script_classes[qualified] = cls
      return cls
    if (module, name) in _SCRIPT_FUNCTIONS:
      return _SCRIPT_FUNCTIONS[(module, name)]
    return super().find_class(module, name)


def _script_tensors(obj: _ScriptObject, prefix: str, out: dict, active: set) -> None:
  if id(obj) in active:  # a module that contains itself: nothing new below it
    return
  active.add(id(obj))
  for name, value in (getattr(obj, "attributes", None) or {}).items():
    if isinstance(value, _Tensor):
      out[prefix + name] = value.array.copy()
    elif isinstance(value, _ScriptObject):
      _script_tensors(value, f"{prefix}{name}.", out, active)
  active.discard(id(obj))


def is_torchscript(path: PathOrFile) -> bool:
  """Whether `path` is a TorchScript zip archive (torch.jit.save) rather than a torch.save file."""
  try:
    if isinstance(path, (str, os.PathLike)):
      with zipfile.ZipFile(path) as archive:
        return _is_torchscript_listing(archive.namelist())
    position = path.tell()
    try:
      with zipfile.ZipFile(path) as archive:
        return _is_torchscript_listing(archive.namelist())
    finally:
      path.seek(position)
  except zipfile.BadZipFile:
    return False


def load_torchscript(path: PathOrFile) -> dict[str, np.ndarray]:
  """The tensors (parameters and buffers) of a TorchScript archive by their dotted attribute paths,
  e.g. {'net.layers.conv.weight': ndarray, ...}, as `torch.jit.load(path).state_dict()` names them;
  without torch and without running the archive's pickle or code (see the module docstring).

  Raises `TorchFormatError` for files that are not TorchScript archives (or hold no tensors) and
  `UnsafeCheckpointError` for pickles that name globals outside the allow-list.
  """
  if isinstance(path, (str, os.PathLike)):
    source = os.fspath(path)
    with open(path, "rb") as f:
      root = _load_stream(f, source, torchscript=True)
  else:
    source = str(getattr(path, "name", "<file object>"))
    root = _load_stream(path, source, torchscript=True)
  if not isinstance(root, _ScriptObject):
    raise TorchFormatError(f"{source}: the TorchScript pickle holds {type(root).__name__}, not a "
                           "module.")
  tensors: dict[str, np.ndarray] = {}
  _script_tensors(root, "", tensors, set())
  if not tensors:
    raise TorchFormatError(f"{source}: the TorchScript module {root.type_name} holds no tensors.")
  return tensors
