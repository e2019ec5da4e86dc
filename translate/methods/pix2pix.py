"""pix2pix (Isola, Zhu, Zhou & Efros 2017): paired translation with a conditional GAN and L1.

G (U-Net by default) maps A to B; D (70x70 PatchGAN) judges (A, B) pairs concatenated on channels, A
first. One step = the reference's `optimize_parameters`: one forward of G, the D step on the detached
fake, then the G step on GAN(D_updated(A, fake)) + lambda_L1 * L1(fake, B). The generator's forward
runs once (as in torch, so its batch-norm statistics move once per step) and its gradient comes from a
VJP of that forward.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from translate import losses, networks, training
from translate.methods import base


def build_networks(config) -> dict:
  m, d = config.model, config.data
  return {
      "G": networks.define_G(m.netG, output_nc=d.output_nc, ngf=m.ngf, norm=m.norm,
                             use_dropout=not m.no_dropout, init_type=m.init_type,
                             init_gain=m.init_gain),
      "D": networks.define_D(m.netD, ndf=m.ndf, n_layers_D=m.n_layers_D, norm=m.norm,
                             init_type=m.init_type, init_gain=m.init_gain, num_D=m.num_D),
  }


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  nets = build_networks(config)
  a, b = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  k_g, k_d, k_rng = jax.random.split(rng, 3)
  g_params, g_cols = training.init_net(nets["G"], k_g, a)
  d_params, d_cols = training.init_net(nets["D"], k_d, jnp.concatenate([a, b], -1))
  params = {"G": {"G": g_params}, "D": {"D": d_params}}
  return training.new_state(params, {"G": g_cols, "D": d_cols}, optimizers, k_rng)


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  del frozen
  nets = build_networks(config)
  mode, lambda_L1 = config.model.gan_mode, config.loss.lambda_L1
  real_A, real_B = batch["A"], batch["B"]
  rng, k_drop = jax.random.split(state.rng)
  stats = ("batch_stats",)

  def forward_G(g_params):
    return training.run_net(nets["G"], g_params["G"], state.collections["G"], real_A, train=True,
                            update=stats, rng=k_drop)

  fake_B, g_vjp, g_cols = jax.vjp(forward_G, state.params["G"], has_aux=True)

  def D(d_params, d_cols, image_B):
    return training.run_net(nets["D"], d_params["D"], d_cols, jnp.concatenate([real_A, image_B], -1),
                            train=True, update=stats)

  def d_loss_fn(d_params):
    pred_fake, d_cols = D(d_params, state.collections["D"], jax.lax.stop_gradient(fake_B))
    pred_real, d_cols = D(d_params, d_cols, real_B)
    loss_fake = losses.gan_loss(pred_fake, False, mode)
    loss_real = losses.gan_loss(pred_real, True, mode)
    return 0.5 * (loss_fake + loss_real), ({"loss_D_fake": loss_fake, "loss_D_real": loss_real},
                                           d_cols)

  (loss_D, (d_metrics, d_cols)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.params["D"])
  d_params, d_opt = training.apply_updates(optimizers["D"], state.params["D"], state.opt_state["D"],
                                           d_grads)

  def g_loss_from_fake(fake):  # the G loss as a function of G's output, with the updated D
    pred_fake, cols = D(d_params, d_cols, fake)
    loss_gan = losses.gan_loss(pred_fake, True, mode, for_discriminator=False)
    loss_l1 = losses.l1_loss(fake, real_B) * lambda_L1
    return loss_gan + loss_l1, ({"loss_G_GAN": loss_gan, "loss_G_L1": loss_l1}, cols)

  (loss_G, (g_metrics, d_cols)), grad_fake = jax.value_and_grad(g_loss_from_fake, has_aux=True)(
      fake_B)
  (g_grads,) = g_vjp(grad_fake)
  g_params, g_opt = training.apply_updates(optimizers["G"], state.params["G"], state.opt_state["G"],
                                           g_grads)
  metrics = {**d_metrics, **g_metrics, "loss_D": loss_D, "loss_G": loss_G}
  new_state = state.replace(
      step=state.step + 1, params={"G": g_params, "D": d_params},
      collections={"G": g_cols, "D": d_cols}, opt_state={"G": g_opt, "D": d_opt}, rng=rng)
  return new_state, metrics


def translate(config, state, images):
  """G(A). Like the reference test script without `--eval`, batch norm uses the statistics of the
  given batch and dropout stays on (pix2pix's noise); `config.eval_mode` switches both off. (One
  generator, A -> B: set config.data.direction='BtoA' to train the other way.)"""
  train = not config.eval_mode
  y, _ = training.run_net(build_networks(config)["G"], state.params["G"]["G"],
                          state.collections["G"], images, train=train,
                          rng=jax.random.PRNGKey(0) if train else None)
  return y


def sample_images(config, state, batch, frozen) -> dict:
  del frozen
  return {"real_A": batch["A"], "fake_B": translate(config, state, batch["A"]), "real_B": batch["B"]}


METHOD = base.Method(
    name="pix2pix", groups={"G": ("G",), "D": ("D",)}, build_networks=build_networks,
    create_state=create_state, train_step=train_step, sample_images=sample_images,
    predicts={"AtoB": base.Predict(
        lambda config, state, frozen, images: {"image": translate(config, state, images)},
        (base.Input("images", domain="A"),), description="G: A images -> B")})
