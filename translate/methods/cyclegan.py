"""CycleGAN (Zhu, Park, Isola & Efros 2017): unpaired translation with cycle consistency.

Two generators (G_A: A -> B, G_B: B -> A) share one Adam, two discriminators (D_A judges domain B, D_B
judges domain A) share another, as in the reference `CycleGANModel`. One step = the reference's
`optimize_parameters`: the generators' step on the GAN + cycle + identity losses (D frozen), then the
discriminators' step on real images and on fakes drawn from a 50-image pool.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from translate import losses, networks, training
from translate.methods import base

GROUPS = {"G": ("G_A", "G_B"), "D": ("D_A", "D_B")}


def check_config(config) -> dict:
  """Start-up checks (called by the engine before anything runs); nothing derived."""
  d = config.data
  if config.loss.lambda_identity > 0 and d.input_nc != d.output_nc:
    raise ValueError(
        f"The identity loss (loss.lambda_identity={config.loss.lambda_identity}) feeds B images to "
        f"G_A, so it needs input_nc == output_nc (got {d.input_nc} and {d.output_nc}); set "
        f"--config.loss.lambda_identity=0.")
  return {}


def build_networks(config) -> dict:
  m, d = config.model, config.data
  g = dict(ngf=m.ngf, norm=m.norm, use_dropout=not m.no_dropout, init_type=m.init_type,
           init_gain=m.init_gain)
  dk = dict(ndf=m.ndf, n_layers_D=m.n_layers_D, norm=m.norm, init_type=m.init_type,
            init_gain=m.init_gain, num_D=m.num_D)
  return {
      "G_A": networks.define_G(m.netG, output_nc=d.output_nc, **g),
      "G_B": networks.define_G(m.netG, output_nc=d.input_nc, **g),
      "D_A": networks.define_D(m.netD, **dk),
      "D_B": networks.define_D(m.netD, **dk),
  }


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  a, b = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  inputs = {"G_A": (a,), "G_B": (b,), "D_A": (b,), "D_B": (a,)}
  params, collections = training.init_networks(build_networks(config), inputs, rng, METHOD.group_of)
  pool = config.loss.pool_size
  extra = {"pool_A": training.pool_init(pool, a.shape[1:]),  # fakes of domain A, for D_B
           "pool_B": training.pool_init(pool, b.shape[1:])}
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1), extra)


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  del frozen
  nets = build_networks(config)
  lo, mode = config.loss, config.model.gan_mode
  real_A, real_B = batch["A"], batch["B"]
  rng, *keys = jax.random.split(state.rng, 9)
  train_stats = ("batch_stats",)

  def g_loss_fn(g_params):
    cols = dict(state.collections)

    def G(name, x, key):
      y, cols[name] = training.run_net(nets[name], g_params[name], cols[name], x, train=True,
                                        update=train_stats, rng=key)
      return y

    def D(name, x):  # frozen D (no gradient to its params), still in train mode as in the reference
      y, cols[name] = training.run_net(nets[name], state.params["D"][name], cols[name], x,
                                        train=True, update=train_stats)
      return y

    fake_B = G("G_A", real_A, keys[0])
    rec_A = G("G_B", fake_B, keys[1])
    fake_A = G("G_B", real_B, keys[2])
    rec_B = G("G_A", fake_A, keys[3])
    m = {}
    if lo.lambda_identity > 0:  # G_A should be the identity on B images, G_B on A images
      m["loss_idt_A"] = losses.l1_loss(G("G_A", real_B, keys[4]), real_B) * lo.lambda_B * lo.lambda_identity
      m["loss_idt_B"] = losses.l1_loss(G("G_B", real_A, keys[5]), real_A) * lo.lambda_A * lo.lambda_identity
    m["loss_G_A"] = losses.gan_loss(D("D_A", fake_B), True, mode, for_discriminator=False)
    m["loss_G_B"] = losses.gan_loss(D("D_B", fake_A), True, mode, for_discriminator=False)
    m["loss_cycle_A"] = losses.l1_loss(rec_A, real_A) * lo.lambda_A
    m["loss_cycle_B"] = losses.l1_loss(rec_B, real_B) * lo.lambda_B
    loss = sum(m.values())
    return loss, (m, cols, fake_A, fake_B)

  (loss_G, (metrics, cols, fake_A, fake_B)), g_grads = jax.value_and_grad(
      g_loss_fn, has_aux=True)(state.params["G"])
  g_params, g_opt = training.apply_updates(optimizers["G"], state.params["G"], state.opt_state["G"],
                                           g_grads)

  pool_B, fake_B_for_D = training.pool_query(state.extra["pool_B"], fake_B, keys[6], lo.pool_size)
  pool_A, fake_A_for_D = training.pool_query(state.extra["pool_A"], fake_A, keys[7], lo.pool_size)

  def d_loss_fn(d_params):
    d_cols = dict(cols)

    def D(name, x):
      y, d_cols[name] = training.run_net(nets[name], d_params[name], d_cols[name], x, train=True,
                                          update=train_stats)
      return y

    m = {}
    for d_name, real, fake in (("D_A", real_B, fake_B_for_D), ("D_B", real_A, fake_A_for_D)):
      loss_real = losses.gan_loss(D(d_name, real), True, mode)
      loss_fake = losses.gan_loss(D(d_name, jax.lax.stop_gradient(fake)), False, mode)
      m[f"loss_{d_name}"] = 0.5 * (loss_real + loss_fake)
    return sum(m.values()), (m, d_cols)

  (loss_D, (d_metrics, cols)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.params["D"])
  d_params, d_opt = training.apply_updates(optimizers["D"], state.params["D"], state.opt_state["D"],
                                           d_grads)
  metrics = {**metrics, **d_metrics, "loss_G": loss_G, "loss_D": loss_D}
  new_state = state.replace(
      step=state.step + 1, params={"G": g_params, "D": d_params}, collections=cols,
      opt_state={"G": g_opt, "D": d_opt}, extra={"pool_A": pool_A, "pool_B": pool_B}, rng=rng)
  return new_state, metrics


def generate(config, state, name: str, images, rng=None):
  """Runs generator `name` for inference. As the reference test script does without `--eval`, batch
  norm uses the statistics of the given batch unless `config.eval_mode` (then running statistics, and no
  dropout); running statistics are never updated here."""
  net = build_networks(config)[name]
  train = not config.eval_mode
  rng = rng if rng is not None else jax.random.PRNGKey(0)
  y, _ = training.run_net(net, state.params["G"][name], state.collections[name], images,
                          train=train, rng=rng if train else None)
  return y


def sample_images(config, state, batch, frozen) -> dict:
  """The reference visuals, in its order: real_A, fake_B, rec_A, real_B, fake_A, rec_B."""
  del frozen
  fake_B = generate(config, state, "G_A", batch["A"])
  fake_A = generate(config, state, "G_B", batch["B"])
  return {"real_A": batch["A"], "fake_B": fake_B, "rec_A": generate(config, state, "G_B", fake_B),
          "real_B": batch["B"], "fake_A": fake_A, "rec_B": generate(config, state, "G_A", fake_A)}


METHOD = base.Method(
    name="cyclegan", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=check_config,
    predicts={  # each generator maps its direction's input domain to the other domain
        "AtoB": base.Predict(lambda config, state, frozen, images: {
            "image": generate(config, state, "G_A", images)}, (base.Input("images", domain="A"),),
            description="G_A: domain A images -> domain B"),
        "BtoA": base.Predict(lambda config, state, frozen, images: {
            "image": generate(config, state, "G_B", images)}, (base.Input("images", domain="B"),),
            description="G_B: domain B images -> domain A")})
