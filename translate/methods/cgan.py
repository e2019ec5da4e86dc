"""Conditional GAN (Mirza & Osindero 2014) on the embedded MNIST digits; `gan` is the same without y.

G(z, y) draws a digit of class y from noise z; D(x, y) tells real (image, label) pairs from generated
ones. Both are trained with the non-saturating GAN loss (Goodfellow et al. 2014): D minimises
BCE(D(x, y), 1) + BCE(D(G(z, y), y), 0), then G minimises BCE(D(G(z, y), y), 1) against the updated D.
The fakes of a step take the labels of the real batch, so G sees the data's class frequencies. Adam
(b1 0.5) as in DCGAN; the paper used SGD with momentum (see configs/cgan.py). D's real target may be
smoothed (`model.d_real_target`, 0.9 = one-sided label smoothing, Salimans et al. 2016).

Metrics: `class_acc` (does the digit classifier see the requested class?) and `class_div` (are the
digits of a class as varied as real ones? 0 = G ignores z).

`translate/methods/gan.py` is this module's `make_method("gan")`: everything here looks at
`config.method`, and the 'gan' method simply drops y (an unconditional G and D; no class_acc).

Data: the 4500 MNIST train digits of `translate.data.digits` (500 test), grey, cropped back to the
original 28x28 (`data.image_size=28`, the MLP nets) or kept zero-padded at 32x32 (32, the conv nets);
batches are {'image': float32 (B, H, W, 1) in [-1, 1], 'label': int32 (B,)}.

"Translating" with this family means generating: the predict `generate` (labels, rng) draws one image
per requested class label (`python -m translate.translate --workdir=... --class=3 --num=64`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from translate import layers, losses, training
from translate.methods import base
from translate.networks import gan as gan_nets

NUM_CLASSES = 10
IMAGE_SIZES = (28, 32)
MNIST_PAD = 2  # translate.data.digits pads MNIST's 28x28 by 2 px to 32x32


def is_conditional(config) -> bool:
  return config.method == "cgan"


def num_classes(config) -> int:
  return NUM_CLASSES if is_conditional(config) else 0


def check_config(config) -> dict:
  """Start-up checks (called by the engine before anything runs); nothing derived."""
  m, d = config.model, config.data
  if m.arch not in gan_nets.ARCHS:
    raise ValueError(f"Unknown model.arch {m.arch!r}; expected one of {gan_nets.ARCHS}.")
  if d.image_size not in IMAGE_SIZES:
    raise ValueError(f"data.image_size must be one of {IMAGE_SIZES} (MNIST cropped to 28 or padded "
                     f"to 32), got {d.image_size}.")
  if m.arch == "dcgan" and d.image_size != 32:
    raise ValueError("model.arch='dcgan' generates 32x32 images; set data.image_size=32.")
  if not 0.5 < m.d_real_target <= 1.0:
    raise ValueError(f"model.d_real_target (D's target for real pairs; 0.9 = one-sided label "
                     f"smoothing) must be in (0.5, 1], got {m.d_real_target}.")
  if m.z_dist not in ("uniform", "normal"):
    raise ValueError(f"Unknown model.z_dist {m.z_dist!r}; expected 'uniform' or 'normal'.")
  supported = ("class_acc", "class_div") if is_conditional(config) else ()
  unsupported = [n for n in config.eval.metrics if n not in supported]
  if unsupported:  # the engine's built-in metrics translate test images, which this family does not
    raise ValueError(f"eval.metrics {unsupported} do not apply to {config.method}; it supports "
                     f"{list(supported) or 'none'}.")
  if d.source != "mnist":
    raise ValueError(f"The {config.method} method reads the embedded MNIST digits; data.source must be "
                     f"'mnist', got {d.source!r}.")
  return {}


# ----------------------------------------------------------------------------------------------------
# Data: the method's own pipeline (the engine uses create_dataset/dataset_size/describe from here)
# ----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def load_images(split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """MNIST `split` as (float32 (N, s, s, 1) in [-1, 1], int32 (N,)); s = 28 undoes the 2 px padding."""
  from translate.data import digits
  images, labels = digits.mnist_split(split)
  grey = images[..., :1]
  if image_size == 28:
    grey = grey[:, MNIST_PAD:-MNIST_PAD, MNIST_PAD:-MNIST_PAD]
  return grey.astype(np.float32) / 127.5 - 1.0, labels.astype(np.int32)


def _split_arrays(config, split: str, process_index: int = 0, process_count: int = 1):
  images, labels = load_images(split, config.data.image_size)
  if config.data.max_dataset_size:
    images, labels = images[:config.data.max_dataset_size], labels[:config.data.max_dataset_size]
  return images[process_index::process_count], labels[process_index::process_count]


def create_dataset(config, split, batch_size, *, seed=0, train=True, process_index=None,
                   process_count=None, start_batch=0):
  """train: shuffled each epoch (seeded), repeated, full batches; `start_batch` skips batches without
  building them, so a resumed run continues the same stream. Otherwise one pass in order."""
  import tensorflow as tf
  from translate.data import input_pipeline
  input_pipeline.keep_tf_off_accelerators()
  images, labels = _split_arrays(config, split, process_index or 0, process_count or 1)
  images, labels = tf.constant(images), tf.constant(labels)
  ds = tf.data.Dataset.range(int(images.shape[0]))
  if train:
    ds = ds.shuffle(int(images.shape[0]), seed=seed * 1000 + (process_index or 0),
                    reshuffle_each_iteration=True).repeat()
  ds = ds.batch(batch_size, drop_remainder=train)
  if train and start_batch:
    ds = ds.skip(start_batch)
  gather = tf.autograph.experimental.do_not_convert(
      lambda idx: {"image": tf.gather(images, idx), "label": tf.gather(labels, idx)})
  options = tf.data.Options()
  options.deterministic = True
  return ds.map(gather).with_options(options).prefetch(tf.data.AUTOTUNE)


def dataset_size(config, split) -> int:
  return int(_split_arrays(config, split)[0].shape[0])


def describe(config) -> str:
  size = config.data.image_size
  return (f"embedded MNIST digits ({dataset_size(config, 'train')} train, grey {size}x{size}"
          f"{', labels' if is_conditional(config) else ''})")


# ----------------------------------------------------------------------------------------------------
# Networks and state
# ----------------------------------------------------------------------------------------------------
def build_networks(config) -> dict:
  m, size = config.model, config.data.image_size
  k = num_classes(config)
  init = layers.kernel_init(m.init_type, m.init_gain)
  if m.arch == "mlp":
    return {
        "G": gan_nets.MLPGenerator(
            image_shape=(size, size, 1), num_classes=k, z_hidden=m.g_z_hidden, y_hidden=m.g_y_hidden,
            joint_hidden=m.g_joint_hidden, dropout=m.g_dropout, leaky_slope=m.g_leaky_slope,
            kernel_init=init),
        "D": gan_nets.MaxoutDiscriminator(
            num_classes=k, x_units=m.d_x_units, x_pieces=m.d_x_pieces, y_units=m.d_y_units,
            y_pieces=m.d_y_pieces, joint_units=m.d_joint_units, joint_pieces=m.d_joint_pieces,
            dropout=m.d_dropout, minibatch_std=m.d_minibatch_std, kernel_init=init)}
  return {"G": gan_nets.ConvGenerator(out_channels=1, num_classes=k, ngf=m.ngf, kernel_init=init),
          "D": gan_nets.ProjectionDiscriminator(num_classes=k, ndf=m.ndf, kernel_init=init)}


def sample_z(config, rng, n: int) -> jax.Array:
  """The noise prior: U(0, 1)^z_dim (the paper's unit hypercube) or N(0, I)."""
  shape = (n, config.model.z_dim)
  if config.model.z_dist == "uniform":
    return jax.random.uniform(rng, shape)
  return jax.random.normal(rng, shape)


def _labels(config, labels):
  return labels.astype(jnp.int32) if is_conditional(config) else None


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  nets = build_networks(config)
  image = jnp.zeros(example_batch["image"].shape[1:], jnp.float32)[None]
  labels = _labels(config, jnp.zeros((1,), jnp.int32))
  z = jnp.zeros((1, config.model.z_dim), jnp.float32)
  k_g, k_d, k_state = jax.random.split(rng, 3)
  params, collections = {}, {}
  params["G"], collections["G"] = training.init_net(nets["G"], k_g, z, labels)
  params["D"], collections["D"] = training.init_net(nets["D"], k_d, image, labels)
  params = {"G": {"G": params["G"]}, "D": {"D": params["D"]}}
  return training.new_state(params, collections, optimizers, k_state)


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  del frozen
  nets = build_networks(config)
  real = batch["image"]
  labels = _labels(config, batch["label"])
  n = real.shape[0]
  rng, k_z_d, k_z_g, k_g_d, k_g_g, k_d_real, k_d_fake, k_d_g = jax.random.split(state.rng, 8)
  stats = ("batch_stats",)

  def G(g_params, cols, z, key):
    return training.run_net(nets["G"], g_params["G"], cols, z, labels, train=True, update=stats,
                            rng=key)

  def D(d_params, cols, x, key):
    return training.run_net(nets["D"], d_params["D"], cols, x, labels, train=True, update=stats,
                            rng=key)

  # D step on real pairs and on fakes of the current G (no gradient into G).
  fake, g_cols = G(state.params["G"], state.collections["G"], sample_z(config, k_z_d, n), k_g_d)
  fake = jax.lax.stop_gradient(fake)

  def d_loss_fn(d_params):
    real_logits, cols = D(d_params, state.collections["D"], real, k_d_real)
    fake_logits, cols = D(d_params, cols, fake, k_d_fake)
    m = {"loss_D_real": losses.bce_with_logits(real_logits, config.model.d_real_target),
         "loss_D_fake": losses.bce_with_logits(fake_logits, 0.0),
         "D_real": jnp.mean(jax.nn.sigmoid(real_logits)),
         "D_fake": jnp.mean(jax.nn.sigmoid(fake_logits))}
    return m["loss_D_real"] + m["loss_D_fake"], (m, cols)

  (loss_D, (d_metrics, d_cols)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.params["D"])
  d_params, d_opt = training.apply_updates(optimizers["D"], state.params["D"], state.opt_state["D"],
                                           d_grads)

  # G step against the updated D: the non-saturating loss -log D(G(z, y), y).
  z = sample_z(config, k_z_g, n)

  def g_loss_fn(g_params):
    fake, cols = G(g_params, g_cols, z, k_g_g)
    logits, _ = D(d_params, d_cols, fake, k_d_g)  # D's statistics are not updated by G's step
    return losses.bce_with_logits(logits, 1.0), cols

  (loss_G, g_cols), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.params["G"])
  g_params, g_opt = training.apply_updates(optimizers["G"], state.params["G"], state.opt_state["G"],
                                           g_grads)
  metrics = {**d_metrics, "loss_D": loss_D, "loss_G": loss_G}
  new_state = state.replace(
      step=state.step + 1, params={"G": g_params, "D": d_params},
      collections={"G": g_cols, "D": d_cols}, opt_state={"G": g_opt, "D": d_opt}, rng=rng)
  return new_state, metrics


