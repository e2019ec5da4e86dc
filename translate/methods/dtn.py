"""DTN, the Domain Transfer Network (Taigman, Polyak & Wolf 2017, "Unsupervised Cross-Domain Image
Generation", ICLR 2017): G = g o f, with f a FROZEN function that the translation keeps constant.

Given unlabelled source images s (domain A) and target images t (domain B), and a function f trained
beforehand (for digits: a classifier of the SOURCE domain, trained with its labels), DTN learns only g,
a decoder of f's representation, and a ternary discriminator D (the paper's Sec. 3):

  D's classes: 1 = G(s), 2 = G(t), 3 = t (here indices 0, 1, 2).
  L_D    = -E_s log D_1(G(s)) - E_t log D_2(G(t)) - E_t log D_3(t)                           (Eq. 3)
  L_GANG = -E_s log D_3(G(s)) - E_t log D_3(G(t))                                            (Eq. 4)
  L_CONST = sum_s d(f(s), f(G(s)))        f stays the same through the translation          (Eq. 5)
  L_TID   = sum_t d2(t, G(t))             G is the identity on the target domain            (Eq. 6)
  L_TV    = anisotropic total variation of G(s), smoothness                                 (Eq. 7)
  L_G = L_GANG + alpha L_CONST + beta L_TID + gamma L_TV                                    (Eq. 8)

with d, d2 squared Euclidean distances (summed over an example's elements, averaged over the batch, as
in the paper: with these sums the GAN term is a light touch beside alpha L_CONST and beta L_TID;
per-element means make it ~1000 times stronger at 32x32, and that measured far worse). Digits:
alpha = beta = 15, gamma = 0; faces -> emoji: alpha = 100, beta = 1, gamma = 0.05 (configs/dtn.py).
Each step is one D update on the current G's outputs, then one
g update against the updated D. f is an argument of the step (`Method.frozen`), never trained,
donated or checkpointed; gradients flow THROUGH f (L_CONST of G(s)) into g only.

Where we depart from the paper, and why:
  * `model.f_layer` names the layer of f that g decodes and L_CONST compares (the paper: f's last
    layer before the labels), optionally through a softmax at `model.f_temperature`. The digits
    preset uses softmax(logits / 4): decoding f's 128-d 'features' layer, G learned to draw what f
    calls a 6 and MNIST calls a 0 (f read 99% of the translations as their source digit; the judge
    0.71-0.81), and raw logits drifted with training; the softened class evidence aligns printed
    and handwritten digits (configs/dtn.py lists the runs). It keeps little of the source's style.
    Any translate.pretrained network with a `layers=` option (VGG's 'relu3_3', ...) can be f
    (the folder preset).
  * The embedded digits' f is trained on rendered printed digits, not SVHN `extra` (the svhn2mnist
    preset does that); f is never the MNIST classifier that judges the translations (`label_acc`).
    Our f normalises its input (`networks.dtn.ink_positive`: bright ink on a dark ground, contrast
    stretched) and is trained with affine and stroke-width augmentation
    (`pretrained.source_classifier`); both only use source images and are part of f. They raised f's
    accuracy on MNIST digits it never saw from 0.69 to 0.82, and what DTN can reach with it.
  * D and g use LeakyReLU/ReLU without batch norm by default (`model.d_norm`, `model.g_norm`), so a
    translation of one image does not depend on its batch.

Evaluation: `label_acc` (engine built-in: an MNIST classifier on G(test source) against the source
labels, the paper's Table 1 protocol) and `transfer_acc` (the paper's Table 4 protocol: a classifier
trained on G(source train images) with the source labels, tested on the real target test images).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from translate import losses, pretrained, training
from translate.methods import base
from translate.networks import dtn as dtn_nets

GROUPS = {"G": ("g",), "D": ("D",)}
# D's classes.
FAKE_SOURCE, FAKE_TARGET, REAL_TARGET = 0, 1, 2
LABELLED_SOURCES = ("digits", "tfds_pair")


# ----------------------------------------------------------------------------------------------------
# Data: the engine's A/B images, plus two tfds data sets as the domains (svhn2mnist)
# ----------------------------------------------------------------------------------------------------
def _create_dataset(config, split, batch_size, **kwargs):
  if config.data.source == "tfds_pair":
    from translate.data import tfds_pair
    return tfds_pair.create_dataset(config.data, split, batch_size, **kwargs)
  return base.AB_IMAGES.create_dataset(config, split, batch_size, **kwargs)


def _dataset_size(config, split):
  if config.data.source == "tfds_pair":
    from translate.data import tfds_pair
    return tfds_pair.dataset_size(config.data, split)
  return base.AB_IMAGES.dataset_size(config, split)


def _describe(config):
  if config.data.source == "tfds_pair":
    from translate.data import tfds_pair
    return tfds_pair.describe(config.data)
  return base.AB_IMAGES.describe(config)


def _test_counts(config):
  if config.data.source == "tfds_pair":
    from translate.data import tfds_pair
    return tfds_pair.test_counts(config.data)
  return base.AB_IMAGES.test_counts(config)


DATA = base.DataKind("dtn_images", _create_dataset, _dataset_size, _describe, _test_counts)


def check_config(config) -> dict:
  """Start-up checks (called by the engine before anything runs); nothing derived."""
  lo, d = config.loss, config.data
  for name in ("alpha", "beta", "gamma"):
    if lo[name] < 0:
      raise ValueError(f"loss.{name} must be >= 0, got {lo[name]}.")
  labelled = [n for n in config.eval.metrics if n in ("label_acc", "transfer_acc")]
  if labelled and d.source not in LABELLED_SOURCES:
    raise ValueError(f"eval.metrics {labelled} need digit labels in both domains (data.source one of "
                     f"{LABELLED_SOURCES}), got data.source={d.source!r}.")
  if d.source != "tfds_pair":
    from translate.data import input_pipeline
    input_pipeline.options_from_config(d)
  return {}


def make_optimizers(config, steps_per_epoch: int, total_steps: int) -> dict:
  """Adam per group (lr_G / lr_D, else lr; b1, b2), constant for the run's first steps, then linear
  decay to 0 over the last `optim.decay_fraction` of `total_steps` (in steps, not epochs: the digit
  runs are shorter than an epoch schedule would assume)."""
  del steps_per_epoch
  return training.final_decay_optimizers(config.optim, total_steps, GROUPS)


# ----------------------------------------------------------------------------------------------------
# f, g, D
# ----------------------------------------------------------------------------------------------------
def _source_classifiers():
  from translate.pretrained import source_classifier
  return source_classifier


def frozen(config) -> dict:
  """{'f': the frozen f}: a DTN source classifier (trained and cached on first use) or any network of
  translate.pretrained, weights from model.f_path ('' = the cache)."""
  m = config.model
  sc = _source_classifiers()
  if m.f in sc.SPECS:
    return {"f": sc.load(m.f, m.f_path or None, steps=m.f_steps or None,
                         data_dir=config.data.data_dir)}
  return {"f": pretrained.load(m.f, m.f_path or None)}


def represent(config, frozen, images):
  """f's layer `model.f_layer` of `images`: what g decodes and L_CONST compares; with
  `model.f_temperature` > 0, the softmax of that layer at this temperature (over its last axis)."""
  layer = config.model.f_layer
  rep = frozen["f"](images, layers=(layer,))[layer]
  temperature = config.model.get("f_temperature", 0.0)
  if temperature > 0:
    rep = jax.nn.softmax(rep / temperature, axis=-1)
  return rep


def build_networks(config) -> dict:
  m, d = config.model, config.data
  size = d.crop_size if d.preprocess != "none" else d.load_size
  return {"g": dtn_nets.Decoder(out_channels=d.output_nc, ngf=m.ngf, image_size=size, norm=m.g_norm),
          "D": dtn_nets.TernaryDiscriminator(ndf=m.ndf, n_layers=m.n_layers_D, norm=m.d_norm)}


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  a, b = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  inputs = {"g": (represent(config, frozen, a),), "D": (b,)}
  params, collections = training.init_networks(build_networks(config), inputs, rng, METHOD.group_of)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
def d_loss(logits_fake_source, logits_fake_target, logits_real_target):
  """L_D (Eq. 3): D's cross-entropy on its three classes, one mean per term."""
  def ce(logits, label):
    return losses.cross_entropy(logits, jnp.full(logits.shape[:-1], label, jnp.int32))
  return (ce(logits_fake_source, FAKE_SOURCE) + ce(logits_fake_target, FAKE_TARGET)
          + ce(logits_real_target, REAL_TARGET))


