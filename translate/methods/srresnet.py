"""SRResNet (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", Sec. 2.2 and 3.2): the SRGAN generator trained alone on the pixel-wise MSE.

    l_MSE = 1 / (r^2 W H) sum_{x, y} (I^HR_{x, y} - G(I^LR)_{x, y})^2

with Adam (lr 1e-4, b1 0.9), the paper's SRResNet recipe. One network, G (`networks.srgan.Generator`:
B residual blocks, log2(scale) sub-pixel x2 stages). Its trained workdir warm-starts SRGAN
(`configs/srgan.py`, `--config.init_from=DIR`).

Data: the SR data kind (`translate.data.sr`): 'A' = LR image, 'B' = HR image, both NHWC RGB in
[-1, 1]; LR made by MATLAB's bicubic imresize of the HR image (the SR benchmarks' convention).
Where we depart from the paper / the reference port (sgrvinod's tutorial, whose networks we match):
  * G reads LR images in [-1, 1] (the project's convention); the paper feeds [0, 1], the reference
    ImageNet-normalised images. The HR targets are in [-1, 1] as in both.
  * G ends in tanh as the reference (the paper's G has no output activation).

Evaluation (the SR tables' protocol): the engine's built-in `psnr_y` / `ssim_y` (the BT.601 Y
channel, 16 + 65.481 R + 128.553 G + 24.966 B of [0, 1] RGB, 8-bit quantised, `eval.crop_border` =
the scale: that many pixels cropped on each side) and `lpips` on whole test images, and `bicubic`: the
same three metrics for MATLAB bicubic upscaling of the same LR images (`psnr_y_bicubic`, ...).

Inference: the predict 'AtoB' upscales whole images of any size; `upscale` (and the command line
`python -m translate.upscale --tile=512`) splits large images into overlapping tiles and gives the
untiled result (each tile's border of `receptive_radius` LR pixels is computed and dropped).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from translate import training
from translate.data import sr as sr_data
from translate.methods import base
from translate.networks import srgan as nets

GROUPS = {"G": ("G",)}
DATA = sr_data.data_kind()


def check_config(config) -> dict:
  """Start-up checks; nothing derived."""
  o = sr_data.options_from_config(config)
  if config.model.scaling_factor != o.scale:
    raise ValueError(f"model.scaling_factor={config.model.scaling_factor} differs from data.scale="
                     f"{o.scale}.")
  return {}


def generator(config) -> nets.Generator:
  m = config.model
  return nets.Generator(large_kernel_size=m.large_kernel_size, small_kernel_size=m.small_kernel_size,
                        n_channels=m.n_channels, n_blocks=m.n_blocks,
                        scaling_factor=m.scaling_factor)


def build_networks(config) -> dict:
  return {"G": generator(config)}


def adam_schedule(config, total_steps: int) -> optax.Schedule:
  """optim.lr, multiplied by optim.lr_decay_factor from step optim.lr_decay_step on (SRGAN: 1e-4, then
  1e-5 for the second half of its 2 x 10^5 steps); constant when lr_decay_step is 0. The step is a
  config value, not a fraction of the run, so a resumed run keeps its schedule."""
  del total_steps
  o = config.optim
  if not o.lr_decay_step:
    return optax.constant_schedule(o.lr)
  return optax.piecewise_constant_schedule(o.lr, {int(o.lr_decay_step): o.lr_decay_factor})


def make_optimizers(config, steps_per_epoch: int, total_steps: int, groups=tuple(GROUPS)) -> dict:
  """Adam (b1 optim.b1 = 0.9, b2 0.999) per group on `adam_schedule`."""
  del steps_per_epoch
  schedule = adam_schedule(config, total_steps)
  return {g: training.adam(schedule, config.optim.b1, config.optim.b2) for g in groups}


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  lr = jnp.zeros_like(example_batch["A"][:1])
  params, collections = training.init_networks(build_networks(config), {"G": (lr,)}, rng,
                                               METHOD.group_of)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


def mse_loss(sr, hr):
  """l_MSE: the mean squared error over all pixels and channels (images in [-1, 1])."""
  return jnp.mean(jnp.square(sr - hr))


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  del frozen
  G = build_networks(config)["G"]
  lr, hr = batch["A"], batch["B"]

  def loss_fn(g_params):
    sr, cols = training.run_net(G, g_params["G"], state.collections["G"], lr, train=True,
                                update=("batch_stats",))
    loss = mse_loss(sr, hr)
    return loss, cols

  (loss, cols), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", grads)
  new_state = state.replace(step=state.step + 1, params={"G": g_params}, collections={"G": cols},
                            opt_state={"G": g_opt})
  return new_state, {"loss_G": loss, "loss_MSE": loss}


# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------
def super_resolve(config, state, lr):
  """G(LR) with BN's running statistics: (B, h, w, 3) in [-1, 1] -> (B, h*s, w*s, 3) in [-1, 1]."""
  sr, _ = training.run_net(generator(config), state.params["G"]["G"], state.collections["G"], lr,
                           train=False)
  return sr