# ----------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------
def generate(config, state, labels, z=None, rng=None):
  """Images (B, s, s, 1) in [-1, 1] for class `labels` (B,) (for 'gan' only their number counts).
  `z` (B, z_dim) or else drawn from `rng` (default PRNGKey(0)). As the configs set `eval_mode`, no
  dropout and running batch statistics, so an image depends only on its own (z, y)."""
  labels = jnp.asarray(labels)
  n = labels.shape[0]
  if z is None:
    z = sample_z(config, rng if rng is not None else jax.random.PRNGKey(0), n)
  if z.shape != (n, config.model.z_dim):
    raise ValueError(f"z must have shape ({n}, {config.model.z_dim}), got {z.shape}.")
  train = not config.eval_mode
  y, _ = training.run_net(build_networks(config)["G"], state.params["G"]["G"],
                          state.collections["G"], z, _labels(config, labels), train=train,
                          rng=jax.random.PRNGKey(1) if train else None)
  return y


def parse_class(config, text: str | None, count: int) -> np.ndarray:
  """The labels of the command line's --class for `count` images: (count,) of one digit, or for 'all'
  (count, 10): a column per noise vector, a row per class. The unconditional 'gan' takes no class."""
  if not is_conditional(config):
    if text is not None:
      raise ValueError(f"a {config.method!r} model is unconditional; leave out --class.")
    return np.zeros((count,), np.int32)
  if text is None:
    raise ValueError(f"a {config.method} model needs --class: a digit 0-9, or 'all'.")
  if text == "all":
    return np.tile(np.arange(NUM_CLASSES, dtype=np.int32), (count, 1))
  try:
    digit = int(text)
  except ValueError:
    digit = -1
  if not 0 <= digit < NUM_CLASSES:
    raise ValueError(f"--class must be a digit 0-9 or 'all', got {text!r}.")
  return np.full((count,), digit, np.int32)


