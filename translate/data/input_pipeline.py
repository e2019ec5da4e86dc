"""tf.data input pipelines for unpaired (CycleGAN-style) and paired (pix2pix-style) image translation.

`create_dataset(data_config, split, batch_size, ...)` yields dicts of batches: 'A' and 'B' float32 NHWC
in [-1, 1] ('A' with `input_nc` channels, 'B' with `output_nc`), plus int32 'label_A'/'label_B' when
the source has content labels (only 'digits' does). `dataset_size` is the number of images per epoch
as the reference counts it, `describe` a one-line summary for logs.

Fields of `data_config` (an ml_collections.ConfigDict; `translate.config_base.data_config` holds the
reference defaults):
  source            'digits': the embedded printed -> handwritten digits (`translate.data.digits`,
                    splits 'train'/'test', with labels); 'tfds': a tfds builder with the cycle_gan split
                    names (`{split}A`, `{split}B`); 'folder': unpaired image folders
                    `path/{split}A`, `path/{split}B`; 'paired_folder': `path/{split}` holding A|B images
                    side by side (A left, B right; pix2pix's facades/maps layout).
  tfds_name         tfds builder for source='tfds', e.g. 'cycle_gan/horse2zebra'.
  data_dir          tfds data folder ('' = tfds's default).
  path              root folder for the folder sources (local or any tf.io.gfile path, e.g. gs://).
  direction         'AtoB' or 'BtoA'; 'BtoA' swaps the two domains (and labels), paired or unpaired,
                    so the model always translates 'A' -> 'B'.
  preprocess        the reference's --preprocess: 'resize_and_crop' (bicubic resize to load_size x
                    load_size, random crop_size crop), 'crop' (random crop only), 'scale_width' (width
                    to load_size, height int(max(load_size * h / w, crop_size))), 'scale_width_and_crop'
                    (that, then a random crop), 'none' (sides rounded to a multiple of 4).
  load_size         size of the resize (286 in the reference).
  crop_size         size of the crop (256).
  no_flip           True: no random left-right flip (p = 0.5 otherwise).
  input_nc          channels of 'A': 3 RGB or 1 grey (PIL's convert('L'), as torchvision Grayscale).
  output_nc         channels of 'B'.
  max_dataset_size  use only the first N images of each domain (sorted file names / the tfds split's
                    first N); 0 = all.
  serial_batches    True: no shuffling; A and B are each read in order (the reference's flag).
  shuffle_buffer    examples in the shuffle buffer for tfds (files and in-memory arrays are shuffled
                    as a whole index list, as the reference's DataLoader does).
  skip_bad_images   False (default): a bad image file stops the run at start-up with its name;
                    True: bad files are left out of the folder sources with a warning naming each
                    (the epoch and `dataset_size` then count the good files only).

What it does, and where it follows or leaves the PyTorch reference (pytorch-CycleGAN-and-pix2pix):
  * Pixels are the reference's bit for bit up to the random crop, though everything runs as TF ops
    (parallel, no Python or GIL in the pipeline): JPEGs are decoded with libjpeg's accurate DCT as PIL
    does, grey is PIL's convert('L') formula, and `pil_bicubic_resize` is Pillow's bicubic resampling
    (its fixed-point weights, column pass, uint8 rounding, row pass); the tests compare with PIL.
    Scaling is (x / 255 - 0.5) / 0.5 in float32, as ToTensor + Normalize. (A first version called PIL
    through tf.numpy_function: a live iterator then hung the interpreter at exit.)
  * Unpaired (UnalignedDataset): A and B are two separately shuffled and repeated streams, zipped, so
    which B meets which A changes from epoch to epoch (the reference draws a random B index for each
    A). Each stream gets its own crop and flip. Paired (AlignedDataset): the A|B image is split
    (A = left int(w / 2) columns), both halves resized alike, then cropped at one offset and flipped by
    one decision.
  * train=True: shuffled (unless serial_batches), repeated forever, random crop and flip, full batches
    only. train=False is the reference's test phase (test_options / test.py): load_size = crop_size
    (so resize_and_crop shows the whole image at crop_size), no flip, in order (serial_batches), one
    pass, last partial batch kept; where the reference would still crop randomly (crop,
    scale_width_and_crop, or load_size > crop_size) we take the centre crop, so evaluation is
    deterministic. Unpaired test pairs are (A[k % nA], B[k % nB]) for k < max(nA, nB), as the
    reference's serial test order.
  * Both modes are deterministic for a given seed: shuffles are seeded and every random crop/flip is a
    stateless function of (seed, stream, element number), so a resumed run can skip the batches it
    has already seen (`start_batch` does it without decoding them).
  * Multi-host training (train=True, process_count P > 1, `batch_size` L per process): every process
    builds the same global stream as a single process would (the same shuffled order of all
    examples, the same crop/flip of each), cut into global batches of P * L, and decodes only its
    rows [process_index * L, (process_index + 1) * L) of each; so P processes train on exactly the
    batches of one process with batch P * L (`translate.parallel` puts process p's rows on its
    devices). Every process lists all the files (or holds the in-memory digits, or reads the tfds
    split's encoded examples) and skips the others' rows before decoding. The test phase
    (train=False) splits the examples by stride instead (process_index::process_count; tfds with
    `tfds.split_for_jax_process`), so each is read by one process. `dataset_size` is global.
  * Files are checked at start-up (`images.validate_images`): a missing or empty folder, a non-image
    file, a corrupt or truncated image, a format TF cannot decode (TIFF, PPM), an alpha channel (RGBA)
    or 16-bit samples each raise `ImageFileError` naming the file and the fix (or, with
    skip_bad_images, leave the file out with a warning that names it and the reason). Images of
    different sizes are fine when preprocessing gives them one size;
    with 'none'/'scale_width' and batch_size > 1 they must come out the same size (checked too).
  * The cycle_gan tfds 'label' feature names the domain (0 = A, 1 = B), not the content, so tfds
    batches carry no labels. The reference truncates max_dataset_size in os.walk order; we truncate
    the sorted list, which does not depend on the file system.
  * TF is kept off the accelerators (`tf.config.set_visible_devices([], 'GPU')`) before the first
    pipeline is built, so it never takes memory that JAX needs.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import zlib
from typing import Any

import numpy as np
import tensorflow as tf

from translate.data import images as image_files
from translate.data.images import ImageFileError  # noqa: F401 -- re-exported for callers

SOURCES = ("digits", "tfds", "folder", "paired_folder")
DIRECTIONS = ("AtoB", "BtoA")
PREPROCESS_MODES = image_files.PREPROCESS_MODES
CHANNELS = (1, 3)
AUTOTUNE = tf.data.AUTOTUNE


# ----------------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Options:
  """The validated fields of a data config (see the module docstring)."""
  source: str = "tfds"
  tfds_name: str = "cycle_gan/horse2zebra"
  data_dir: str = ""
  path: str = ""
  direction: str = "AtoB"
  preprocess: str = "resize_and_crop"
  load_size: int = 286
  crop_size: int = 256
  no_flip: bool = False
  input_nc: int = 3
  output_nc: int = 3
  max_dataset_size: int = 0
  serial_batches: bool = False
  shuffle_buffer: int = 1000
  skip_bad_images: bool = False

  @property
  def paired(self) -> bool:
    return self.source == "paired_folder"

  @property
  def crops(self) -> bool:
    return "crop" in self.preprocess

  def test_phase(self) -> "Options":
    """The reference's test options: load_size defaults to crop_size, no flip, serial order."""
    return dataclasses.replace(self, load_size=self.crop_size, no_flip=True, serial_batches=True)


