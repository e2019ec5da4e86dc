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

API (the shape of the project's shared classifier API, so that moving to it is mechanical):
  ClassifierSpec(name, module, load_data(split) -> (images, labels), data_version, loss, augment,
                 steps, batch_size, learning_rate)
  load_or_train(spec, cache_dir=None, seed=0, steps=None) -> (params, test_accuracy)
  as_pretrained(spec, params) -> translate.pretrained.Pretrained: `f(images)` -> logits,
      `f(images, layers=('features', ...))` -> {layer: array} (images NHWC in [-1, 1]).
  load(name, path=None, steps=None, data_dir="") -> Pretrained: a spec of `SPECS` (or svhn), from
      `path` (a file written by load_or_train) or else the cache, trained on a miss.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import pathlib
import time
from typing import Any, Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate.pretrained import Pretrained
from translate.networks import dtn as dtn_nets

PREDICT_BATCH = 500


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
  """A classifier and how to train it. `load_data(split)` gives (images NHWC uint8 in [0, 255] or
  float in [-1, 1], int labels) for split 'train' or 'test'; `augment(key, images)` acts on float
  batches in [-1, 1]. `name` and `data_version` make the cache key: bump the name's version whenever
  the architecture or the recipe changes."""
  name: str
  module: nn.Module
  load_data: Callable[[str], tuple[np.ndarray, np.ndarray]]
  data_version: str
  loss: str = "softmax"  # 'softmax' (class ids) | 'sigmoid' (binary attributes)
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None
  steps: int = 1000
  batch_size: int = 64
  learning_rate: float = 2e-3


def to_float(images) -> jax.Array:
  """uint8 in [0, 255] -> float32 in [-1, 1]; float images are taken to be in [-1, 1] already."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images.astype(jnp.float32)


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
# Training and the cache
# ----------------------------------------------------------------------------------------------------
def _loss(spec: ClassifierSpec, logits, labels):
  if spec.loss == "softmax":
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  if spec.loss == "sigmoid":
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  raise ValueError(f"Unknown classifier loss {spec.loss!r}; expected 'softmax' or 'sigmoid'.")


def train_classifier(spec: ClassifierSpec, seed: int = 0, steps: int | None = None, verbose: bool = False
          ) -> tuple[Any, float]:
  """Trains `spec.module` on `spec.load_data('train')`: Adam with a cosine-decayed learning rate,
  replacement-free epochs. Returns (params, accuracy on `spec.load_data('test')`)."""
  steps = spec.steps if steps is None else int(steps)
  train_images, train_labels = spec.load_data("train")
  x, y = jnp.asarray(train_images), jnp.asarray(train_labels)
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = spec.module.init(init_key, to_float(x[:1]))["params"]
  optimizer = optax.adam(optax.cosine_decay_schedule(spec.learning_rate, max(steps, 1), alpha=0.02))
  opt_state = optimizer.init(params)

  @jax.jit  # the data are arguments, not constants baked into the program (SVHN extra is 1.6 GB)
  def step(params, opt_state, key, index, x, y):
    aug_key, dropout_key = jax.random.split(key)
    images = to_float(x[index])
    if spec.augment is not None:
      images = spec.augment(aug_key, images)

    def loss_fn(params):
      logits = spec.module.apply({"params": params}, images, train=True,
                                 rngs={"dropout": dropout_key})
      return _loss(spec, logits, y[index])

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  order_rng = np.random.default_rng(seed)
  order = np.empty(0, np.int64)
  start = time.time()
  for i in range(steps):
    if order.size < spec.batch_size:  # a fresh permutation per epoch
      order = np.concatenate([order, order_rng.permutation(x.shape[0])])
    index, order = order[:spec.batch_size], order[spec.batch_size:]
    key, step_key = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, step_key, jnp.asarray(index), x, y)
    if verbose and (i + 1) % 250 == 0:
      print(f"{spec.name}: step {i + 1}/{steps}  loss {float(loss):.4f}  {time.time() - start:.1f}s",
            flush=True)
  test_images, test_labels = spec.load_data("test")
  return params, accuracy(spec, params, test_images, test_labels)


@functools.lru_cache(maxsize=None)
def _apply_fn(module: nn.Module) -> Callable:
  """One apply function per module (a static pytree field: equal modules share jit caches)."""

  def apply(params, images, layers=None):
    return module.apply({"params": params}, to_float(images), layers=layers)

  return apply


def as_pretrained(spec: ClassifierSpec, params) -> Pretrained:
  """The trained classifier as a frozen network: `f(images)` -> logits, `f(images, layers=(...))` ->
  {layer: array}."""
  return Pretrained(jax.tree_util.tree_map(jnp.asarray, params), _apply_fn(spec.module), spec.name)


@functools.partial(jax.jit, static_argnames="apply")
def _predict_batch(params, images, apply):
  return jnp.argmax(apply(params, images), axis=-1)


def predict(spec: ClassifierSpec, params, images, batch_size: int = PREDICT_BATCH) -> np.ndarray:
  """Predicted class ids (int32 (N,)), in fixed-size batches (the last one padded)."""
  images = np.asarray(images)
  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out.append(np.asarray(_predict_batch(params, batch, _apply_fn(spec.module)))[:batch_size - pad])
  return np.concatenate(out).astype(np.int32) if out else np.zeros((0,), np.int32)


def accuracy(spec: ClassifierSpec, params, images, labels) -> float:
  return float(np.mean(predict(spec, params, images) == np.asarray(labels)))


def params_cache_path(spec: ClassifierSpec, cache_dir: str | os.PathLike | None = None, seed: int = 0,
               steps: int | None = None) -> pathlib.Path:
  from translate.data import digits
  steps = spec.steps if steps is None else int(steps)
  return (digits.cache_dir(cache_dir)
          / f"{spec.name}-{spec.data_version}-seed{seed}-steps{steps}.msgpack")


def read(path: str | os.PathLike) -> tuple[Any, float]:
  """(params, test accuracy) from a file written by `load_or_train`."""
  state = flax.serialization.msgpack_restore(pathlib.Path(path).read_bytes())
  return jax.tree_util.tree_map(jnp.asarray, state["params"]), float(state["test_accuracy"])


def load_or_train(spec: ClassifierSpec, cache_dir: str | os.PathLike | None = None, seed: int = 0,
                  steps: int | None = None, verbose: bool = False) -> tuple[Any, float]:
  """(params, test accuracy): from the cache, else trained and cached (written atomically)."""
  from translate.data import digits
  path = params_cache_path(spec, cache_dir, seed, steps)
  if path.exists():
    return read(path)
  params, test_accuracy = train_classifier(spec, seed, steps, verbose)
  state = {"params": jax.device_get(params), "test_accuracy": np.float32(test_accuracy)}
  digits.atomic_write_bytes(path, flax.serialization.msgpack_serialize(state))
  return params, test_accuracy


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
    learning_rate=2e-3)


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
      learning_rate=2e-3)


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
    params, _ = read(path)
  else:
    params, _ = load_or_train(spec, steps=steps or None, verbose=verbose)
  return as_pretrained(spec, params)


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
  cached = params_cache_path(spec, args.cache_dir, args.seed, args.steps).exists()
  params, test_accuracy = load_or_train(spec, args.cache_dir, args.seed, args.steps, verbose=True)
  print(f"{args.name} classifier {'loaded' if cached else 'trained'} in {time.time() - start:.1f}s")
  print(f"source test accuracy: {test_accuracy:.4f}")
  if args.name == "printed_digits":
    from translate.data import digits
    images, labels = digits.mnist_split("test")
    print(f"MNIST test accuracy (never trained on; information only): "
          f"{accuracy(spec, params, images[..., :1], labels):.4f}")


if __name__ == "__main__":
  main()