def gang_loss(logits_fake_source, logits_fake_target):
  """L_GANG (Eq. 4): both kinds of G outputs should look like real target images to D."""
  def ce(logits):
    return losses.cross_entropy(logits, jnp.full(logits.shape[:-1], REAL_TARGET, jnp.int32))
  return ce(logits_fake_source) + ce(logits_fake_target)


def squared_distance(a, b):
  """The paper's d: the squared Euclidean distance per example (summed over its elements), averaged
  over the batch."""
  per_example = losses.mse_loss(a, b, reduction="none").reshape(a.shape[0], -1).sum(axis=1)
  return jnp.mean(per_example)


def const_loss(f_source, f_translated):
  """L_CONST (Eq. 5): d(f(s), f(G(s))), so that f stays the same through the translation."""
  return squared_distance(f_translated, f_source)


def tv_loss(images):
  """Anisotropic total variation (Eq. 7 with B = 1 per direction): mean |vertical| + mean
  |horizontal| differences of neighbouring pixels."""
  dy = jnp.abs(images[:, 1:] - images[:, :-1])
  dx = jnp.abs(images[:, :, 1:] - images[:, :, :-1])
  return jnp.mean(dy) + jnp.mean(dx)


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  nets = build_networks(config)
  lo = config.loss
  s, t = batch["A"], batch["B"]
  n = s.shape[0]
  stats = ("batch_stats",)
  f_s = represent(config, frozen, s)
  f_t = represent(config, frozen, t)

  def G(g_params, cols):
    """G(s) and G(t) in one pass of g (one batch: batch norm, if any, sees both)."""
    out, g_cols = training.run_net(nets["g"], g_params["g"], cols, jnp.concatenate([f_s, f_t]),
                                   train=True, update=stats)
    return out[:n], out[n:], g_cols

  def D(d_params, cols, images):
    return training.run_net(nets["D"], d_params["D"], cols, images, train=True, update=stats)

  # D step on the current G's outputs (no gradient into g).
  g_s, g_t, g_cols = G(state.params["G"], state.collections["g"])
  g_s, g_t = jax.lax.stop_gradient(g_s), jax.lax.stop_gradient(g_t)

  def d_loss_fn(d_params):
    logits, cols = D(d_params, state.collections["D"], jnp.concatenate([g_s, g_t, t]))
    loss = d_loss(logits[:n], logits[n:2 * n], logits[2 * n:])
    acc = jnp.mean(jnp.argmax(logits, -1) == jnp.repeat(jnp.arange(3), n))
    return loss, ({"loss_D": loss, "D_acc": acc}, cols)

  (_, (d_metrics, d_cols)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.params["D"])
  d_params, d_opt = training.update_group(optimizers["D"], state, "D", d_grads)

  # g step against the updated D. D sees the same kind of batch as in its own step (G(s), G(t), t:
  # batch norm, if any, normalises alike) and its batch statistics are not updated by this pass.
  def g_loss_fn(g_params):
    g_s, g_t, cols = G(g_params, state.collections["g"])
    logits, _ = D(d_params, d_cols, jnp.concatenate([g_s, g_t, t]))
    terms = {"loss_GANG": gang_loss(logits[:n], logits[n:]),
             "loss_CONST": const_loss(f_s, represent(config, frozen, g_s)),
             "loss_TID": squared_distance(g_t, t)}
    loss = terms["loss_GANG"] + lo.alpha * terms["loss_CONST"] + lo.beta * terms["loss_TID"]
    if lo.gamma > 0:
      terms["loss_TV"] = tv_loss(g_s)
      loss = loss + lo.gamma * terms["loss_TV"]
    return loss, ({**terms, "loss_G": loss}, cols)

  (_, (g_metrics, g_cols)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", g_grads)
  new_state = state.replace(
      step=state.step + 1, params={"G": g_params, "D": d_params},
      collections={"g": g_cols, "D": d_cols}, opt_state={"G": g_opt, "D": d_opt})
  return new_state, {**d_metrics, **g_metrics}


# ----------------------------------------------------------------------------------------------------
# Translation
# ----------------------------------------------------------------------------------------------------
def translate(config, state, frozen, images):
  """G(images) = g(f(images)); batch norm (if any) with its running statistics."""
  y, _ = training.run_net(build_networks(config)["g"], state.params["G"]["g"],
                          state.collections["g"], represent(config, frozen, images), train=False)
  return y


def sample_images(config, state, batch, frozen) -> dict:
  """source | G(source), then target | G(target) (G should be the identity there)."""
  return {"source": batch["A"], "translation": translate(config, state, frozen, batch["A"]),
          "target": batch["B"], "G(target)": translate(config, state, frozen, batch["B"])}


# ----------------------------------------------------------------------------------------------------
# Metric: transfer_acc (the paper's second protocol)
# ----------------------------------------------------------------------------------------------------
def transfer_accuracy(train_images, train_labels, test_images, test_labels, steps: int = 300,
                      batch_size: int = 64, seed: int = 0) -> float:
  """Accuracy on (test_images, test_labels) of a small classifier (`dtn_nets.SourceClassifier`)
  trained for `steps` on (train_images, train_labels) (images NHWC in [-1, 1] or uint8)."""
  from translate.pretrained import classifiers
  train_images = np.asarray(train_images)
  spec = classifiers.ClassifierSpec(
      name="transfer", module=dtn_nets.SourceClassifier(dropout_rate=0.0),
      load_data=lambda split: ((train_images, np.asarray(train_labels)) if split == "train"
                               else (np.asarray(test_images), np.asarray(test_labels))),
      data_version="", steps=steps, batch_size=min(batch_size, len(train_images)),
      convert_per_batch=True)
  _, acc = classifiers.train_classifier(spec, seed=seed)
  return acc


def _collect(config, method, split: str, key: str, limit: int):
  """Up to `limit` images of batch key `key` of `split` and their labels, in order."""
  images, labels, count = [], [], 0
  ds = method.data.create_dataset(config, split, 100, seed=config.seed, train=False)
  for batch in ds.as_numpy_iterator():
    take = min(limit - count, len(batch[key]))
    images.append(batch[key][:take])
    labels.append(batch[f"label_{key}"][:take])
    count += take
    if count >= limit:
      break
  return np.concatenate(images), np.concatenate(labels)


def transfer_acc(config, method, state, frozen) -> dict:
  """A classifier trained on G(first eval.transfer_images source train images) with their source
  labels, tested on the real target test images (`eval.transfer_steps` steps of batch 64)."""
  sizes, _ = method.data.test_counts(config)
  source, labels = _collect(config, method, "train", "A", config.eval.transfer_images)
  target, target_labels = _collect(config, method, "test", "B", sizes["B"] if sizes else 10 ** 9)
  fn = _jit_translate(config)
  translated = np.concatenate([np.asarray(fn(state, frozen, source[i:i + 100]))
                               for i in range(0, len(source), 100)])
  return {"transfer_acc": transfer_accuracy(translated, labels, target, target_labels,
                                            steps=config.eval.transfer_steps, seed=config.seed)}


def _jit_translate(config):
  return jax.jit(functools.partial(translate, config))


METHOD = base.Method(
    name="dtn", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=check_config, frozen=frozen,
    make_optimizers=make_optimizers,
    data=DATA, metrics={"transfer_acc": transfer_acc},
    predicts={"AtoB": base.Predict(
        lambda config, state, frozen, images: {"image": translate(config, state, frozen, images)},
        (base.Input("images", domain="A"),), description="G = g o f: source images -> target domain")})
