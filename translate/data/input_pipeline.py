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

What it does, and where it follows or leaves the PyTorch reference (pytorch-CycleGAN-and-pix2pix):
  * Pixels before the random crop are the reference's exactly: images are decoded, converted (RGB,
    then grey for 1 channel) and resized (bicubic) by PIL itself (`translate.data.images`). Crop, flip
    and scaling ((x / 255 - 0.5) / 0.5, float32, as ToTensor + Normalize) are TF ops.
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
  * Both modes are deterministic for a given seed (and process): shuffles are seeded and every
    random crop/flip is a stateless function of (seed, process, stream, element number), so a resumed
    run can skip the batches it has already seen (`start_batch` does it without decoding them).
  * Multi-host: tfds splits are read with `tfds.split_for_jax_process`; folder file lists and the
    in-memory digits are split by stride (process_index::process_count). `dataset_size` is global.
  * Files are checked at start-up (`images.validate_images`): a missing or empty folder, a non-image
    file, a corrupt image, an alpha channel (RGBA) or 16-bit samples each raise `ImageFileError` naming
    the file and the fix. Images of different sizes are fine when preprocessing gives them one size;
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
    paths = image_files.list_image_files(os.path.join(opts.path, split + name),
                                         opts.max_dataset_size)
    infos = image_files.validate_images(paths) if validate else None
    shard = slice(pi, None, pc)
    out[key] = _Files(paths[shard], infos[shard] if infos else None)
    if not out[key].paths:
      raise ValueError(f"Folder {os.path.join(opts.path, split + name)!r} has {len(paths)} images, "
                       f"fewer than the {pc} processes reading it.")
  return out


def _paired_files(opts: Options, split: str, pi: int, pc: int, validate: bool) -> _Files:
  folder = os.path.join(opts.path, split)
  paths = image_files.list_image_files(folder, opts.max_dataset_size)
  infos = image_files.validate_images(paths) if validate else None
  files = _Files(paths[pi::pc], infos[pi::pc] if infos else None)
  if not files.paths:
    raise ValueError(f"Folder {folder!r} has {len(paths)} images, fewer than the {pc} processes "
                     f"reading it.")
  return files


# ----------------------------------------------------------------------------------------------------
# Size checks that need the image sizes (folders: from the headers read at validation)
# ----------------------------------------------------------------------------------------------------
def _check_sizes(named_sizes: list[tuple[str, tuple[int, int]]], opts: Options,
                 batch_size: int) -> None:
  """Crop must fit each (resized) image; without a crop, batching needs one output size."""
  outputs = {}
  for name, (w, h) in named_sizes:
    rw, rh = image_files.resized_size(w, h, opts.preprocess, opts.load_size, opts.crop_size)
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


def _file_sizes(files: _Files, paired: bool, half: int = 0) -> list[tuple[str, tuple[int, int]]]:
  out = []
  for info in files.infos or ():
    size = (info.width, info.height)
    if paired:
      size = image_files.paired_halves_size(*size)[half]
    out.append((repr(info.path), size))
  return out


# ----------------------------------------------------------------------------------------------------
# Per-element transforms
# ----------------------------------------------------------------------------------------------------
def _stream_seed(seed: int, process_index: int, stream: str) -> int:
  """A 31-bit seed for one stream of one process: different streams draw independent crops/flips."""
  return zlib.crc32(f"{seed}/{process_index}/{stream}".encode()) & 0x7FFFFFFF


def _crop_and_flip(images: list[tf.Tensor], key: tf.Tensor, opts: Options, train: bool) -> list:
  """One crop offset (random or centre) and one flip decision for all `images` (uint8 HWC)."""
  shape = tf.shape(images[0])
  h, w = shape[0], shape[1]
  if opts.crops:
    size = opts.crop_size
    tf.debugging.assert_greater_equal(
        tf.minimum(h, w), size,
        message=f"an image is smaller than crop_size={size} after preprocess={opts.preprocess!r}")
    if train:
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
    flip = tf.random.stateless_uniform([], seed=flip_key) > 0.5
    images = [tf.cond(flip, lambda im=im: tf.reverse(im, axis=[1]), lambda im=im: im)
              for im in images]
  return images


def _to_float(image: tf.Tensor, channels: int, opts: Options) -> tf.Tensor:
  """uint8 -> float32 in [-1, 1], as torchvision ToTensor + Normalize(0.5, 0.5) compute it."""
  image = (tf.cast(image, tf.float32) / 255.0 - 0.5) / 0.5
  size = opts.crop_size if opts.crops else None
  image.set_shape([size, size, channels])
  return image


