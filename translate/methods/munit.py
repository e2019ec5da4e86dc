"""MUNIT (Huang, Liu, Belongie & Kautz 2018, "Multimodal Unsupervised Image-to-Image Translation"):
one input, many outputs, by splitting an image into a domain-shared CONTENT code and a domain-specific
STYLE code.

Each domain has an AdaINGen (`networks.munit`): a content encoder E^c, a style encoder E^s and a decoder
G whose AdaIN parameters an MLP computes from the style code. A -> B translation is
x_ab = G_b(E^c_a(x_a), s_b) with s_b ~ N(0, I) (random styles) or s_b = E^s_b(x_b) (example-guided).
Each domain has a multi-scale LSGAN discriminator (MsImageDis).

One iteration = the reference `train.py` loop: `dis_update` then `gen_update`, each with fresh style
codes s_a, s_b ~ N(0, I) (B, style_dim):
  D:  gan_w * [D_a(x_ba) vs x_a + D_b(x_ab) vs x_b]    (LSGAN, summed over scales, x_ab detached)
  G:  gan_w * (adv_a + adv_b)                           x_ba = G_a(c_b, s_a) and x_ab = G_b(c_a, s_b)
    + recon_x_w * (|G_a(c_a, s'_a) - x_a| + ...b)      within-domain reconstruction, s'_a = E^s_a(x_a)
    + recon_s_w * (|E^s_a(x_ba) - s_a| + ...b)          latent reconstruction of the random style
    + recon_c_w * (|E^c_b(x_ab) - c_a| + ...b)          ... and of the content
    + recon_x_cyc_w * (|G_a(E^c_b(x_ab), s'_a) - x_a| + ...b)   style-augmented cycle (0 or 10)
    + vgg_w * (domain-invariant perceptual loss)        optional, mean((IN(f(x_ba)) - IN(f(x_b)))^2)
All reconstruction terms are L1 means. Reference weights: gan 1, recon_x 10, recon_s 1, recon_c 1,
recon_x_cyc 0 (edges2shoes/handbags) or 10 (summer2winter), vgg 0. Optimisers: Adam lr 1e-4, betas
(0.5, 0.999), L2 weight decay 1e-4 added to the gradient (torch's Adam `weight_decay`), lr x gamma (0.5)
every `step_size` iterations (the reference steps its StepLR at the start of every iteration, so step i
uses lr * gamma^((i + 1) // step_size)). Init: kaiming for the generators, N(0, 0.02) for D.

Where we depart from the reference, and why:
  * The perceptual loss uses torchvision's ImageNet VGG16 (translate.pretrained 'vgg16', relu5_3, the
    reference's layer) with torchvision's input normalisation; the reference converts to Caffe's BGR
    0-255 input for its Caffe VGG16, which is not available here.
  * `data.split_pairs=True` reads a folder of pix2pix side-by-side A|B images (edges2shoes,
    edges2handbags) as two UNPAIRED domains (left and right halves shuffled independently), what the
    reference does after splitting the files beforehand.

Predicts: AtoB / BtoA (a random style from a fixed key: `label_acc`, `fid`, `kid`),
random_styles (K styles per input, (K, B, H, W, C)), example_guided (the style of a B image),
style_interpolation (K steps between two random styles). Metric: `lpips_diversity` (MUNIT's protocol).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate import losses, pretrained, training
from translate.methods import base
from translate.networks import munit as nets

GROUPS = {"G": ("gen_a", "gen_b"), "D": ("dis_a", "dis_b")}
GEN, DIS = ("gen_a", "gen_b"), ("dis_a", "dis_b")


# ----------------------------------------------------------------------------------------------------
# Data: the engine's A/B images, or pix2pix side-by-side pairs read as two unpaired domains
# ----------------------------------------------------------------------------------------------------
def _split_pairs(config) -> bool:
  return config.data.get("split_pairs", False) and config.data.source == "paired_folder"


def _create_dataset(config, split, batch_size, *, seed=0, train=True, **kwargs):
  make = functools.partial(base.AB_IMAGES.create_dataset, config, split, batch_size, train=train,
                           **kwargs)
  if not (_split_pairs(config) and train):
    return make(seed=seed)
  import tensorflow as tf
  # Two independently shuffled passes over the A|B files: A from one, B from the other.
  pick = tf.autograph.experimental.do_not_convert(lambda a, b: {"A": a["A"], "B": b["B"]})
  return tf.data.Dataset.zip((make(seed=seed), make(seed=seed + 7919))).map(pick)


def _test_counts(config):
  counts, paired = base.AB_IMAGES.test_counts(config)
  if _split_pairs(config):  # the test halves stay pairs: element k of A and of B are one file
    return None, False
  return counts, paired


DATA = base.DataKind("munit_images", _create_dataset, base.AB_IMAGES.dataset_size,
                     base.AB_IMAGES.describe, _test_counts)


# ----------------------------------------------------------------------------------------------------
# Config checks, optimisers, networks
# ----------------------------------------------------------------------------------------------------
def check_config(config) -> dict:
  """Start-up checks (ValueError naming the field); nothing derived."""
  g, d, lo = config.model.gen, config.model.dis, config.loss
  if g.pad_type not in nets.PAD_TYPES or d.pad_type not in nets.PAD_TYPES:
    raise ValueError(f"model.gen.pad_type / model.dis.pad_type must be one of {nets.PAD_TYPES}, got "
                     f"{g.pad_type!r} / {d.pad_type!r}.")
  for field, value in (("gen.activ", g.activ), ("dis.activ", d.activ)):
    if value not in nets.ACTIVATIONS:
      raise ValueError(f"model.{field}={value!r}; expected one of {nets.ACTIVATIONS}.")
  if d.gan_type not in nets.GAN_TYPES:
    raise ValueError(f"model.dis.gan_type={d.gan_type!r}; expected one of {nets.GAN_TYPES}.")
  if d.norm not in ("none", "in", "ln"):
    raise ValueError(f"model.dis.norm={d.norm!r}; expected 'none', 'in' or 'ln'.")
  for name, value in lo.items():
    if value < 0:
      raise ValueError(f"loss.{name} must be >= 0, got {value}.")
  if config.optim.step_size < 1:
    raise ValueError(f"optim.step_size must be >= 1, got {config.optim.step_size}.")
  if config.data.source != "digits":
    from translate.data import input_pipeline
    input_pipeline.options_from_config(config.data)
  if config.data.get("split_pairs", False) and config.data.source != "paired_folder":
    raise ValueError("data.split_pairs reads side-by-side A|B files and needs "
                     f"data.source='paired_folder', got {config.data.source!r}.")
  return {}


def step_schedule(lr: float, step_size: int, gamma: float) -> optax.Schedule:
  """The reference StepLR, stepped at the start of each iteration: update i uses
  lr * gamma^((i + 1) // step_size)."""
  return lambda count: lr * gamma ** ((count + 1) // step_size)


def make_optimizers(config, steps_per_epoch: int, total_steps: int) -> dict:
  """Adam (b1, b2) with torch-style L2 weight decay before the moments, step-decayed lr, per group."""
  del steps_per_epoch, total_steps
  o = config.optim
  return {group: training.adam(step_schedule(o.get(f"lr_{group}", 0.0) or o.lr, o.step_size, o.gamma),
                               o.b1, o.b2, weight_decay=o.weight_decay)
          for group in GROUPS}


def channels(config) -> dict:
  return {"a": config.data.input_nc, "b": config.data.output_nc}


def gen_kwargs(config) -> dict:
  g = config.model.gen
  return dict(dim=g.dim, n_downsample=g.n_downsample, n_res=g.n_res, activ=g.activ,
              pad_type=g.pad_type, init_type=config.model.init, init_gain=0.02)


def dis_kwargs(config) -> dict:
  d = config.model.dis
  return dict(dim=d.dim, n_layer=d.n_layer, norm=d.norm, activ=d.activ, gan_type=d.gan_type,
              num_scales=d.num_scales, pad_type=d.pad_type, init_type="normal", init_gain=0.02)


def build_networks(config) -> dict:
  g, ch = config.model.gen, channels(config)
  out = {f"gen_{k}": nets.AdaINGen(input_dim=c, style_dim=g.style_dim, mlp_dim=g.mlp_dim,
                                   **gen_kwargs(config)) for k, c in ch.items()}
  out.update({f"dis_{k}": nets.MsImageDis(input_dim=c, **dis_kwargs(config)) for k, c in ch.items()})
  return out


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  a, b = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  inputs = {"gen_a": (a,), "gen_b": (b,), "dis_a": (a,), "dis_b": (b,)}
  params, collections = training.init_networks(build_networks(config), inputs, rng, METHOD.group_of)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


def frozen(config) -> dict:
  """{'vgg': VGG16} when the perceptual loss is on (loss.vgg_w > 0), else nothing."""
  if config.loss.vgg_w > 0:
    return {"vgg": pretrained.load("vgg16", config.model.vgg_path or None)}
  return {}


# ----------------------------------------------------------------------------------------------------
# Losses and the train step
# ----------------------------------------------------------------------------------------------------
def recon(x, y):
  """The reference `recon_criterion`: mean |x - y|."""
  return losses.l1_loss(x, y)


def instance_norm(f):
  mean = jnp.mean(f, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(f - mean), axis=(1, 2), keepdims=True)
  return (f - mean) * jax.lax.rsqrt(var + 1e-5)


def vgg_loss(vgg, images, target):
  """Domain-invariant perceptual loss: mean squared difference of the instance-normalised relu5_3
  features of `images` and `target`."""
  f = vgg(jnp.concatenate([images, target]), layers=("relu5_3",))["relu5_3"]
  n = images.shape[0]
  return jnp.mean(jnp.square(instance_norm(f[:n]) - instance_norm(f[n:])))


def run(config, params, name, method, *args):
  """Applies network `name` (an AdaINGen method 'encode', 'decode', ... or None = __call__)."""
  module = build_networks(config)[name]
  return module.apply({"params": params[name]}, *args,
                      **({"method": method} if method else {}))


def random_styles(config, key, n):
  """Style codes s ~ N(0, I): (n, style_dim)."""
  return jax.random.normal(key, (n, config.model.gen.style_dim), jnp.float32)


def dis_losses(config, d_params, x_ba, x_a, x_ab, x_b) -> dict:
  """The reference `dis_update`'s two terms (fakes detached by the caller)."""
  gan = config.model.dis.gan_type
  return {"loss_dis_a": nets.calc_dis_loss(run(config, d_params, "dis_a", None, x_ba),
                                           run(config, d_params, "dis_a", None, x_a), gan),
          "loss_dis_b": nets.calc_dis_loss(run(config, d_params, "dis_b", None, x_ab),
                                           run(config, d_params, "dis_b", None, x_b), gan)}


def gen_losses(config, g_params, d_params, x_a, x_b, s_a, s_b, frozen) -> dict:
  """Every term of the reference `gen_update` (unweighted), by its reference name."""
  lo, gan = config.loss, config.model.dis.gan_type
  c_a, s_a_prime = run(config, g_params, "gen_a", "encode", x_a)
  c_b, s_b_prime = run(config, g_params, "gen_b", "encode", x_b)
  x_a_recon = run(config, g_params, "gen_a", "decode", c_a, s_a_prime)
  x_b_recon = run(config, g_params, "gen_b", "decode", c_b, s_b_prime)
  x_ba = run(config, g_params, "gen_a", "decode", c_b, s_a)
  x_ab = run(config, g_params, "gen_b", "decode", c_a, s_b)
  c_b_recon, s_a_recon = run(config, g_params, "gen_a", "encode", x_ba)
  c_a_recon, s_b_recon = run(config, g_params, "gen_b", "encode", x_ab)
  m = {"loss_gen_recon_x_a": recon(x_a_recon, x_a), "loss_gen_recon_x_b": recon(x_b_recon, x_b),
       "loss_gen_recon_s_a": recon(s_a_recon, s_a), "loss_gen_recon_s_b": recon(s_b_recon, s_b),
       "loss_gen_recon_c_a": recon(c_a_recon, c_a), "loss_gen_recon_c_b": recon(c_b_recon, c_b)}
  if lo.recon_x_cyc_w > 0:
    x_aba = run(config, g_params, "gen_a", "decode", c_a_recon, s_a_prime)
    x_bab = run(config, g_params, "gen_b", "decode", c_b_recon, s_b_prime)
    m["loss_gen_cycrecon_x_a"] = recon(x_aba, x_a)
    m["loss_gen_cycrecon_x_b"] = recon(x_bab, x_b)
  m["loss_gen_adv_a"] = nets.calc_gen_loss(run(config, d_params, "dis_a", None, x_ba), gan)
  m["loss_gen_adv_b"] = nets.calc_gen_loss(run(config, d_params, "dis_b", None, x_ab), gan)
  if lo.vgg_w > 0:
    m["loss_gen_vgg_a"] = vgg_loss(frozen["vgg"], x_ba, x_b)
    m["loss_gen_vgg_b"] = vgg_loss(frozen["vgg"], x_ab, x_a)
  return m


WEIGHTS = {"adv": "gan_w", "recon_x": "recon_x_w", "recon_s": "recon_s_w", "recon_c": "recon_c_w",
           "cycrecon_x": "recon_x_cyc_w", "vgg": "vgg_w"}


def total(config, terms: dict, weights: dict = WEIGHTS) -> jax.Array:
  """The weighted sum of generator loss terms named loss_gen_<kind>_<domain>, each weighted by
  config.loss[weights[kind]] (UNIT passes its own `weights`)."""
  out = 0.0
  for name, value in terms.items():
    kind = name[len("loss_gen_"):].rsplit("_", 1)[0]
    out = out + config.loss[weights[kind]] * value
  return out


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  x_a, x_b = batch["A"], batch["B"]
  n = x_a.shape[0]
  rng, k_dis, k_gen = jax.random.split(state.rng, 3)
  gan_w = config.loss.gan_w

  # dis_update: fresh styles, fakes from the current generators (no gradient into them).
  ks = jax.random.split(k_dis)
  g = state.params["G"]
  c_a, _ = run(config, g, "gen_a", "encode", x_a)
  c_b, _ = run(config, g, "gen_b", "encode", x_b)
  x_ba = jax.lax.stop_gradient(run(config, g, "gen_a", "decode", c_b, random_styles(config, ks[0], n)))
  x_ab = jax.lax.stop_gradient(run(config, g, "gen_b", "decode", c_a, random_styles(config, ks[1], n)))

  def d_loss_fn(d_params):
    m = dis_losses(config, d_params, x_ba, x_a, x_ab, x_b)
    loss = gan_w * (m["loss_dis_a"] + m["loss_dis_b"])
    return loss, {**m, "loss_dis_total": loss}

  (_, d_metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
  d_params, d_opt = training.update_group(optimizers["D"], state, "D", d_grads)

  # gen_update against the updated discriminators, with new styles.
  kg = jax.random.split(k_gen)
  s_a, s_b = random_styles(config, kg[0], n), random_styles(config, kg[1], n)

  def g_loss_fn(g_params):
    m = gen_losses(config, g_params, d_params, x_a, x_b, s_a, s_b, frozen)
    loss = total(config, m)
    return loss, {**m, "loss_gen_total": loss}

  (_, g_metrics), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", g_grads)
  new_state = state.replace(step=state.step + 1, params={"G": g_params, "D": d_params},
                            opt_state={"G": g_opt, "D": d_opt}, rng=rng)
  return new_state, {**d_metrics, **g_metrics}


# ----------------------------------------------------------------------------------------------------
# Translation
# ----------------------------------------------------------------------------------------------------
def _domains(direction: str) -> tuple[str, str]:
  return ("gen_a", "gen_b") if direction == "AtoB" else ("gen_b", "gen_a")


def translate(config, state, images, styles, direction: str = "AtoB"):
  """images of the source domain (B, H, W, C) and style codes of the target (B, style_dim) ->
  translations (B, H, W, C_target) in [-1, 1]."""
  src, dst = _domains(direction)
  content = run(config, state.params["G"], src, "encode_content", images)
  return run(config, state.params["G"], dst, "decode", content, styles)


def encode_style(config, state, images, domain: str = "b"):
  """Style codes (B, style_dim) of images of `domain` ('a' or 'b')."""
  return run(config, state.params["G"], f"gen_{domain}", "encode_style", images)


def fixed_styles(config, n, direction):
  """The styles AtoB/BtoA use: N(0, I) from a fixed key (config.seed), one per batch position (the
  engine runs predicts image by image, `Predict.per_image`, so there every image gets the first)."""
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0 if direction == "AtoB" else 1)
  return random_styles(config, key, n)


def predict_direction(direction):
  def fn(config, state, frozen, images):
    del frozen
    styles = fixed_styles(config, images.shape[0], direction)
    return {"image": translate(config, state, images, styles, direction)}
  return fn


def predict_random_styles(config, state, frozen, images, rng, num_styles: int):
  """`num_styles` random styles per input (the same K styles for every input): (K, B, H, W, C)."""
  del frozen
  styles = random_styles(config, rng, num_styles)
  content = run(config, state.params["G"], "gen_a", "encode_content", images)
  decode = lambda s: run(config, state.params["G"], "gen_b", "decode", content,
                         jnp.broadcast_to(s, (images.shape[0], s.shape[-1])))
  return {"image": jax.lax.map(decode, styles)}


def predict_example_guided(config, state, frozen, images, style_images):
  """A -> B with the style of B images: style_images (1 or B, H', W', C_b), any size."""
  del frozen
  styles = encode_style(config, state, style_images, "b")
  styles = jnp.broadcast_to(styles, (images.shape[0], styles.shape[-1]))
  return {"image": translate(config, state, images, styles)}


def predict_style_interpolation(config, state, frozen, images, rng, num_styles: int):
  """K outputs per input along the straight line between two random styles s0 -> s1 (K >= 2)."""
  del frozen
  s0, s1 = random_styles(config, rng, 2)
  t = jnp.linspace(0.0, 1.0, max(num_styles, 2))[:num_styles, None]
  styles = (1 - t) * s0 + t * s1
  content = run(config, state.params["G"], "gen_a", "encode_content", images)
  decode = lambda s: run(config, state.params["G"], "gen_b", "decode", content,
                         jnp.broadcast_to(s, (images.shape[0], s.shape[-1])))
  return {"image": jax.lax.map(decode, styles)}


def sample_images(config, state, batch, frozen) -> dict:
  """The reference `sample()` columns: x_a, its reconstruction, x_ab with a random style and with the
  style of x_b; the same for B."""
  del frozen
  x_a, x_b = batch["A"], batch["B"]
  g = state.params["G"]
  c_a, s_a = run(config, g, "gen_a", "encode", x_a)
  c_b, s_b = run(config, g, "gen_b", "encode", x_b)
  n = x_a.shape[0]
  return {"x_a": x_a, "x_a_recon": run(config, g, "gen_a", "decode", c_a, s_a),
          "x_ab_random": run(config, g, "gen_b", "decode", c_a, fixed_styles(config, n, "AtoB")),
          "x_ab_style_of_b": run(config, g, "gen_b", "decode", c_a, s_b),
          "x_b": x_b, "x_b_recon": run(config, g, "gen_b", "decode", c_b, s_b),
          "x_ba_random": run(config, g, "gen_a", "decode", c_b, fixed_styles(config, n, "BtoA")),
          "x_ba_style_of_a": run(config, g, "gen_a", "decode", c_b, s_a)}


# ----------------------------------------------------------------------------------------------------
# Metric: lpips_diversity (MUNIT Sec. 5.1)
# ----------------------------------------------------------------------------------------------------
def diversity_of(config, method, state, frozen, predict: str) -> dict:
  """Mean LPIPS between the `eval.diversity_styles` outputs of each of the first `eval.diversity_images`
  test A images under predict `predict` (inputs images, rng, num_styles)."""
  from translate.metrics import diversity, lpips
  e = config.eval
  network = lpips.load_network(e.get("lpips_path") or None)
  fn = jax.jit(functools.partial(method.predicts[predict].fn, config, num_styles=e.diversity_styles))
  ds = method.data.create_dataset(config, "test", e.batch_size, seed=config.seed, train=False)
  scores, seen = [], 0
  for k, batch in enumerate(ds.as_numpy_iterator()):
    images = batch["A"][:e.diversity_images - seen]
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), k)
    samples = fn(state, frozen, images=images, rng=key)["image"]
    scores.append(diversity.pairwise_lpips(network, samples))
    seen += len(images)
    if seen >= e.diversity_images:
      break
  return {"lpips_diversity": float(np.mean(np.concatenate(scores)))}


