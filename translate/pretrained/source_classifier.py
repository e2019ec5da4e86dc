"""DTN's f: classifiers trained on the SOURCE domain with its labels, cached, then used frozen.

The Domain Transfer Network keeps a function f constant through the translation; for digits the paper
trains f as a classifier of the source domain (SVHN `extra`) and keeps it fixed. Here:

  printed_digits  f for the embedded digits: trained on the 10000 printed train digits of
                  `translate.data.digits` (domain A, whose labels the renderer knows), tested on the
                  1000 printed test digits. It never sees MNIST: it must not be the classifier that
                  judges the translations (`translate.metrics.digit_classifier`, trained on MNIST).
  svhn            f for the svhn2mnist preset: tfds `svhn_cropped` `extra` to train, `test` to test
                  (`svhn_spec(data_dir)`).

    python -m translate.pretrained.source_classifier [--name=printed_digits] [--steps=N]

trains (or loads) one and prints its source test accuracy and, for printed_digits, its accuracy on the
MNIST test digits (how far f's knowledge carries over to the target domain; not used for anything).
The first DTN training run trains f on first use; later runs read the cache.

Training, the cache, prediction and the frozen wrapper are `translate.pretrained.classifiers`' (one
copy for every cached classifier of the project); this module holds what is DTN's own: the specs
(`PRINTED_DIGITS`, `svhn_spec`), their augmentation (`affine_and_stroke`) and `load(name, path)`, a
spec of `SPECS` as a frozen `Pretrained` (`f(images)` -> logits, `f(images, layers=('features', ...))`
-> {layer: array}; images NHWC in [-1, 1]) from `path` (a file written by `classifiers.load_or_train`)
or else the cache, trained there on a miss.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from translate.networks import dtn as dtn_nets
from translate.pretrained import Pretrained
from translate.pretrained import classifiers
from translate.pretrained.classifiers import ClassifierSpec

# ----------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------
def affine_and_stroke(key: jax.Array, images: jax.Array, max_degrees: float = 15.0,
                      max_shear: float = 0.3, max_scale: float = 0.15, max_shift: float = 2.0
                      ) -> jax.Array:
  """Random affine warps (rotation, shear, scale, shift; borders replicated), then for a third of the
  images each thicker or thinner strokes (a 3x3 grey dilation or erosion: whichever of ink and paper
  is brighter, one of the two thickens the ink). Printed fonts are upright and thin; the warps and
  strokes widen what f has seen towards other writing, without using any target image. Measured as
  f's accuracy on the 500 MNIST test digits (never trained on; 1000 steps, plain grey input): random
  shifts and strokes 0.69, affine 0.75, affine and strokes 0.76 (printed test accuracy 0.99 in each
  case); with f's ink-positive input (`networks.dtn.ink_positive`) as well: 0.82 (printed 0.999)."""
  n, h, w, c = images.shape
  k_angle, k_shear, k_scale, k_shift, k_morph = jax.random.split(key, 5)
  angle = jnp.deg2rad(jax.random.uniform(k_angle, (n,), minval=-max_degrees, maxval=max_degrees))
  shear = jax.random.uniform(k_shear, (n,), minval=-max_shear, maxval=max_shear)
  scale = jax.random.uniform(k_scale, (n,), minval=1.0 - max_scale, maxval=1.0 + max_scale)
  shift = jax.random.uniform(k_shift, (n, 2), minval=-max_shift, maxval=max_shift)
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")

  def warp(image, angle, shear, scale, shift):
    # Output pixel (y, x) about the centre samples the input at R(angle) S(shear) (y, x) / scale - shift.
    x_sheared = xs + shear * ys
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = (cos * ys - sin * x_sheared) / scale + (h - 1) / 2 - shift[0]
    src_x = (sin * ys + cos * x_sheared) / scale + (w - 1) / 2 - shift[1]
    return jnp.stack([jax.scipy.ndimage.map_coordinates(image[..., i], [src_y, src_x], order=1,
                                                        mode="nearest") for i in range(c)], -1)

  x = jax.vmap(warp)(images, angle, shear, scale, shift)
  window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
  dilated = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, "SAME")
  eroded = -jax.lax.reduce_window(-x, -jnp.inf, jax.lax.max, window, strides, "SAME")
  choice = jax.random.randint(k_morph, (n, 1, 1, 1), 0, 3)
  return jnp.where(choice == 1, dilated, jnp.where(choice == 2, eroded, x))


