"""Bad image data, found by fuzzing (hypothesis): every file either reads as the right tensor or fails
with an error naming it, in training's loaders and in inference alike.

Random sizes (1x1, non-square, a header claiming a decompression-bomb size), PIL modes (1, L, LA, P,
P with transparency, RGB, RGBA, CMYK, I;16, 16-bit RGB), formats (PNG, JPEG, BMP, GIF, WebP, TIFF),
EXIF orientations 1-8, truncated, zero-byte and text files, wrong and upper-case extensions, and
folders with hidden files (.DS_Store, macOS's ._x.png, .ipynb_checkpoints/). The oracle for a good
file is PIL's own reading (`ImageOps.exif_transpose(Image.open(f)).convert('RGB')`, grey as
`images.grey_uint8` of it); which files are bad follows from what was written. Runs derandomized (a
fixed sequence of examples, no example database), so CI is reproducible. The faults the fuzzing found
each have an example-based test below (`test_fault_*`).
"""
import io
import logging
import os
import struct
import tempfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st
from PIL import Image, ImageOps

from tests.helpers import make_batch, tiny_config
from translate import cli, inference
from translate import translate as translate_cli
from translate.data import images as image_files
from translate.data import input_pipeline

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# The modes PIL writes in each format ("P+trns": a palette with a transparent index; "RGB;16": a
# 16-bit RGB PNG, "RGB;adam7" an interlaced one, both written by hand since PIL writes neither;
# "RGB;progressive" a progressive JPEG, "RGB;444" one without chroma subsampling; "P;animated" a
# 2-frame GIF, read as its first frame).
WRITES = {
    "PNG": ("1", "L", "LA", "P", "P+trns", "RGB", "RGBA", "I;16", "RGB;16", "RGB;adam7"),
    "JPEG": ("L", "RGB", "CMYK", "RGB;progressive", "RGB;444"),
    "BMP": ("1", "L", "P", "RGB", "RGBA"),
    "GIF": ("L", "P", "P+trns", "RGB", "P;animated"),
    "WEBP": ("RGB", "RGBA"),
    "TIFF": ("L", "RGB"),
}
EXTENSION = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp",
             "TIFF": ".tif"}
EXIF_FORMATS = ("PNG", "JPEG", "WEBP")
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))
_ALPHA_OR_DEEP = ("LA", "RGBA", "I;16", "RGB;16")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, colour: int, bits: int, raw: bytes,
              interlace: int = 0) -> bytes:
  """A PNG with valid chunk checksums around `raw` (filtered rows, zlib-compressed here)."""
  ihdr = struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, interlace)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
          + _png_chunk(b"IEND", b""))


