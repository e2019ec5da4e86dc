"""UNIT (Liu, Breuel & Kautz 2017, "Unsupervised Image-to-Image Translation Networks"): a shared latent
space, as in mingyuliutw/UNIT master (the 2018 PyTorch rewrite in MUNIT's code structure).

Each domain has a VAEGen (`networks.munit`): an encoder to hiddens h (the latent mean) and a decoder.
The VAE has a fixed unit variance: the trainer decodes h + n, n ~ N(0, I), and the KL term reduces to
mean(h^2). Both domains' encoders and decoders are trained to share one latent space; A -> B is
G_b(E_a(x_a)) (at inference without noise, as the reference `sample()`).

One iteration = the reference loop: `dis_update` then `gen_update`, each with fresh latent noise:
  D:  gan_w * [D_a(x_ba) vs x_a + D_b(x_ab) vs x_b]        x_ba = G_a(h_b + n_b), x_ab = G_b(h_a + n_a)
  G:  gan_w * (adv_a + adv_b)
    + recon_x_w * (|G_a(h_a + n_a) - x_a| + ...b)        within-domain reconstruction (L1 means)
    + recon_kl_w * (mean(h_a^2) + mean(h_b^2))            KL to N(0, I) with unit variance
    + recon_x_cyc_w * (|G_a(h_aba + n) - x_a| + ...b)     cycle: h_aba = E_b(x_ab)
    + recon_kl_cyc_w * (mean(h_aba^2) + mean(h_bab^2))
    + vgg_w * perceptual loss (optional, as MUNIT)
Reference weights: gan 1, recon_x 10, recon_kl 0.01, recon_x_cyc 10, recon_kl_cyc 0.01; optimiser,
schedule, init and discriminator as MUNIT (`translate.methods.munit`).

Predicts: AtoB / BtoA (no noise, deterministic) and random_samples (K decodings of h + n per input: the
only randomness UNIT has, for `lpips_diversity` beside MUNIT's).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from translate import training
from translate.methods import base, munit
from translate.networks import munit as nets

GROUPS = munit.GROUPS
recon = munit.recon


def build_networks(config) -> dict:
  ch = munit.channels(config)
  kw = munit.gen_kwargs(config)
  out = {f"gen_{k}": nets.VAEGen(input_dim=c, **kw) for k, c in ch.items()}
  out.update({f"dis_{k}": nets.MsImageDis(input_dim=c, **munit.dis_kwargs(config))
              for k, c in ch.items()})
  return out


def _run(config, params, name, method, *args):
  module = build_networks(config)[name]
  return module.apply({"params": params[name]}, *args, **({"method": method} if method else {}))


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  a, b = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  inputs = {"gen_a": (a,), "gen_b": (b,), "dis_a": (a,), "dis_b": (b,)}
  params, collections = training.init_networks(build_networks(config), inputs, rng, METHOD.group_of)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


def kl(h):
  """The reference `__compute_kl`: mean(h^2), the KL divergence to N(0, I) of N(h, I) up to constants
  and scale."""
  return jnp.mean(jnp.square(h.astype(jnp.float32)))


def noise_like(key, h):
  return jax.random.normal(key, h.shape, h.dtype)


def gen_losses(config, g_params, d_params, x_a, x_b, key, frozen) -> dict:
  """Every term of the reference `gen_update` (unweighted), by its reference name."""
  lo, gan = config.loss, config.model.dis.gan_type
  k = jax.random.split(key, 4)
  h_a = _run(config, g_params, "gen_a", "encode", x_a)
  h_b = _run(config, g_params, "gen_b", "encode", x_b)
  z_a, z_b = h_a + noise_like(k[0], h_a), h_b + noise_like(k[1], h_b)
  x_a_recon = _run(config, g_params, "gen_a", "decode", z_a)
  x_b_recon = _run(config, g_params, "gen_b", "decode", z_b)
  x_ba = _run(config, g_params, "gen_a", "decode", z_b)
  x_ab = _run(config, g_params, "gen_b", "decode", z_a)
  h_b_recon = _run(config, g_params, "gen_a", "encode", x_ba)
  h_a_recon = _run(config, g_params, "gen_b", "encode", x_ab)
  m = {"loss_gen_recon_x_a": recon(x_a_recon, x_a), "loss_gen_recon_x_b": recon(x_b_recon, x_b),
       "loss_gen_recon_kl_a": kl(h_a), "loss_gen_recon_kl_b": kl(h_b),
       "loss_gen_recon_kl_cyc_aba": kl(h_a_recon), "loss_gen_recon_kl_cyc_bab": kl(h_b_recon)}
  if lo.recon_x_cyc_w > 0:
    x_aba = _run(config, g_params, "gen_a", "decode", h_a_recon + noise_like(k[2], h_a_recon))
    x_bab = _run(config, g_params, "gen_b", "decode", h_b_recon + noise_like(k[3], h_b_recon))
    m["loss_gen_cyc_x_a"] = recon(x_aba, x_a)
    m["loss_gen_cyc_x_b"] = recon(x_bab, x_b)
  m["loss_gen_adv_a"] = nets.calc_gen_loss(_run(config, d_params, "dis_a", None, x_ba), gan)
  m["loss_gen_adv_b"] = nets.calc_gen_loss(_run(config, d_params, "dis_b", None, x_ab), gan)
  if lo.vgg_w > 0:
    m["loss_gen_vgg_a"] = munit.vgg_loss(frozen["vgg"], x_ba, x_b)
    m["loss_gen_vgg_b"] = munit.vgg_loss(frozen["vgg"], x_ab, x_a)
  return m


WEIGHTS = {"adv": "gan_w", "recon_x": "recon_x_w", "recon_kl": "recon_kl_w", "cyc_x": "recon_x_cyc_w",
           "recon_kl_cyc": "recon_kl_cyc_w", "vgg": "vgg_w"}


def total(config, terms: dict) -> jax.Array:
  return munit.total(config, terms, WEIGHTS)


def dis_losses(config, d_params, x_ba, x_a, x_ab, x_b) -> dict:
  gan = config.model.dis.gan_type
  return {"loss_dis_a": nets.calc_dis_loss(_run(config, d_params, "dis_a", None, x_ba),
                                           _run(config, d_params, "dis_a", None, x_a), gan),
          "loss_dis_b": nets.calc_dis_loss(_run(config, d_params, "dis_b", None, x_ab),
                                           _run(config, d_params, "dis_b", None, x_b), gan)}


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  x_a, x_b = batch["A"], batch["B"]
  rng, k_dis, k_gen = jax.random.split(state.rng, 3)
  gan_w = config.loss.gan_w

  # dis_update: x_ba = G_a(h_b + n_b), x_ab = G_b(h_a + n_a) from the current generators.
  g = state.params["G"]
  kd = jax.random.split(k_dis)
  h_a = _run(config, g, "gen_a", "encode", x_a)
  h_b = _run(config, g, "gen_b", "encode", x_b)
  x_ba = jax.lax.stop_gradient(_run(config, g, "gen_a", "decode", h_b + noise_like(kd[0], h_b)))
  x_ab = jax.lax.stop_gradient(_run(config, g, "gen_b", "decode", h_a + noise_like(kd[1], h_a)))

  def d_loss_fn(d_params):
    m = dis_losses(config, d_params, x_ba, x_a, x_ab, x_b)
    loss = gan_w * (m["loss_dis_a"] + m["loss_dis_b"])
    return loss, {**m, "loss_dis_total": loss}

  (_, d_metrics), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.params["D"])
  d_params, d_opt = training.update_group(optimizers["D"], state, "D", d_grads)

  def g_loss_fn(g_params):
    m = gen_losses(config, g_params, d_params, x_a, x_b, k_gen, frozen)
    loss = total(config, m)
    return loss, {**m, "loss_gen_total": loss}

  (_, g_metrics), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", g_grads)
  new_state = state.replace(step=state.step + 1, params={"G": g_params, "D": d_params},
                            opt_state={"G": g_opt, "D": d_opt}, rng=rng)
  return new_state, {**d_metrics, **g_metrics}


def translate(config, state, images, direction: str = "AtoB", key=None):
  """Source-domain images -> the other domain, decoding h (key None, the reference `sample()`) or
  h + N(0, I) noise drawn from `key`."""
  src, dst = ("gen_a", "gen_b") if direction == "AtoB" else ("gen_b", "gen_a")
  h = _run(config, state.params["G"], src, "encode", images)
  if key is not None:
    h = h + noise_like(key, h)
  return _run(config, state.params["G"], dst, "decode", h)


def predict_random_samples(config, state, frozen, images, rng, num_styles: int):
  """K decodings of h + n (n ~ N(0, I)) per A image: (K, B, H, W, C)."""
  del frozen
  return {"image": jax.lax.map(lambda k: translate(config, state, images, "AtoB", k),
                               jax.random.split(rng, num_styles))}


def sample_images(config, state, batch, frozen) -> dict:
  """The reference `sample()` columns: x_a, its reconstruction, x_ab; x_b, its reconstruction, x_ba."""
  del frozen
  g = state.params["G"]
  h_a = _run(config, g, "gen_a", "encode", batch["A"])
  h_b = _run(config, g, "gen_b", "encode", batch["B"])
  return {"x_a": batch["A"], "x_a_recon": _run(config, g, "gen_a", "decode", h_a),
          "x_ab": _run(config, g, "gen_b", "decode", h_a),
          "x_b": batch["B"], "x_b_recon": _run(config, g, "gen_b", "decode", h_b),
          "x_ba": _run(config, g, "gen_a", "decode", h_b)}


def lpips_diversity(config, method, state, frozen) -> dict:
  return munit.diversity_of(config, method, state, frozen, "random_samples")


METHOD = base.Method(
    name="unit", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, check_config=munit.check_config,
    make_optimizers=munit.make_optimizers, frozen=munit.frozen, data=munit.DATA,
    metrics={"lpips_diversity": lpips_diversity},
    predicts={
        "AtoB": base.Predict(lambda config, state, frozen, images: {
            "image": translate(config, state, images, "AtoB")}, (base.Input("images", domain="A"),),
            description="G_b(E_a(x)): A images -> B"),
        "BtoA": base.Predict(lambda config, state, frozen, images: {
            "image": translate(config, state, images, "BtoA")}, (base.Input("images", domain="B"),),
            description="G_a(E_b(x)): B images -> A"),
        "random_samples": base.Predict(
            predict_random_samples, (base.Input("images", domain="A"), base.Input("rng", base.RNG),
                                     base.Input("num_styles", base.COUNT)),
            description="A -> B decoding the latent with K noise draws"),
    })
