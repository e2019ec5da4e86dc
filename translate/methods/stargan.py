"""StarGAN (Choi et al. 2018): one generator translates an image into any of several domains.

Networks (translate.networks.stargan): G(x, c) with the target labels c tiled over the image; D(x) gives
a WGAN critic patch map and domain-classification logits. Losses, as yunjey/stargan's solver:
  D: -mean D_src(x) + mean D_src(G(x, c_trg)) + lambda_cls * cls(D_cls(x), c_org)
     + lambda_gp * mean((||grad_x^ D_src(x^)||_2 - 1)^2), x^ = a x + (1 - a) G(x, c_trg), a ~ U(0, 1)
     per image (WGAN-GP);
  G: -mean D_src(G(x, c_trg)) + lambda_cls * cls(D_cls(G(x, c_trg)), c_trg)
     + lambda_rec * mean |x - G(G(x, c_trg), c_org)|.
`cls` is binary cross-entropy with logits summed over attributes (CelebA, digits styles) or softmax
cross-entropy (one categorical domain: folders, digit classes), averaged over the batch. The target
labels are the batch's own labels in a random permutation (the reference's `randperm`).

One engine step is one D update; G is updated in the same jitted step, under `lax.cond`, at every
`n_critic`-th iteration ((i + 1) % n_critic == 0 as the reference), so a step is a pure function of the
state and resume / data parallelism are exact. With two sources (mask vector mode) an iteration is two
steps, one batch of each source, and the classification loss of an image only covers its own
source's part of the label (selected by the mask), as the reference slices D's logits per data set.
The G losses reported at a step without a G update are those of the last G update.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from translate import losses, training
from translate.data import labelled
from translate.methods import base
from translate.networks import stargan as nets_lib

G_METRICS = ("loss_G_fake", "loss_G_rec", "loss_G_cls", "loss_G")


# ----------------------------------------------------------------------------------------------------
# Config, data, networks, optimisers
# ----------------------------------------------------------------------------------------------------
def layout(config) -> labelled.Layout:
  return labelled.label_layout(config.data)


def label_names(config) -> list[str]:
  return [n for s in layout(config).sets for n in s.names]


def check_config(config) -> dict:
  """Start-up checks. Derives the folder domains and the label names (both are saved in config.json,
  so a trained model keeps its label order and the CLI knows the names) and, when it is not positive,
  num_train_steps = the whole schedule."""
  derived = {}
  d, m = config.data, config.model
  if not d.folder_domains and "folder" in labelled._names(d.sources):
    derived["data.folder_domains"] = tuple(labelled.folder_domains(d.path))
  with_domains = ml_collections.ConfigDict(config.to_dict())
  with_domains.data.folder_domains = derived.get("data.folder_domains", d.folder_domains)
  names = tuple(label_names(with_domains))
  if m.label_names and tuple(m.label_names) != names:
    raise ValueError(f"model.label_names {list(m.label_names)} differ from the data's labels "
                     f"{list(names)}.")
  derived["model.label_names"] = names
  o = config.optim
  if o.num_steps < 1 or not 0 <= o.num_steps_decay <= o.num_steps:
    raise ValueError(f"optim.num_steps={o.num_steps} must be >= 1 and optim.num_steps_decay="
                     f"{o.num_steps_decay} in [0, num_steps].")
  if config.num_train_steps <= 0:  # the whole schedule; a positive value stops earlier (same schedule)
    derived["num_train_steps"] = o.num_steps
  if config.loss.n_critic < 1:
    raise ValueError(f"loss.n_critic={config.loss.n_critic} must be >= 1.")
  if d.image_size % 2 ** m.d_repeat_num:
    raise ValueError(f"data.image_size={d.image_size} must be divisible by 2**model.d_repeat_num "
                     f"= {2 ** m.d_repeat_num}.")
  return derived


def create_dataset(config, split, batch_size, **kwargs):
  return labelled.create_dataset(config.data, split, batch_size, **kwargs)


# Images with label vectors (translate/data/labelled.py): {'image': (B, H, W, C), 'label': (B, L)}.
DATA = base.DataKind("labelled", create_dataset,
                     lambda config, split: labelled.dataset_size(config.data, split),
                     lambda config: labelled.describe(config.data))


def build_networks(config) -> dict:
  m, lay = config.model, layout(config)
  return {
      "G": nets_lib.Generator(conv_dim=m.g_conv_dim, c_dim=lay.label_dim, repeat_num=m.g_repeat_num,
                              init_type=m.init_type, init_gain=m.init_gain),
      "D": nets_lib.Discriminator(image_size=config.data.image_size, conv_dim=m.d_conv_dim,
                                  c_dim=lay.num_classes, repeat_num=m.d_repeat_num,
                                  init_type=m.init_type, init_gain=m.init_gain),
  }


def make_optimizers(config, steps_per_epoch: int = 1, total_steps: int = 0) -> dict:
  """Adam (g_lr = d_lr = 1e-4, betas 0.5/0.999) held for num_steps - num_steps_decay steps, then
  decayed linearly to 0 (the paper's schedule; the reference code's decrement is 1000x smaller). Each
  optimiser counts its own updates, G's one per n_critic iterations, so its schedule is in G updates."""
  del steps_per_epoch, total_steps  # StarGAN's schedule is in steps, of its own length
  o, n_critic = config.optim, config.loss.n_critic
  decay = o.num_steps_decay
  hold = o.num_steps - decay
  out = {}
  for group, lr, per in (("G", o.lr_G or o.lr, n_critic), ("D", o.lr_D or o.lr, 1)):
    schedule = training.lr_schedule(lr, 1, hold // per, -(-decay // per),
                                    "linear" if decay else "constant")
    out[group] = training.adam(schedule, o.b1, o.b2)
  return out


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  nets = build_networks(config)
  x = jnp.zeros_like(example_batch["image"][:1])
  c = jnp.zeros((1, layout(config).label_dim), jnp.float32)
  k_g, k_d = jax.random.split(rng)
  g_params, g_cols = training.init_net(nets["G"], k_g, x, c)
  d_params, d_cols = training.init_net(nets["D"], k_d, x)
  params = {"G": {"G": g_params}, "D": {"D": d_params}}
  return training.new_state(params, {"G": g_cols, "D": d_cols}, optimizers,
                            jax.random.fold_in(rng, 1),
                            {"last_G": {k: jnp.zeros((), jnp.float32) for k in G_METRICS}})


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
def classification_loss(lay: labelled.Layout, logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per source: BCE with logits summed over its attributes, or softmax cross-entropy for a
  categorical domain; each image counts only for the source its mask names; mean over the batch."""
  per_image = jnp.zeros(logits.shape[0], jnp.float32)
  for k, s in enumerate(lay.sets):
    lo, hi = lay.offset(k), lay.offset(k) + len(s.names)
    part_logits, part_labels = logits[:, lo:hi], labels[:, lo:hi]
    if s.kind == "binary":
      loss = jnp.sum(optax.sigmoid_binary_cross_entropy(part_logits, part_labels), axis=-1)
    else:
      loss = optax.softmax_cross_entropy(part_logits, part_labels)
    if lay.mask_dim:
      loss = jnp.where(labels[:, lay.num_classes + k] > 0.5, loss, 0.0)
    per_image = per_image + loss
  return jnp.mean(per_image)


# ----------------------------------------------------------------------------------------------------
# Train step
# ----------------------------------------------------------------------------------------------------
def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  del frozen
  nets, lay, lo = build_networks(config), layout(config), config.loss
  x_real, label_org = batch["image"], batch["label"]
  n = x_real.shape[0]
  rng, k_perm, k_alpha = jax.random.split(state.rng, 3)
  label_trg = label_org[jax.random.permutation(k_perm, n)]
  stats = ("batch_stats",)

  def G(g_params, cols, x, c):
    return training.run_net(nets["G"], g_params["G"], cols, x, c, update=stats)

  def D(d_params, x):
    return nets["D"].apply({"params": d_params["D"]}, x)

  # --- discriminator: real, fake (G frozen), classification of real images, gradient penalty
  x_fake, g_cols = G(state.params["G"], state.collections["G"], x_real, label_trg)
  x_fake = jax.lax.stop_gradient(x_fake)

  def d_loss_fn(d_params):
    out_src, out_cls = D(d_params, x_real)
    m = {"loss_D_real": -jnp.mean(out_src),
         "loss_D_cls": classification_loss(lay, out_cls, label_org),
         "loss_D_fake": jnp.mean(D(d_params, x_fake)[0]),
         # at x^ = a x + (1 - a) G(x, c_trg), a ~ U(0, 1) per image
         "loss_D_gp": losses.gradient_penalty(lambda v: D(d_params, v)[0], x_real, x_fake, k_alpha)}
    loss = (m["loss_D_real"] + m["loss_D_fake"] + lo.lambda_cls * m["loss_D_cls"]
            + lo.lambda_gp * m["loss_D_gp"])
    return loss, m

  (loss_D, d_metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
  d_params, d_opt = training.apply_updates(optimizers["D"], state.params["D"], state.opt_state["D"],
                                           d_grads)

  # --- generator, every n_critic-th iteration (an iteration is one batch of each source)
  iteration = state.step // max(1, len(lay.sets))
  update_g = (iteration + 1) % lo.n_critic == 0

  def g_update(operands):
    g_params, g_opt, cols, _ = operands

    def g_loss_fn(g_params):
      fake, new_cols = G(g_params, cols, x_real, label_trg)
      out_src, out_cls = D(d_params, fake)
      rec, new_cols = G(g_params, new_cols, fake, label_org)
      m = {"loss_G_fake": -jnp.mean(out_src), "loss_G_cls": classification_loss(lay, out_cls, label_trg),
           "loss_G_rec": jnp.mean(jnp.abs(x_real - rec))}
      loss = m["loss_G_fake"] + lo.lambda_rec * m["loss_G_rec"] + lo.lambda_cls * m["loss_G_cls"]
      return loss, (m, new_cols)

    (loss, (m, new_cols)), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_params)
    g_params, g_opt = training.apply_updates(optimizers["G"], g_params, g_opt, grads)
    return g_params, g_opt, new_cols, {**m, "loss_G": loss}

  g_params, g_opt, g_cols, g_metrics = jax.lax.cond(
      update_g, g_update, lambda operands: operands,
      (state.params["G"], state.opt_state["G"], g_cols, state.extra["last_G"]))
  metrics = {**d_metrics, **g_metrics, "loss_D": loss_D}
  new_state = state.replace(
      step=state.step + 1, params={"G": g_params, "D": d_params},
      collections={"G": g_cols, "D": state.collections["D"]}, opt_state={"G": g_opt, "D": d_opt},
      extra={"last_G": g_metrics}, rng=rng)
  return new_state, metrics


# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------
def translate(config, state, images, target_labels):
  """G(images, target_labels): full label vectors (B, label_dim), mask included in mask mode. As the
  reference's test code, instance norm uses per-image statistics (config.eval_mode: running ones)."""
  target_labels = jnp.asarray(target_labels, jnp.float32)
  return build_networks(config)["G"].apply(
      {"params": state.params["G"]["G"], **state.collections["G"]},
      images, target_labels, use_running_average=bool(config.eval_mode))


def classify(config, state, images) -> jax.Array:
  """D's domain logits (B, num_classes); images of another size are resized to D's input size."""
  size = config.data.image_size
  if images.shape[1:3] != (size, size):
    images = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), "linear")
  return build_networks(config)["D"].apply({"params": state.params["D"]["D"]}, images)[1]