def options_from_config(data_config: Any) -> Options:
  """Reads and checks the fields of `data_config` (ConfigDict or mapping); raises ValueError early."""
  get = data_config.get if hasattr(data_config, "get") else functools.partial(getattr, data_config)
  fields = {}
  for field in dataclasses.fields(Options):
    value = get(field.name, field.default)
    fields[field.name] = type(field.default)(value)
  opts = Options(**fields)
  if opts.source not in SOURCES:
    raise ValueError(f"data.source={opts.source!r}; expected one of {SOURCES}.")
  if opts.direction not in DIRECTIONS:
    raise ValueError(f"data.direction={opts.direction!r}; expected one of {DIRECTIONS}.")
  if opts.preprocess not in PREPROCESS_MODES:
    raise ValueError(f"data.preprocess={opts.preprocess!r}; expected one of {PREPROCESS_MODES}.")
  for name in ("input_nc", "output_nc"):
    if getattr(opts, name) not in CHANNELS:
      raise ValueError(f"data.{name}={getattr(opts, name)}; the input pipeline reads 3 (RGB) or 1 "
                       f"(grey) channels.")
  if opts.load_size < 1 or opts.crop_size < 1:
    raise ValueError(f"data.load_size ({opts.load_size}) and data.crop_size ({opts.crop_size}) must "
                     f"be positive.")
  if opts.preprocess in ("resize_and_crop", "scale_width_and_crop") and opts.crop_size > opts.load_size:
    raise ValueError(
        f"data.crop_size ({opts.crop_size}) is larger than data.load_size ({opts.load_size}) with "
        f"data.preprocess={opts.preprocess!r}: the crop must fit inside the resized image. Set "
        f"crop_size <= load_size.")
  if opts.source in ("folder", "paired_folder") and not opts.path:
    raise ValueError(f"data.source={opts.source!r} needs data.path, the root data folder.")
  if opts.source == "tfds" and not opts.tfds_name:
    raise ValueError("data.source='tfds' needs data.tfds_name, e.g. 'cycle_gan/horse2zebra'.")
  if opts.max_dataset_size < 0:
    raise ValueError(f"data.max_dataset_size={opts.max_dataset_size}; use 0 for no limit.")
  if opts.shuffle_buffer < 1:
    raise ValueError(f"data.shuffle_buffer={opts.shuffle_buffer} must be >= 1.")
  return opts


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  if process_index is None and process_count is None:
    return 0, 1
  if process_index is None or process_count is None:
    raise ValueError("Give both process_index and process_count, or neither.")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count}).")
  return int(process_index), int(process_count)


