"""Image files for the input pipeline: listing and start-up validation.

The pipeline decodes and resizes images with TF ops (`input_pipeline.decode_image`,
`pil_bicubic_resize`) that reproduce PIL's results exactly, so it decodes the formats TF decodes:
JPEG, PNG, BMP, GIF, WebP. The reference also reads TIFF and PPM; those get a clear error here that
says how to convert them.

Validation (`inspect_image`) is cheap: PIL `open` + `verify` (headers and PNG chunk checksums), the
mode and bit depth, for JPEGs a look at the end-of-image marker (a JPEG without one, i.e. most
likely truncated, is fully decoded once to be sure), for PNGs a count of the decompressed pixel data
(a PNG whose chunks are intact but whose data holds fewer rows than its header claims: PIL reads it
with the missing rows black, TF refuses it), and GIF, BMP and WebP files (which `verify` does not
check) are decoded once by PIL and once by TF (PIL reads some truncated GIFs that TF refuses). A
folder of thousands of images is checked in seconds, on every process, before training starts, so a
bad file stops the run at once with its path in the message instead of deep inside an epoch; with
`data.skip_bad_images` the bad files are left out with a warning that names each
(`validate_images(..., skip_bad=True)`). (A PNG's pixel data is inflated once for the count; PIL's
`getexif` used to decode every PNG whole for the orientation: now only PNGs with text/eXIf chunks.)

Paths go through `tf.io.gfile`, so folders may live on GCS (`gs://...`) as well as on local disk.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import logging
import os
import threading
import zlib

import numpy as np
from PIL import Image

# The reference's IMG_EXTENSIONS (matched there case-sensitively, here case-insensitively) that TF
# decodes, plus gif and webp; and the ones it does not decode (an error that says how to convert).
# The one list of image extensions: training folders and the inference CLI both read these.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
EXIF_ORIENTATION = 0x0112  # the EXIF tag of the orientation (1..8)
UNSUPPORTED_EXTENSIONS = (".tif", ".tiff", ".ppm", ".pgm", ".pbm")
# PIL format names the pipeline decodes (MPO: a multi-picture JPEG, read as its first picture).
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "WEBP")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
# The reference's `__make_power_2(img, base=4)` for preprocess='none'.
SIZE_BASE = 4

# PIL modes that hold an alpha channel; translate never silently throws it away (see `inspect_image`).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# PIL modes of images with more than 8 bits per sample.
_HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I;32", "I;32S")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageFileError(ValueError):
  """A data file or folder that translate cannot use; the message names it and says how to fix it."""


def _gfile():
  import tensorflow as tf  # lazy: the module is importable (and its PIL helpers usable) without TF
  return tf.io.gfile


def _is_local(path: str) -> bool:
  return "://" not in path


def _read_bytes(path: str) -> bytes:
  """A file's bytes: local paths with open() (no TF import, e.g. for inference), others by gfile."""
  if _is_local(path):
    with open(path, "rb") as f:
      return f.read()
  with _gfile().GFile(path, "rb") as f:
    return f.read()


def _some(paths: list[str], n: int = 5) -> str:
  paths = sorted(paths)
  return ", ".join(repr(p) for p in paths[:n]) + (f" and {len(paths) - n} more"
                                                  if len(paths) > n else "")


# ----------------------------------------------------------------------------------------------------
# Listing
# ----------------------------------------------------------------------------------------------------
def is_image_file(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str, max_dataset_size: int = 0) -> list[str]:
  """Sorted image paths under `folder` (recursively, as the reference's `make_dataset`).

  The first `max_dataset_size` of the sorted list are kept (0 = all). Hidden files and folders (a
  leading '.', e.g. .DS_Store) are ignored; any other file without an image extension is an error,
  since it is most likely a mistake (a stray annotation file, a wrongly named image) that the
  reference would silently skip. Raises `ImageFileError` for a missing, non-folder or empty `folder`.
  """
  gfile = _gfile()
  if not gfile.exists(folder):
    raise ImageFileError(f"Data folder {folder!r} does not exist.")
  if not gfile.isdir(folder):
    raise ImageFileError(f"Data folder {folder!r} is not a folder.")
  paths, strays, unsupported = [], [], []
  for root, dirs, files in gfile.walk(folder):
    root = str(root)
    if any(part.startswith(".") for part in os.path.relpath(root, folder).split(os.sep)
           if part not in (".", "")):
      continue
    del dirs  # gfile.walk lists sub-folders on its own; hidden ones are skipped above
    for name in files:
      name = str(name)
      if name.startswith("."):
        continue
      path = os.path.join(root, name)
      if is_image_file(name):
        paths.append(path)
      elif os.path.splitext(name)[1].lower() in UNSUPPORTED_EXTENSIONS:
        unsupported.append(path)
      else:
        strays.append(path)
  if unsupported:
    raise ImageFileError(
        f"Data folder {folder!r} holds images in a format the TF decoder cannot read: "
        f"{_some(unsupported)}. Convert them to PNG, e.g. `mogrify -format png *.tif` (ImageMagick) "
        f"or `Image.open(p).save(q.with_suffix('.png'))` (PIL), and remove the originals.")
  if strays:
    raise ImageFileError(
        f"Data folder {folder!r} holds files that are not images: {_some(strays)}. Supported "
        f"extensions: "
        f"{', '.join(IMAGE_EXTENSIONS)}. Move other files out of the data folder.")
  if not paths:
    raise ImageFileError(f"Data folder {folder!r} holds no images (supported extensions: "
                         f"{', '.join(IMAGE_EXTENSIONS)}).")
  paths.sort()
  if max_dataset_size > 0:
    paths = paths[:max_dataset_size]
  return paths


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImageInfo:
  path: str
  width: int
  height: int
  mode: str
  orientation: int = 1  # EXIF orientation tag, 1..8 (1: as stored, also for files without one)