def generate_from_labels(config, state, frozen, labels, rng) -> dict:
  """The predict `generate`: labels (N,) -> 'image' (N, s, s, 1), a z per image drawn from `rng`; or
  labels (K, R) -> (K, R, s, s, 1), one z per column k shared by its R rows."""
  del frozen
  labels = jnp.asarray(labels, jnp.int32)
  if labels.ndim == 2:
    cols, rows = labels.shape
    z = jnp.repeat(sample_z(config, rng, cols), rows, axis=0)
    images = generate(config, state, labels.reshape(-1), z=z)
    return {"image": images.reshape(cols, rows, *images.shape[1:])}
  return {"image": generate(config, state, labels, z=sample_z(config, rng, labels.shape[0]))}


def sample_images(config, state, batch, frozen) -> dict:
  """Columns z_0..z_{N-1} of a grid with a row per digit class (fixed noise, so grids of different
  steps are comparable); in a column every row shares one z, so a column shows one "style" across
  classes. The test batch is not needed: samples come from noise."""
  del batch, frozen
  cols = config.samples_per_class
  z = sample_z(config, jax.random.PRNGKey(config.seed + 12345), cols)
  labels = jnp.tile(jnp.arange(NUM_CLASSES, dtype=jnp.int32), cols)  # column-major: j * 10 + digit
  z_all = jnp.repeat(z, NUM_CLASSES, axis=0)
  if not is_conditional(config):  # no classes: every cell its own z
    z_all = sample_z(config, jax.random.PRNGKey(config.seed + 12345), cols * NUM_CLASSES)
  images = generate(config, state, labels, z=z_all)
  images = images.reshape(cols, NUM_CLASSES, *images.shape[1:])
  return {f"z_{j}": images[j] for j in range(cols)}