def complete_labels(config, state, images, labels=None) -> jax.Array:
  """Full label vectors for `images`: the given labels for the source their mask names (all of them
  with one source); D's classifier's reading for the other source's part, or for all when `labels`
  is None (then the image is taken to belong to source 0)."""
  lay = layout(config)
  logits = classify(config, state, images)
  parts = []
  for k, s in enumerate(lay.sets):
    lo, hi = lay.offset(k), lay.offset(k) + len(s.names)
    guess = ((logits[:, lo:hi] > 0).astype(jnp.float32) if s.kind == "binary"
             else jax.nn.one_hot(jnp.argmax(logits[:, lo:hi], -1), hi - lo))
    if labels is None:
      parts.append(guess)
    else:
      own = labels[:, lay.num_classes + k:lay.num_classes + k + 1] > 0.5 if lay.mask_dim else True
      parts.append(jnp.where(own, labels[:, lo:hi], guess))
  if lay.mask_dim:
    parts.append(labels[:, lay.num_classes:] if labels is not None
                 else jnp.broadcast_to(jax.nn.one_hot(0, lay.mask_dim), (images.shape[0], lay.mask_dim)))
  return jnp.concatenate(parts, axis=-1)


def domain_targets(config, c_org) -> list[tuple[str, jax.Array]]:
  """The reference's `create_labels`: one target per label. A binary attribute is flipped, except a
  hair colour, which is set while the other hair colours are cleared; a categorical domain is set
  one-hot. In mask mode the target carries its source's mask and zeros for the other source."""
  lay = layout(config)
  c_org = jnp.asarray(c_org, jnp.float32)
  out = []
  for k, s in enumerate(lay.sets):
    lo = lay.offset(k)
    base = c_org
    if lay.mask_dim:  # this source's labels, zeros elsewhere, mask e_k
      keep = np.zeros(lay.label_dim, np.float32)
      keep[lo:lo + len(s.names)] = 1.0
      base = c_org * keep
      base = base.at[:, lay.num_classes:].set(jax.nn.one_hot(k, lay.mask_dim))
    hair = [i for i, name in enumerate(s.names) if name in labelled.HAIR_COLOURS]
    for i, name in enumerate(s.names):
      c = base
      if s.kind == "categorical":
        c = c.at[:, lo:lo + len(s.names)].set(jax.nn.one_hot(i, len(s.names)))
      elif i in hair:
        c = c.at[:, [lo + j for j in hair]].set(0.0).at[:, lo + i].set(1.0)
      else:
        c = c.at[:, lo + i].set(1.0 - c[:, lo + i])
      out.append((name, c))
  return out