def _png_bit_depth(head: bytes) -> int | None:
  """Bit depth from a PNG's IHDR chunk (PIL silently reduces 16-bit RGB(A) PNGs to 8 bits)."""
  if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR" or len(head) < 25:
    return None
  return head[24]


def _ends_with_jpeg_eoi(data: bytes) -> bool:
  """True when a JPEG's end-of-image marker (FF D9) ends the file, give or take trailing padding."""
  return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


# PNG colour type -> samples per pixel; Adam7's passes as (x0, y0, dx, dy).
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _png_scan(data: bytes) -> tuple[str | None, bool]:
  """(a problem with the PNG's pixel data or None, whether it has chunks that may hold EXIF).

  The IDAT chunks are inflated in pieces (memory stays small whatever the header claims) until the
  filtered rows the IHDR size needs are there: fewer means a file TF's decoder refuses and PIL reads
  with black rows. Chunk checksums are PIL `verify`'s job.
  """
  width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
  bits, colour, interlace = data[24], data[25], data[28]
  pixel_bits = bits * _PNG_SAMPLES.get(colour, 4)

  def size(w: int, h: int) -> int:
    return h * (1 + (w * pixel_bits + 7) // 8) if w > 0 and h > 0 else 0

  if interlace:
    needed = sum(size(max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
                 for x0, y0, dx, dy in _ADAM7)
  else:
    needed = size(width, height)
  inflate, got, pos, exif_like, ended = zlib.decompressobj(), 0, 8, False, False
  while pos + 8 <= len(data):
    length = int.from_bytes(data[pos:pos + 4], "big")
    kind = data[pos + 4:pos + 8]
    if pos + 12 + length > len(data):  # (PIL's verify lets a cut IEND checksum pass; libpng not)
      return f"it is truncated (its {kind.decode('latin-1')!r} chunk is cut short)", exif_like
    if kind == b"IDAT" and got < needed:
      piece = data[pos + 8:pos + 8 + length]
      try:
        while piece and got < needed:
          got += len(inflate.decompress(piece, 1 << 20))
          piece = inflate.unconsumed_tail
      except zlib.error as e:
        return f"its pixel data is corrupt (zlib: {e})", exif_like
    elif kind in (b"eXIf", b"tEXt", b"zTXt", b"iTXt"):
      exif_like = True
    elif kind == b"IEND":
      ended = True
      break
    pos += 12 + length
  if not ended:
    return "it is truncated (no IEND chunk)", exif_like
  if got < needed:
    return (f"its pixel data ends early ({got} of the {needed} bytes its {width}x{height} header "
            f"needs; truncated or badly written)"), exif_like
  return None, exif_like


def _tf_decodes(data: bytes) -> None:
  """Decodes `data` with TF's decoder, as the pipeline does (`input_pipeline.decode_image`)."""
  import tensorflow as tf
  tf.io.decode_image(data, channels=3, expand_animations=False)


def inspect_image(path: str) -> ImageInfo:
  """Checks that `path` is an 8-bit RGB/grey/palette image the pipeline can decode; returns its size.

  Raises `ImageFileError` naming the file for: an empty file, unreadable or corrupt data (PIL
  `verify`, a truncated JPEG, PNG pixel data shorter than its header says, GIF/BMP/WebP that do not
  decode), a header claiming more pixels than PIL's decompression-bomb limit
  (2 x `PIL.Image.MAX_IMAGE_PIXELS`), a format TF does not decode (also palette and 1/4-bit BMPs,
  which TF's BMP decoder misreads or refuses), an alpha channel (RGBA/LA/PA: 4 or 2 channels), more
  than 8 bits per sample (16-bit PNG, 16/32-bit or float modes).
  """
  try:
    data = _read_bytes(path)
  except Exception as e:  # noqa: BLE001 -- any I/O failure becomes a message naming the file
    raise ImageFileError(f"Cannot read image file {path!r}: {e}") from e
  if not data:
    raise ImageFileError(f"Image file {path!r} is empty (0 bytes).")
  try:
    with Image.open(io.BytesIO(data)) as image:
      width, height, mode, fmt = image.width, image.height, image.mode, image.format
      image.verify()
  except Image.DecompressionBombError as e:
    raise ImageFileError(
        f"Image file {path!r} is too large for PIL ({e}) Most likely its header is corrupt; if the "
        f"image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS before training.") from e
  except Exception as e:  # noqa: BLE001 -- PIL raises many types for bad data
    raise ImageFileError(f"Image file {path!r} is corrupt or not an image PIL can read: "
                         f"{type(e).__name__}: {e}") from e
  if fmt not in DECODABLE_FORMATS:
    raise ImageFileError(
        f"Image file {path!r} is a {fmt} image; the pipeline decodes {', '.join(DECODABLE_FORMATS)}. "
        f"Convert it to PNG, e.g. `Image.open(p).save(q.with_suffix('.png'))` with PIL.")
  if fmt == "BMP" and mode not in ("RGB", "L"):
    raise ImageFileError(
        f"Image file {path!r} is a {mode} (palette or 1-bit) BMP, which TF's BMP decoder misreads or "
        f"refuses. Convert it to PNG, e.g. `Image.open(p).save(q.with_suffix('.png'))` with PIL.")
  exif_like = True
  if fmt in ("JPEG", "MPO") and not _ends_with_jpeg_eoi(data):
    try:  # most likely truncated; some writers append data after the image: decode to be sure
      with Image.open(io.BytesIO(data)) as image:
        image.load()
    except Exception as e:  # noqa: BLE001
      raise ImageFileError(f"Image file {path!r} is corrupt or truncated: {type(e).__name__}: "
                           f"{e}") from e
  elif fmt == "PNG":
    problem, exif_like = _png_scan(data)
    if problem:
      raise ImageFileError(f"Image file {path!r} is corrupt: {problem}.")
  elif fmt in ("GIF", "BMP", "WEBP"):  # verify() checks nothing of these: decode once with each
    try:  # decoder (PIL's reads some truncated GIFs that TF's refuses)
      with Image.open(io.BytesIO(data)) as image:
        image.load()
      _tf_decodes(data)
    except Exception as e:  # noqa: BLE001
      message = getattr(e, "message", str(e)).split("[Op:")[0].split("}}")[-1].strip()
      raise ImageFileError(f"Image file {path!r} is corrupt or truncated: {type(e).__name__}: "
                           f"{message}") from e
  bits = _png_bit_depth(data[:32])
  if mode in _HIGH_DEPTH_MODES or (bits is not None and bits > 8):
    depth = f"{bits}-bit" if bits else f"mode {mode!r}"
    raise ImageFileError(
        f"Image file {path!r} has {depth} samples; translate reads 8-bit images (as the reference, "
        f"which would silently truncate it). Convert it to 8 bits per channel first, e.g. with "
        f"ImageMagick `mogrify -depth 8 FILE` or numpy (`(x >> 8).astype(np.uint8)` for 16-bit).")
  if mode in _ALPHA_MODES:
    channels = Image.getmodebands(mode)
    raise ImageFileError(
        f"Image file {path!r} has {channels} channels (mode {mode}, with an alpha channel); translate "
        f"reads 3-channel RGB or 1-channel grey images. Drop the alpha channel first, e.g. "
        f"`Image.open(p).convert('RGB').save(p)` with PIL or `mogrify -alpha off FILE`.")
  if width < 1 or height < 1:
    raise ImageFileError(f"Image file {path!r} has no pixels ({width}x{height}).")
  orientation = 1
  if exif_like:  # (a PNG's getexif decodes the whole image: only for PNGs with EXIF-bearing chunks)
    try:
      with Image.open(io.BytesIO(data)) as image:  # verify() left the image unusable: reparse
        orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception as e:  # noqa: BLE001
      raise ImageFileError(f"Image file {path!r} has unreadable metadata (EXIF): "
                           f"{type(e).__name__}: {e}") from e
  return ImageInfo(path, width, height, mode, orientation if 1 <= orientation <= 8 else 1)


# Validation results per (path, file size, modification time): evaluation re-creates the test
# pipeline every few thousand steps and should not re-read every header each time.
_INFO_CACHE: dict[tuple, ImageInfo] = {}
_INFO_CACHE_LOCK = threading.Lock()


def _cache_key(path: str) -> tuple:
  if _is_local(path):
    try:
      stat = os.stat(path)
    except OSError as e:
      raise ImageFileError(f"Cannot read image file {path!r}: {e}") from e
    return (path, stat.st_size, stat.st_mtime_ns)
  stat = _gfile().stat(path)
  return (path, stat.length, stat.mtime_nsec)


def _inspect_cached(path: str) -> ImageInfo:
  key = _cache_key(path)
  with _INFO_CACHE_LOCK:
    info = _INFO_CACHE.get(key)
  if info is None:
    info = inspect_image(path)
    with _INFO_CACHE_LOCK:
      _INFO_CACHE[key] = info
  return info


def exif_orientations(paths: list[str]) -> list[int]:
  """The EXIF orientation tag (1..8; 1 = as stored, also for files without one) of each file, which
  the pipeline applies after decoding (`input_pipeline.apply_orientation`) as PIL's
  `ImageOps.exif_transpose` does: a phone photo stored sideways is read upright. Read with the
  validation (`validate_images`, cached), so a folder's files are opened once at start-up."""
  return [info.orientation for info in validate_images(paths)]


def validate_images(paths: list[str], num_threads: int = 16,
                    skip_bad: bool = False) -> list[ImageInfo]:
  """`inspect_image` on every path (threads: the work is file I/O). Raises `ImageFileError` on the
  first bad file; with `skip_bad` (`data.skip_bad_images`) returns the good files' infos only and
  logs a warning naming each bad file (once per file and process)."""
  check = _inspect_cached if not skip_bad else _inspect_or_error
  if len(paths) < 64:
    results = [check(p) for p in paths]
  else:
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
      results = list(pool.map(check, paths))
  if not skip_bad:
    return results
  bad = [r for r in results if isinstance(r, ImageFileError)]
  if bad:
    with _INFO_CACHE_LOCK:
      new = [e for e in bad if str(e) not in _WARNED]
      _WARNED.update(str(e) for e in new)
    for e in new[:_MAX_WARNINGS]:
      logging.warning("Skipped a bad image (data.skip_bad_images): %s", e)
    if len(new) > _MAX_WARNINGS:
      logging.warning("Skipped %d more bad images (data.skip_bad_images).", len(new) - _MAX_WARNINGS)
  return [r for r in results if isinstance(r, ImageInfo)]


_WARNED: set[str] = set()
_MAX_WARNINGS = 20


def _inspect_or_error(path: str) -> ImageInfo | ImageFileError:
  try:
    return _inspect_cached(path)
  except ImageFileError as e:
    return e


def usable_images(paths: list[str], skip_bad: bool, folder: str) -> list[ImageInfo]:
  """`validate_images(paths, skip_bad=skip_bad)`; `ImageFileError` when skipping left no image."""
  infos = validate_images(paths, skip_bad=skip_bad)
  if not infos:
    raise ImageFileError(f"Data folder {folder!r} holds no usable images: all {len(paths)} were "
                         f"skipped as bad (data.skip_bad_images; see the warnings above).")
  return infos


# ----------------------------------------------------------------------------------------------------
# The reference's deterministic transforms (PIL)
# ----------------------------------------------------------------------------------------------------
def resized_size(width: int, height: int, preprocess: str, load_size: int,
                 crop_size: int) -> tuple[int, int]:
  """(width, height) after the deterministic resize of `preprocess`, before any crop.

  resize_and_crop: load_size x load_size. scale_width(_and_crop): width load_size, height
  int(max(load_size * h / w, crop_size)), unchanged if already width load_size and height >= crop_size
  (the reference's `__scale_width`). none: each side rounded to a multiple of 4 with Python's round
  (half to even), as `__make_power_2(base=4)`. crop: unchanged.
  """
  if preprocess == "resize_and_crop":
    return load_size, load_size
  if preprocess in ("scale_width", "scale_width_and_crop"):
    if width == load_size and height >= crop_size:
      return width, height
    return load_size, int(max(load_size * height / width, crop_size))
  if preprocess == "none":
    return (int(round(width / SIZE_BASE) * SIZE_BASE), int(round(height / SIZE_BASE) * SIZE_BASE))
  if preprocess == "crop":
    return width, height
  raise ValueError(f"Unknown preprocess {preprocess!r}; expected one of {PREPROCESS_MODES}.")


def paired_halves_size(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
  half = int(width / 2)
  return (half, height), (width - half, height)


def grey_uint8(rgb: np.ndarray) -> np.ndarray:
  """PIL's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point), for in-memory arrays."""
  rgb = rgb.astype(np.uint32)
  luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
  return luma.astype(np.uint8)[..., None]

