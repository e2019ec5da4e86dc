"""Losses: GAN losses against the reference GANLoss (golden scalars), the hinge loss and the gradient
penalty against values computed by hand, and the elementwise losses against numpy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import nchw_to_nhwc
from translate import losses


@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "wgangp"])
@pytest.mark.parametrize("real", [True, False])
def test_gan_loss_matches_reference(golden, mode, real):
  g = golden("gan_loss.npz")
  pred = jnp.asarray(nchw_to_nhwc(g["pred"]))
  expected = float(g[f"loss_{mode}_{'real' if real else 'fake'}"])
  got = float(losses.gan_loss(pred, real, mode))
  assert abs(got - expected) <= 1e-5 * max(1.0, abs(expected))
  # The generator side uses the same formula for these modes.
  assert float(losses.gan_loss(pred, real, mode, for_discriminator=False)) == pytest.approx(got)


def test_hinge_by_hand():
  pred = jnp.array([[-2.0, -0.5], [0.25, 3.0]])
  # D, real: relu(1 - pred) = [3, 1.5, 0.75, 0] -> mean 1.3125
  assert float(losses.gan_loss(pred, True, "hinge")) == pytest.approx(1.3125)
  # D, fake: relu(1 + pred) = [0, 0.5, 1.25, 4] -> mean 1.4375
  assert float(losses.gan_loss(pred, False, "hinge")) == pytest.approx(1.4375)
  # G: -mean(pred) = -0.1875
  assert float(losses.gan_loss(pred, True, "hinge", for_discriminator=False)) == pytest.approx(-0.1875)
  with pytest.raises(ValueError, match="target_is_real=True"):
    losses.gan_loss(pred, False, "hinge", for_discriminator=False)


def test_gan_loss_list_is_mean_over_scales():
  a = jnp.full((2, 4, 4, 1), 0.5)
  b = jnp.full((2, 2, 2, 1), -1.0)
  # lsgan real: (0.5 - 1)^2 = 0.25 and (-1 - 1)^2 = 4 -> mean 2.125
  assert float(losses.gan_loss([a, b], True, "lsgan")) == pytest.approx(2.125)
  assert float(losses.gan_loss((a,), True, "lsgan")) == pytest.approx(0.25)
  with pytest.raises(ValueError, match="empty"):
    losses.gan_loss([], True, "lsgan")


def test_gan_loss_unknown_mode():
  with pytest.raises(ValueError, match="wgan"):
    losses.gan_loss(jnp.zeros((1, 2, 2, 1)), True, "wgan")


def test_vanilla_is_numerically_stable():
  pred = jnp.array([-200.0, 200.0])
  # BCE(logit=200, target 0) = 200, BCE(-200, target 0) = ~0; a naive log(sigmoid) gives inf.
  assert float(losses.gan_loss(pred, False, "vanilla")) == pytest.approx(100.0)
  assert float(losses.gan_loss(pred, True, "vanilla")) == pytest.approx(100.0)
  grad = jax.grad(lambda p: losses.gan_loss(p, True, "vanilla"))(pred)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad, [-0.5, 0.0], atol=1e-6)


def test_bce_cross_entropy_l1_mse_against_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 5)).astype(np.float32) * 3
  t = rng.uniform(size=(4, 5)).astype(np.float32)
  p = 1 / (1 + np.exp(-x.astype(np.float64)))
  bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
  np.testing.assert_allclose(losses.bce_with_logits(x, t), bce.mean(), rtol=1e-5)
  np.testing.assert_allclose(losses.bce_with_logits(x, t, reduction="sum"), bce.sum(), rtol=1e-5)
  np.testing.assert_allclose(losses.bce_with_logits(x, t, reduction="none"), bce, rtol=1e-5, atol=1e-6)

  labels = np.array([0, 4, 2, 2])
  log_softmax = x - np.log(np.exp(x.astype(np.float64)).sum(-1, keepdims=True))
  ce = -log_softmax[np.arange(4), labels]
  np.testing.assert_allclose(losses.cross_entropy(x, labels), ce.mean(), rtol=1e-5)
  one_hot = np.eye(5, dtype=np.float32)[labels]
  np.testing.assert_allclose(losses.cross_entropy(x, one_hot), ce.mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="do not fit"):
    losses.cross_entropy(x, labels[:3])

  y = rng.normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_allclose(losses.l1_loss(x, y), np.abs(x - y).mean(), rtol=1e-6)
  np.testing.assert_allclose(losses.mse_loss(x, y), ((x - y) ** 2).mean(), rtol=1e-6)
  with pytest.raises(ValueError, match="reduction"):
    losses.l1_loss(x, y, reduction="avg")


def _linear_critic(w):
  # score_b = sum(w * x_b): its gradient is w for every sample, whatever the interpolation point
  return lambda x: jnp.sum(x * w, axis=(1, 2, 3))


def test_gradient_penalty_linear_critic_is_analytic():
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(1, 4, 4, 3)).astype(np.float32) * 0.3)
  real = jnp.asarray(rng.uniform(-1, 1, size=(3, 4, 4, 3)).astype(np.float32))
  fake = jnp.asarray(rng.uniform(-1, 1, size=(3, 4, 4, 3)).astype(np.float32))
  norm_w = float(np.linalg.norm(np.asarray(w, np.float64)))
  for constant in (1.0, 0.5):
    gp = losses.gradient_penalty(_linear_critic(w), real, fake, jax.random.PRNGKey(0), constant)
    assert float(gp) == pytest.approx((norm_w - constant) ** 2, rel=1e-5)

  # Double backprop: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
  grad_w = jax.grad(lambda w_: losses.gradient_penalty(
      _linear_critic(w_), real, fake, jax.random.PRNGKey(0)))(w)
  np.testing.assert_allclose(grad_w, 2 * (norm_w - 1) * np.asarray(w) / norm_w, rtol=1e-4, atol=1e-7)


def test_gradient_penalty_quadratic_critic_uses_the_interpolates():
  # score_b = 0.5 * ||x_b||^2 has gradient x_b, so the per-sample norm is ||x_b||.
  critic = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))
  rng = np.random.default_rng(2)
  real = jnp.asarray(rng.uniform(-1, 1, size=(4, 3, 3, 2)).astype(np.float32))
  fake = jnp.asarray(rng.uniform(-1, 1, size=(4, 3, 3, 2)).astype(np.float32))
  norms_real = np.linalg.norm(np.asarray(real).reshape(4, -1), axis=1)
  norms_fake = np.linalg.norm(np.asarray(fake).reshape(4, -1), axis=1)
  key = jax.random.PRNGKey(3)
  assert float(losses.gradient_penalty(critic, real, fake, key, interpolation="real")) == \
      pytest.approx(np.mean((norms_real - 1) ** 2), rel=1e-5)
  assert float(losses.gradient_penalty(critic, real, fake, key, interpolation="fake")) == \
      pytest.approx(np.mean((norms_fake - 1) ** 2), rel=1e-5)
  # real == fake: every interpolate is the real sample, whatever alpha is.
  assert float(losses.gradient_penalty(critic, real, real, key)) == \
      pytest.approx(np.mean((norms_real - 1) ** 2), rel=1e-5)
  with pytest.raises(ValueError, match="interpolation"):
    losses.gradient_penalty(critic, real, fake, key, interpolation="random")


def test_gradient_penalty_one_alpha_per_sample():
  # With fake = 0 the interpolate of sample b is alpha_b * real_b. The quadratic critic over the whole
  # image has gradient norm alpha_b * ||1|| = alpha_b * sqrt(32); a critic that sees one pixel has norm
  # alpha_b (same key, same alphas). One alpha per sample makes the first exactly 32x the second with
  # constant 0; an alpha per pixel would not.
  real = jnp.ones((5, 4, 4, 2))
  zeros = jnp.zeros_like(real)
  key = jax.random.PRNGKey(7)
  whole = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))
  first_pixel = lambda x: 0.5 * x[:, 0, 0, 0] ** 2
  gp_whole = float(losses.gradient_penalty(whole, real, zeros, key, constant=0.0))
  gp_pixel = float(losses.gradient_penalty(first_pixel, real, zeros, key, constant=0.0))
  assert 0.0 < gp_pixel < 1.0
  assert gp_whole == pytest.approx(32.0 * gp_pixel, rel=1e-5)
  # ... and the samples get different alphas: a critic that only looks at sample b gives alpha_b^2 / 5.
  alphas_sq = []
  for b in range(2):
    only_b = lambda x, b=b: 0.5 * x[:, 0, 0, 0] ** 2 * (jnp.arange(5) == b)
    alphas_sq.append(5 * float(losses.gradient_penalty(only_b, real, zeros, key, constant=0.0)))
  assert abs(alphas_sq[0] - alphas_sq[1]) > 1e-6
  assert sum(alphas_sq) <= 5 * gp_pixel + 1e-6


def test_gradient_penalty_multiscale_and_zero_gradient():
  real = jnp.ones((2, 4, 4, 1))
  fake = jnp.zeros((2, 4, 4, 1))
  key = jax.random.PRNGKey(0)
  w = 0.1
  multi = lambda x: [w * x, w * x[:, ::2, ::2]]  # outputs summed: gradient w everywhere, 2w on 4 px
  expected_norm = np.sqrt(12 * w ** 2 + 4 * (2 * w) ** 2)
  assert float(losses.gradient_penalty(multi, real, fake, key)) == pytest.approx(
      (expected_norm - 1) ** 2, rel=1e-5)
  # A critic that ignores its input: the 1e-16 keeps the norm and its gradient finite.
  gp, grad = jax.value_and_grad(lambda s: losses.gradient_penalty(
      lambda x: s * jnp.zeros(x.shape[0]), real, fake, key))(1.0)
  assert float(gp) == pytest.approx(1.0)
  assert np.isfinite(float(grad))
