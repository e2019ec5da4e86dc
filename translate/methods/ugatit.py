"""U-GAT-IT (Kim, Kim, Kang & Lee 2020): unpaired translation with CAM attention and AdaLIN.

Two generators (genA2B, genB2A) share one Adam; four discriminators, a global (deep) and a local
(shallow) one per domain (disGA/disLA judge domain A, disGB/disLB domain B), share another, as in
znxlwm/UGATIT-pytorch. One step = one iteration of the reference's `train()`:

  D step  LSGAN (MSE) on the discriminators' patch outputs AND on their CAM logits, real -> 1 and
          fake -> 0, for the global and the local discriminator of each domain, times adv_weight.
  G step  with the updated discriminators: adversarial LSGAN on outputs and CAM logits (fake -> 1),
          cycle L1 (cycle_weight), identity L1 (identity_weight: genB2A(A) ~ A, genA2B(B) ~ B) and
          the generators' CAM loss (cam_weight): BCE with logits, 1 for an image from the other
          domain (genA2B's logit on A), 0 for the identity pass (genA2B's logit on B).
  then    every AdaLIN/ILN rho clipped to [0, 1] (the reference's RhoClipper).

Optimisers as the reference: Adam(lr, betas=(0.5, 0.999), weight_decay) in torch's sense, i.e. an L2
term added to the gradient before the moments (`training.adam`), not AdamW; with `lr_policy='linear'`
(its `decay_flag`) the lr drops by lr / (T/2) at every step after the first half of T steps.

The discriminators are in train mode whenever the reference's are (the whole `train()` loop): every
forward pass runs one spectral-norm power iteration and stores the new u, v, so one step advances each
discriminator's vectors three times (real and fake in the D step, fake in the G step), in that order.
The generators have no running state (instance/layer norms only), so their forward pass in the D step
equals the one in the G step; it is run once and differentiated with a VJP.

Initial AdaLIN rho: 0.9, as in the authors' code, not 1 as the paper's text says for the decoder's
residual blocks. The released results were trained with 0.9, and starting at exactly 1 puts rho on
the clip boundary, where a gradient towards layer norm is the only way it ever moves; we follow the
code because parity with the reference's weights and training matters more here.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from translate import layers, losses, training
from translate.methods import base
from translate.networks import ugatit as ugatit_nets

GROUPS = {"G": ("genA2B", "genB2A"), "D": ("disGA", "disGB", "disLA", "disLB")}
DIRECTIONS = {"AtoB": "genA2B", "BtoA": "genB2A"}
_SPECTRAL = (layers.SPECTRAL,)


def check_config(config) -> dict:
  """Start-up checks (called by the engine before anything runs); nothing derived."""
  d, m, lo = config.data, config.model, config.loss
  if lo.identity_weight > 0 and d.input_nc != d.output_nc:
    raise ValueError(
        f"The identity and CAM losses feed A images to genB2A (and B to genA2B), so they need "
        f"data.input_nc == data.output_nc (got {d.input_nc} and {d.output_nc}); set "
        f"--config.loss.identity_weight=0 and --config.loss.cam_weight=0 for different channel counts.")
  if lo.cam_weight > 0 and d.input_nc != d.output_nc:
    raise ValueError(
        f"The generators' CAM loss runs genB2A on A images, which needs data.input_nc == "
        f"data.output_nc (got {d.input_nc} and {d.output_nc}); set --config.loss.cam_weight=0.")
  size = d.crop_size
  if not m.light and size % 4:
    raise ValueError(f"data.crop_size={size} (the networks' img_size) must be divisible by 4 for the "
                     f"full generator (model.light=False).")
  for name, n_layers in (("n_layers_global", m.n_layers_global), ("n_layers_local", m.n_layers_local)):
    if n_layers < 3:
      raise ValueError(f"model.{name} must be >= 3, got {n_layers}.")
    needed = 3 * 2 ** (n_layers - 2)
    if size < needed:
      raise ValueError(
          f"model.{name}={n_layers} needs images of at least {needed} px (its reflection padding "
          f"runs out below that), but img_size (data.crop_size) is {size}; use a smaller "
          f"model.{name} or larger images.")
  if config.optim.lr_policy not in ("linear", "constant"):
    raise ValueError(f"optim.lr_policy={config.optim.lr_policy!r}; expected 'linear' (the "
                     f"reference's decay_flag) or 'constant'.")
  return {}


def build_networks(config) -> dict:
  m, d = config.model, config.data
  g = dict(ngf=m.ngf, n_blocks=m.n_res, img_size=d.crop_size, light=m.light, init_type=m.init_type,
           init_gain=m.init_gain)
  dk = dict(ndf=m.ndf, init_type=m.init_type, init_gain=m.init_gain)
  return {
      "genA2B": ugatit_nets.Generator(output_nc=d.output_nc, **g),
      "genB2A": ugatit_nets.Generator(output_nc=d.input_nc, **g),
      "disGA": ugatit_nets.Discriminator(n_layers=m.n_layers_global, **dk),
      "disGB": ugatit_nets.Discriminator(n_layers=m.n_layers_global, **dk),
      "disLA": ugatit_nets.Discriminator(n_layers=m.n_layers_local, **dk),
      "disLB": ugatit_nets.Discriminator(n_layers=m.n_layers_local, **dk),
  }


def lr_schedule(lr: float, total_steps: int, decay: bool) -> optax.Schedule:
  """The reference's schedule: `lr` for the first T // 2 iterations; after that, before each step,
  lr -= lr0 / (T // 2), so the update with 0-based count t uses lr0 * (1 - (t + 1 - T//2) / (T//2))."""
  half = total_steps // 2
  if not decay or half < 1:
    return optax.constant_schedule(lr)

  def schedule(count):
    fraction = (2 * half - count - 1) / half
    return lr * jnp.clip(fraction, 0.0, 1.0)

  return schedule


def make_optimizers(config, steps_per_epoch: int, total_steps: int) -> dict:
  """Adam with torch's L2 weight decay for G and D, the reference's iteration-based decay over the
  run's `total_steps` (num_train_steps, or the epochs' steps)."""
  del steps_per_epoch
  o = config.optim
  schedule = lr_schedule(o.lr, total_steps, o.lr_policy == "linear")
  return {group: training.adam(schedule, o.b1, o.b2, weight_decay=o.weight_decay)
          for group in GROUPS}


def create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState:
  del frozen
  a, b = jnp.zeros_like(example_batch["A"][:1]), jnp.zeros_like(example_batch["B"][:1])
  size = config.data.crop_size
  if not config.model.light and (a.shape[1:3] != (size, size) or b.shape[1:3] != (size, size)):
    raise ValueError(
        f"The full U-GAT-IT generator (model.light=False) is built for img_size = data.crop_size = "
        f"{size} and takes only {size}x{size} images, but the data gives {a.shape[1]}x{a.shape[2]} (A) "
        f"and {b.shape[1]}x{b.shape[2]} (B); use a preprocess that crops to crop_size, or model.light.")
  inputs = {"genA2B": (a,), "genB2A": (b,), "disGA": (a,), "disLA": (a,), "disGB": (b,),
            "disLB": (b,)}
  params, collections = training.init_networks(build_networks(config), inputs, rng, METHOD.group_of)
  return training.new_state(params, collections, optimizers, jax.random.fold_in(rng, 1))


def _lsgan(pred, real: bool):
  return losses.mse_loss(pred, jnp.ones_like(pred) if real else jnp.zeros_like(pred))


def train_step(config, optimizers, state: training.TrainState, batch, frozen):
  del frozen
  nets = build_networks(config)
  lo = config.loss
  real_A, real_B = batch["A"], batch["B"]

  def generators(g_params):
    """Every generator pass of the reference's G step: (images, CAM logits)."""
    def G(name, x):
      (y, cam_logit, _), _ = training.run_net(nets[name], g_params[name], state.collections[name], x)
      return y, cam_logit

    fake_A2B, cam_A2B = G("genA2B", real_A)
    fake_B2A, cam_B2A = G("genB2A", real_B)
    fake_A2B2A, _ = G("genB2A", fake_A2B)
    fake_B2A2B, _ = G("genA2B", fake_B2A)
    fake_A2A, cam_A2A = G("genB2A", real_A)
    fake_B2B, cam_B2B = G("genA2B", real_B)
    return dict(fake_A2B=fake_A2B, fake_B2A=fake_B2A, fake_A2B2A=fake_A2B2A, fake_B2A2B=fake_B2A2B,
                fake_A2A=fake_A2A, fake_B2B=fake_B2B, cam_A2B=cam_A2B, cam_B2A=cam_B2A,
                cam_A2A=cam_A2A, cam_B2B=cam_B2B)  # the reference's variable names

  g_out, g_vjp = jax.vjp(generators, state.params["G"])
  fake_A2B = jax.lax.stop_gradient(g_out["fake_A2B"])
  fake_B2A = jax.lax.stop_gradient(g_out["fake_B2A"])

  def make_D(d_params, cols):
    """Discriminator forward in train mode: one power iteration per call, vectors kept in `cols`."""
    def D(name, x):
      (out, cam_logit, _), cols[name] = training.run_net(
          nets[name], d_params[name], cols[name], x, update=_SPECTRAL, update_stats=True)
      return out, cam_logit
    return D

  def d_loss_fn(d_params):
    cols = dict(state.collections)
    D = make_D(d_params, cols)
    # The reference's order: all four on real images, then all four on fakes.
    real = {n: D(n, real_A if n.endswith("A") else real_B) for n in ("disGA", "disLA", "disGB", "disLB")}
    fake = {n: D(n, fake_B2A if n.endswith("A") else fake_A2B)
            for n in ("disGA", "disLA", "disGB", "disLB")}
    m = {}
    for domain in "AB":
      total = 0.0
      for scale in "GL":
        name = f"dis{scale}{domain}"
        (r_out, r_cam), (f_out, f_cam) = real[name], fake[name]
        total += _lsgan(r_out, True) + _lsgan(f_out, False)  # D_ad_loss
        total += _lsgan(r_cam, True) + _lsgan(f_cam, False)  # D_ad_cam_loss
      m[f"loss_D_{domain}"] = lo.adv_weight * total
    return m["loss_D_A"] + m["loss_D_B"], (m, cols)

  (loss_D, (d_metrics, cols)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.params["D"])
  d_params, d_opt = training.apply_updates(optimizers["D"], state.params["D"], state.opt_state["D"],
                                           d_grads)

  def g_loss_fn(out):
    """The G loss as a function of the generators' outputs (the updated discriminators fixed)."""
    g_cols = dict(cols)
    D = make_D(d_params, g_cols)
    fakes = {"A": out["fake_B2A"], "B": out["fake_A2B"]}
    adv = {n: D(n, fakes[n[-1]]) for n in ("disGA", "disLA", "disGB", "disLB")}
    m = {}
    for domain, other in (("A", "B"), ("B", "A")):
      # G_loss_A in the reference: the losses of images *ending* in domain A (genB2A's side).
      ad = sum(_lsgan(adv[f"dis{s}{domain}"][0], True) + _lsgan(adv[f"dis{s}{domain}"][1], True)
               for s in "GL")
      real = real_A if domain == "A" else real_B
      recon = losses.l1_loss(out[f"fake_{domain}2{other}2{domain}"], real)
      identity = losses.l1_loss(out[f"fake_{domain}2{domain}"], real)
      cam = (losses.bce_with_logits(out[f"cam_{other}2{domain}"], 1.0)
             + losses.bce_with_logits(out[f"cam_{domain}2{domain}"], 0.0))
      m[f"loss_G_adv_{domain}"] = lo.adv_weight * ad
      m[f"loss_cycle_{domain}"] = lo.cycle_weight * recon
      m[f"loss_identity_{domain}"] = lo.identity_weight * identity
      m[f"loss_cam_{domain}"] = lo.cam_weight * cam
    return sum(m.values()), (m, g_cols)

  (loss_G, (g_metrics, cols)), out_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_out)
  (g_grads,) = g_vjp(out_grads)
  g_params, g_opt = training.apply_updates(optimizers["G"], state.params["G"], state.opt_state["G"],
                                           g_grads)
  g_params = training.clip_rho(g_params)
  metrics = {**d_metrics, **g_metrics, "loss_G": loss_G, "loss_D": loss_D}
  new_state = state.replace(
      step=state.step + 1, params={"G": g_params, "D": d_params}, collections=cols,
      opt_state={"G": g_opt, "D": d_opt}, rng=state.rng)
  return new_state, metrics


