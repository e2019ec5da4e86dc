"""Images for PhotoWCT's decoder training: batches {'A': (N, S, S, 3) float32 in [-1, 1]}.

Sources (`config.data.source`):
  photos  the photos that ship inside scikit-image and scikit-learn (offline, no download): colour
          and grey (repeated to RGB) photos; `TEST_PHOTOS` (coffee, flower, coins) are held out for the
          test split. Needs scikit-image (`pip install scikit-image`; a dev dependency of translate).
  folder  image files under `data.path`/train and `data.path`/test (or `data.path` itself for both
          splits when it has no train/ subfolder).
  coco    tfds `data.tfds_name` (default coco/2017, splits train / validation), its 'image' feature.

Training batches are random square crops: a side drawn uniformly between `crop_size` and the image's
shorter side (capped at `max_scale` x crop_size), resized to `crop_size` (PIL bilinear, antialiased),
flipped left-right with probability 1/2. The stream is a function of (seed, process, batch index), so a
resumed run continues exactly where it stopped. The test split is one pass over the test images, each
resized so its shorter side is `test_size` and centre-cropped to a square.
"""
from __future__ import annotations

import functools
import os

import numpy as np
from PIL import Image, ImageOps

SOURCES = ("photos", "folder", "coco")
# scikit-image's bundled colour and grey photos, and scikit-learn's two sample images.
TRAIN_PHOTOS = ("astronaut", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                "retina", "stereo_motorcycle", "sklearn:china.jpg", "camera", "brick", "grass",
                "gravel", "moon", "clock", "cell")
TEST_PHOTOS = ("coffee", "sklearn:flower.jpg", "coins")


def _rgb(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 2:
    x = np.repeat(x[..., None], 3, axis=-1)
  if x.dtype != np.uint8:
    x = np.clip(x * 255.0 if x.max() <= 1.0 else x, 0, 255).astype(np.uint8)
  return np.ascontiguousarray(x[..., :3])


def photo(name: str) -> np.ndarray:
  """One embedded photo, (H, W, 3) uint8: a scikit-image `skimage.data` name or 'sklearn:<file>'."""
  if name.startswith("sklearn:"):
    from sklearn.datasets import load_sample_image
    return _rgb(load_sample_image(name.split(":", 1)[1]))
  try:
    import skimage.data
  except ImportError:
    raise ImportError("The 'photos' data source reads the photos bundled with scikit-image: "
                      "pip install scikit-image (or use data.source='folder').") from None
  x = getattr(skimage.data, name)()
  return _rgb(x[0] if isinstance(x, tuple) else x)


@functools.lru_cache(maxsize=4)
def photos(split: str) -> tuple[np.ndarray, ...]:
  if split not in ("train", "test"):
    raise ValueError(f"Unknown split {split!r}; expected 'train' or 'test'.")
  return tuple(photo(n) for n in (TRAIN_PHOTOS if split == "train" else TEST_PHOTOS))


def _folder_files(path: str, split: str) -> list[str]:
  from translate.data import images
  root = os.path.join(path, split) if os.path.isdir(os.path.join(path, "train")) else path
  if not path or not os.path.isdir(root):
    raise images.ImageFileError(f"data.path={path!r}: no image folder at {root!r} (expected "
                                "path/train and path/test, or a folder of images).")
  files = images.list_image_files(root)
  if not files:
    raise images.ImageFileError(f"{root}: no image files ({', '.join(images.IMAGE_EXTENSIONS)}).")
  images.validate_images(files)  # a bad file stops the run at start-up, naming it
  return files


def _load_file(path: str) -> np.ndarray:
  with Image.open(path) as im:  # upright (EXIF orientation), as every reader of files
    return _rgb(np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


def _coco(d, split: str, shuffle: bool, seed: int):
  import tensorflow_datasets as tfds
  name = d.tfds_name
  tfds_split = "train" if split == "train" else "validation"
  ds = tfds.load(name, split=tfds_split, data_dir=d.data_dir or None, shuffle_files=shuffle,
                 read_config=tfds.ReadConfig(shuffle_seed=seed))
  return (_rgb(ex["image"]) for ex in tfds.as_numpy(ds.repeat() if shuffle else ds))


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, max_scale: float = 3.0
                ) -> np.ndarray:
  """A random square crop (side in [size, min(short side, max_scale * size)]) resized to `size`,
  flipped with probability 1/2; (size, size, 3) uint8. Smaller images are upscaled first."""
  h, w = image.shape[:2]
  if min(h, w) < size:
    scale = size / min(h, w)
    image = np.asarray(Image.fromarray(image).resize((max(size, round(w * scale)),
                                                      max(size, round(h * scale))), Image.BILINEAR))
    h, w = image.shape[:2]
  side = int(rng.integers(size, int(min(h, w, max_scale * size)) + 1))
  top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
  crop = image[top:top + side, left:left + side]
  if side != size:
    crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
  if rng.uniform() < 0.5:
    crop = crop[:, ::-1]
  return crop


def centre_square(image: np.ndarray, size: int) -> np.ndarray:
  """Shorter side resized to `size` (PIL bicubic), then the centre (size, size) square."""
  h, w = image.shape[:2]
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BICUBIC))
  top, left = (nh - size) // 2, (nw - size) // 2
  return image[top:top + size, left:left + size]


