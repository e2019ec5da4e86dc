"""Target-domain classification accuracy of StarGAN on the embedded multi-domain digits.

StarGAN's protocol (Choi et al. 2018, Sec. 4.5): a classifier trained on *real* images of the domains
judges whether translations show the requested target labels. Here the classifier is a small CNN
trained on the styled printed digits (`translate.data.digits.styled_digits`) for their four binary
attributes Bold, Italic, Serif and Inverted, cached like `digit_classifier` (trained once, ~1 min on
2 CPU cores). The digit-class source of the mask vector demo is judged by `digit_classifier` (MNIST).

    python -m translate.metrics.attribute_classifier [--cache_dir=DIR]

trains (or loads) it and prints its per-attribute accuracy on the real test images.
"""
from __future__ import annotations

import argparse
import functools
import os
import pathlib
import time
from typing import Any

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate.data import digits
from translate.metrics import digit_classifier

# Part of the cache key: bump whenever the architecture, data or training recipe changes.
CLASSIFIER_VERSION = "attribute-classifier-v1"
DEFAULT_STEPS = 800
BATCH_SIZE = 64
PREDICT_BATCH = 500


class AttributeClassifier(nn.Module):
  """Space-to-depth stem (as DigitClassifier, for CPU speed), three conv blocks, two dense layers.

  Input: float NHWC in [-1, 1], 32x32, grey or RGB (reduced to luminance). Output: one logit per
  attribute of `digits.STYLE_ATTRIBUTES` (present where > 0).
  """
  widths: tuple[int, ...] = (32, 64, 64)
  hidden: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[-1] == 3:
      x = x @ jnp.array([0.299, 0.587, 0.114], x.dtype)[:, None]
    x = digit_classifier.space_to_depth(x)
    for width in self.widths:
      x = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(len(digits.STYLE_ATTRIBUTES))(x)


CLASSIFIER = AttributeClassifier()


def _shift(key: jax.Array, images: jax.Array, max_shift: int = 2) -> jax.Array:
  """Random integer shifts (edge-padded), so the classifier does not rely on exact centring."""
  n, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)), mode="edge")
  offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)
  crop = lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1]))  # noqa
  return jax.vmap(crop)(padded, offsets)


def train_classifier(seed: int = 0, steps: int = DEFAULT_STEPS, batch_size: int = BATCH_SIZE,
                     learning_rate: float = 2e-3) -> tuple[Any, np.ndarray]:
  """Trains on the 10000 styled train digits; returns (params, per-attribute test accuracy)."""
  train = digits.load_styled_split("train")
  x = digit_classifier.to_model_input(train["image"])
  y = jnp.asarray(train["attributes"])
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = CLASSIFIER.init(init_key, x[:1])["params"]
  optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.02))
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, key, index):
    images = _shift(key, x[index])

    def loss_fn(params):
      logits = CLASSIFIER.apply({"params": params}, images)
      return optax.sigmoid_binary_cross_entropy(logits, y[index]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  order_rng = np.random.default_rng(seed)
  order = np.empty(0, np.int64)
  for _ in range(steps):
    if order.size < batch_size:
      order = np.concatenate([order, order_rng.permutation(x.shape[0])])
    index, order = order[:batch_size], order[batch_size:]
    key, step_key = jax.random.split(key)
    params, opt_state, _ = step(params, opt_state, step_key, jnp.asarray(index))
  test = digits.load_styled_split("test")
  accuracy = np.mean((predict_logits(params, test["image"]) > 0) == (test["attributes"] > 0.5), 0)
  return params, accuracy


@jax.jit
def _logits_batch(params, images):
  return CLASSIFIER.apply({"params": params}, digit_classifier.to_model_input(images))


def predict_logits(params, images, batch_size: int = PREDICT_BATCH) -> np.ndarray:
  """Attribute logits (N, 4) for NHWC images (uint8 or float in [-1, 1]), in fixed-size batches."""
  images = np.asarray(images)
  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out.append(np.asarray(_logits_batch(params, batch))[:batch_size - pad])
  return np.concatenate(out) if out else np.zeros((0, len(digits.STYLE_ATTRIBUTES)), np.float32)


def params_cache_path(cache_dir=None, seed: int = 0, steps: int = DEFAULT_STEPS) -> pathlib.Path:
  return (digits.cache_dir(cache_dir)
          / f"{CLASSIFIER_VERSION}-{digits.STYLED_VERSION}-seed{seed}-steps{steps}.msgpack")


@functools.lru_cache(maxsize=2)
def load_or_train(cache_dir=None, seed: int = 0, steps: int = DEFAULT_STEPS
                  ) -> tuple[Any, np.ndarray]:
  """(params, per-attribute accuracy on the real test digits): from the cache, else trained and
  cached (flax msgpack, written atomically)."""
  path = params_cache_path(cache_dir, seed, steps)
  if path.exists():
    state = flax.serialization.msgpack_restore(path.read_bytes())
    return (jax.tree_util.tree_map(jnp.asarray, state["params"]),
            np.asarray(state["test_accuracy"]))
  params, accuracy = train_classifier(seed, steps)
  state = {"params": jax.device_get(params), "test_accuracy": np.asarray(accuracy, np.float32)}
  digits.atomic_write_bytes(path, flax.serialization.msgpack_serialize(state))
  return params, accuracy


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--cache_dir", default=None)
  parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
  args = parser.parse_args(argv)
  start = time.time()
  cached = params_cache_path(args.cache_dir, 0, args.steps).exists()
  _, accuracy = load_or_train(args.cache_dir, 0, args.steps)
  print(f"classifier {'loaded' if cached else 'trained'} in {time.time() - start:.1f}s; accuracy "
        f"on the {digits.NUM_STYLED['test']} real test digits:")
  for name, a in zip(digits.STYLE_ATTRIBUTES, accuracy):
    print(f"  {name:10s} {a:.4f}")


if __name__ == "__main__":
  main()