# ----------------------------------------------------------------------------------------------------
# Inference and visualisation
# ----------------------------------------------------------------------------------------------------
def generate(config, state, name: str, images):
  """Generator `name` (the networks have no train/eval difference): (images, heatmap (B, h, w, 1))."""
  net = build_networks(config)[name]
  y, _, heatmap = net.apply({"params": state.params["G"][name], **state.collections[name]}, images)
  return y, heatmap


def discriminator_heatmap(config, state, name: str, images):
  """A discriminator's CAM heatmap in eval mode (stored spectral-norm vectors, no update)."""
  net = build_networks(config)[name]
  _, _, heatmap = net.apply({"params": state.params["D"][name], **state.collections[name]}, images)
  return heatmap


def _interp(x, points):
  xs, ys = zip(*points)
  return jnp.interp(x, jnp.asarray(xs, jnp.float32), jnp.asarray(ys, jnp.float32))


# matplotlib's 'jet' (the same map as OpenCV's COLORMAP_JET that the reference uses), as
# piecewise-linear (position, value) control points per channel.
_JET = (((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
        ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
        ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)))


def heatmap_image(heatmap, size: tuple[int, int]):
  """(B, h, w, 1) heatmap -> (B, H, W, 3) jet-coloured image in [-1, 1], as the reference's `cam()`:
  each map scaled to [0, 1] by its own min and max, resized bilinearly to the image size, coloured."""
  x = heatmap.astype(jnp.float32)
  lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
  x = x - lo
  hi = jnp.max(x, axis=(1, 2, 3), keepdims=True)
  x = x / jnp.where(hi > 0, hi, 1.0)
  x = jax.image.resize(x, (x.shape[0], *size, 1), method="linear")[..., 0]
  rgb = jnp.stack([_interp(x, channel) for channel in _JET], axis=-1)
  return rgb * 2.0 - 1.0


