"""Image files for the input pipeline: listing, start-up validation, and the reference's PIL transforms.

The PyTorch reference (CycleGAN/pix2pix `data/base_dataset.py`) reads every image with PIL,
`.convert('RGB')`s it, optionally greys it (`transforms.Grayscale(1)`, i.e. PIL `convert('L')`) and
resizes it with PIL's bicubic filter. `prepare_image` does exactly those deterministic steps with PIL
itself, so the pixels that reach the random crop are the reference's bit for bit; the random crop, flip
and scaling to [-1, 1] are cheap and run as TF ops in `input_pipeline`.

Validation (`inspect_image`) reads only headers (PIL `open` + `verify`), so a folder of thousands of
images is checked in seconds; a file that passes it but still fails to decode later (a truncated JPEG,
whose body `verify` cannot check) raises at read time with the file's path in the message.

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

# The reference's IMG_EXTENSIONS (matched there case-sensitively, here case-insensitively) plus webp.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
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
  paths, strays = [], []
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
      (paths if is_image_file(name) else strays).append(os.path.join(root, name))
  if strays:
    strays.sort()
    shown = ", ".join(repr(p) for p in strays[:5]) + (f" and {len(strays) - 5} more"
                                                      if len(strays) > 5 else "")
    raise ImageFileError(
        f"Data folder {folder!r} holds files that are not images: {shown}. Supported extensions: "
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


def _png_bit_depth(head: bytes) -> int | None:
  """Bit depth from a PNG's IHDR chunk (PIL silently reduces 16-bit RGB(A) PNGs to 8 bits)."""
  if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR" or len(head) < 25:
    return None
  return head[24]


def _tiff_bits(image: Image.Image) -> int | None:
  tags = getattr(image, "tag_v2", None)
  if tags is None:
    return None
  bits = tags.get(258)  # BitsPerSample
  if bits is None:
    return None
  return max(bits) if isinstance(bits, (tuple, list)) else int(bits)


def inspect_image(path: str) -> ImageInfo:
  """Checks that `path` is an 8-bit RGB/grey/palette image PIL can read; returns its size and mode.

  Raises `ImageFileError` naming the file for: unreadable or corrupt data (PIL `verify`), an alpha
  channel (RGBA/LA: 4 or 2 channels), more than 8 bits per sample (16-bit PNG/TIFF, float images).
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
      width, height, mode = image.width, image.height, image.mode
      tiff_bits = _tiff_bits(image)
      image.verify()
  except Exception as e:  # noqa: BLE001 -- PIL raises many types for bad data
    raise ImageFileError(f"Image file {path!r} is corrupt or not an image PIL can read: "
                         f"{type(e).__name__}: {e}") from e
  bits = _png_bit_depth(data[:32]) or tiff_bits
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
  return ImageInfo(path, width, height, mode)


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


def prepare_image(image: Image.Image, channels: int, preprocess: str, load_size: int,
                  crop_size: int) -> np.ndarray:
  """The reference's steps before the random crop: RGB, grey if `channels` == 1, resize (bicubic).

  Returns uint8 (H, W, channels).
  """
  image = image.convert("RGB")
  if channels == 1:
    image = image.convert("L")  # torchvision Grayscale(1) on a PIL image is exactly this
  size = resized_size(image.width, image.height, preprocess, load_size, crop_size)
  if size[0] < 1 or size[1] < 1:
    raise ValueError(f"a {image.width}x{image.height} image becomes {size[0]}x{size[1]} with "
                     f"preprocess={preprocess!r}")
  if size != image.size:
    image = image.resize(size, Image.BICUBIC)
  array = np.asarray(image, dtype=np.uint8)
  return array[:, :, None] if array.ndim == 2 else array


def decode(data: bytes, name: str) -> Image.Image:
  """PIL image from encoded bytes; a failure names `name` (the file or the tfds split)."""
  try:
    image = Image.open(io.BytesIO(data))
    image.load()
  except Exception as e:  # noqa: BLE001
    raise ImageFileError(f"Cannot decode image {name}: {type(e).__name__}: {e}") from e
  if image.mode in _ALPHA_MODES or image.mode in _HIGH_DEPTH_MODES:
    raise ImageFileError(f"Image {name} has mode {image.mode}; translate reads 8-bit RGB or grey "
                         f"images without alpha.")
  return image


def split_ab(image: Image.Image) -> tuple[Image.Image, Image.Image]:
  """Left and right halves of an A|B image, as the reference's AlignedDataset (B gets an odd column)."""
  w, h = image.size
  half = int(w / 2)
  return image.crop((0, 0, half, h)), image.crop((half, 0, w, h))


def paired_halves_size(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
  half = int(width / 2)
  return (half, height), (width - half, height)


def grey_uint8(rgb: np.ndarray) -> np.ndarray:
  """PIL's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point), for in-memory arrays."""
  rgb = rgb.astype(np.uint32)
  luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
  return luma.astype(np.uint8)[..., None]