# ----------------------------------------------------------------------------------------------------
# Metric: class_acc
# ----------------------------------------------------------------------------------------------------
def class_accuracy(generate_fn, classify_fn, per_class: int, num_classes: int = NUM_CLASSES,
                   batch_size: int = 500):
  """Share of generated images that `classify_fn` (images -> logits or class ids) assigns to the class
  they were generated for; `generate_fn(labels, batch_index)` makes one image per label. Every class
  gets `per_class` images. Returns a `metrics.base.Result`."""
  from translate.metrics import base
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)

  def batches():
    for i, start in enumerate(range(0, len(labels), batch_size)):
      y = labels[start:start + batch_size]
      yield np.asarray(generate_fn(y, i)), y

  return base.target_accuracy(classify_fn, batches())


def pad_to_classifier(images: np.ndarray) -> np.ndarray:
  """28x28 generated digits -> the 32x32 the digit classifier was trained on (black border, as the
  data's own padding)."""
  if images.shape[1] == 28:
    p = MNIST_PAD
    images = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-1.0)
  return images


def class_acc(config, method, state, frozen) -> dict:
  """`class_acc`: the project's MNIST digit classifier (translate.pretrained.classifiers) judges
  whether generated digits show the requested class; eval.max_images (default 1000) samples, as many
  per class. Fresh noise from the config's seed."""
  if not is_conditional(config):
    raise ValueError("class_acc needs a conditional model (method 'cgan').")
  from translate.pretrained import classifiers
  params, _ = classifiers.cached(classifiers.DIGITS)
  total = config.eval.max_images or 1000
  per_class = max(1, total // NUM_CLASSES)
  gen = jax.jit(functools.partial(generate, config))
  key = jax.random.PRNGKey(config.seed + 777)

  def generate_fn(labels, i):
    return gen(state, jnp.asarray(labels), rng=jax.random.fold_in(key, i))

  result = class_accuracy(
      generate_fn, lambda x: classifiers.predict(classifiers.DIGITS, params, pad_to_classifier(x)), per_class,
      batch_size=config.eval.batch_size * 10)
  return result.as_dict("class_acc")


# ----------------------------------------------------------------------------------------------------
# Metric: class_div (within-class diversity, so that a collapsed G that ignores z is visible)
# ----------------------------------------------------------------------------------------------------
def mean_pairwise_distance(images) -> float:
  """Mean L2 distance over all pairs of distinct images (N >= 2); 0 when all are identical."""
  x = np.asarray(images, np.float64).reshape(len(images), -1)
  if len(x) < 2:
    raise ValueError(f"a pairwise distance needs at least 2 images, got {len(x)}.")
  # row by row rather than through the Gram matrix, so identical images give exactly 0
  dists = [np.linalg.norm(x[i + 1:] - x[i], axis=1) for i in range(len(x) - 1)]
  return float(np.mean(np.concatenate(dists)))


def class_diversity(images, labels, real_images, real_labels, num_classes: int = NUM_CLASSES):
  """Mean over classes of (mean pairwise L2 distance among `images` of the class) / (the same among
  `real_images` of the class): 1.0 = as varied as the real digits, 0 = one image per class (a G that
  ignores z). Returns a `metrics.base.Result` (std over classes)."""
  from translate.metrics import base
  images, labels = np.asarray(images), np.asarray(labels)
  real_images, real_labels = np.asarray(real_images), np.asarray(real_labels)
  if images.shape[1:] != real_images.shape[1:]:
    raise ValueError(f"generated images {images.shape[1:]} and real images {real_images.shape[1:]} "
                     "differ in shape.")
  ratios = []
  for c in range(num_classes):
    fake, real = images[labels == c], real_images[real_labels == c]
    if len(fake) < 2 or len(real) < 2:
      raise ValueError(f"class {c} has {len(fake)} generated and {len(real)} real images; "
                       "class_div needs at least 2 of each.")
    ratios.append(mean_pairwise_distance(fake) / mean_pairwise_distance(real))
  return base.Result(float(np.mean(ratios)), float(np.std(ratios)))


def _generated_for_eval(config, state) -> tuple[np.ndarray, np.ndarray]:
  """eval.max_images (default 1000) generated digits, as many per class, with fresh noise from the
  config's seed: the same samples for class_acc and class_div."""
  total = config.eval.max_images or 1000
  per_class = max(2, total // NUM_CLASSES)
  labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class)
  gen = jax.jit(functools.partial(generate, config))
  key = jax.random.PRNGKey(config.seed + 777)
  batch = config.eval.batch_size * 10
  images = [np.asarray(gen(state, jnp.asarray(labels[s:s + batch]), rng=jax.random.fold_in(key, i)))
            for i, s in enumerate(range(0, len(labels), batch))]
  return np.concatenate(images), labels


def class_div(config, method, state, frozen) -> dict:
  """`class_div`: `class_diversity` of eval.max_images generated digits against the MNIST test
  digits (about 50 per class) at the config's image size."""
  if not is_conditional(config):
    raise ValueError("class_div needs a conditional model (method 'cgan').")
  images, labels = _generated_for_eval(config, state)
  real_images, real_labels = load_images("test", config.data.image_size)
  return class_diversity(images, labels, real_images, real_labels).as_dict("class_div")


def make_method(name: str) -> base.Method:
  """The conditional ('cgan') or unconditional ('gan') method; both read the embedded MNIST digits."""
  data = base.DataKind("mnist", create_dataset, dataset_size, describe)
  return base.Method(
      name=name, groups={"G": ("G",), "D": ("D",)}, build_networks=build_networks,
      create_state=create_state, train_step=train_step, sample_images=sample_images, data=data,
      input_keys=("image", "label"), check_config=check_config,
      metrics={"class_acc": class_acc, "class_div": class_div} if name == "cgan" else {},
      sample_grid_rows=NUM_CLASSES,  # a row per digit class
      predicts={"generate": base.Predict(
          generate_from_labels,
          (base.Input("labels", base.LABELS, parse=parse_class), base.Input("rng", base.RNG)),
          description="images of the given classes (--class=3 or all; 'gan': no class) from noise")})


METHOD = make_method("cgan")