def encode(fmt: str, mode: str, width: int, height: int, seed: int, orientation: int = 1) -> bytes:
  """Random pixels of (width, height) in PIL `mode`, encoded as `fmt` (EXIF orientation if given)."""
  rng = np.random.default_rng(seed)
  rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  if mode == "RGB;16":
    rows = rng.integers(0, 256, (height, width * 6), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    return png_bytes(width, height, 2, 16, raw)
  if mode == "RGB;adam7":  # Adam7's 7 passes of unfiltered rows
    raw = b"".join(b"\x00" + row.tobytes() for x0, y0, dx, dy in ADAM7
                   for row in rgb[y0::dy, x0::dx] if row.size)
    return png_bytes(width, height, 2, 8, raw, interlace=1)
  kwargs = {}
  if mode == "RGB;progressive":
    mode, kwargs = "RGB", {"progressive": True}
  elif mode == "RGB;444":
    mode, kwargs = "RGB", {"subsampling": 0}
  elif mode == "P;animated":
    second = Image.fromarray(255 - rgb).convert("P")
    mode, kwargs = "P", {"save_all": True, "append_images": [second], "duration": 100}
  if mode == "I;16":
    image = Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
  elif mode == "RGBA":
    alpha = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
    image = Image.fromarray(np.concatenate([rgb, alpha], axis=-1))
  elif mode == "P+trns":
    image = Image.fromarray(rgb).convert("P")
  else:
    image = Image.fromarray(rgb).convert(mode)
  if mode == "P+trns":
    kwargs["transparency"] = 0
  if fmt == "JPEG":
    kwargs["quality"] = 90
  if fmt == "WEBP":
    kwargs["lossless"] = True
  if orientation != 1:
    exif = image.getexif()
    exif[image_files.EXIF_ORIENTATION] = orientation
    kwargs["exif"] = exif.tobytes()
  out = io.BytesIO()
  image.save(out, fmt, **kwargs)
  return out.getvalue()


def should_read(fmt: str, mode: str, data: bytes) -> bool:
  """Whether an intact file should read: a format TF decodes, 8-bit, no alpha; no palette or 1-bit
  BMP (TF's BMP decoder misreads or refuses those). PIL's reopened mode is the mode in the file
  (PIL writes RGB as a palette GIF, and RGBA as a 32-bit BMP, whose fourth byte BMP readers, PIL's
  and TF's alike, ignore: it reads as RGB)."""
  if fmt == "TIFF" or mode == "RGB;16":
    return False
  with Image.open(io.BytesIO(data)) as image:
    stored = image.mode
  return not (fmt == "BMP" and stored in ("P", "1")) and stored not in _ALPHA_OR_DEEP


def pil_upright_rgb(path: str) -> np.ndarray:
  with Image.open(path) as image:
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def as_float(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float32) / 127.5 - 1.0


# ----------------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------------
sizes = st.one_of(st.integers(1, 40), st.sampled_from([1, 2, 3, 97, 317]))


@st.composite
def image_files_(draw):
  """(name, bytes, expectation) of one file: 'read' (must read as PIL reads it), 'error' (must fail
  naming the file) or 'either' (a truncated file that may still hold a whole image: then it must read
  as PIL reads it)."""
  fmt = draw(st.sampled_from(sorted(WRITES)))
  mode = draw(st.sampled_from(WRITES[fmt]))
  width, height = draw(sizes), draw(sizes)
  orientation = draw(st.integers(1, 8)) if fmt in EXIF_FORMATS and ";" not in mode else 1
  data = encode(fmt, mode, width, height, draw(st.integers(0, 2**16)), orientation)
  expect = "read" if should_read(fmt, mode, data) else "error"
  damage = draw(st.sampled_from(["none"] * 5 + ["truncated"] * 3 + ["zero", "text", "bomb_header",
                                                                  "short_pixels"]))
  if damage == "truncated":
    data = data[:max(1, int(len(data) * draw(st.floats(0.05, 0.98))))]
    expect = "either" if expect == "read" else "error"
  elif damage == "zero":
    data, expect = b"", "error"
  elif damage == "text":
    data, expect = draw(st.text(max_size=60)).encode(), "error"
  elif damage == "bomb_header":  # a header claiming 1x to 40x PIL's limit over ~100 bytes of data
    side = int(np.sqrt(Image.MAX_IMAGE_PIXELS * draw(st.floats(1.01, 40.0)))) + 1
    data, expect = png_bytes(side, side, 0, 8, b"\x00" * 100), "error"
  elif damage == "short_pixels":  # intact chunks, fewer rows than the header says
    rows = draw(st.integers(0, max(0, height - 1)))
    raw = b"".join(b"\x00" + bytes(width) for _ in range(rows))
    data = png_bytes(width, height, 0, 8, raw, interlace=int(draw(st.booleans())))
    fmt, expect = "PNG", "error"
  event(f"{fmt} {mode} damage={damage}")
  extension = EXTENSION[fmt]
  naming = draw(st.sampled_from(["right", "right", "upper", "wrong"]))
  if naming == "upper":
    extension = extension.upper()
  elif naming == "wrong":  # e.g. PNG bytes named .jpg, JPEG bytes named .png
    extension = draw(st.sampled_from([e for e in (".png", ".jpg", ".gif") if e != extension]))
  return f"img{extension}", data, expect, orientation


# ----------------------------------------------------------------------------------------------------
# One file: start-up validation, TF decoding (training), inference.read_image
# ----------------------------------------------------------------------------------------------------
@settings(FUZZ, max_examples=500)
@given(image_files_())
def test_fuzz_one_file_reads_as_pil_or_fails_naming_it(case):
  name, data, expect, orientation = case
  event(f"expect {expect}")  # --hypothesis-show-statistics shows the mix
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
      f.write(data)
    try:
      info = image_files.inspect_image(path)
    except image_files.ImageFileError as e:
      assert expect in ("error", "either"), f"a good file was refused: {e}"
      assert path in str(e)
      for channels in (3, 1):  # inference refuses it alike, naming it
        with pytest.raises(ValueError) as refused:
          inference.read_image(path, channels)
        assert path in str(refused.value)
      return
    assert expect in ("read", "either"), f"{name} ({len(data)} bytes) should have been refused"
    upright = pil_upright_rgb(path)
    h, w = upright.shape[:2]
    stored = (info.height, info.width)
    assert (h, w) == (stored[::-1] if info.orientation >= 5 else stored)
    assert info.orientation == orientation
    # training: TF's decoder + the EXIF orientation, exactly PIL's pixels
    decoded = input_pipeline.decode_image(data)
    np.testing.assert_array_equal(
        input_pipeline.apply_orientation(decoded, info.orientation).numpy(), upright)
    # inference: the configured channels, the same values
    np.testing.assert_array_equal(inference.read_image(path, 3), as_float(upright))
    np.testing.assert_array_equal(inference.read_image(path, 1),
                                  as_float(image_files.grey_uint8(upright)))


# ----------------------------------------------------------------------------------------------------
# A training folder: hidden files ignored, a bad file stops the run at start-up or is skipped
# ----------------------------------------------------------------------------------------------------
GOOD_READS = [(fmt, mode) for fmt, modes in WRITES.items() for mode in modes
              if fmt != "TIFF" and mode not in _ALPHA_OR_DEEP and not (fmt == "BMP" and mode in "1P")]
BAD_KINDS = ("zero", "text_as_png", "png_as_truncated", "rgba", "sixteen_bit", "one_bit_bmp",
             "palette_bmp", "short_pixels", "bomb_header", "tiff_named_png")


def bad_file(kind: str, seed: int) -> tuple[str, bytes]:
  """(name, bytes) of a bad file of `kind`."""
  if kind == "zero":
    return "bad.png", b""
  if kind == "text_as_png":
    return "bad.png", b"not an image\n"
  if kind == "png_as_truncated":
    data = encode("PNG", "RGB", 8, 8, seed)
    return "bad.png", data[:len(data) // 2]
  if kind == "rgba":
    return "bad.png", encode("PNG", "RGBA", 8, 8, seed)
  if kind == "sixteen_bit":
    return "bad.png", encode("PNG", "RGB;16", 8, 8, seed)
  if kind == "one_bit_bmp":
    return "bad.bmp", encode("BMP", "1", 8, 8, seed)
  if kind == "palette_bmp":
    return "bad.bmp", encode("BMP", "P", 8, 8, seed)
  if kind == "short_pixels":
    return "bad.png", png_bytes(8, 8, 0, 8, b"\x00" * 9 * 3)
  if kind == "bomb_header":
    return "bad.png", png_bytes(20000, 20000, 0, 8, b"\x00" * 100)
  if kind == "tiff_named_png":
    return "bad.png", encode("TIFF", "RGB", 8, 8, seed)
  raise ValueError(kind)


def write_hidden_files(folder: str, which: list[str]) -> None:
  if "ds_store" in which:
    with open(os.path.join(folder, ".DS_Store"), "wb") as f:
      f.write(b"\x00\x00\x00\x01Bud1" + bytes(64))
  if "appledouble" in which:  # macOS's resource fork next to a copied image: not a PNG
    with open(os.path.join(folder, "._a.png"), "wb") as f:
      f.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(32))
  if "checkpoints" in which:
    os.makedirs(os.path.join(folder, ".ipynb_checkpoints"))
    with open(os.path.join(folder, ".ipynb_checkpoints", "a-checkpoint.png"), "w") as f:
      f.write("text")


@st.composite
def training_folders(draw):
  """Good images (sizes multiples of 4, so preprocess='none' keeps them exact), hidden files, and
  maybe one bad file."""
  goods = []
  for i in range(draw(st.integers(1, 3))):
    fmt, mode = draw(st.sampled_from(GOOD_READS))
    w, h = draw(st.sampled_from([4, 8, 12])), draw(st.sampled_from([4, 8, 12]))
    orientation = draw(st.integers(1, 8)) if fmt in EXIF_FORMATS else 1
    goods.append((f"{'abc'[i]}{EXTENSION[fmt]}", encode(fmt, mode, w, h, draw(st.integers(0, 999)),
                                                         orientation)))
  hidden = draw(st.lists(st.sampled_from(["ds_store", "appledouble", "checkpoints"]), unique=True))
  bad = draw(st.one_of(st.none(), st.sampled_from(BAD_KINDS)))
  return goods, hidden, bad, draw(st.sampled_from([1, 3]))


def folder_config(root: str, channels: int, skip: bool):
  from translate import config_base
  c = config_base.data_config()
  c.update(source="folder", path=root, preprocess="none", input_nc=channels, output_nc=3,
           no_flip=True, serial_batches=True, skip_bad_images=skip)
  return c


class _Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@settings(FUZZ, max_examples=12)
@given(training_folders())
def test_fuzz_training_folder_stops_or_skips_with_the_name_never_silently(case):
  goods, hidden, bad, channels = case
  with tempfile.TemporaryDirectory() as root:
    a_dir, b_dir = os.path.join(root, "trainA"), os.path.join(root, "trainB")
    os.makedirs(a_dir)
    os.makedirs(b_dir)
    for name, data in goods:
      with open(os.path.join(a_dir, name), "wb") as f:
        f.write(data)
    with open(os.path.join(b_dir, "b.png"), "wb") as f:
      f.write(encode("PNG", "RGB", 8, 8, 0))
    write_hidden_files(a_dir, hidden)
    bad_path = None
    if bad:
      name, data = bad_file(bad, 1)
      bad_path = os.path.join(a_dir, name)
      with open(bad_path, "wb") as f:
        f.write(data)
    listed = sorted(os.path.join(a_dir, n) for n, _ in goods) + ([bad_path] if bad else [])
    assert image_files.list_image_files(a_dir) == sorted(listed)  # hidden files never listed
    assert inference.list_inputs(a_dir) == sorted(listed)  # nor given to inference
    good_paths = sorted(os.path.join(a_dir, n) for n, _ in goods)

    def first_pass(config):
      ds = input_pipeline.create_dataset(config, "train", 1, train=False)
      return [batch["A"][0] for batch in ds.as_numpy_iterator()][:len(good_paths)]

    if bad:
      with pytest.raises(image_files.ImageFileError) as error:
        first_pass(folder_config(root, channels, skip=False))
      assert bad_path in str(error.value)
    records = _Records()
    logging.getLogger().addHandler(records)
    try:
      config = folder_config(root, channels, skip=True)
      assert input_pipeline.dataset_size(config, "train") == len(good_paths)
      images = first_pass(config) if bad else first_pass(folder_config(root, channels, False))
    finally:
      logging.getLogger().removeHandler(records)
    if bad:  # skipped, with a warning naming it
      assert any(bad_path in m and "skip_bad_images" in m for m in records.messages), records.messages
    assert len(images) == len(good_paths)
    for path, image in zip(good_paths, images):
      upright = pil_upright_rgb(path)
      expected = image_files.grey_uint8(upright) if channels == 1 else upright
      np.testing.assert_array_equal(image, as_float(expected))


@st.composite
def paired_folders(draw):
  """A|B images (width 8 or 16, height 4 or 8: halves stay multiples of 4), maybe one bad file."""
  goods = []
  for i in range(draw(st.integers(1, 2))):
    fmt, mode = draw(st.sampled_from(GOOD_READS))
    w, h = draw(st.sampled_from([8, 16])), draw(st.sampled_from([4, 8]))
    orientation = draw(st.sampled_from([1, 2, 3, 4])) if fmt in EXIF_FORMATS else 1
    goods.append((f"{'ab'[i]}{EXTENSION[fmt]}", encode(fmt, mode, w, h, draw(st.integers(0, 999)),
                                                        orientation)))
  bad = draw(st.one_of(st.none(), st.sampled_from(BAD_KINDS)))
  return goods, bad, draw(st.sampled_from(["AtoB", "BtoA"]))


@settings(FUZZ, max_examples=6)
@given(paired_folders())
def test_fuzz_paired_folder_halves_or_the_bad_file_named(case):
  goods, bad, direction = case
  with tempfile.TemporaryDirectory() as root:
    folder = os.path.join(root, "train")
    os.makedirs(folder)
    for name, data in goods:
      with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    from translate import config_base
    config = config_base.data_config()
    config.update(source="paired_folder", path=root, preprocess="none", direction=direction,
                  no_flip=True, serial_batches=True)
    if bad:
      name, data = bad_file(bad, 3)
      with open(os.path.join(folder, "c_" + name), "wb") as f:
        f.write(data)
      with pytest.raises(image_files.ImageFileError) as error:
        input_pipeline.create_dataset(config, "train", 1, train=False)
      assert os.path.join(folder, "c_" + name) in str(error.value)
      config.skip_bad_images = True
    ds = input_pipeline.create_dataset(config, "train", 1, train=False)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == len(goods)
    for (name, _), batch in zip(sorted(goods), batches):
      upright = pil_upright_rgb(os.path.join(folder, name))
      half = upright.shape[1] // 2
      a, b = upright[:, :half], upright[:, half:]
      if direction == "BtoA":
        a, b = b, a
      np.testing.assert_array_equal(batch["A"][0], as_float(a))
      np.testing.assert_array_equal(batch["B"][0], as_float(b))


# ----------------------------------------------------------------------------------------------------
# The inference command line on folders of fuzzed files
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny CycleGAN (RGB) workdir, initialized (not trained: the checks are about files, and its
  output equals the generator applied by hand)."""
  from translate import checkpoint, loop, methods, parallel, workdir as workdirs
  path = str(tmp_path_factory.mktemp("fuzz") / "run")
  config = tiny_config("cyclegan", batch_size=1)
  config.data.update(input_nc=3, output_nc=3)
  method = methods.get("cyclegan")
  mesh = parallel.make_mesh(1)
  batch = make_batch("cyclegan", config, np.random.default_rng(0), 1)
  state = loop.create_train_state(config, method, mesh, method.optimizers(config, 1, 1), batch,
                                  workdirs.load_frozen(method, config, mesh))
  meta = {"method": "cyclegan", "model": config.model.to_dict(),
          "image_shapes": {k: list(v.shape[1:]) for k, v in batch.items()}}
  ckpt = checkpoint.Checkpointer(path, meta, async_save=False)
  ckpt.save(1, state, force=True)
  ckpt.close()
  workdirs.save_config(config, path)
  return path


@pytest.fixture(scope="module")
def predictor(workdir):
  return inference.Predictor(workdir)


@pytest.fixture
def restore_logging():
  """translate.cli.setup_logging changes process-wide logging: put it back after a test."""
  import jax
  root = logging.getLogger()
  saved = (root.level, list(root.handlers))
  names = ("jax", "jaxlib", *cli.LIBRARY_LOGGERS)
  loggers = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate,
                 list(logging.getLogger(n).handlers)) for n in names}
  level = jax.config.jax_logging_level
  yield
  jax.config.update("jax_logging_level", level)
  root.setLevel(saved[0])
  root.handlers[:] = saved[1]
  for n, (lvl, propagate, handlers) in loggers.items():
    logger = logging.getLogger(n)
    logger.setLevel(lvl)
    logger.propagate = propagate
    logger.handlers[:] = handlers


@st.composite
def inference_folders(draw):
  goods = []
  for i in range(draw(st.integers(1, 2))):
    fmt, mode = draw(st.sampled_from(GOOD_READS))
    w, h = draw(st.sampled_from([8, 12])), draw(st.sampled_from([8, 12]))
    orientation = draw(st.integers(1, 8)) if fmt in EXIF_FORMATS else 1
    goods.append((f"{'xy'[i]}{EXTENSION[fmt]}", encode(fmt, mode, w, h, draw(st.integers(0, 999)),
                                                        orientation)))
  hidden = draw(st.lists(st.sampled_from(["ds_store", "appledouble", "checkpoints"]), unique=True))
  return goods, hidden, draw(st.one_of(st.none(), st.sampled_from(BAD_KINDS)))


@settings(FUZZ, max_examples=12)
@given(inference_folders())
def test_fuzz_inference_writes_every_good_file_or_nothing_naming_the_bad_one(predictor, case):
  goods, hidden, bad = case
  with tempfile.TemporaryDirectory() as tmp:
    src, out = os.path.join(tmp, "in"), os.path.join(tmp, "out")
    os.makedirs(src)
    for name, data in goods:
      with open(os.path.join(src, name), "wb") as f:
        f.write(data)
    write_hidden_files(src, hidden)
    if bad:
      name, data = bad_file(bad, 2)
      with open(os.path.join(src, "a_" + name), "wb") as f:  # sorted first among the inputs
        f.write(data)
      with pytest.raises(ValueError) as error:
        inference.run_files(predictor, src, out)
      assert os.path.join(src, "a_" + name) in str(error.value)
      assert not os.path.exists(out) or not os.listdir(out)  # nothing written
      return
    written = inference.run_files(predictor, src, out)
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in written)
    assert len(written) == len(goods)
    for name, _ in goods:
      x = as_float(pil_upright_rgb(os.path.join(src, name)))
      y = predictor.translate(x[None])[0]
      expected = np.clip((y + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
      out_path = os.path.join(out, os.path.splitext(name)[0] + ".png")
      np.testing.assert_array_equal(np.asarray(Image.open(out_path)), expected)


def test_cli_main_bad_file_one_line_error_and_nothing_written(workdir, tmp_path, capsys,
                                                             restore_logging):
  src, out = tmp_path / "in", tmp_path / "out"
  src.mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")
  (src / "b.png").write_bytes(b"")
  with pytest.raises(SystemExit) as exit_:
    translate_cli.main([f"--workdir={workdir}", f"--input={src}", f"--output={out}"])
  assert f"{src / 'b.png'}" in str(exit_.value) and "empty" in str(exit_.value)
  assert str(exit_.value).startswith("error: ")  # one line, no traceback
  assert not out.exists()
  (src / "b.png").unlink()
  (src / "._a.png").write_bytes(b"\x00\x05\x16\x07junk")  # macOS's resource fork: ignored
  (src / "notes.txt").write_text("x")  # named in a warning, not read
  translate_cli.main([f"--workdir={workdir}", f"--input={src}", f"--output={out}"])
  captured = capsys.readouterr()
  assert "Wrote 1 image(s)" in captured.out and sorted(os.listdir(out)) == ["a.png"]
  assert "notes.txt" in captured.err


# ----------------------------------------------------------------------------------------------------
# Each fault the fuzzing found, as an example with the right value
# ----------------------------------------------------------------------------------------------------
def test_fault_png_with_fewer_rows_than_its_header(tmp_path):
  # Intact chunks and checksums, 3 of 8 rows: PIL read it with 5 black rows, TF refused it mid-epoch.
  path = tmp_path / "short.png"
  path.write_bytes(png_bytes(8, 8, 0, 8, b"".join(b"\x00" + bytes([200] * 8) for _ in range(3))))
  with pytest.raises(image_files.ImageFileError, match=r"short.png.*ends early \(27 of the 72 bytes"):
    image_files.inspect_image(str(path))
  with pytest.raises(ValueError, match="short.png"):
    inference.read_image(str(path), 3)


@pytest.mark.parametrize("mode", ["P", "1"])
def test_fault_palette_and_one_bit_bmp(tmp_path, mode):
  # TF's BMP decoder read palette indices as grey levels (up to 240 levels off PIL) and refused
  # 1-bit BMPs mid-epoch; both are refused at start-up now.
  path = tmp_path / "x.bmp"
  path.write_bytes(encode("BMP", mode, 6, 4, 0))
  with Image.open(path) as image:
    assert image.mode == mode
  with pytest.raises(image_files.ImageFileError, match=rf"x.bmp.*{mode} \(palette or 1-bit\) BMP"):
    image_files.inspect_image(str(path))
  grey = tmp_path / "grey.bmp"  # 8-bit grey BMPs decode right: accepted
  grey.write_bytes(encode("BMP", "L", 6, 4, 0))
  assert image_files.inspect_image(str(grey)).mode == "L"
  decoded = input_pipeline.decode_image(grey.read_bytes()).numpy()
  np.testing.assert_array_equal(decoded, pil_upright_rgb(str(grey)))


def test_fault_huge_headers_name_the_file(tmp_path):
  # 40000 x 40000 (> 2 x PIL's limit): PIL's DecompressionBombError reached inference without the
  # file's name. 10000 x 10000 (1x-2x the limit) over 100 bytes: inspect_image raised a bare OSError.
  for side, message in ((40000, "too large for PIL"), (10000, "ends early")):
    path = tmp_path / f"big{side}.png"
    path.write_bytes(png_bytes(side, side, 0, 8, b"\x00" * 100))
    with pytest.raises(image_files.ImageFileError, match=rf"big{side}.png.*{message}"):
      image_files.inspect_image(str(path))
    with pytest.raises(ValueError, match=rf"big{side}.png"):
      inference.read_image(str(path), 3)


@pytest.mark.parametrize("mode,message", [("RGBA", "4 channels"), ("LA", "2 channels"),
                                          ("RGB;16", "16-bit")])
def test_fault_inference_refused_what_training_refuses(tmp_path, mode, message):
  # inference.read_image used to drop the alpha channel / the low byte of 16-bit RGB without a word,
  # so a file training refuses was translated.
  path = tmp_path / "x.png"
  path.write_bytes(encode("PNG", mode, 4, 4, 0))
  for read in (image_files.inspect_image, lambda p: inference.read_image(p, 3)):
    with pytest.raises(ValueError, match=rf"x.png.*{message}"):
      read(str(path))


def test_fault_inference_folder_hidden_files_and_check_before_writing(predictor, tmp_path):
  # ._x.png (macOS) was read as an image and failed the whole run; a bad file after a good one left
  # the good one's output written although the error says nothing was.
  src, out = tmp_path / "in", tmp_path / "out"
  (src / ".ipynb_checkpoints").mkdir(parents=True)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")
  (src / "._a.png").write_bytes(b"\x00\x05\x16\x07junk")
  (src / ".ipynb_checkpoints" / "a-checkpoint.png").write_text("x")
  assert inference.list_inputs(str(src)) == [str(src / "a.png")]
  (src / "z.png").write_bytes(encode("PNG", "RGB", 8, 8, 0)[:40])
  with pytest.raises(ValueError, match="z.png"):
    inference.run_files(predictor, str(src), str(out))
  assert not out.exists()
  Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(src / "z.png")  # 6 wide: not divisible by 4
  with pytest.raises(ValueError, match="z.png: size 6x8 is not divisible by 4"):
    inference.run_files(predictor, str(src), str(out))
  assert not out.exists()


def test_fault_paired_image_one_pixel_wide(tmp_path):
  # A|B image of width 1: the A half was empty and TF failed inside the epoch.
  root = tmp_path / "pairs"
  (root / "train").mkdir(parents=True)
  Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(root / "train" / "ok.png")
  Image.fromarray(np.zeros((8, 1, 3), np.uint8)).save(root / "train" / "thin.png")
  from translate import config_base
  c = config_base.data_config()
  c.update(source="paired_folder", path=str(root), load_size=8, crop_size=8)
  with pytest.raises(image_files.ImageFileError, match="thin.png.*empty half"):
    input_pipeline.create_dataset(c, "train", 1)


def test_fault_one_pixel_image_with_preprocess_none(tmp_path):
  # 1x1 rounds to 0x0 with preprocess='none': refused at start-up naming the file.
  for sub in ("trainA", "trainB"):
    (tmp_path / sub).mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sub / "ok.png")
  Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "trainA" / "dot.png")
  config = folder_config(str(tmp_path), 3, skip=False)
  with pytest.raises(image_files.ImageFileError, match="dot.png.*too small"):
    input_pipeline.create_dataset(config, "train", 1)


def test_training_stops_at_start_up_naming_the_bad_file_and_skips_it_on_request(tmp_path, caplog):
  from translate import train
  root = tmp_path / "data"
  for sub in ("trainA", "trainB", "testA", "testB"):
    (root / sub).mkdir(parents=True)
    for i in range(2):
      Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / sub / f"{i}.png")
  (root / "trainA" / "2.png").write_bytes(encode("PNG", "RGB", 32, 32, 0)[:100])
  config = tiny_config("cyclegan", batch_size=1, preset="folder")
  config.data.update(path=str(root), load_size=32, crop_size=32)
  workdir = tmp_path / "run"
  with pytest.raises(image_files.ImageFileError, match=r"trainA/2.png.*corrupt"):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists() or not os.listdir(workdir)  # stopped before writing anything
  config.data.skip_bad_images = True
  with caplog.at_level(logging.WARNING):
    assert input_pipeline.dataset_size(config.data, "train") == 2  # the bad file is not counted
  assert any("trainA/2.png" in r.getMessage() and "skip_bad_images" in r.getMessage()
             for r in caplog.records)


def test_fault_rotated_image_keeps_its_upright_shape_in_the_pipeline(tmp_path):
  # Stored 12 wide x 8 high with EXIF orientation 6 (upright: 8 x 12): the pipeline declared the
  # stored shape as the static shape and TF failed mid-pipeline ("expected [?,8,12,3] but got
  # [1,12,8,3]"); found by the folder fuzzing.
  for sub in ("trainA", "trainB"):
    (tmp_path / sub).mkdir()
  path = tmp_path / "trainA" / "phone.jpg"
  path.write_bytes(encode("JPEG", "RGB", 12, 8, 0, orientation=6))
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "trainB" / "b.png")
  ds = input_pipeline.create_dataset(folder_config(str(tmp_path), 3, skip=False), "train", 1,
                                     train=False)
  (batch,) = list(ds.as_numpy_iterator())
  assert batch["A"].shape == (1, 12, 8, 3)
  np.testing.assert_array_equal(batch["A"][0], as_float(pil_upright_rgb(str(path))))


def test_fault_truncated_gif_and_png_end_that_pil_reads_and_tf_refuses(tmp_path):
  # A GIF missing its last 2 bytes (block terminator, trailer): PIL decodes it, TF's giflib refuses
  # it ("failed to slurp gif file"), mid-epoch. A PNG missing 2 bytes of its IEND checksum: PIL's
  # verify passes it, libpng refuses it. Both found by the fuzzing; refused at start-up now.
  gif = encode("GIF", "P", 4, 4, 0)
  png = png_bytes(2, 2, 0, 8, b"\x00\x00\x00" * 2)
  for name, data, message in (("cut.gif", gif[:-2], "corrupt or truncated"),
                              ("cut.png", png[:-2], r"truncated \(its 'IEND' chunk is cut short")):
    path = tmp_path / name
    path.write_bytes(data)
    with Image.open(path) as image:  # what PIL alone let through
      image.load() if name.endswith(".gif") else image.verify()
    with pytest.raises(image_files.ImageFileError, match=rf"{name}.*{message}"):
      image_files.inspect_image(str(path))


def test_every_file_reader_reads_upright_and_checks_the_file(tmp_path):
  # The SR folders, PhotoWCT's image folders and the stylize CLI read files with PIL themselves; they
  # ignored the EXIF orientation (a phone photo read sideways) and PhotoWCT's folders were not checked
  # at start-up. Now each reads PIL's upright image, and refuses a bad file naming it.
  from translate import stylize
  from translate.data import sr
  from translate.photowct import data as photowct_data
  folder = tmp_path / "photos"
  folder.mkdir()
  path = folder / "phone.jpg"
  path.write_bytes(encode("JPEG", "RGB", 12, 8, 3, orientation=6))
  upright = pil_upright_rgb(str(path))
  assert upright.shape == (12, 8, 3)
  np.testing.assert_array_equal(sr._folder_images(str(folder), 0).hr(0), upright)
  assert photowct_data._folder_files(str(folder), "train") == [str(path)]
  np.testing.assert_array_equal(photowct_data._load_file(str(path)), upright)
  np.testing.assert_array_equal(stylize.read_rgb(str(path)), upright.astype(np.float32) / 255.0)
  (folder / "cut.png").write_bytes(encode("PNG", "RGB", 8, 8, 0)[:50])
  for read in (lambda: sr._folder_images(str(folder), 0),
               lambda: photowct_data._folder_files(str(folder), "train"),
               lambda: stylize.read_rgb(str(folder / "cut.png"))):
    with pytest.raises(ValueError, match="cut.png"):
      read()
