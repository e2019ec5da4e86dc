"""Small CNN classifiers trained on the embedded digits and cached: judges for metrics, frozen nets for losses.

Two are built in, both registered with `translate.pretrained` (`load("digit_classifier")`):
  digit_classifier      10 MNIST classes. Judges printed -> MNIST translations (`label_acc`, DTN's
                        protocol: Taigman et al. 2017 measure SVHN -> MNIST by an MNIST classifier's
                        accuracy on translations against the source labels) and the cGAN (`class_acc`).
                        Trained on the 4500 MNIST train digits with light shift/rotation/scale/shear
                        augmentation and dropout; no colour inversion, since MNIST's white-on-black
                        polarity is exactly what a translator must produce. 98.0-98.4% on the 500 test
                        digits (1000 steps, ~1 min on 2 CPU cores).
  attribute_classifier  4 binary attributes (Bold, Italic, Serif, Inverted) of the styled printed digits:
                        StarGAN's protocol (Choi et al. 2018, Sec. 4.5), a classifier trained on real
                        images judging translations (`target_acc`). Random-shift augmentation, BCE.
A method defines its own `ClassifierSpec` for other data, with any Flax classifier as its network (DTN's
f, `translate.pretrained.source_classifier`, and DIAT's styled-digit judge are such specs): this module
holds the one trainer, cache, predictor and `Pretrained` wrapper they all use.

    python -m translate.pretrained.classifiers [--name=digit_classifier] [--cache_dir=DIR]

trains (or loads) one and prints its test accuracy; for the digit classifier also the identity baseline
(its accuracy on untranslated printed digits).

Networks: `SmallCNN`, input float NHWC 32x32 in [-1, 1] (uint8 in [0, 255] is converted by `predict`),
grey or RGB (RGB is reduced to luminance inside, so a classifier judges shape and polarity, not colour);
output logits. Cached params are flax msgpack files named by the spec's name, its data version, the seed
and the number of steps (`params_cache_path`), written atomically, under `$TRANSLATE_CACHE`
(default ~/.cache/translate).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import pathlib
import time
from typing import Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate import pretrained
from translate.data import digits

PREDICT_BATCH = 500


def space_to_depth(x: jax.Array, block: int = 2) -> jax.Array:
  """(N, H, W, C) -> (N, H/block, W/block, C*block*block): each block x block patch becomes channels."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // block, w // block, block * block * c)


class SmallCNN(nn.Module):
  """Space-to-depth (32x32x1 -> 16x16x4), then 3x3 conv blocks (conv, ReLU, 2x2 max-pool), two dense.

  Input: float NHWC in [-1, 1], 32x32, RGB or grey (RGB reduced to luminance). Output: `num_outputs`
  logits; with `features=True`, also the hidden layer's activations (N, hidden) (a representation for
  perceptual losses). The space-to-depth stem is for speed: on CPU a convolution over one input channel
  at full resolution cost five times more than the whole network does this way, at the same accuracy.
  """
  num_outputs: int = 10
  widths: tuple[int, ...] = (32, 64, 64)
  hidden: int = 128
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features: bool = False):
    if x.shape[-1] == 3:
      x = x @ jnp.array([0.299, 0.587, 0.114], x.dtype)[:, None]
    x = space_to_depth(x)
    for width in self.widths:
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    h = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(h) if self.dropout_rate else h
    logits = nn.Dense(self.num_outputs)(x)
    return (logits, h) if features else logits