# ----------------------------------------------------------------------------------------------------
# TF stays on the CPU
# ----------------------------------------------------------------------------------------------------
_TF_HIDDEN_FROM_ACCELERATORS = False


def keep_tf_off_accelerators() -> None:
  """Hides GPUs from TF (once), so tf.data never allocates accelerator memory that JAX needs."""
  global _TF_HIDDEN_FROM_ACCELERATORS
  if _TF_HIDDEN_FROM_ACCELERATORS:
    return
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF's devices were initialised already; say so if it actually sees a GPU
    if tf.config.get_visible_devices("GPU"):
      logging.warning("TensorFlow was initialised before the input pipeline and can see a GPU; it "
                      "may take GPU memory. Call input_pipeline.keep_tf_off_accelerators() earlier.")
  _TF_HIDDEN_FROM_ACCELERATORS = True


# ----------------------------------------------------------------------------------------------------
# Domains: where one stream of images comes from
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Files:
  paths: list[str]
  infos: list[image_files.ImageInfo] | None = None


@dataclasses.dataclass
class _Arrays:
  images: np.ndarray  # uint8 (N, H, W, C), C already the requested channels
  labels: np.ndarray | None


@dataclasses.dataclass
class _Tfds:
  name: str
  data_dir: str | None
  split: str  # a tfds split string, sliced and sharded


def _tfds_split(opts: Options, split: str, pi: int, pc: int) -> str:
  import tensorflow_datasets as tfds
  if opts.max_dataset_size:
    split = f"{split}[:{opts.max_dataset_size}]"
  if pc > 1:
    split = tfds.split_for_jax_process(split, process_index=pi, process_count=pc)
  return split


def _domain_names(opts: Options) -> tuple[str, str]:
  """Names of the data domains that become 'A' and 'B' (direction BtoA swaps them)."""
  return ("A", "B") if opts.direction == "AtoB" else ("B", "A")


def _load_digits(split: str) -> dict[str, np.ndarray]:
  from translate.data import digits  # lazy: it renders (or reads its cache) on first use
  return digits.load_split(split)


def _unpaired_domains(opts: Options, split: str, pi: int, pc: int, validate: bool) -> dict:
  """{'A': domain, 'B': domain} after the direction swap, sharded for process pi of pc."""
  names = _domain_names(opts)
  if opts.source == "digits":
    data = _load_digits(split)
    out = {}
    for key, name, channels in zip(("A", "B"), names, (opts.input_nc, opts.output_nc)):
      arrays, labels = data[name], data[f"label_{name}"]
      if opts.max_dataset_size:
        arrays, labels = arrays[:opts.max_dataset_size], labels[:opts.max_dataset_size]
      arrays, labels = arrays[pi::pc], labels[pi::pc]
      if not len(arrays):
        raise ValueError(f"digits split {split!r} domain {name} has no images for process {pi} "
                         f"of {pc}.")
      if channels == 1:
        arrays = image_files.grey_uint8(arrays)
      out[key] = _Arrays(np.ascontiguousarray(arrays), labels.astype(np.int32))
    return out
  if opts.source == "tfds":
    data_dir = opts.data_dir or None
    return {key: _Tfds(opts.tfds_name, data_dir, _tfds_split(opts, split + name, pi, pc))
            for key, name in zip(("A", "B"), names)}
  out = {}
  for key, name in zip(("A", "B"), names):
    paths, infos = _folder_files(os.path.join(opts.path, split + name), opts, validate)
    shard = slice(pi, None, pc)
    out[key] = _Files(paths[shard], infos[shard] if infos else None)
    if not out[key].paths:
      raise ValueError(f"Folder {os.path.join(opts.path, split + name)!r} has {len(paths)} images, "
                       f"fewer than the {pc} processes reading it.")
  return out


def _folder_files(folder: str, opts: Options, validate: bool):
  """(paths, infos or None) of a data folder: checked when `validate` or skip_bad_images (which
  leaves the bad files out, with a warning naming each)."""
  paths = image_files.list_image_files(folder, opts.max_dataset_size)
  if not (validate or opts.skip_bad_images):
    return paths, None
  infos = image_files.usable_images(paths, opts.skip_bad_images, folder)
  return [info.path for info in infos], infos


def _paired_files(opts: Options, split: str, pi: int, pc: int, validate: bool) -> _Files:
  folder = os.path.join(opts.path, split)
  paths, infos = _folder_files(folder, opts, validate)
  files = _Files(paths[pi::pc], infos[pi::pc] if infos else None)
  if not files.paths:
    raise ValueError(f"Folder {folder!r} has {len(paths)} images, fewer than the {pc} processes "
                     f"reading it.")
  return files


