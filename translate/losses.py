"""Losses of the translation methods, as pure jnp functions.

`gan_loss` follows the reference `GANLoss` of pytorch-CycleGAN-and-pix2pix (lsgan / vanilla / wgangp)
and adds the hinge loss; `gradient_penalty` follows its `cal_gradient_penalty`. Every function returns a
float32 scalar (unless `reduction='none'`) and is safe under jit and grad.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
GAN_MODES = ("lsgan", "vanilla", "wgangp", "hinge")
REDUCTIONS = ("mean", "sum", "none")


def _upcast(x: Array) -> Array:
  """At least float32 (float64 inputs stay float64)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _reduce(values: Array, reduction: str) -> Array:
  if reduction == "mean":
    return jnp.mean(values)
  if reduction == "sum":
    return jnp.sum(values)
  if reduction == "none":
    return values
  raise ValueError(f"Unknown reduction {reduction!r}; expected one of {REDUCTIONS}.")


def l1_loss(pred: Array, target: Array, reduction: str = "mean") -> Array:
  """torch.nn.L1Loss: mean |pred - target|."""
  return _reduce(jnp.abs(_upcast(pred) - _upcast(target)), reduction)


def mse_loss(pred: Array, target: Array, reduction: str = "mean") -> Array:
  """torch.nn.MSELoss: mean (pred - target)^2."""
  return _reduce(jnp.square(_upcast(pred) - _upcast(target)), reduction)


def bce_with_logits(logits: Array, targets: Array | float, reduction: str = "mean") -> Array:
  """torch.nn.BCEWithLogitsLoss, in the overflow-free form
  max(x, 0) - x * t + log(1 + exp(-|x|)), exact for large |x| where log(sigmoid(x)) would saturate.
  `targets` may be an array of the same shape or a scalar (broadcast)."""
  x = _upcast(logits)
  t = jnp.broadcast_to(jnp.asarray(targets, x.dtype), x.shape)
  return _reduce(jnp.maximum(x, 0.0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x))), reduction)


def cross_entropy(logits: Array, labels: Array, reduction: str = "mean") -> Array:
  """torch.nn.CrossEntropyLoss over the last axis. `labels` are integer class ids with the shape of
  `logits` minus its last axis, or per-class probabilities (one-hot or soft) of the same shape as
  `logits`."""
  log_probs = jax.nn.log_softmax(_upcast(logits), axis=-1)
  if labels.shape == logits.shape and not jnp.issubdtype(labels.dtype, jnp.integer):
    per_example = -jnp.sum(_upcast(labels) * log_probs, axis=-1)
  else:
    if labels.shape != logits.shape[:-1]:
      raise ValueError(f"labels of shape {labels.shape} do not fit logits of shape {logits.shape}: "
                       "expected class ids of shape logits.shape[:-1] or probabilities of the same "
                       "shape as logits.")
    per_example = -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return _reduce(per_example, reduction)


def _gan_loss_single(pred: Array, target_is_real: bool, mode: str, for_discriminator: bool) -> Array:
  pred = _upcast(pred)
  if mode == "lsgan":  # MSE against the label 1 / 0
    return jnp.mean(jnp.square(pred - (1.0 if target_is_real else 0.0)))
  if mode == "vanilla":  # BCE with logits against the label 1 / 0 (D outputs logits)
    return bce_with_logits(pred, 1.0 if target_is_real else 0.0)
  if mode == "wgangp":  # the critic's score: raise it on real, lower it on fake
    return -jnp.mean(pred) if target_is_real else jnp.mean(pred)
  if mode == "hinge":
    if for_discriminator:
      margin = 1.0 - pred if target_is_real else 1.0 + pred
      return jnp.mean(jax.nn.relu(margin))
    if not target_is_real:
      raise ValueError("hinge loss for the generator (for_discriminator=False) is only defined for "
                       "target_is_real=True (the generator raises D's score of its fakes).")
    return -jnp.mean(pred)
  raise ValueError(f"Unknown GAN mode {mode!r}; expected one of {GAN_MODES}.")


def gan_loss(pred: Array | Sequence[Array], target_is_real: bool, mode: str,
             for_discriminator: bool = True) -> Array:
  """Adversarial loss of discriminator output(s) `pred` (raw logits / critic scores).

    lsgan:   mean((pred - label)^2), label 1 for real, 0 for fake (CycleGAN's default)
    vanilla: BCE with logits against 1 / 0 (pix2pix's default)
    wgangp:  -mean(pred) for real, +mean(pred) for fake (add `gradient_penalty` for the critic)
    hinge:   discriminator mean(relu(1 - pred)) for real, mean(relu(1 + pred)) for fake;
             generator (for_discriminator=False, target real) -mean(pred)

  `for_discriminator` only changes the hinge loss: for the other modes the generator uses the same
  formula with target_is_real=True, as the reference does. `pred` may be a list of outputs (a
  multi-scale discriminator); the result is then the mean of the per-scale losses.
  """
  if isinstance(pred, (list, tuple)):
    if not pred:
      raise ValueError("gan_loss got an empty list of discriminator outputs.")
    losses = [_gan_loss_single(p, target_is_real, mode, for_discriminator) for p in pred]
    return jnp.mean(jnp.stack(losses))
  return _gan_loss_single(pred, target_is_real, mode, for_discriminator)


def gradient_penalty(critic_fn: Callable[[Array], Array], real: Array, fake: Array, key: Array,
                     constant: float = 1.0, interpolation: str = "mixed") -> Array:
  """WGAN-GP gradient penalty as the reference `cal_gradient_penalty` (without its lambda_gp factor:
  multiply the result by it, 10 in WGAN-GP).

  interpolation: 'mixed' (default) evaluates the critic at alpha * real + (1 - alpha) * fake with one
  alpha ~ U(0, 1) per sample; 'real' / 'fake' at the real / fake batch itself.
  The gradient of sum(critic_fn(x)) w.r.t. x is flattened per sample, and the penalty is
  mean_b((||g_b + 1e-16||_2 - constant)^2); the 1e-16, as in the reference, keeps the norm (and its
  gradient) finite when a sample's gradient is exactly zero. `critic_fn` may return a list of outputs
  (multi-scale critic); they are summed. The result is differentiable w.r.t. whatever `critic_fn`
  closes over (double backprop), so it can be part of the critic's loss.
  """
  real = _upcast(real)
  fake = _upcast(fake)
  if interpolation == "mixed":
    alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), jnp.float32)
    points = alpha * real + (1.0 - alpha) * fake
  elif interpolation == "real":
    points = real
  elif interpolation == "fake":
    points = fake
  else:
    raise ValueError(f"Unknown interpolation {interpolation!r}; expected 'mixed', 'real' or 'fake'.")

  def total_score(x):
    out = critic_fn(x)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return sum(jnp.sum(_upcast(o)) for o in outs)

  grads = jax.grad(total_score)(points).reshape(real.shape[0], -1)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads + 1e-16), axis=1))
  return jnp.mean(jnp.square(norms - constant))