def bicubic_upscale(config, lr):
  """MATLAB bicubic upscaling by the model's scale (the baseline), (B, h, w, C) in [-1, 1]."""
  s = config.model.scaling_factor
  return sr_data.imresize(jnp.asarray(lr, jnp.float32), output_shape=(lr.shape[1] * s,
                                                                      lr.shape[2] * s))


def sample_images(config, state, batch, frozen) -> dict:
  """bicubic | SR | HR."""
  del frozen
  return {"bicubic": jnp.clip(bicubic_upscale(config, batch["A"]), -1, 1),
          "SR": super_resolve(config, state, batch["A"]), "HR": batch["B"]}


def receptive_radius(config) -> int:
  """LR pixels each side that G's output at a pixel depends on (its zero-padded convs' reach):
  tiles with this much context give exactly the untiled result."""
  m = config.model
  kl, ks, s = m.large_kernel_size // 2, m.small_kernel_size // 2, m.scaling_factor
  stages = int(math.log2(s))
  r = kl + 2 * ks * m.n_blocks + ks  # conv_in, residual blocks, conv_mid
  r += sum(ks / 2 ** i for i in range(stages))  # the sub-pixel convs, at 1x, 2x, ... resolution
  r += kl / s  # conv_out at HR
  return int(math.ceil(r))


def upscale(fn, image: np.ndarray, scale: int, tile: int = 0, overlap: int = 0) -> np.ndarray:
  """Upscales one (h, w, C) image with `fn` ((1, h', w', C) -> (1, h'*scale, w'*scale, C)), in
  tiles of at most `tile` x `tile` LR pixels (0 = whole), each read with `overlap` LR pixels of
  context on every side where the image has them (dropped from the output). With overlap >=
  `receptive_radius` the result equals the untiled one (up to float summation order)."""
  h, w = image.shape[:2]
  if tile <= 0 or (h <= tile and w <= tile):
    return np.asarray(fn(image[None]))[0]
  if overlap < 0:
    raise ValueError(f"overlap must be >= 0, got {overlap}.")
  out = None
  for y0 in range(0, h, tile):
    for x0 in range(0, w, tile):
      y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
      ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
      yb, xb = min(y1 + overlap, h), min(x1 + overlap, w)
      part = np.asarray(fn(image[None, ya:yb, xa:xb]))[0]
      if out is None:
        out = np.zeros((h * scale, w * scale, part.shape[-1]), part.dtype)
      out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = part[
          (y0 - ya) * scale:(y1 - ya) * scale, (x0 - xa) * scale:(x1 - xa) * scale]
  return out


# ----------------------------------------------------------------------------------------------------
# The bicubic baseline: the engine's metrics with bicubic upscaling as the translation
# ----------------------------------------------------------------------------------------------------
BASELINE_METRICS = ("psnr_y", "ssim_y", "lpips")


def bicubic_metrics(config, method, state, frozen) -> dict:
  """psnr_y_bicubic, ssim_y_bicubic, lpips_bicubic (and their _std): MATLAB bicubic upscaling of the
  same test LR images, measured exactly as the model's psnr_y / ssim_y / lpips."""
  from translate import evaluation
  predict = base.Predict(lambda config, state, frozen, images: {
      "image": bicubic_upscale(config, images)}, (base.Input("images", domain="A"),))
  baseline = dataclasses.replace(method, predicts={"AtoB": predict}, default_predict="AtoB")
  results = evaluation.evaluate_metrics(config, baseline, state, BASELINE_METRICS, frozen=frozen)
  return {k.replace("_std", "") + "_bicubic" + ("_std" if k.endswith("_std") else ""): v
          for k, v in results.items()}


PREDICTS = {"AtoB": base.Predict(
    lambda config, state, frozen, images: {"image": super_resolve(config, state, images)},
    (base.Input("images", domain="A"),), description="G: LR images -> SR images (x scale)")}

METHOD = base.Method(
    name="srresnet", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=check_config,
    make_optimizers=make_optimizers, data=DATA, metrics={"bicubic": bicubic_metrics},
    predicts=PREDICTS)
