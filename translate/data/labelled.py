"""Labelled images for multi-domain translation (StarGAN): batches of {'image', 'label'}.

`create_dataset(data_config, split, batch_size, ...)` yields 'image' float32 NHWC in [-1, 1] and
'label' float32 (N, label_dim): the image's domain labels. Sources (`data.sources`, one or two):
  celeba        tfds `celeb_a`, the binary attributes named in `data.celeba_attrs` (any of the 40;
                reference default Black_Hair, Blond_Hair, Brown_Hair, Male, Young). As the reference:
                centre crop `celeba_crop_size` (178), resize to `image_size` (128), random flip.
  folder        one folder per domain, `path/{split}/<domain>/*.png|jpg...` (RaFD's layout): one-hot
                categorical labels, domains in sorted name order (`folder_domains` when set, so a
                trained model keeps its label order). Centre crop `folder_crop_size` (RaFD: 256),
                resize, flip.
  digits        the embedded multi-domain digits (`translate.data.digits.styled_digits`, no download):
                grey printed digits with binary attributes `data.digits_attrs` (of Bold, Italic,
                Serif, Inverted). No flip (a mirrored italic is not italic).
  digits_class  the embedded MNIST digits with their class as a one-hot categorical label (10 domains).
Resizing uses `input_pipeline.pil_bicubic_resize` (PIL bicubic, bit-exact); the reference's
torchvision Resize is bilinear, a small difference in pixel values, not in content.

Mask vector mode (StarGAN's `--dataset Both`): with two sources the label is
`[labels of source 0, labels of source 1, mask one-hot(2)]`; an image of source k carries its own
labels, zeros for the other source's part and mask e_k. Training batches alternate between the
sources (batch j holds source j % 2), as the reference alternates CelebA and RaFD inside an
iteration. With one source the label is just that source's labels (no mask).

Determinism, resume and processes as in `input_pipeline`: seeded shuffles, flips a stateless function
of (seed, source, element number); `start_batch` skips batches before decoding anything. Training with
several processes: each source's stream is the global one (as one process reads it) and each process
decodes only its rows of every global batch, so P processes see the batches of one; the test phase
splits the examples by stride.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import numpy as np
import tensorflow as tf

from translate.data import images as image_files
from translate.data import input_pipeline
# Defined in a module without TensorFlow so configs can use them; still read here as labelled.*.
from translate.data.celeba_attrs import CELEBA_DEFAULT_ATTRS, HAIR_COLOURS  # noqa: F401

SOURCES = ("celeba", "folder", "digits", "digits_class")
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class LabelSet:
  """The labels one source gives: `binary` attributes (multi-label) or one `categorical` domain."""
  source: str
  kind: str  # 'binary' | 'categorical'
  names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each source's labels sit in the label vector (see the module docstring)."""
  sets: tuple[LabelSet, ...]

  @property
  def num_classes(self) -> int:
    """Outputs of the discriminator's classifier: all sources' labels, no mask."""
    return sum(len(s.names) for s in self.sets)

  @property
  def mask_dim(self) -> int:
    return len(self.sets) if len(self.sets) > 1 else 0

  @property
  def label_dim(self) -> int:
    """The generator's condition: all labels plus the mask."""
    return self.num_classes + self.mask_dim

  def offset(self, k: int) -> int:
    return sum(len(s.names) for s in self.sets[:k])

  def encode(self, k: int, labels: np.ndarray) -> np.ndarray:
    """Source k's labels (N, len(names)) -> full label vectors (N, label_dim)."""
    labels = np.asarray(labels, np.float32)
    out = np.zeros((labels.shape[0], self.label_dim), np.float32)
    out[:, self.offset(k):self.offset(k) + labels.shape[1]] = labels
    if self.mask_dim:
      out[:, self.num_classes + k] = 1.0
    return out


def _get(data_config, name):
  return data_config.get(name) if hasattr(data_config, "get") else getattr(data_config, name)


def _names(value) -> tuple[str, ...]:
  """A tuple of names from a tuple/list or a comma-separated string (the command line's form)."""
  if isinstance(value, str):
    value = value.split(",")
  return tuple(str(v).strip() for v in value if str(v).strip())


@functools.lru_cache(maxsize=None)
def celeba_attribute_names(tfds_name: str = "celeb_a") -> tuple[str, ...]:
  import tensorflow_datasets as tfds
  return tuple(tfds.builder(tfds_name).info.features["attributes"].keys())