def _to_float(batch: list[np.ndarray]) -> np.ndarray:
  return np.stack(batch).astype(np.float32) / 127.5 - 1.0


def check(d) -> None:
  if d.source not in SOURCES:
    raise ValueError(f"data.source must be one of {SOURCES}, got {d.source!r}.")
  if d.crop_size < 16 or d.test_size < 16:
    raise ValueError(f"data.crop_size and data.test_size must be >= 16 px, got {d.crop_size}, "
                     f"{d.test_size}.")
  if d.source == "folder":
    _folder_files(d.path, "train")


def create_dataset(config, split: str, batch_size: int, *, seed: int = 0, train: bool = True,
                   process_index: int | None = None, process_count: int | None = None,
                   start_batch: int = 0):
  """tf.data.Dataset of {'A': (batch, S, S, 3) float32 [-1, 1]} (see the module docstring)."""
  import tensorflow as tf
  d = config.data
  check(d)
  pi, pc = process_index or 0, process_count or 1
  size = d.crop_size if train else d.test_size

  if d.source == "photos":
    pool = photos(split)
    get = pool.__getitem__
    n = len(pool)
  elif d.source == "folder":
    files = _folder_files(d.path, split)
    files = files[pi::pc] if train else files
    get, n = (lambda i: _load_file(files[i])), len(files)
  else:
    get = n = None

  def train_batches():
    b = start_batch
    stream = _coco(d, split, True, seed + 7919 * pi) if d.source == "coco" else None
    if stream is not None:
      for _ in range(start_batch * batch_size):
        next(stream)
    while True:
      rng = np.random.default_rng([seed, pi, b])
      images = [next(stream) if stream is not None else get(int(rng.integers(n)))
                for _ in range(batch_size)]
      yield {"A": _to_float([random_crop(x, size, rng, d.max_scale) for x in images])}
      b += 1

  def test_batches():
    stream = _coco(d, split, False, seed) if d.source == "coco" else (get(i) for i in range(n))
    chunk = []
    for x in stream:
      chunk.append(centre_square(x, size))
      if len(chunk) == batch_size:
        yield {"A": _to_float(chunk)}
        chunk = []
    if chunk:
      yield {"A": _to_float(chunk)}

  spec = {"A": tf.TensorSpec((batch_size if train else None, size, size, 3), tf.float32)}
  return tf.data.Dataset.from_generator(train_batches if train else test_batches,
                                        output_signature=spec)


def dataset_size(config, split: str) -> int:
  d = config.data
  if d.source == "photos":
    return len(TRAIN_PHOTOS if split == "train" else TEST_PHOTOS)
  if d.source == "folder":
    return len(_folder_files(d.path, split))
  from translate.data import input_pipeline
  return input_pipeline.tfds_length(d.tfds_name, "train" if split == "train" else "validation",
                                    d.data_dir or None)


def describe(config) -> str:
  d = config.data
  what = {"photos": "the photos bundled with scikit-image/scikit-learn",
          "folder": f"images in {d.path}", "coco": f"tfds {d.tfds_name}"}[d.source]
  return f"{what}, random {d.crop_size}px crops (test: {d.test_size}px centre squares)"