def _static_hw(opts: Options) -> tuple[int | None, int | None]:
  if opts.preprocess == "resize_and_crop":
    return opts.load_size, opts.load_size
  return None, None


def _prepare_bytes_fn(opts: Options, channels: int, paired: bool):
  """numpy function: encoded bytes (+ name for messages) -> prepared uint8 image(s)."""

  def prepare(data, name):
    name = name.decode() if isinstance(name, bytes) else str(name)
    image = image_files.decode(bytes(data), name)
    if not paired:
      return image_files.prepare_image(image, channels, opts.preprocess, opts.load_size,
                                       opts.crop_size)
    halves = image_files.split_ab(image)
    if opts.direction == "BtoA":
      halves = halves[::-1]
    return tuple(image_files.prepare_image(half, c, opts.preprocess, opts.load_size, opts.crop_size)
                 for half, c in zip(halves, (opts.input_nc, opts.output_nc)))

  return prepare


def _prepare_array_fn(opts: Options):
  def prepare(array):
    from PIL import Image
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    channels = array.shape[-1]
    return image_files.prepare_image(image, channels, opts.preprocess, opts.load_size,
                                     opts.crop_size)
  return prepare


def _set_hw(image: tf.Tensor, opts: Options, channels: int) -> tf.Tensor:
  image.set_shape([*_static_hw(opts), channels])
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
                     pi: int, length: int | None, skip: int) -> tf.data.Dataset:
  """Dataset of {key: float image, label_key: int32} for one domain, `length` items (None = forever)."""
  stream_seed = _stream_seed(seed, pi, key)
  label_key = f"label_{key}"

  if isinstance(domain, _Files):
    paths = tf.constant(domain.paths)
    ds = _index_stream(len(domain.paths), train, opts, stream_seed)
    prepare = _prepare_bytes_fn(opts, channels, paired=False)

    def load(index):
      path = paths[index]
      image = tf.numpy_function(prepare, [tf.io.read_file(path), path], tf.uint8, stateful=False)
      return {key: _set_hw(image, opts, channels)}

  elif isinstance(domain, _Arrays):
    images = tf.constant(domain.images)
    labels = tf.constant(domain.labels) if domain.labels is not None else None
    ds = _index_stream(len(domain.images), train, opts, stream_seed)
    h, w = domain.images.shape[1:3]
    needs_resize = image_files.resized_size(w, h, opts.preprocess, opts.load_size,
                                            opts.crop_size) != (w, h)
    prepare = _prepare_array_fn(opts)

    def load(index):
      image = tf.gather(images, index)
      if needs_resize:
        image = _set_hw(tf.numpy_function(prepare, [image], tf.uint8, stateful=False), opts,
                        channels)
      out = {key: image}
      if labels is not None:
        out[label_key] = tf.gather(labels, index)
      return out

  else:  # _Tfds
    import tensorflow_datasets as tfds
    shuffle = train and not opts.serial_batches
    ds = tfds.load(domain.name, split=domain.split, data_dir=domain.data_dir,
                   decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=shuffle,
                   read_config=tfds.ReadConfig(shuffle_seed=stream_seed))
    ds = ds.map(tf.autograph.experimental.do_not_convert(lambda example: example["image"]))
    if train:
      if shuffle:
        ds = ds.shuffle(opts.shuffle_buffer, seed=stream_seed, reshuffle_each_iteration=True)
      ds = ds.repeat()
    name = f"from tfds {domain.name} split {domain.split}"
    prepare = _prepare_bytes_fn(opts, channels, paired=False)

    def load(encoded):
      image = tf.numpy_function(prepare, [encoded, name], tf.uint8, stateful=False)
      return {key: _set_hw(image, opts, channels)}

  if length is not None:
    ds = ds.repeat().take(length)
  ds = ds.enumerate().skip(skip)

  @tf.autograph.experimental.do_not_convert  # plain TF ops: skip autograph's slow source conversion
  def transform(i, item):
    out = load(item)
    element_key = tf.stack([tf.constant(stream_seed, tf.int64), i])
    (image,) = _crop_and_flip([out[key]], element_key, opts, train)
    out[key] = _to_float(image, channels, opts)
    return out

  return ds.map(transform, num_parallel_calls=AUTOTUNE)