def translate_with_attention(config, state, images, direction: str = "AtoB") -> dict:
  """{'image': translated images, 'attention': the generator's CAM attention as a jet-coloured image
  of the input's size in [-1, 1]} (what `translate --attention` writes)."""
  y, heatmap = generate(config, state, DIRECTIONS[direction], images)
  return {"image": y, "attention": heatmap_image(heatmap, images.shape[1:3])}


def sample_images(config, state, batch, frozen) -> dict:
  """Per direction, the paper's Figure-2 layout: real, generator attention, fake, the target domain's
  global and local discriminator attention on the fake, and the cycle reconstruction."""
  del frozen
  out = {}
  for src, dst, forward, backward in (("A", "B", "genA2B", "genB2A"), ("B", "A", "genB2A", "genA2B")):
    real = batch[src]
    size = real.shape[1:3]
    fake, heat = generate(config, state, forward, real)
    rec, _ = generate(config, state, backward, fake)
    out[f"real_{src}"] = real
    out[f"attention_G_{src}2{dst}"] = heatmap_image(heat, size)
    out[f"fake_{dst}"] = fake
    for scale in "GL":
      heat_d = discriminator_heatmap(config, state, f"dis{scale}{dst}", fake)
      out[f"attention_dis{scale}{dst}"] = heatmap_image(heat_d, size)
    out[f"rec_{src}"] = rec
  return out


def _direction(direction: str) -> base.Predict:
  domain = direction[0]
  return base.Predict(
      lambda config, state, frozen, images: translate_with_attention(config, state, images, direction),
      (base.Input("images", domain=domain),), extras=("attention",),
      description=f"{DIRECTIONS[direction]}: domain {domain} images -> the other domain, with the "
                  f"generator's attention map")


METHOD = base.Method(
    name="ugatit", groups=GROUPS, build_networks=build_networks, create_state=create_state,
    train_step=train_step, sample_images=sample_images, make_optimizers=make_optimizers,
    check_config=check_config, predicts={d: _direction(d) for d in DIRECTIONS})