def lpips_diversity(config, method, state, frozen) -> dict:
  return diversity_of(config, method, state, frozen, "random_styles")


def _style_columns(config, k):
  return [f"style {i + 1}" for i in range(k)]


_IMAGES_A = base.Input("images", domain="A")
_RNG = base.Input("rng", base.RNG)
_COUNT = base.Input("num_styles", base.COUNT)

METHOD = base.Method(
    name="munit", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=check_config,
    make_optimizers=make_optimizers, frozen=frozen, data=DATA,
    metrics={"lpips_diversity": lpips_diversity},
    predicts={
        "AtoB": base.Predict(predict_direction("AtoB"), (_IMAGES_A,),
                             description="A -> B with a random style per image (fixed key)"),
        "BtoA": base.Predict(predict_direction("BtoA"), (base.Input("images", domain="B"),),
                             description="B -> A with a random style per image (fixed key)"),
        "random_styles": base.Predict(predict_random_styles, (_IMAGES_A, _RNG, _COUNT),
                                      columns=_style_columns,
                                      description="A -> B under --num_styles random styles"),
        "example_guided": base.Predict(
            predict_example_guided, (_IMAGES_A, base.Input("style_images", domain="B")),
            description="A -> B in the style of a B image (--style_image)"),
        "style_interpolation": base.Predict(
            predict_style_interpolation, (_IMAGES_A, _RNG, _COUNT),
            columns=lambda config, k: [f"t={i / max(k - 1, 1):.2f}" for i in range(k)],
            description="A -> B along the line between two random styles"),
    })