def _check_names(chosen: tuple[str, ...], valid: tuple[str, ...], field: str) -> None:
  if not chosen:
    raise ValueError(f"data.{field} is empty; choose some of {list(valid)}.")
  unknown = [n for n in chosen if n not in valid]
  if unknown:
    raise ValueError(f"Unknown attribute name(s) {unknown} in data.{field}; valid names: "
                     f"{list(valid)}.")
  if len(set(chosen)) != len(chosen):
    raise ValueError(f"data.{field} names an attribute twice: {list(chosen)}.")


def folder_domains(path: str, split: str = "train") -> tuple[str, ...]:
  """Sorted domain (sub-folder) names of `path/split`; each must hold images."""
  root = os.path.join(path, split)
  if not tf.io.gfile.isdir(root):
    raise ValueError(f"Folder {root!r} does not exist; the folder source reads "
                     f"path/{{train,test}}/<domain>/ images.")
  domains = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(root)
                   if tf.io.gfile.isdir(os.path.join(root, d)))
  if len(domains) < 2:
    raise ValueError(f"Folder {root!r} has {len(domains)} domain sub-folder(s) {domains}; "
                     f"multi-domain translation needs at least 2.")
  return tuple(domains)


def label_layout(data_config) -> Layout:
  """The label sets of `data.sources`, checked (names, folder domains); no images are read."""
  sources = _names(_get(data_config, "sources"))
  if not sources or len(sources) > 2:
    raise ValueError(f"data.sources={list(sources)}: give one source, or two for the mask vector "
                     f"mode; each of {list(SOURCES)}.")
  sets = []
  for source in sources:
    if source == "celeba":
      names = _names(_get(data_config, "celeba_attrs"))
      _check_names(names, celeba_attribute_names(_get(data_config, "tfds_name")), "celeba_attrs")
      sets.append(LabelSet(source, "binary", names))
    elif source == "digits":
      from translate.data import digits
      names = _names(_get(data_config, "digits_attrs"))
      _check_names(names, digits.STYLE_ATTRIBUTES, "digits_attrs")
      sets.append(LabelSet(source, "binary", names))
    elif source == "digits_class":
      sets.append(LabelSet(source, "categorical", tuple(str(d) for d in range(10))))
    elif source == "folder":
      if not _get(data_config, "path") and not _get(data_config, "folder_domains"):
        raise ValueError("data.sources includes 'folder': set data.path to the root of "
                         "path/{train,test}/<domain>/ images.")
      names = _names(_get(data_config, "folder_domains")) or folder_domains(_get(data_config, "path"))
      sets.append(LabelSet(source, "categorical", names))
    else:
      raise ValueError(f"Unknown data source {source!r} in data.sources; expected some of "
                       f"{list(SOURCES)}.")
  if len(set(sources)) != len(sources):
    raise ValueError(f"data.sources names a source twice: {list(sources)}.")
  return Layout(tuple(sets))


# ----------------------------------------------------------------------------------------------------
# Sources: in-memory arrays, files, tfds
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Arrays:
  images: np.ndarray  # uint8 (N, H, W, C)
  labels: np.ndarray  # float32 (N, label_dim)


@dataclasses.dataclass
class _Files:
  paths: list[str]
  labels: np.ndarray


@dataclasses.dataclass
class _Tfds:
  name: str
  data_dir: str | None
  split: str
  attrs: tuple[str, ...]


def _tfds_split(split: str, max_size: int, pi: int, pc: int) -> str:
  import tensorflow_datasets as tfds
  if max_size:
    split = f"{split}[:{max_size}]"
  if pc > 1:
    split = tfds.split_for_jax_process(split, process_index=pi, process_count=pc)
  return split


def _source(data_config, layout: Layout, k: int, split: str, pi: int, pc: int):
  s = layout.sets[k]
  max_size = int(_get(data_config, "max_dataset_size"))
  if s.source == "celeba":
    data_dir = _get(data_config, "data_dir") or None
    return _Tfds(_get(data_config, "tfds_name"), data_dir, _tfds_split(split, max_size, pi, pc),
                 s.names)
  if s.source == "folder":
    root = os.path.join(_get(data_config, "path"), split)
    on_disk = folder_domains(_get(data_config, "path"), split)
    if set(on_disk) != set(s.names):
      raise ValueError(f"Folder {root!r} has domains {list(on_disk)}, but the model's domains are "
                       f"{list(s.names)} (data.folder_domains / path/train).")
    paths, labels = [], []
    for index, domain in enumerate(s.names):
      folder = os.path.join(root, domain)
      files = image_files.list_image_files(folder, max_size)
      if not files:
        raise ValueError(f"Domain folder {folder!r} holds no images.")
      paths += files
      labels += [index] * len(files)
    image_files.validate_images(paths)
    onehot = np.eye(len(s.names), dtype=np.float32)[labels]
    return _Files(paths[pi::pc], layout.encode(k, onehot)[pi::pc])
  from translate.data import digits
  if s.source == "digits":
    data = digits.load_styled_split(split)
    columns = [digits.STYLE_ATTRIBUTES.index(n) for n in s.names]
    images, labels = data["image"], data["attributes"][:, columns]
  else:  # digits_class
    images, classes = digits.mnist_split(split)
    images, labels = images[..., :1], np.eye(10, dtype=np.float32)[classes]
  if max_size:
    images, labels = images[:max_size], labels[:max_size]
  return _Arrays(np.ascontiguousarray(images[pi::pc]), layout.encode(k, labels)[pi::pc])


