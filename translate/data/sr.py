"""Super-resolution data: HR images, and LR images made from them by MATLAB-style bicubic downsampling.

`create_dataset(config, split, batch_size, ...)` yields {'A': LR, 'B': HR}: float32 NHWC RGB in
[-1, 1], LR = HR / scale in each side. 'A' -> 'B' is the translation (the engine's paired built-in
metrics psnr_y / ssim_y / lpips then compare SR with HR; `test_counts` says the data are paired).

Built from small composable ops (each usable on its own):
  imresize(image, scale | output_shape)     MATLAB's `imresize(..., 'bicubic')` (antialiased when
                                            shrinking), numpy or JAX arrays, float or uint8
  bicubic_weights(in_len, out_len, scale)   its (out_len, in_len) resampling matrix for one axis
  downsample(hr_uint8, scale)               the SR benchmarks' LR image: imresize(HR, 1/scale) in uint8
  random_crop / dihedral / crop_to_multiple the training crops, flips and 90-degree rotations, and the
                                            test images' crop to a multiple of the scale

Sources (`data.source`):
  photos   the embedded default: the photos that ship inside scikit-image and scikit-learn (no
           download); train and test are disjoint sets of photos (`PHOTOS_TRAIN`, `PHOTOS_TEST`).
  folder   HR images in `data.path/train` and `data.path/test` (or `data.test_path`, e.g. a Set5,
           Set14 or BSD100 folder of HR images).
  tfds     a tfds builder with 'hr' and 'lr' features, e.g. `div2k/bicubic_x4` (train split 'train',
           test split 'validation'); `data.given_lr=True` uses the builder's own LR images (crops aligned
           with the HR crops) instead of downsampling the HR image here.

Training (`train=True`): each element is one image of the shuffled, repeated stream; a random
`data.crop_size` HR crop (96 in the paper), at a position that is a multiple of the scale, a random
flip/rotation (`data.augment`: one of the 8 flips and 90-degree rotations, or 'none') and its LR image.
Every random choice is a stateless function of (seed, process, element number), so `start_batch` skips
batches without decoding them and a resumed run sees the same stream.
Test (`train=False`): whole images, cropped to a multiple of the scale (top-left kept, as the SR
benchmark scripts' `modcrop`), in order, one pass. Images of different sizes cannot share a batch, so
each test batch holds one image unless all test images have one size.

MATLAB's bicubic (`imresize` with 'bicubic' and antialiasing, its default): the cubic convolution
kernel with a = -0.5 (Keys 1981); when shrinking by s < 1 the kernel is stretched to width 4 / s and
scaled by s (antialiasing); output pixel i (1-based) samples the input at u = i / s + (1 - 1 / s) / 2;
weights are normalised to sum 1 per output pixel; out-of-range input indices are mirrored
(symmetric padding, the edge pixel repeated). Each axis is resized in turn (rows first when both scale
alike); uint8 images are rounded back to uint8 after each axis, as MATLAB does.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import zlib

import numpy as np

SOURCES = ("photos", "folder", "tfds")
AUGMENTS = ("dihedral", "flip", "none")
# The embedded photos: (package, name). Test photos are held out from training.
PHOTOS_TRAIN = (("skimage", "astronaut"), ("skimage", "rocket"), ("skimage", "hubble_deep_field"),
                ("skimage", "immunohistochemistry"), ("skimage", "retina"), ("skimage", "colorwheel"),
                ("skimage", "stereo_motorcycle"), ("sklearn", "flower.jpg"),
                ("skimage", "camera"), ("skimage", "brick"), ("skimage", "grass"),
                ("skimage", "gravel"), ("skimage", "clock"), ("skimage", "coins"),
                ("skimage", "moon"))
PHOTOS_TEST = (("skimage", "chelsea"), ("sklearn", "china.jpg"), ("skimage", "coffee"))


# ----------------------------------------------------------------------------------------------------
# MATLAB imresize (bicubic)
# ----------------------------------------------------------------------------------------------------
def cubic(x: np.ndarray) -> np.ndarray:
  """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
  ax = np.abs(x)
  ax2, ax3 = ax ** 2, ax ** 3
  return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=256)