def _paired_stream(files: _Files, opts: Options, train: bool, seed: int, pi: int,
                   skip: int) -> tf.data.Dataset:
  stream_seed = _stream_seed(seed, pi, "AB")
  paths = tf.constant(files.paths)
  prepare = _prepare_bytes_fn(opts, 0, paired=True)
  ds = _index_stream(len(files.paths), train, opts, stream_seed).enumerate().skip(skip)

  @tf.autograph.experimental.do_not_convert
  def transform(i, index):
    path = paths[index]
    a, b = tf.numpy_function(prepare, [tf.io.read_file(path), path], (tf.uint8, tf.uint8),
                             stateful=False)
    a, b = _set_hw(a, opts, opts.input_nc), _set_hw(b, opts, opts.output_nc)
    element_key = tf.stack([tf.constant(stream_seed, tf.int64), i])
    a, b = _crop_and_flip([a, b], element_key, opts, train)
    return {"A": _to_float(a, opts.input_nc, opts), "B": _to_float(b, opts.output_nc, opts)}

  return ds.map(transform, num_parallel_calls=AUTOTUNE)


def _domain_length(domain) -> int:
  if isinstance(domain, _Files):
    return len(domain.paths)
  if isinstance(domain, _Arrays):
    return len(domain.images)
  import tensorflow_datasets as tfds
  ds = tfds.load(domain.name, split=domain.split, data_dir=domain.data_dir,
                 decoders={"image": tfds.decode.SkipDecoding()})
  n = int(ds.cardinality())
  if n < 0:  # unknown: count (only encoded bytes are read)
    n = int(ds.reduce(np.int64(0), lambda count, _: count + 1))
  return n


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------
def create_dataset(data_config: Any, split: str, batch_size: int, *, seed: int = 0,
                   train: bool = True, process_index: int | None = None,
                   process_count: int | None = None, start_batch: int = 0) -> tf.data.Dataset:
  """Batches of {'A', 'B'[, 'label_A', 'label_B']} for this process (see the module docstring).

  `batch_size` is the per-process batch. train=True: shuffled, repeated, randomly cropped/flipped,
  full batches only; train=False: the reference's test phase, one pass in order, last batch kept.
  `start_batch` skips that many batches without decoding them (the stream is otherwise identical to
  `create_dataset(...).skip(start_batch)`), for resuming a run.
  """
  opts = options_from_config(data_config)
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  pi, pc = _process(process_index, process_count)
  keep_tf_off_accelerators()
  if not train:
    opts = opts.test_phase()
  skip = int(start_batch) * batch_size

  if opts.paired:
    files = _paired_files(opts, split, pi, pc, validate=True)
    for half in (0, 1):
      _check_sizes(_file_sizes(files, True, half), opts, batch_size)
    ds = _paired_stream(files, opts, train, seed, pi, skip)
  else:
    domains = _unpaired_domains(opts, split, pi, pc, validate=True)
    for key in ("A", "B"):
      domain = domains[key]
      if isinstance(domain, _Files):
        _check_sizes(_file_sizes(domain, False), opts, batch_size)
      elif isinstance(domain, _Arrays):
        h, w = domain.images.shape[1:3]
        _check_sizes([(f"digits {split} {key} (all {w}x{h})", (w, h))], opts, 1)
    length = None
    if not train:  # one pass of the reference's serial test order: max(nA, nB) pairs
      length = max(_domain_length(domains["A"]), _domain_length(domains["B"]))
    streams = [
        _unpaired_stream(domains[key], key, channels, opts, train, seed, pi, length, skip)
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
    return len(image_files.list_image_files(os.path.join(opts.path, split), opts.max_dataset_size))
  if opts.source == "folder":
    return max(len(image_files.list_image_files(os.path.join(opts.path, split + name),
                                                opts.max_dataset_size)) for name in ("A", "B"))
  if opts.source == "digits":
    data = _load_digits(split)
    sizes = [len(data[name]) for name in ("A", "B")]
    if opts.max_dataset_size:
      sizes = [min(n, opts.max_dataset_size) for n in sizes]
    return max(sizes)
  keep_tf_off_accelerators()
  return max(_tfds_num_examples(opts, split + name) for name in ("A", "B"))


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


__all__ = ["Options", "ImageFileError", "create_dataset", "dataset_size", "describe",
           "keep_tf_off_accelerators", "options_from_config"]