def target_names(config) -> list[str]:
  """Names of `domain_targets`' targets, in order (the grid's columns after the input)."""
  return [s_name for s in layout(config).sets for s_name in s.names]


def translate_all(config, state, images, labels=None) -> tuple[list[str], jax.Array]:
  """`images` translated to every single-label target (domain_targets): (names, (T, B, H, W, C))."""
  targets = domain_targets(config, complete_labels(config, state, images, labels))
  return [n for n, _ in targets], jnp.stack([translate(config, state, images, c) for _, c in targets])


def sample_images(config, state, batch, frozen) -> dict:
  """The input, then its translation to each single-label target (the reference's sample grid)."""
  del frozen
  names, outputs = translate_all(config, state, batch["image"], batch["label"])
  return {"input": batch["image"], **{name: out for name, out in zip(names, outputs)}}


def target_labels_from_names(config, names) -> np.ndarray:
  """A label vector (label_dim,) with the named labels set and all others 0, e.g. 'Black_Hair,Male'.
  In mask mode the names must come from one source, whose mask is set."""
  lay = layout(config)
  names = labelled._names(names)
  all_names = label_names(config)
  unknown = [n for n in names if n not in all_names]
  if unknown or not names:
    raise ValueError(f"Unknown target label(s) {unknown or names}; valid names: {all_names}.")
  out = np.zeros(lay.label_dim, np.float32)
  sources = set()
  for k, s in enumerate(lay.sets):
    for i, name in enumerate(s.names):
      if name in names:
        out[lay.offset(k) + i] = 1.0
        sources.add(k)
    if s.kind == "categorical" and sum(out[lay.offset(k):lay.offset(k) + len(s.names)]) > 1:
      raise ValueError(f"{[n for n in names if n in s.names]} are domains of one categorical "
                       f"source; name one.")
  if lay.mask_dim:
    if len(sources) > 1:
      raise ValueError(f"{names} mixes labels of both sources; the mask vector selects one.")
    out[lay.num_classes + sources.pop()] = 1.0
  return out