def to_model_input(images) -> jax.Array:
  """uint8 images in [0, 255] -> float32 in [-1, 1]; float images are taken to be in [-1, 1] already."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 127.5 - 1.0
  return images.astype(jnp.float32)


def affine_augment(key: jax.Array, images: jax.Array, max_shift: float = 2.0,
                   max_degrees: float = 10.0, max_scale: float = 0.1, max_shear: float = 0.1
                   ) -> jax.Array:
  """Random affine warps of a batch (NHWC, [-1, 1]): shifts, rotation, scale and shear, one per image.

  Defaults: +-2 px, +-10 deg, 0.9-1.1 scale, +-0.1 shear; small enough that every digit stays itself.
  Background is -1 (black, as MNIST). Bilinear sampling by `map_coordinates`.
  """
  n, h, w, c = images.shape
  k_shift, k_angle, k_scale, k_shear = jax.random.split(key, 4)
  shift = jax.random.uniform(k_shift, (n, 2), minval=-max_shift, maxval=max_shift)
  angle = jnp.deg2rad(jax.random.uniform(k_angle, (n,), minval=-max_degrees, maxval=max_degrees))
  scale = jax.random.uniform(k_scale, (n,), minval=1.0 - max_scale, maxval=1.0 + max_scale)
  shear = jax.random.uniform(k_shear, (n,), minval=-max_shear, maxval=max_shear)
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")

  def warp(image, shift, angle, scale, shear):
    # Output pixel (y, x), taken about the centre, samples the input at
    # R(angle) S(shear) (y, x) / scale - shift.
    x_sheared = xs + shear * ys
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    src_y = (cos * ys - sin * x_sheared) / scale + (h - 1) / 2 - shift[0]
    src_x = (sin * ys + cos * x_sheared) / scale + (w - 1) / 2 - shift[1]
    channels = [jax.scipy.ndimage.map_coordinates(image[..., i], [src_y, src_x], order=1,
                                                  mode="constant", cval=-1.0) for i in range(c)]
    return jnp.stack(channels, axis=-1)

  return jax.vmap(warp)(images, shift, angle, scale, shear)


def shift_augment(key: jax.Array, images: jax.Array, max_shift: int = 2) -> jax.Array:
  """Random integer shifts (edge-padded), so a classifier does not rely on exact centring."""
  n, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)), mode="edge")
  offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)
  crop = lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1]))  # noqa
  return jax.vmap(crop)(padded, offsets)


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
  """What a cached classifier is: its network, data, loss and training recipe.

  name: the cache key's first part; bump its version when the architecture or recipe changes.
  load_data(split) -> (images NHWC uint8 or float [-1, 1], labels): int (N,) class ids for
      loss='softmax', float (N, K) 0/1 targets for loss='sigmoid'. Splits 'train' and 'test'.
  data_version: the data's version (part of the cache key).
  augment(key, images) -> images, or None.
  module: a Flax classifier whose `__call__(x, train=False, ...)` takes NHWC 32x32 images in [-1, 1]
      and returns logits (it may take more keyword options, passed through by `as_pretrained`).
  Training: Adam with a cosine-decayed learning rate (to 2% of `learning_rate`), batches drawn from
  a fresh permutation per epoch.
  """
  name: str
  module: nn.Module  # called as module(x, train=...) -> logits; SmallCNN for the built-ins
  load_data: Callable[[str], tuple[np.ndarray, np.ndarray]]
  data_version: str
  loss: str = "softmax"
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None
  steps: int = 1000
  batch_size: int = 64
  learning_rate: float = 2e-3
  # uint8 training images: converted to float once up front (False), or per batch inside the step
  # (True: for data sets too large to hold as float32, e.g. SVHN `extra`). Part of the recipe: the
  # two round differently (XLA fuses the in-step division), so cached weights differ in the last bits.
  convert_per_batch: bool = False

  def __post_init__(self):
    if self.loss not in ("softmax", "sigmoid"):
      raise ValueError(f"ClassifierSpec {self.name!r}: loss must be 'softmax' or 'sigmoid', got "
                       f"{self.loss!r}.")


def _loss(spec: ClassifierSpec, logits, labels):
  if spec.loss == "softmax":
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def test_accuracy(spec: ClassifierSpec, params, images, labels):
  """softmax: share of images whose argmax is the label; sigmoid: per output, the share whose sign
  matches the 0/1 target (an array)."""
  logits = predict_logits(spec, params, images)
  if spec.loss == "softmax":
    return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))
  return np.mean((logits > 0) == (np.asarray(labels) > 0.5), axis=0)


def train_classifier(spec: ClassifierSpec, seed: int = 0, steps: int | None = None,
                     verbose: bool = False):
  """Trains `spec` on its 'train' split; returns (params, test accuracy)."""
  steps = spec.steps if steps is None else int(steps)
  train_images, train_labels = spec.load_data("train")
  x = jnp.asarray(train_images) if spec.convert_per_batch else to_model_input(train_images)
  y = jnp.asarray(train_labels)
  key = jax.random.PRNGKey(seed)
  key, init_key = jax.random.split(key)
  params = spec.module.init(init_key, to_model_input(x[:1]))["params"]
  optimizer = optax.adam(optax.cosine_decay_schedule(spec.learning_rate, decay_steps=max(steps, 1),
                                                     alpha=0.02))
  opt_state = optimizer.init(params)

  @jax.jit  # the data are arguments, not constants baked into the program
  def train_step(params, opt_state, key, index, x, y):
    aug_key, dropout_key = jax.random.split(key)
    images = to_model_input(x[index])
    images = spec.augment(aug_key, images) if spec.augment else images

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
  for step in range(steps):
    if order.size < spec.batch_size:  # a fresh permutation per epoch
      order = np.concatenate([order, order_rng.permutation(x.shape[0])])
    index, order = order[:spec.batch_size], order[spec.batch_size:]
    key, step_key = jax.random.split(key)
    params, opt_state, loss = train_step(params, opt_state, step_key, jnp.asarray(index), x, y)
    if verbose and (step + 1) % 250 == 0:
      print(f"{spec.name}: step {step + 1}/{steps}  loss {float(loss):.4f}  "
            f"{time.time() - start:.1f}s", flush=True)
  test_images, test_labels = spec.load_data("test")
  return params, test_accuracy(spec, params, test_images, test_labels)


@functools.partial(jax.jit, static_argnames="module")
def _logits_batch(params, images: jax.Array, module: nn.Module) -> jax.Array:
  return module.apply({"params": params}, to_model_input(images))


def predict_logits(spec: ClassifierSpec, params, images, batch_size: int = PREDICT_BATCH
                   ) -> np.ndarray:
  """Logits (N, num_outputs) for NHWC images (uint8 in [0, 255] or float in [-1, 1]), in fixed-size
  batches (the last one padded) so that any N compiles one program per dtype."""
  images = np.asarray(images)
  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out.append(np.asarray(_logits_batch(params, batch, spec.module))[:batch_size - pad])
  return (np.concatenate(out) if out
          else np.zeros((0, spec.module.num_outputs), np.float32))


def predict(spec: ClassifierSpec, params, images, batch_size: int = PREDICT_BATCH) -> np.ndarray:
  """The predicted class (int32 (N,)) of each image."""
  return np.argmax(predict_logits(spec, params, images, batch_size), -1).astype(np.int32)


def params_cache_path(spec: ClassifierSpec, cache_dir: str | os.PathLike | None = None,
                      seed: int = 0, steps: int | None = None) -> pathlib.Path:
  steps = spec.steps if steps is None else int(steps)
  return (digits.cache_dir(cache_dir)
          / f"{spec.name}-{spec.data_version}-seed{seed}-steps{steps}.msgpack")


def load_or_train(spec: ClassifierSpec, cache_dir: str | os.PathLike | None = None, seed: int = 0,
                  steps: int | None = None, verbose: bool = False):
  """(params, test accuracy): loaded from the cache, else trained and then cached (atomically)."""
  path = params_cache_path(spec, cache_dir, seed, steps)
  with digits.filled_once(path):  # a second process asking meanwhile waits, then loads
    if path.exists():
      # msgpack_restore needs no template, so loading does not pay for an init.
      state = flax.serialization.msgpack_restore(path.read_bytes())
      accuracy = state["test_accuracy"]
      accuracy = float(accuracy) if np.ndim(accuracy) == 0 else np.asarray(accuracy)
      return jax.tree_util.tree_map(jnp.asarray, state["params"]), accuracy
    logging.info("Training the %s classifier once (cached as %s; well under a minute on 2 cores).",
                 spec.name, path)
    params, accuracy = train_classifier(spec, seed, steps, verbose)
    state = {"params": jax.device_get(params), "test_accuracy": np.asarray(accuracy, np.float32)}
    digits.atomic_write_bytes(path, flax.serialization.msgpack_serialize(state))
    return params, accuracy


@functools.lru_cache(maxsize=8)
def cached(spec: ClassifierSpec):
  """`load_or_train(spec)` once per process (the default cache, seed and steps)."""
  return load_or_train(spec)


@functools.lru_cache(maxsize=None)
def _apply(module: nn.Module):
  """One apply function per network, so that every load of it hits the same jit cache entries."""
  return functools.partial(_apply_module, module)


def _apply_module(module, params, images, **options):
  return module.apply({"params": params}, to_model_input(images), **options)


def as_pretrained(spec: ClassifierSpec, params) -> pretrained.Pretrained:
  """A frozen `Pretrained`: `net(images)` -> logits; keyword options go to the network (SmallCNN:
  `net(images, features=True)` -> (logits, hidden); DTN's f: `net(images, layers=(...))` -> dict)."""
  return pretrained.Pretrained(jax.tree_util.tree_map(jnp.asarray, params), _apply(spec.module),
                               spec.name)


# ----------------------------------------------------------------------------------------------------
# The built-in classifiers
# ----------------------------------------------------------------------------------------------------
def _mnist(split: str):
  """MNIST arrays repeat one grey channel three times: train on one (a third of the data to move)."""
  images, labels = digits.mnist_split(split)
  return images[..., :1], labels


def _styled(split: str):
  data = digits.load_styled_split(split)
  return data["image"], data["attributes"]


DIGITS = ClassifierSpec("digit-classifier-v1", SmallCNN(10, dropout_rate=0.3), _mnist,
                        digits.DATA_VERSION, "softmax", affine_augment, steps=1000)
ATTRIBUTES = ClassifierSpec("attribute-classifier-v2", SmallCNN(len(digits.STYLE_ATTRIBUTES)),
                            _styled, digits.STYLED_VERSION, "sigmoid", shift_augment, steps=800)
BUILTIN = {"digit_classifier": DIGITS, "attribute_classifier": ATTRIBUTES}


def load_pretrained(spec: ClassifierSpec, path=None, cache_dir=None, seed: int = 0,
                    steps: int | None = None) -> pretrained.Pretrained:
  """`spec` as a frozen network: from `path` (a params file this module cached), else the cache,
  else trained and cached. WeightsError for a file that is not such a params file."""
  if path is None:
    params, _ = load_or_train(spec, cache_dir, seed, steps)
    return as_pretrained(spec, params)
  try:
    params = flax.serialization.msgpack_restore(pathlib.Path(path).read_bytes())["params"]
    shapes = jax.tree_util.tree_map(np.shape, params)
  except Exception as e:  # msgpack raises several types for a file of something else
    raise pretrained.WeightsError(f"{path}: not a cached {spec.name} ({type(e).__name__}: {e}).") \
        from None
  expected = jax.tree_util.tree_map(np.shape, jax.eval_shape(
      lambda: spec.module.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1))))["params"])
  if shapes != expected:
    raise pretrained.WeightsError(f"{path}: its parameters {shapes} are not those of {spec.name} "
                                  f"{expected}.")
  return as_pretrained(spec, params)