def _length(source) -> int:
  if isinstance(source, _Arrays):
    return len(source.images)
  if isinstance(source, _Files):
    return len(source.paths)
  return input_pipeline.tfds_length(source.name, source.split, source.data_dir)


def _centre_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """torchvision CenterCrop's offsets, int(round((h - size) / 2)); the image must be large enough."""
  shape = tf.shape(image)
  check = tf.debugging.assert_greater_equal(
      tf.minimum(shape[0], shape[1]), size, message=f"an image is smaller than the crop size {size}")
  with tf.control_dependencies([check]):
    y = tf.cast(tf.round(tf.cast(shape[0] - size, tf.float32) / 2), tf.int32)
    x = tf.cast(tf.round(tf.cast(shape[1] - size, tf.float32) / 2), tf.int32)
    return image[y:y + size, x:x + size]


def _stream(source, k: int, data_config, split: str, train: bool, seed: int, pi: int,
            skip: int, rows: input_pipeline.Rows | None = None) -> tf.data.Dataset:
  """Unbatched {'image', 'label'} of one source (forever when training), `skip` elements skipped,
  then only `rows` kept (multi-host training: the source is whole, pi 0, the stream global)."""
  channels = int(_get(data_config, "channels"))
  size = int(_get(data_config, "image_size"))
  shuffle = train and not bool(_get(data_config, "serial_batches"))
  flip = train and not bool(_get(data_config, "no_flip"))
  stream_seed = input_pipeline._stream_seed(seed, pi, f"labelled{k}")
  crop = 0

  if isinstance(source, _Tfds):
    import tensorflow_datasets as tfds
    crop = int(_get(data_config, "celeba_crop_size"))
    ds = tfds.load(source.name, split=source.split, data_dir=source.data_dir,
                   decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=shuffle,
                   read_config=tfds.ReadConfig(shuffle_seed=stream_seed))
    def select(example):  # encoded image and the chosen attributes, as 0/1 floats
      attrs = tf.stack([tf.cast(example["attributes"][n], tf.float32) for n in source.attrs])
      return (example["image"], tf.constant(1, tf.int32)), attrs  # tfds images come upright

    ds = ds.map(tf.autograph.experimental.do_not_convert(select))
    if shuffle:
      ds = ds.shuffle(int(_get(data_config, "shuffle_buffer")), seed=stream_seed,
                      reshuffle_each_iteration=True)
    if train:
      ds = ds.repeat()
  else:
    n = _length(source)
    ds = tf.data.Dataset.range(n)
    if shuffle:
      ds = ds.shuffle(n, seed=stream_seed, reshuffle_each_iteration=True)
    if train:
      ds = ds.repeat()
    labels = tf.constant(source.labels)
    if isinstance(source, _Files):
      crop = int(_get(data_config, "folder_crop_size"))
      paths = tf.constant(source.paths)
      orientations = tf.constant(image_files.exif_orientations(source.paths), tf.int32)
      ds = ds.map(lambda i: ((tf.io.read_file(paths[i]), orientations[i]), tf.gather(labels, i)))
    else:
      images = tf.constant(source.images)
      ds = ds.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))
  ds = ds.enumerate().skip(skip)
  if rows is not None:
    ds = rows.select(ds)
  encoded = not isinstance(source, _Arrays)

  @tf.autograph.experimental.do_not_convert
  def transform(i, item):
    image, label = item
    if encoded:
      encoded_image, orientation = image
      image = input_pipeline.apply_orientation(input_pipeline.decode_image(encoded_image), orientation)
    if crop:
      image = _centre_crop(image, crop)
    if channels == 1 and image.shape[-1] != 1:
      image = input_pipeline.rgb_to_grey(image)
    elif channels == 3 and image.shape[-1] == 1:
      image = tf.image.grayscale_to_rgb(image)
    shape = tf.shape(image)
    image = tf.cond(tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size)),
                    lambda: image, lambda: input_pipeline.pil_bicubic_resize(image, size, size))
    if flip:
      key = tf.stack([tf.constant(stream_seed, tf.int64), i])
      image = tf.cond(tf.random.stateless_uniform([], seed=key) > 0.5,
                      lambda: tf.reverse(image, axis=[1]), lambda: image)
    image = (tf.cast(image, tf.float32) / 255.0 - 0.5) / 0.5
    image.set_shape([size, size, channels])
    return {"image": image, "label": label}

  return ds.map(transform, num_parallel_calls=AUTOTUNE)