def bicubic_weights(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
  """The (out_len, in_len) float64 matrix M of MATLAB's bicubic imresize along one axis: out = M @ in
  (see the module docstring; mirrored border indices are folded into M)."""
  width = 4.0
  if scale < 1 and antialias:
    kernel = lambda x: scale * cubic(scale * x)  # noqa: E731
    width = width / scale
  else:
    kernel = cubic
  i = np.arange(1, out_len + 1, dtype=np.float64)
  u = i / scale + 0.5 * (1 - 1 / scale)
  left = np.floor(u - width / 2)
  taps = int(math.ceil(width)) + 2
  idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input indices
  w = kernel(u[:, None] - idx)
  w = w / w.sum(axis=1, keepdims=True)
  # symmetric padding: 0 -> 1, -1 -> 2, in_len + 1 -> in_len, ...
  period = 2 * in_len
  j = np.mod(idx - 1, period)
  j = np.where(j >= in_len, period - 1 - j, j).astype(np.int64)
  m = np.zeros((out_len, in_len))
  np.add.at(m, (np.repeat(np.arange(out_len), taps), j.reshape(-1)), w.reshape(-1))
  return m


def _resize_axis(x, m: np.ndarray, axis: int, uint8: bool):
  is_np = isinstance(x, np.ndarray)
  if is_np:
    y = np.moveaxis(np.tensordot(m, x.astype(np.float64), axes=([1], [axis])), 0, axis)
    return np.clip(np.round(y), 0, 255) if uint8 else y
  import jax.numpy as jnp
  y = jnp.moveaxis(jnp.tensordot(jnp.asarray(m, x.dtype), x, axes=([1], [axis]),
                                 precision="highest"), 0, axis)
  return jnp.clip(jnp.round(y), 0, 255) if uint8 else y


def imresize(image, scale: float | None = None, output_shape: tuple[int, int] | None = None,
             antialias: bool = True):
  """MATLAB's `imresize(image, scale, 'bicubic')` of (H, W[, C]) or (N, H, W, C) images.

  numpy in, numpy out (float64; uint8 for uint8 input, rounded after each axis as MATLAB); a JAX
  array in, a JAX array out (its float dtype; no rounding). The output size is ceil(scale * size)
  per axis, or `output_shape` (height, width). Raises ValueError without a scale or a shape.
  """
  if (scale is None) == (output_shape is None):
    raise ValueError("imresize takes a scale or an output_shape (one of them).")
  axes = (1, 2) if image.ndim == 4 else (0, 1)
  in_shape = [image.shape[a] for a in axes]
  if output_shape is None:
    output_shape = tuple(int(math.ceil(scale * n)) for n in in_shape)
    scales = (scale, scale)
  else:
    scales = tuple(o / n for o, n in zip(output_shape, in_shape))
  uint8 = isinstance(image, np.ndarray) and image.dtype == np.uint8
  out = image
  for k in np.argsort(scales, kind="stable"):  # MATLAB: the axis with the smallest scale first
    if output_shape[k] == in_shape[k]:
      continue
    m = bicubic_weights(in_shape[k], output_shape[k], float(scales[k]), antialias)
    out = _resize_axis(out, m, axes[k], uint8)
  if uint8:
    return np.asarray(out).astype(np.uint8)
  return out


def downsample(hr: np.ndarray, scale: int) -> np.ndarray:
  """The LR image of the SR benchmarks: MATLAB imresize(HR, 1/scale, 'bicubic') of a uint8 image,
  uint8 out (sides ceil(size / scale); crop HR to a multiple of the scale first)."""
  if hr.dtype != np.uint8:
    raise ValueError(f"downsample takes uint8 images, got {hr.dtype}.")
  return imresize(hr, 1.0 / scale)


# ----------------------------------------------------------------------------------------------------
# Crops, flips, rotations
# ----------------------------------------------------------------------------------------------------
def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
  """(H, W, C) -> its top-left (H - H % scale, W - W % scale) part (the benchmarks' `modcrop`)."""
  h, w = image.shape[:2]
  return image[:h - h % scale, :w - w % scale]


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, multiple: int = 1,
                lr: np.ndarray | None = None):
  """A random size x size crop of (H, W, C) `image` at a position that is a multiple of `multiple`;
  with `lr` (the image's LR, `multiple` times smaller), also the aligned LR crop. ValueError if the
  image is smaller than the crop."""
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f"An image of {w}x{h} is smaller than the {size}x{size} crop.")
  y = int(rng.integers(0, (h - size) // multiple + 1)) * multiple
  x = int(rng.integers(0, (w - size) // multiple + 1)) * multiple
  hr = image[y:y + size, x:x + size]
  if lr is None:
    return hr
  s, m = size // multiple, multiple
  return hr, lr[y // m:y // m + s, x // m:x // m + s]


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
  """One of the 8 flips/rotations of (H, W, C): k in 0..7 = rot90 by k % 4, then a left-right flip
  when k >= 4."""
  image = np.rot90(image, k % 4)
  return image[:, ::-1] if k >= 4 else image


def _augment_index(augment: str, rng: np.random.Generator) -> int:
  if augment == "dihedral":
    return int(rng.integers(8))
  if augment == "flip":
    return 4 * int(rng.integers(2))
  return 0


# ----------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Options:
  source: str = "photos"
  path: str = ""
  test_path: str = ""
  tfds_name: str = "div2k/bicubic_x4"
  data_dir: str = ""
  tfds_train: str = "train"
  tfds_test: str = "validation"
  given_lr: bool = False
  scale: int = 4
  crop_size: int = 96
  augment: str = "dihedral"
  max_dataset_size: int = 0
  test_max_size: int = 0


def options_from_config(config) -> Options:
  """The validated `config.data` fields (ValueError naming a bad value)."""
  d = config.data
  fields = {f.name: type(f.default)(d.get(f.name, f.default)) for f in dataclasses.fields(Options)}
  o = Options(**fields)
  if o.source not in SOURCES:
    raise ValueError(f"data.source={o.source!r}; the SR data kind reads one of {SOURCES}.")
  if o.scale not in (2, 4, 8):
    raise ValueError(f"data.scale={o.scale}; expected 2, 4 or 8.")
  if o.crop_size < o.scale or o.crop_size % o.scale:
    raise ValueError(f"data.crop_size={o.crop_size} must be a positive multiple of data.scale="
                     f"{o.scale}.")
  if o.augment not in AUGMENTS:
    raise ValueError(f"data.augment={o.augment!r}; expected one of {AUGMENTS}.")
  if o.source == "folder" and not o.path:
    raise ValueError("data.source='folder' needs data.path (HR images in path/train, path/test).")
  if o.given_lr and o.source != "tfds":
    raise ValueError("data.given_lr=True needs data.source='tfds' (a builder with 'lr' images).")
  return o


def _rgb(image: np.ndarray, name: str) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    if image.dtype == bool:
      image = image.astype(np.uint8) * 255
    else:
      raise ValueError(f"{name}: expected 8-bit images, got {image.dtype}.")
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  if image.shape[-1] != 3:
    raise ValueError(f"{name}: expected RGB or grey images, got {image.shape[-1]} channels.")
  return np.ascontiguousarray(image)


@functools.lru_cache(maxsize=None)
def load_photo(package: str, name: str) -> np.ndarray:
  """An embedded photo as uint8 (H, W, 3) RGB (grey photos repeated to RGB)."""
  if package == "sklearn":
    from sklearn.datasets import load_sample_image
    return _rgb(load_sample_image(name), name)
  try:
    from skimage import data as skdata
  except ImportError as e:
    raise ImportError("The 'photos' data source reads the photos that ship inside scikit-image: "
                      "pip install scikit-image") from e
  image = getattr(skdata, name)()
  if name == "stereo_motorcycle":
    image = image[0]  # (left, right, disparity): the left view
  return _rgb(image, name)


class _Images:
  """A list of HR images (and optional given LR images) read on demand: uint8 (H, W, 3)."""

  def __init__(self, names: list[str], load, load_lr=None):
    self.names, self._load, self._load_lr = names, load, load_lr

  def __len__(self):
    return len(self.names)

  def hr(self, i):
    return self._load(i)

  def lr(self, i):
    return None if self._load_lr is None else self._load_lr(i)


def _folder_images(folder: str, max_size: int) -> _Images:
  from translate.data import images as image_files
  from PIL import Image, ImageOps
  paths = image_files.list_image_files(folder, max_size)
  image_files.validate_images(paths)

  def load(i):
    with Image.open(paths[i]) as im:  # upright (EXIF orientation), as every reader of files
      return _rgb(np.asarray(ImageOps.exif_transpose(im).convert("RGB")), paths[i])
  return _Images(paths, load)


def _tfds_images(o: Options, split: str) -> _Images:
  import tensorflow_datasets as tfds
  from translate.data import input_pipeline
  input_pipeline.keep_tf_off_accelerators()
  if o.max_dataset_size:
    split = f"{split}[:{o.max_dataset_size}]"
  ds = tfds.load(o.tfds_name, split=split, data_dir=o.data_dir or None)
  hr, lr = [], []
  for ex in tfds.as_numpy(ds):  # held in memory (DIV2K: use `folder` for the 800 2K images)
    hr.append(_rgb(ex["hr"], o.tfds_name))
    lr.append(_rgb(ex["lr"], o.tfds_name) if o.given_lr else None)
  return _Images([f"{o.tfds_name}[{i}]" for i in range(len(hr))], hr.__getitem__,
                 lr.__getitem__ if o.given_lr else None)


def images(o: Options, split: str) -> _Images:
  """The HR images of a split ('train' or 'test')."""
  if split not in ("train", "test"):
    raise ValueError(f"Unknown split {split!r}; expected 'train' or 'test'.")
  if o.source == "photos":
    names = list(PHOTOS_TRAIN if split == "train" else PHOTOS_TEST)
    if o.max_dataset_size:
      names = names[:o.max_dataset_size]
    return _Images([f"{p}:{n}" for p, n in names], lambda i: load_photo(*names[i]))
  if o.source == "folder":
    folder = o.test_path if (split == "test" and o.test_path) else os.path.join(o.path, split)
    return _folder_images(folder, o.max_dataset_size)
  return _tfds_images(o, o.tfds_train if split == "train" else o.tfds_test)


# ----------------------------------------------------------------------------------------------------
# Examples
# ----------------------------------------------------------------------------------------------------
def to_float(image: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] (x / 127.5 - 1)."""
  return image.astype(np.float32) / 127.5 - 1.0


def train_example(imgs: _Images, o: Options, seed: int, process_index: int, k: int,
                  index: int) -> tuple[np.ndarray, np.ndarray]:
  """Element k of the training stream, from image `index`: (LR uint8, HR uint8) crops."""
  rng = np.random.default_rng([seed, process_index, k])
  hr_full, lr_full = imgs.hr(index), imgs.lr(index)
  if lr_full is not None:
    want = (hr_full.shape[0] // o.scale, hr_full.shape[1] // o.scale)
    if lr_full.shape[:2] != want:
      raise ValueError(f"{imgs.names[index]}: the given LR image is {lr_full.shape[1]}x"
                       f"{lr_full.shape[0]}, not the HR image's size / {o.scale} ({want[1]}x{want[0]}); "
                       f"is data.scale right for this data set?")
    hr, lr = random_crop(hr_full, o.crop_size, rng, o.scale, lr_full)
  else:
    hr, lr = random_crop(hr_full, o.crop_size, rng, o.scale), None
  t = _augment_index(o.augment, rng)
  hr = np.ascontiguousarray(dihedral(hr, t))
  lr = downsample(hr, o.scale) if lr is None else np.ascontiguousarray(dihedral(lr, t))
  return lr, hr


def epoch_order(n: int, seed: int, process_index: int, epoch: int) -> np.ndarray:
  """The shuffled image order of one epoch (a new permutation per epoch)."""
  key = zlib.crc32(f"sr/{seed}/{process_index}".encode())
  return np.random.default_rng([key, epoch]).permutation(n)


def test_examples(o: Options, max_images: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
  """[(LR uint8, HR uint8)] of the whole test images, HR cropped to a multiple of the scale."""
  imgs = images(o, "test")
  out = []
  for i in range(len(imgs) if not max_images else min(max_images, len(imgs))):
    hr = crop_to_multiple(imgs.hr(i), o.scale)
    if o.test_max_size:  # the top-left part only (tests, quick evaluations)
      hr = hr[:o.test_max_size, :o.test_max_size]
    lr = imgs.lr(i)
    if lr is not None:
      lr = lr[:hr.shape[0] // o.scale, :hr.shape[1] // o.scale]
    else:
      lr = downsample(hr, o.scale)
    out.append((lr, hr))
  return out


def create_dataset(config, split: str, batch_size: int, *, seed: int = 0, train: bool = True,
                   process_index: int | None = None, process_count: int | None = None,
                   start_batch: int = 0):
  """tf.data.Dataset of {'A': LR, 'B': HR} batches (see the module docstring)."""
  import tensorflow as tf
  from translate.data import input_pipeline
  input_pipeline.keep_tf_off_accelerators()
  o = options_from_config(config)
  pi, pc = process_index or 0, process_count or 1
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  if not train:
    pairs = test_examples(o)[pi::pc]
    if not pairs:
      raise ValueError(f"The {split} split has no images for process {pi} of {pc}.")
    same = len({p[1].shape for p in pairs}) == 1
    step = batch_size if same else 1
    batches = [(np.stack([to_float(lr) for lr, _ in pairs[i:i + step]]),
                np.stack([to_float(hr) for _, hr in pairs[i:i + step]]))
               for i in range(0, len(pairs), step)]
    ds = None
    for a, b in batches:
      one = tf.data.Dataset.from_tensors({"A": a, "B": b})
      ds = one if ds is None else ds.concatenate(one)
    return ds
  imgs = images(o, split)
  shard = list(range(pi, len(imgs), pc))
  if not shard:
    raise ValueError(f"The {split} split has {len(imgs)} images, fewer than the {pc} processes.")
  size, lr_size = o.crop_size, o.crop_size // o.scale

  def generate():
    k = int(start_batch) * batch_size
    epoch, order = -1, None
    while True:
      e, j = divmod(k, len(shard))
      if e != epoch:
        epoch, order = e, epoch_order(len(shard), seed, pi, e)
      lr, hr = train_example(imgs, o, seed, pi, k, shard[order[j]])
      yield {"A": to_float(lr), "B": to_float(hr)}
      k += 1

  spec = {"A": tf.TensorSpec((lr_size, lr_size, 3), tf.float32),
          "B": tf.TensorSpec((size, size, 3), tf.float32)}
  ds = tf.data.Dataset.from_generator(generate, output_signature=spec)
  options = tf.data.Options()
  options.deterministic = True
  return ds.batch(batch_size, drop_remainder=True).with_options(options).prefetch(2)


def dataset_size(config, split: str) -> int:
  """Training images per epoch (one random crop per image and epoch)."""
  o = options_from_config(config)
  if split == "test":
    return len(test_examples(o))
  return len(images(o, split))


def test_counts(config) -> tuple[dict | None, bool]:
  """(None, True): LR 'A' and HR 'B' of a test element are an input and its ground truth."""
  del config
  return None, True


def describe(config) -> str:
  o = options_from_config(config)
  where = {"photos": "embedded photos (scikit-image, scikit-learn)", "folder": f"folder {o.path}",
           "tfds": f"tfds {o.tfds_name}"}[o.source]
  lr = "given LR" if o.given_lr else "LR = MATLAB bicubic"
  return (f"{where}: x{o.scale} SR, {o.crop_size}px HR crops, {lr}, augment {o.augment}"
          + (f", test {o.test_path}" if o.test_path else ""))


def data_kind():
  from translate.methods import base
  return base.DataKind("sr_images", create_dataset, dataset_size, describe, test_counts)


__all__ = ["imresize", "bicubic_weights", "downsample", "crop_to_multiple", "random_crop", "dihedral",
           "create_dataset", "dataset_size", "describe", "test_counts", "Options", "data_kind"]