def identity_baseline(params, test: dict) -> float:
  """label_acc of no translation at all: the share of the untranslated printed digits of `test` (a
  `digits.load_split('test')` dict) that the MNIST judge (`DIGITS`, weights `params`) reads as their
  own label."""
  return float(np.mean(predict(DIGITS, params, test["A"]) == test["label_A"]))


load_digit_classifier = functools.partial(load_pretrained, DIGITS)
load_attribute_classifier = functools.partial(load_pretrained, ATTRIBUTES)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--name", default="digit_classifier", choices=sorted(BUILTIN))
  parser.add_argument("--cache_dir", default=None,
                      help="cache folder (default: $TRANSLATE_CACHE or ~/.cache/translate)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=None)
  args = parser.parse_args(argv)
  spec = BUILTIN[args.name]
  start = time.time()
  was_cached = params_cache_path(spec, args.cache_dir, args.seed, args.steps).exists()
  params, accuracy = load_or_train(spec, args.cache_dir, args.seed, args.steps, verbose=True)
  print(f"{args.name} {'loaded' if was_cached else 'trained'} in {time.time() - start:.1f}s")
  if spec is DIGITS:
    test = digits.load_split("test", cache=args.cache_dir)
    printed = identity_baseline(params, test)
    print(f"MNIST test accuracy:                    {accuracy:.4f} ({len(test['B'])} digits)")
    print(f"printed test digits, untranslated:      {printed:.4f} ({len(test['A'])} digits)"
          "  <- identity baseline")
  else:
    for name, a in zip(digits.STYLE_ATTRIBUTES, np.atleast_1d(accuracy)):
      print(f"  {name:10s} {a:.4f}")


if __name__ == "__main__":
  main()