# ----------------------------------------------------------------------------------------------------
# Size checks that need the image sizes (folders: from the headers read at validation)
# ----------------------------------------------------------------------------------------------------
def _check_sizes(named_sizes: list[tuple[str, tuple[int, int]]], opts: Options,
                 batch_size: int) -> tuple[int, int] | None:
  """Crop must fit each (resized) image; without a crop, batching needs one output size.

  Returns the (height, width) all images have after the resize (before any crop) when it is one
  size, so the pipeline can give its tensors static shapes; None otherwise.
  """
  outputs, resized = {}, set()
  for name, (w, h) in named_sizes:
    if w < 1 or h < 1:  # a paired A|B image 1 pixel wide has an empty half
      raise ImageFileError(f"Image {name} has an empty half ({w}x{h}): an A|B pair needs at least "
                           f"2 columns.")
    rw, rh = image_files.resized_size(w, h, opts.preprocess, opts.load_size, opts.crop_size)
    resized.add((rh, rw))
    if rw < 1 or rh < 1:
      raise ImageFileError(f"Image {name} ({w}x{h}) becomes {rw}x{rh} with "
                           f"preprocess={opts.preprocess!r}; it is too small.")
    if opts.crops:
      if rw < opts.crop_size or rh < opts.crop_size:
        raise ImageFileError(
            f"Image {name} is {rw}x{rh} after preprocess={opts.preprocess!r}, smaller than "
            f"crop_size={opts.crop_size}; use a smaller crop_size or preprocess='resize_and_crop'.")
    else:
      outputs.setdefault((rw, rh), name)
  if batch_size > 1 and len(outputs) > 1:
    (s1, n1), (s2, n2) = list(outputs.items())[:2]
    raise ValueError(
        f"With preprocess={opts.preprocess!r} images keep different sizes ({n1} becomes "
        f"{s1[0]}x{s1[1]}, {n2} becomes {s2[0]}x{s2[1]}), which cannot be batched with "
        f"batch_size={batch_size}. Use batch_size=1 or a preprocess with a crop.")
  return resized.pop() if len(resized) == 1 else None


def _file_sizes(files: _Files, paired: bool, half: int = 0) -> list[tuple[str, tuple[int, int]]]:
  out = []
  for info in files.infos or ():
    # the size the pipeline sees: after the EXIF orientation (5-8 turn the image by 90 degrees)
    size = (info.height, info.width) if info.orientation >= 5 else (info.width, info.height)
    if paired:
      size = image_files.paired_halves_size(*size)[half]
    out.append((repr(info.path), size))
  return out