# ----------------------------------------------------------------------------------------------------
# The specs
# ----------------------------------------------------------------------------------------------------
def _printed_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
  from translate.data import digits, images
  data = digits.load_split(split)
  return images.grey_uint8(data["A"]), data["label_A"]


PRINTED_DIGITS = ClassifierSpec(
    name="dtn-f-printed-digits-v1", module=dtn_nets.SourceClassifier(), load_data=_printed_digits,
    data_version="digits-v1", augment=affine_and_stroke, steps=1000, batch_size=64,
    learning_rate=2e-3, convert_per_batch=True)


def _tfds_arrays(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  import tensorflow_datasets as tfds
  from translate.data import input_pipeline
  input_pipeline.keep_tf_off_accelerators()
  ds = tfds.load(name, split=split, data_dir=data_dir).batch(4096)
  chunks = [(b["image"], b["label"]) for b in tfds.as_numpy(ds)]
  return (np.concatenate([c[0] for c in chunks]),
          np.concatenate([c[1] for c in chunks]).astype(np.int32))


def svhn_spec(data_dir: str = "", steps: int = 5000) -> ClassifierSpec:
  """f of the svhn2mnist preset: SVHN `extra` (531k digits) to train, `test` to test, as the paper."""
  splits = {"train": "extra", "test": "test"}
  return ClassifierSpec(
      name="dtn-f-svhn-v1", module=dtn_nets.SourceClassifier(),
      load_data=lambda split: _tfds_arrays("svhn_cropped", splits[split], data_dir or None),
      data_version="svhn_cropped-3", augment=affine_and_stroke, steps=steps, batch_size=128,
      learning_rate=2e-3, convert_per_batch=True)


SPECS = ("printed_digits", "svhn")


def spec_by_name(name: str, data_dir: str = "") -> ClassifierSpec:
  if name == "printed_digits":
    return PRINTED_DIGITS
  if name == "svhn":
    return svhn_spec(data_dir)
  raise ValueError(f"Unknown source classifier {name!r}; expected one of {SPECS}.")


def load(name: str, path: str | os.PathLike | None = None, steps: int | None = None,
         data_dir: str = "", verbose: bool = False) -> Pretrained:
  """The frozen f `name` from `path`, else the cache (trained there on a miss, `steps` steps)."""
  spec = spec_by_name(name, data_dir)
  if path:
    return classifiers.load_pretrained(spec, path)
  params, _ = classifiers.load_or_train(spec, steps=steps or None, verbose=verbose)
  return classifiers.as_pretrained(spec, params)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--name", default="printed_digits", choices=SPECS)
  parser.add_argument("--steps", type=int, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default="", help="tfds data folder (svhn)")
  parser.add_argument("--cache_dir", default=None,
                      help="cache folder (default: $TRANSLATE_CACHE or ~/.cache/translate)")
  args = parser.parse_args(argv)
  spec = spec_by_name(args.name, args.data_dir)
  start = time.time()
  cached = classifiers.params_cache_path(spec, args.cache_dir, args.seed, args.steps).exists()
  params, test_accuracy = classifiers.load_or_train(spec, args.cache_dir, args.seed, args.steps,
                                                    verbose=True)
  print(f"{args.name} classifier {'loaded' if cached else 'trained'} in {time.time() - start:.1f}s")
  print(f"source test accuracy: {test_accuracy:.4f}")
  if args.name == "printed_digits":
    from translate.data import digits
    images, labels = digits.mnist_split("test")
    print(f"MNIST test accuracy (never trained on; information only): "
          f"{classifiers.test_accuracy(spec, params, images[..., :1], labels):.4f}")


if __name__ == "__main__":
  main()