# ----------------------------------------------------------------------------------------------------
# Metric: target_acc (the paper's protocol: a classifier trained on real images judges translations)
# ----------------------------------------------------------------------------------------------------
def _judges(lay):
  """Per source: a function (translated images) -> the source's predicted labels (N, len(names))."""
  from translate.data import digits
  from translate.pretrained import classifiers
  judges = []
  for s in lay.sets:
    if s.source == "digits":
      params, _ = classifiers.cached(classifiers.ATTRIBUTES)
      columns = [digits.STYLE_ATTRIBUTES.index(n) for n in s.names]
      judges.append(lambda im, c=columns: (classifiers.predict_logits(
          classifiers.ATTRIBUTES, params, im)[:, c] > 0).astype(np.float32))
    elif s.source == "digits_class":
      d_params, _ = classifiers.cached(classifiers.DIGITS)
      judges.append(lambda im: np.eye(10, dtype=np.float32)[
          classifiers.predict(classifiers.DIGITS, d_params, im)])
    else:
      raise ValueError(f"target_acc needs a classifier of the {s.source!r} labels; the project has "
                       f"them for the embedded sources 'digits' and 'digits_class' only.")
  return judges


def target_accuracy(config, state) -> dict[str, float]:
  """Translate each test image to every single-label target (the reference's `create_labels`) and
  classify the result with a classifier trained on real images.

  target_acc: share of (image, target) pairs whose changed label the classifier reads as the target
  asks (for a categorical domain: the class); target_acc_<name> the same per target;
  target_acc_all: share whose every label of the target's source matches the target.
  eval.max_images caps the test images (0 = all).
  """
  lay = layout(config)
  judges = _judges(lay)
  targets = domain_targets(config, np.zeros((1, lay.label_dim), np.float32))
  names = [n for n, _ in targets]
  # the source of target t, and which of its labels it changes
  where = [(k, i) for k, s in enumerate(lay.sets) for i in range(len(s.names))]
  fn = jax.jit(lambda st, x, c: translate_all(config, st, x, c)[1])
  ds = create_dataset(config, "test", int(config.eval.batch_size), seed=config.seed,
                              train=False)
  cap = int(config.eval.max_images) or np.inf
  hits = np.zeros(len(names))
  all_hits = np.zeros(len(names))
  seen = 0
  for batch in ds.as_numpy_iterator():
    take = int(min(len(batch["image"]), cap - seen))
    if take <= 0:
      break
    images, labels = batch["image"][:take], batch["label"][:take]
    outputs = np.asarray(fn(state, images, labels))  # (T, B, H, W, C)
    wanted = [np.asarray(c) for _, c in domain_targets(
        config, complete_labels(config, state, images, labels))]
    for t, (k, i) in enumerate(where):
      lo, n = lay.offset(k), len(lay.sets[k].names)
      predicted = judges[k](outputs[t])
      target = wanted[t][:, lo:lo + n]
      hits[t] += np.sum(predicted[:, i] == target[:, i]) if lay.sets[k].kind == "binary" else (
          np.sum(np.argmax(predicted, -1) == i))
      all_hits[t] += np.sum(np.all(predicted == target, axis=-1))
    seen += take
  if not seen:
    raise ValueError("target_acc: the test split has no images.")
  out = {"target_acc": float(hits.sum() / (seen * len(names))),
         "target_acc_all": float(all_hits.sum() / (seen * len(names)))}
  out.update({f"target_acc_{n}": float(h / seen) for n, h in zip(names, hits)})
  return out


def _target_acc(config, method, state, frozen):
  del method, frozen
  return target_accuracy(config, state)


def _parse_target(config, text, count):
  del count
  if not text:
    raise ValueError(f"Give target labels, e.g. --target={label_names(config)[0]}.")
  return target_labels_from_names(config, text)


METHOD = base.Method(
    name="stargan", groups={"G": ("G",), "D": ("D",)}, build_networks=build_networks,
    create_state=create_state, train_step=train_step, sample_images=sample_images,
    data=DATA, input_keys=("image",), make_optimizers=make_optimizers, check_config=check_config,
    metrics={"target_acc": _target_acc},
    predicts={
        "to_all": base.Predict(
            lambda config, state, frozen, images: {"image": translate_all(config, state, images)[1]},
            (base.Input("images", domain="image"),),
            columns=lambda config, k: target_names(config),
            description="each image to every single-label target (labels read by D's classifier)"),
        "to_target": base.Predict(
            lambda config, state, frozen, images, target: {
                "image": translate(config, state, images, target)},
            (base.Input("images", domain="image"),
             base.Input("target", base.LABELS, parse=_parse_target)),
            description="images to target label vectors (B, label_dim), e.g. --target=Black_Hair,Male"),
    },
    default_predict="to_all")
