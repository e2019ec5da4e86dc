"""Image files for the input pipeline: listing and start-up validation.

The pipeline decodes and resizes images with TF ops (`input_pipeline.decode_image`,
`pil_bicubic_resize`) that reproduce PIL's results exactly, so it decodes the formats TF decodes:
JPEG, PNG, BMP, GIF, WebP. The reference also reads TIFF and PPM; those get a clear error here that
says how to convert them.

Validation (`inspect_image`) is cheap: PIL `open` + `verify` (headers and PNG chunk checksums), the
mode and bit depth, and for JPEGs a look at the end-of-image marker (a JPEG without one, i.e. most
likely truncated, is fully decoded once to be sure). A folder of thousands of images is checked in
seconds, on every process, before training starts, so a bad file stops the run at once with its
path in the message instead of deep inside an epoch.

Paths go through `tf.io.gfile`, so folders may live on GCS (`gs://...`) as well as on local disk.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import threading

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


def inspect_image(path: str) -> ImageInfo:
  """Checks that `path` is an 8-bit RGB/grey/palette image the pipeline can decode; returns its size.

  Raises `ImageFileError` naming the file for: unreadable or corrupt data (PIL `verify`, a truncated
  JPEG), a format TF does not decode, an alpha channel (RGBA/LA: 4 or 2 channels), more than 8 bits
  per sample (16-bit PNG, 16/32-bit or float modes).
  """
  gfile = _gfile()
  try:
    with gfile.GFile(path, "rb") as f:
      data = f.read()
  except Exception as e:  # noqa: BLE001 -- any I/O failure becomes a message naming the file
    raise ImageFileError(f"Cannot read image file {path!r}: {e}") from e
  if not data:
    raise ImageFileError(f"Image file {path!r} is empty (0 bytes).")
  try:
    with Image.open(io.BytesIO(data)) as image:
      width, height, mode, fmt = image.width, image.height, image.mode, image.format
      image.verify()
  except Exception as e:  # noqa: BLE001 -- PIL raises many types for bad data
    raise ImageFileError(f"Image file {path!r} is corrupt or not an image PIL can read: "
                         f"{type(e).__name__}: {e}") from e
  if fmt not in DECODABLE_FORMATS:
    raise ImageFileError(
        f"Image file {path!r} is a {fmt} image; the pipeline decodes {', '.join(DECODABLE_FORMATS)}. "
        f"Convert it to PNG, e.g. `Image.open(p).save(q.with_suffix('.png'))` with PIL.")
  if fmt in ("JPEG", "MPO") and not _ends_with_jpeg_eoi(data):
    try:  # most likely truncated; some writers append data after the image: decode to be sure
      with Image.open(io.BytesIO(data)) as image:
        image.load()
    except Exception as e:  # noqa: BLE001
      raise ImageFileError(f"Image file {path!r} is corrupt or truncated: {type(e).__name__}: "
                           f"{e}") from e
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
  with Image.open(io.BytesIO(data)) as image:  # verify() leaves the image unusable: reparse the header
    orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
  return ImageInfo(path, width, height, mode, orientation if 1 <= orientation <= 8 else 1)


# Validation results per (path, file size, modification time): evaluation re-creates the test
# pipeline every few thousand steps and should not re-read every header each time.
_INFO_CACHE: dict[tuple, ImageInfo] = {}
_INFO_CACHE_LOCK = threading.Lock()


def _cache_key(path: str) -> tuple:
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


def validate_images(paths: list[str], num_threads: int = 16) -> list[ImageInfo]:
  """`inspect_image` on every path (threads: the work is file I/O); raises on the first bad file."""
  if len(paths) < 64:
    return [_inspect_cached(p) for p in paths]
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    return list(pool.map(_inspect_cached, paths))


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