def _finish_labels(ds: tf.data.Dataset, layout: Layout, k: int) -> tf.data.Dataset:
  """tfds labels come as the source's attributes alone: place them in the full label vector."""
  offset, width = layout.offset(k), len(layout.sets[k].names)

  @tf.autograph.experimental.do_not_convert
  def place(example):
    label = example["label"]
    if label.shape[-1] == layout.label_dim:
      return example
    parts = [tf.zeros([offset]), label, tf.zeros([layout.num_classes - offset - width])]
    if layout.mask_dim:
      parts.append(tf.one_hot(k, layout.mask_dim))
    full = tf.concat(parts, axis=0)
    full.set_shape([layout.label_dim])
    return {"image": example["image"], "label": full}

  return ds.map(place)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------
def create_dataset(data_config: Any, split: str, batch_size: int, *, seed: int = 0,
                   train: bool = True, process_index: int | None = None,
                   process_count: int | None = None, start_batch: int = 0) -> tf.data.Dataset:
  """Batches of {'image', 'label'} (see the module docstring); `batch_size` is per process.

  train=True: shuffled, repeated, flipped, full batches, sources alternating batch by batch; with
  several processes, this process's rows of the global stream's batches. train=False: one pass in
  order (source 0 then source 1), no flip, last batch kept; with several processes, a strided share.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  pi, pc = input_pipeline._process(process_index, process_count)
  input_pipeline.keep_tf_off_accelerators()
  channels = int(_get(data_config, "channels"))
  if channels not in (1, 3):
    raise ValueError(f"data.channels={channels}; the input pipeline reads 3 (RGB) or 1 (grey).")
  layout = label_layout(data_config)
  num = len(layout.sets)
  rows, skip_size = None, batch_size
  if train:  # one global stream (process 0's seeds, all examples); this process keeps its rows
    rows, pi, pc = input_pipeline.Rows(pi, pc, batch_size), 0, 1
    skip_size = batch_size * rows.process_count
  streams = []
  for k in range(num):
    source = _source(data_config, layout, k, split, pi, pc)
    # Batches of source k among the first `start_batch`: j < start_batch with j % num == k.
    skip_batches = max(0, -(-(int(start_batch) - k) // num)) if train else int(start_batch)
    ds = _stream(source, k, data_config, split, train, seed, pi, skip_batches * skip_size, rows)
    streams.append(_finish_labels(ds, layout, k).batch(batch_size, drop_remainder=train))
  if num == 1:
    ds = streams[0]
  elif train:
    order = tf.data.Dataset.range(num).repeat().skip(int(start_batch) % num)
    ds = tf.data.Dataset.choose_from_datasets(streams, order)
  else:
    ds = streams[0]
    for other in streams[1:]:
      ds = ds.concatenate(other)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


def dataset_size(data_config: Any, split: str) -> int:
  """Images in the split over all sources and processes (after max_dataset_size)."""
  layout = label_layout(data_config)
  input_pipeline.keep_tf_off_accelerators()
  return sum(_length(_source(data_config, layout, k, split, 0, 1)) for k in range(len(layout.sets)))


def describe(data_config: Any) -> str:
  layout = label_layout(data_config)
  parts = []
  for s in layout.sets:
    where = {"celeba": f"tfds {_get(data_config, 'tfds_name')}",
             "folder": f"folder {_get(data_config, 'path')}",
             "digits": "embedded styled digits", "digits_class": "embedded MNIST classes"}[s.source]
    parts.append(f"{where} ({s.kind}: {', '.join(s.names)})")
  mode = " + mask vector" if layout.mask_dim else ""
  return (" | ".join(parts) + f"{mode}; {_get(data_config, 'image_size')} px, "
          f"{_get(data_config, 'channels')} channel(s), "
          f"{'no flip' if _get(data_config, 'no_flip') else 'flip'}")