# ----------------------------------------------------------------------------------------------------
# Per-element transforms, all TF ops (no Python in the pipeline: no GIL, and no hang at exit)
# ----------------------------------------------------------------------------------------------------
# Pillow's fixed point for 8-bit resampling (Resample.c: PRECISION_BITS = 32 - 8 - 2).
_PRECISION_BITS = 22


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded JPEG/PNG/BMP/GIF/WebP -> uint8 (H, W, 3), as PIL's `Image.open(f).convert('RGB')`.

  JPEGs use libjpeg's accurate integer DCT, the one PIL uses (TF's default fast DCT differs by a few
  levels); grey and palette images are expanded to RGB as PIL's convert does.
  """
  image = tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
  image.set_shape([None, None, 3])
  return image


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
  """An (H, W, C) image turned upright by its EXIF orientation (1..8), as PIL's
  `ImageOps.exif_transpose`: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
  7 transverse, 8 rotate 90 counter-clockwise; 1 (or anything else) leaves it as stored."""
  transposed = tf.transpose(image, [1, 0, 2])
  branches = [
      lambda: image,
      lambda: image,
      lambda: image[:, ::-1],
      lambda: image[::-1, ::-1],
      lambda: image[::-1],
      lambda: transposed,
      lambda: transposed[:, ::-1],
      lambda: transposed[::-1, ::-1],
      lambda: transposed[::-1],
  ]
  index = tf.where((orientation >= 1) & (orientation <= 8), orientation, 1)
  return tf.switch_case(tf.cast(index, tf.int32), branches)


def rgb_to_grey(image: tf.Tensor) -> tf.Tensor:
  """PIL's convert('L') (torchvision's Grayscale(1) on PIL images): ITU-R 601-2 luma in 16-bit fixed
  point, (19595 R + 38470 G + 7471 B + 2^15) >> 16. uint8 (H, W, 3) -> uint8 (H, W, 1)."""
  rgb = tf.cast(image, tf.int32)
  luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) // 65536
  return tf.cast(luma, tf.uint8)[..., None]


def resized_size(height: tf.Tensor, width: tf.Tensor, opts: Options) -> tuple[tf.Tensor, tf.Tensor]:
  """`images.resized_size` (the reference's resize rules) on int32 tensors, as (height, width)."""
  if opts.preprocess == "resize_and_crop":
    return tf.constant(opts.load_size), tf.constant(opts.load_size)
  if opts.preprocess in ("scale_width", "scale_width_and_crop"):
    load, crop = opts.load_size, opts.crop_size
    # Python's load * h / w: the exact integer product, one correctly rounded division
    scaled = tf.cast(load * height, tf.float64) / tf.cast(width, tf.float64)
    new_h = tf.cast(tf.maximum(scaled, float(crop)), tf.int32)
    keep = tf.logical_and(tf.equal(width, load), height >= crop)
    return tf.where(keep, height, new_h), tf.where(keep, width, tf.constant(load))
  if opts.preprocess == "none":  # round(x / 4) * 4 with round half to even, as Python's round
    base = image_files.SIZE_BASE
    to_base = lambda x: tf.cast(tf.round(tf.cast(x, tf.float64) / base), tf.int32) * base  # noqa: E731
    return to_base(height), to_base(width)
  return height, width  # crop


def _bicubic_filter(x: tf.Tensor) -> tf.Tensor:
  """Pillow's bicubic_filter (a = -0.5), with its float64 operation order."""
  x = tf.abs(x)
  near = ((1.5 * x - 2.5) * x) * x + 1.0  # ((a + 2) x - (a + 3)) x x + 1
  far = (((x - 5.0) * x + 8.0) * x - 4.0) * -0.5  # (((x - 5) x + 8) x - 4) a
  return tf.where(x < 1.0, near, tf.where(x < 2.0, far, tf.zeros_like(x)))


def _pil_coefficients(in_size: tf.Tensor, out_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Pillow's precompute_coeffs + normalize_coeffs_8bpc for a bicubic resize of one axis.

  Returns (input index, fixed-point weight), each (out_size, ksize): output pixel i is
  sum_j weight[i, j] * input[index[i, j]]. Taps beyond Pillow's window have weight 0.
  """
  scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
  filterscale = tf.maximum(scale, 1.0)
  support = 2.0 * filterscale  # the bicubic filter's support, widened when shrinking
  ksize = tf.cast(tf.math.ceil(support), tf.int32) * 2 + 1
  center = (tf.cast(tf.range(out_size), tf.float64) + 0.5) * scale
  # C's (int) casts truncate toward zero, as tf.cast does
  xmin = tf.maximum(tf.cast(center - support + 0.5, tf.int32), 0)
  count = tf.minimum(tf.cast(center + support + 0.5, tf.int32), in_size) - xmin
  taps = tf.range(ksize)
  index = xmin[:, None] + taps[None, :]
  t = ((tf.cast(index, tf.float64) - center[:, None]) + 0.5) * (1.0 / filterscale)
  weight = tf.where(taps[None, :] < count[:, None], _bicubic_filter(t), 0.0)
  total = tf.reduce_sum(weight, axis=1, keepdims=True)
  weight = tf.where(total != 0.0, weight / total, weight)
  # (int)(k * 2^22 + 0.5) for k >= 0, (int)(k * 2^22 - 0.5) for k < 0: round half away from zero
  fixed = tf.sign(weight) * tf.floor(tf.abs(weight) * float(1 << _PRECISION_BITS) + 0.5)
  return tf.minimum(index, in_size - 1), tf.cast(fixed, tf.int32)


def _pil_resample_axis(image: tf.Tensor, out_size: tf.Tensor, axis: int) -> tf.Tensor:
  """One of Pillow's two 8-bit passes along `axis` (0: rows, 1: columns) of int32 (H, W, C)."""
  index, weight = _pil_coefficients(tf.shape(image)[axis], out_size)
  taps = tf.gather(image, index, axis=axis)  # axis 1: (H, out, k, C); axis 0: (out, k, W, C)
  if axis == 1:
    total = tf.reduce_sum(taps * weight[None, :, :, None], axis=2)
  else:
    total = tf.reduce_sum(taps * weight[:, :, None, None], axis=1)
  half = 1 << (_PRECISION_BITS - 1)  # Pillow starts each sum at 1/2 to round
  return tf.clip_by_value((total + half) // (1 << _PRECISION_BITS), 0, 255)


def pil_bicubic_resize(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  """PIL's `Image.resize((width, height), Image.BICUBIC)` on uint8 (H, W, C), bit for bit.

  Pillow's Resample.c resamples columns first, rounds and clips to uint8, then resamples rows; each
  pass is skipped when its size does not change. Done here with the same fixed-point weights. Note:
  Pillow 13 (installed here) resamples rows first for some shape pairs, by a rule we have not found;
  for those the two results differ by intermediate rounding (<= 1 level on natural images, more on
  pure noise). tests/test_input_pipeline.py shows each pass is exact in either order.
  """
  shape = tf.shape(image)
  out = tf.cast(image, tf.int32)
  out = tf.cond(tf.equal(shape[1], width), lambda: out,
                lambda: _pil_resample_axis(out, width, axis=1))
  out = tf.cond(tf.equal(shape[0], height), lambda: out,
                lambda: _pil_resample_axis(out, height, axis=0))
  return tf.cast(out, tf.uint8)


def prepare(image: tf.Tensor, channels: int, opts: Options) -> tf.Tensor:
  """The reference's deterministic steps: grey if `channels` == 1, then the bicubic resize."""
  if channels == 1 and image.shape[-1] != 1:
    image = rgb_to_grey(image)
  shape = tf.shape(image)
  height, width = resized_size(shape[0], shape[1], opts)
  return pil_bicubic_resize(image, height, width)


def _stream_seed(seed: int, process_index: int, stream: str) -> int:
  """A 31-bit seed for one stream: different streams draw independent crops/flips. The global
  training stream of several processes is process 0's (the one-process stream, unchanged)."""
  return zlib.crc32(f"{seed}/{process_index}/{stream}".encode()) & 0x7FFFFFFF


@dataclasses.dataclass(frozen=True)
class Rows:
  """This process's rows of every global batch: elements i of the global stream with
  (i // batch_size) % process_count == process_index, i.e. rows [process_index * batch_size,
  (process_index + 1) * batch_size) of each global batch of process_count * batch_size."""
  process_index: int
  process_count: int
  batch_size: int  # per process

  def select(self, ds: tf.data.Dataset) -> tf.data.Dataset:
    """Keeps this process's elements of an enumerated dataset of (i, item); nothing is decoded yet."""
    if self.process_count == 1:
      return ds
    pi, pc, size = (tf.constant(v, tf.int64) for v in (self.process_index, self.process_count,
                                                      self.batch_size))
    return ds.filter(tf.autograph.experimental.do_not_convert(
        lambda i, item: tf.equal((i // size) % pc, pi)))


def _crop_and_flip(images: list[tf.Tensor], key: tf.Tensor, opts: Options, train: bool) -> list:
  """One crop offset (random or centre) and one flip decision for all `images` (uint8 HWC)."""
  shape = tf.shape(images[0])
  h, w = shape[0], shape[1]
  if opts.crops:
    size = opts.crop_size
    check = tf.debugging.assert_greater_equal(
        tf.minimum(h, w), size,
        message=f"an image is smaller than crop_size={size} after preprocess={opts.preprocess!r}")
    with tf.control_dependencies([check]):
      if train:  # uniform offsets in [0, h - size] x [0, w - size], as RandomCrop / get_params
        u = tf.random.stateless_uniform([2], seed=key, dtype=tf.float32)
        y = tf.cast(tf.floor(u[0] * tf.cast(h - size + 1, tf.float32)), tf.int32)
        x = tf.cast(tf.floor(u[1] * tf.cast(w - size + 1, tf.float32)), tf.int32)
        y, x = tf.minimum(y, h - size), tf.minimum(x, w - size)
      else:  # torchvision CenterCrop's offsets: int(round((h - size) / 2))
        y = tf.cast(tf.round(tf.cast(h - size, tf.float32) / 2), tf.int32)
        x = tf.cast(tf.round(tf.cast(w - size, tf.float32) / 2), tf.int32)
    images = [image[y:y + size, x:x + size] for image in images]
  if train and not opts.no_flip:
    flip_key = tf.random.experimental.stateless_fold_in(key, 1)
    flip = tf.random.stateless_uniform([], seed=flip_key) > 0.5  # the reference: random() > 0.5
    images = [tf.cond(flip, lambda im=im: tf.reverse(im, axis=[1]), lambda im=im: im)
              for im in images]
  return images


def _to_float(image: tf.Tensor, channels: int, opts: Options) -> tf.Tensor:
  """uint8 -> float32 in [-1, 1], as torchvision ToTensor + Normalize(0.5, 0.5) compute it."""
  image = (tf.cast(image, tf.float32) / 255.0 - 0.5) / 0.5
  size = opts.crop_size if opts.crops else None
  image.set_shape([size, size, channels])
  return image


def _set_hw(image: tf.Tensor, hw: tuple[int, int] | None, channels: int) -> tf.Tensor:
  """Static shape of a prepared image: (height, width) when known at start-up, and its channels."""
  image.set_shape([*(hw or (None, None)), channels])
  return image


# ----------------------------------------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------------------------------------
def _index_stream(n: int, train: bool, opts: Options, shuffle_seed: int) -> tf.data.Dataset:
  ds = tf.data.Dataset.range(n)
  if train:
    if not opts.serial_batches:
      ds = ds.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
  return ds


def _unpaired_stream(domain, key: str, channels: int, opts: Options, train: bool, seed: int,
                     pi: int, length: int | None, skip: int,
                     hw: tuple[int, int] | None, rows: Rows | None = None) -> tf.data.Dataset:
  """Dataset of {key: float image, label_key: int32} for one domain, `length` items (None = forever);
  `skip` elements skipped, then only `rows` kept (multi-host training: the stream is the global one)."""
  stream_seed = _stream_seed(seed, pi, key)
  label_key = f"label_{key}"

  if isinstance(domain, _Files):
    paths = tf.constant(domain.paths)
    orientations = tf.constant(image_files.exif_orientations(domain.paths), tf.int32)
    ds = _index_stream(len(domain.paths), train, opts, stream_seed)

    def load(index):
      image = apply_orientation(decode_image(tf.io.read_file(paths[index])), orientations[index])
      return {key: prepare(image, channels, opts)}

  elif isinstance(domain, _Arrays):
    images = tf.constant(domain.images)
    labels = tf.constant(domain.labels) if domain.labels is not None else None
    ds = _index_stream(len(domain.images), train, opts, stream_seed)
    h, w = domain.images.shape[1:3]
    needs_resize = image_files.resized_size(w, h, opts.preprocess, opts.load_size,
                                            opts.crop_size) != (w, h)

    def load(index):
      image = tf.gather(images, index)  # already grey where channels == 1
      out = {key: prepare(image, channels, opts) if needs_resize else image}
      if labels is not None:
        out[label_key] = tf.gather(labels, index)
      return out

  else:  # _Tfds
    import tensorflow_datasets as tfds
    shuffle = train and not opts.serial_batches
    # Encoded images are shuffled (small) and decoded after, as files are.
    ds = tfds.load(domain.name, split=domain.split, data_dir=domain.data_dir,
                   decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=shuffle,
                   read_config=tfds.ReadConfig(shuffle_seed=stream_seed))
    ds = ds.map(tf.autograph.experimental.do_not_convert(lambda example: example["image"]))
    if train:
      if shuffle:
        ds = ds.shuffle(opts.shuffle_buffer, seed=stream_seed, reshuffle_each_iteration=True)
      ds = ds.repeat()

    def load(encoded):
      return {key: prepare(decode_image(encoded), channels, opts)}

  if length is not None:
    ds = ds.repeat().take(length)
  ds = ds.enumerate().skip(skip)
  if rows is not None:
    ds = rows.select(ds)

  @tf.autograph.experimental.do_not_convert  # plain TF ops: skip autograph's slow source conversion
  def transform(i, item):
    out = load(item)
    element_key = tf.stack([tf.constant(stream_seed, tf.int64), i])
    (image,) = _crop_and_flip([_set_hw(out[key], hw, channels)], element_key, opts, train)
    out[key] = _to_float(image, channels, opts)
    return out

  return ds.map(transform, num_parallel_calls=AUTOTUNE)


def _paired_stream(files: _Files, opts: Options, train: bool, seed: int, pi: int, skip: int,
                   hws: tuple, rows: Rows | None = None) -> tf.data.Dataset:
  stream_seed = _stream_seed(seed, pi, "AB")
  paths = tf.constant(files.paths)
  orientations = tf.constant(image_files.exif_orientations(files.paths), tf.int32)
  ds = _index_stream(len(files.paths), train, opts, stream_seed).enumerate().skip(skip)
  if rows is not None:
    ds = rows.select(ds)

  @tf.autograph.experimental.do_not_convert
  def transform(i, index):
    image = apply_orientation(decode_image(tf.io.read_file(paths[index])), orientations[index])
    half = tf.shape(image)[1] // 2  # the reference's int(w / 2): A = left, B = the rest
    halves = [image[:, :half], image[:, half:]]
    if opts.direction == "BtoA":
      halves = halves[::-1]
    a = _set_hw(prepare(halves[0], opts.input_nc, opts), hws[0], opts.input_nc)
    b = _set_hw(prepare(halves[1], opts.output_nc, opts), hws[1], opts.output_nc)
    element_key = tf.stack([tf.constant(stream_seed, tf.int64), i])
    a, b = _crop_and_flip([a, b], element_key, opts, train)
    return {"A": _to_float(a, opts.input_nc, opts), "B": _to_float(b, opts.output_nc, opts)}

  return ds.map(transform, num_parallel_calls=AUTOTUNE)


def tfds_length(name: str, split: str, data_dir: str | None) -> int:
  """Examples in a tfds split (also for labelled sources)."""
  import tensorflow_datasets as tfds
  ds = tfds.load(name, split=split, data_dir=data_dir,
                 decoders={"image": tfds.decode.SkipDecoding()})
  n = int(ds.cardinality())
  if n < 0:  # unknown: count (only encoded bytes are read)
    n = int(ds.reduce(np.int64(0), lambda count, _: count + 1))
  return n


def _domain_length(domain) -> int:
  if isinstance(domain, _Files):
    return len(domain.paths)
  if isinstance(domain, _Arrays):
    return len(domain.images)
  return tfds_length(domain.name, domain.split, domain.data_dir)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------
def create_dataset(data_config: Any, split: str, batch_size: int, *, seed: int = 0,
                   train: bool = True, process_index: int | None = None,
                   process_count: int | None = None, start_batch: int = 0) -> tf.data.Dataset:
  """Batches of {'A', 'B'[, 'label_A', 'label_B']} for this process (see the module docstring).

  `batch_size` is the per-process batch. train=True: shuffled, repeated, randomly cropped/flipped,
  full batches only; with several processes, this process's rows of the global stream's batches
  (see the module docstring). train=False: the reference's test phase, one pass in order, last batch
  kept; with several processes, a strided share of the examples. `start_batch` skips that many
  batches without decoding them (the stream is otherwise identical to
  `create_dataset(...).skip(start_batch)`), for resuming a run.
  """
  opts = options_from_config(data_config)
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  pi, pc = _process(process_index, process_count)
  keep_tf_off_accelerators()
  rows = None
  if train:  # one global stream (process 0's seeds, all examples); this process keeps its rows
    rows, pi, pc = Rows(pi, pc, batch_size), 0, 1
    skip = int(start_batch) * batch_size * rows.process_count
  else:
    opts = opts.test_phase()
    skip = int(start_batch) * batch_size

  if opts.paired:
    files = _paired_files(opts, split, pi, pc, validate=True)
    # direction BtoA puts the right half (1) first
    halves = (0, 1) if opts.direction == "AtoB" else (1, 0)
    hws = tuple(_check_sizes(_file_sizes(files, True, half), opts, batch_size) for half in halves)
    ds = _paired_stream(files, opts, train, seed, pi, skip, hws, rows)
  else:
    domains = _unpaired_domains(opts, split, pi, pc, validate=True)
    hws = {}
    for key in ("A", "B"):
      domain = domains[key]
      if isinstance(domain, _Files):
        hws[key] = _check_sizes(_file_sizes(domain, False), opts, batch_size)
      elif isinstance(domain, _Arrays):
        h, w = domain.images.shape[1:3]
        hws[key] = _check_sizes([(f"digits {split} {key} (all {w}x{h})", (w, h))], opts, 1)
      else:  # tfds: sizes are unknown until read; only resize_and_crop fixes them
        hws[key] = ((opts.load_size, opts.load_size) if opts.preprocess == "resize_and_crop"
                    else None)
    length = None
    if not train:  # one pass of the reference's serial test order: max(nA, nB) pairs
      length = max(_domain_length(domains["A"]), _domain_length(domains["B"]))
    streams = [
        _unpaired_stream(domains[key], key, channels, opts, train, seed, pi, length, skip, hws[key],
                         rows)
        for key, channels in (("A", opts.input_nc), ("B", opts.output_nc))]
    merge = tf.autograph.experimental.do_not_convert(lambda a, b: {**a, **b})
    ds = tf.data.Dataset.zip(tuple(streams)).map(merge)

  ds = ds.batch(batch_size, drop_remainder=train)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


def _tfds_num_examples(opts: Options, split: str) -> int:
  import tensorflow_datasets as tfds
  data_dir = opts.data_dir or None
  builder = tfds.builder(opts.tfds_name, data_dir=data_dir)
  if split not in builder.info.splits:
    builder.download_and_prepare()
    builder = tfds.builder(opts.tfds_name, data_dir=data_dir)
  if split in builder.info.splits:
    n = builder.info.splits[split].num_examples
  else:  # no split metadata (e.g. tfds.testing.mock_data): count the examples
    n = _domain_length(_Tfds(opts.tfds_name, data_dir, split))
  return min(n, opts.max_dataset_size) if opts.max_dataset_size else n


def dataset_size(data_config: Any, split: str) -> int:
  """Images per epoch over all processes: max(len A, len B) unpaired (the reference's
  UnalignedDataset), the number of A|B images paired (AlignedDataset); after max_dataset_size."""
  opts = options_from_config(data_config)
  if opts.paired:
    return len(_folder_files(os.path.join(opts.path, split), opts, False)[0])
  if opts.source == "folder":
    return max(len(_folder_files(os.path.join(opts.path, split + name), opts, False)[0])
               for name in ("A", "B"))
  if opts.source == "digits":
    data = _load_digits(split)
    sizes = [len(data[name]) for name in ("A", "B")]
    if opts.max_dataset_size:
      sizes = [min(n, opts.max_dataset_size) for n in sizes]
    return max(sizes)
  keep_tf_off_accelerators()
  return max(_tfds_num_examples(opts, split + name) for name in ("A", "B"))


def test_counts(data_config: Any) -> tuple[dict | None, bool]:
  """({'A': nA, 'B': nB} distinct images of the unpaired test split, False), or (None, True) for paired
  data, where element k of A and of B are an input and its ground truth. The unpaired test pass pairs
  A[k % nA] with B[k % nB] for k < max(nA, nB), so evaluation counts each image once by these sizes."""
  opts = options_from_config(data_config)
  if opts.paired:
    return None, True
  domains = _unpaired_domains(opts, "test", 0, 1, validate=False)
  return {k: _domain_length(domains[k]) for k in ("A", "B")}, False


def describe(data_config: Any) -> str:
  """One line for logs, e.g. "folder /data/h2z (unpaired, AtoB): resize_and_crop 286->256, flip, ..."."""
  opts = options_from_config(data_config)
  where = {"digits": "embedded digits (printed -> MNIST)", "tfds": f"tfds {opts.tfds_name}",
           "folder": f"folder {opts.path}", "paired_folder": f"paired folder {opts.path}"}[opts.source]
  if opts.source == "tfds" and opts.data_dir:
    where += f" in {opts.data_dir}"
  if opts.preprocess == "resize_and_crop" or opts.preprocess == "scale_width_and_crop":
    sizes = f" {opts.load_size}->{opts.crop_size}"
  elif opts.preprocess == "crop":
    sizes = f" {opts.crop_size}"
  elif opts.preprocess == "scale_width":
    sizes = f" width {opts.load_size}"
  else:
    sizes = " (multiple of 4)"
  parts = [f"{where} ({'paired' if opts.paired else 'unpaired'}, {opts.direction})",
           f"preprocess {opts.preprocess}{sizes}", "no flip" if opts.no_flip else "flip",
           f"channels A {opts.input_nc} B {opts.output_nc}"]
  if opts.max_dataset_size:
    parts.append(f"first {opts.max_dataset_size} images")
  if opts.serial_batches:
    parts.append("serial")
  return parts[0] + ": " + ", ".join(parts[1:])


__all__ = ["Options", "ImageFileError", "create_dataset", "dataset_size", "describe", "test_counts",
           "keep_tf_off_accelerators", "options_from_config"]
