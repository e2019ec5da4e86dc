"""Two labelled tfds data sets as the two domains of an unpaired translation (DTN's svhn2mnist).

Domain A is tfds `data.tfds_A` (split `tfds_train_A` / `tfds_test_A`), domain B is `data.tfds_B`
(`tfds_train_B` / `tfds_test_B`), e.g. SVHN (`svhn_cropped`) -> MNIST (`mnist`) as in the DTN paper.
Batches are {'A', 'B': float32 NHWC in [-1, 1], 'label_A', 'label_B': int32}, like the embedded digits
of `translate.data.input_pipeline`, so the built-in `label_acc` works.

Each image is decoded, brought to `input_nc` / `output_nc` channels (grey = PIL's convert('L'); grey
images are repeated to RGB) and resized to `crop_size` x `crop_size` when it has another size (bilinear
with antialiasing: MNIST's 28x28 becomes 32x32, as in the paper). No crop or flip (digits).

train=True: each domain is its own stream, shuffled (seeded; tfds files and a `shuffle_buffer` of
encoded images) and repeated; `start_batch` skips already used batches before decoding. train=False: one
pass in order, max(nA, nB) elements pairing A[k % nA] with B[k % nB], as the engine's unpaired test
pass. Multi-host: each process reads `tfds.split_for_jax_process` of the split. `data.data_dir` is the
tfds data folder ('' = tfds's default); the data must have been prepared there (tfds downloads it
where a network is available: `tfds.builder(name).download_and_prepare()`).
"""
from __future__ import annotations

import zlib
from typing import Any

import tensorflow as tf

from translate.data import input_pipeline

AUTOTUNE = tf.data.AUTOTUNE


def _split(data_config, key: str, split: str) -> str:
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  return data_config[f"tfds_{split}_{key}"]


def _tfds_split(data_config, key: str, split: str, pi: int, pc: int) -> str:
  import tensorflow_datasets as tfds
  name = _split(data_config, key, split)
  if data_config.max_dataset_size:
    name = f"{name}[:{data_config.max_dataset_size}]"
  if pc > 1:
    name = tfds.split_for_jax_process(name, process_index=pi, process_count=pc)
  return name


def length(data_config, key: str, split: str) -> int:
  """Examples of domain `key` ('A' or 'B') in `split`, over all processes."""
  n = input_pipeline.tfds_length(data_config[f"tfds_{key}"], _split(data_config, key, split),
                                 data_config.data_dir or None)
  return min(n, data_config.max_dataset_size) if data_config.max_dataset_size else n


def _stream(data_config, key: str, split: str, train: bool, seed: int, pi: int, pc: int,
            count: int | None, skip: int) -> tf.data.Dataset:
  import tensorflow_datasets as tfds
  channels = data_config.input_nc if key == "A" else data_config.output_nc
  size = data_config.crop_size
  stream_seed = zlib.crc32(f"{seed}/{pi}/{key}".encode()) & 0x7FFFFFFF
  ds = tfds.load(data_config[f"tfds_{key}"], split=_tfds_split(data_config, key, split, pi, pc),
                 data_dir=data_config.data_dir or None, shuffle_files=train,
                 decoders={"image": tfds.decode.SkipDecoding()},
                 read_config=tfds.ReadConfig(shuffle_seed=stream_seed))
  ds = ds.map(tf.autograph.experimental.do_not_convert(
      lambda e: (e["image"], tf.cast(e["label"], tf.int32))))
  if train:
    ds = ds.shuffle(data_config.shuffle_buffer, seed=stream_seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
  else:
    ds = ds.repeat().take(count)
  ds = ds.skip(skip)

  @tf.autograph.experimental.do_not_convert
  def load(encoded, label):
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
    image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.image.grayscale_to_rgb(image),
                    lambda: image[..., :3])
    if channels == 1:
      image = input_pipeline.rgb_to_grey(image)
    image.set_shape([None, None, channels])
    shape = tf.shape(image)
    image = tf.cast(image, tf.float32)
    image = tf.cond(tf.logical_and(shape[0] == size, shape[1] == size), lambda: image,
                    lambda: tf.image.resize(image, (size, size), antialias=True))
    image = tf.clip_by_value(image, 0.0, 255.0) / 127.5 - 1.0
    image.set_shape([size, size, channels])
    return {key: image, f"label_{key}": label}

  return ds.map(load, num_parallel_calls=AUTOTUNE)


def create_dataset(data_config: Any, split: str, batch_size: int, *, seed: int = 0,
                   train: bool = True, process_index: int | None = None,
                   process_count: int | None = None, start_batch: int = 0) -> tf.data.Dataset:
  """Batches of {'A', 'label_A', 'B', 'label_B'} for this process (see the module docstring)."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  pi, pc = (process_index or 0), (process_count or 1)
  input_pipeline.keep_tf_off_accelerators()
  count = None
  if not train:
    count = max(length(data_config, "A", split), length(data_config, "B", split))
  skip = int(start_batch) * batch_size
  streams = [_stream(data_config, key, split, train, seed, pi, pc, count, skip) for key in "AB"]
  ds = tf.data.Dataset.zip(tuple(streams)).map(
      tf.autograph.experimental.do_not_convert(lambda a, b: {**a, **b}))
  ds = ds.batch(batch_size, drop_remainder=train)
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options).prefetch(AUTOTUNE)


def dataset_size(data_config: Any, split: str) -> int:
  """Images per epoch: max(len A, len B) of `split` (as the unpaired pipeline counts)."""
  return max(length(data_config, "A", split), length(data_config, "B", split))


def test_counts(data_config: Any) -> tuple[dict, bool]:
  return {key: length(data_config, key, "test") for key in "AB"}, False


def describe(data_config: Any) -> str:
  d = data_config
  where = f" in {d.data_dir}" if d.data_dir else ""
  return (f"tfds {d.tfds_A} ({d.tfds_train_A}/{d.tfds_test_A}) -> tfds {d.tfds_B} "
          f"({d.tfds_train_B}/{d.tfds_test_B}){where}: {d.crop_size}x{d.crop_size}, channels A "
          f"{d.input_nc} B {d.output_nc}")
