"""The metric API (translate.metrics.base), FID/KID (fid.py) and PSNR/SSIM (image_quality.py) against
independent computations written here: an eigendecomposition FID, a loop MMD, scipy.ndimage SSIM."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from translate.metrics import base, fid, image_quality


# ----------------------------------------------------------------------------------------------------
# FID
# ----------------------------------------------------------------------------------------------------
def reference_fid(x, y):
  """FID from raw features, with Tr((S1 S2)^1/2) = sum of sqrt of the eigenvalues of the symmetric
  S1^1/2 S2 S1^1/2 (no sqrtm of a non-symmetric matrix)."""
  x, y = x.astype(np.float64), y.astype(np.float64)
  mu1, mu2 = x.mean(0), y.mean(0)
  s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  w, v = np.linalg.eigh(s1)
  root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  eig = np.linalg.eigvalsh(root1 @ s2 @ root1)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(eig, 0, None))))


def correlated_features(rng, n, d, shift=0.0, scale=1.0):
  mixing = rng.normal(size=(d, d)) / np.sqrt(d)
  return (rng.normal(size=(n, d)) @ mixing * scale + shift + 1.0).astype(np.float32)


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.0), (0.0, 1.5)])
def test_fid_matches_reference(shift, scale):
  rng = np.random.default_rng(0)
  x = correlated_features(rng, 600, 48)
  y = correlated_features(np.random.default_rng(1), 500, 48, shift, scale)
  want = reference_fid(x, y)
  metric = fid.FID(dim=48)
  state = metric.empty()
  update = jax.jit(metric.update)  # the state is a pytree: updates run under jit
  for start in range(0, 600, 128):  # uneven batches; the real side arrives in other batches
    state = update(state, x[start:start + 128], y[start:start + 128] if start < 500 else y[:0])
  got = metric.compute(state).value
  assert got == pytest.approx(want, rel=1e-3)
  direct = fid.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
  assert direct == pytest.approx(want, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_and_merge_is_exact():
  rng = np.random.default_rng(2)
  x = correlated_features(rng, 300, 16) * 50  # large offsets: raw sums of x x^T would lose digits
  metric = fid.FID(dim=16)
  a = metric.update(metric.empty(), x[:100], x)
  b = metric.update(metric.empty(), x[100:], None)
  merged = metric.merge(a, b)
  mean, cov = merged[0].mean_and_covariance()
  np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-5)
  np.testing.assert_allclose(cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-4, atol=1e-2)
  assert abs(metric.compute(merged).value) < 1e-2 * np.trace(cov) / 16


def test_fid_with_fewer_samples_than_dimensions_stays_finite():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 0.5
  value = fid.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
  assert np.isfinite(value) and value > 0
  assert value == pytest.approx(reference_fid(x, y), rel=1e-3)


# ----------------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------------
def loop_mmd2(x, y):
  m, d = len(x), x.shape[1]
  k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2 * xy


def test_mmd_matches_loop():
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.2
  assert fid.mmd2_unbiased(x, y) == pytest.approx(loop_mmd2(x, y), rel=1e-10)


def test_kid_is_unbiased_and_detects_a_shift():
  d, n = 16, 200
  draws = []
  for seed in range(12):  # two samples of one distribution, fresh each draw
    rng = np.random.default_rng(100 + seed)
    draws.append(fid.kernel_inception_distance(rng.normal(size=(n, d)), rng.normal(size=(n, d)),
                                               num_subsets=10, subset_size=100, seed=seed).value)
  draws = np.asarray(draws)
  assert abs(draws.mean()) < 3 * draws.std() / np.sqrt(len(draws))
  # the biased V-statistic (diagonal terms kept) is clearly positive on the same data
  rng = np.random.default_rng(100)
  x, y = rng.normal(size=(100, d)), rng.normal(size=(100, d))
  kxx, kyy = fid.polynomial_kernel(x, x), fid.polynomial_kernel(y, y)
  biased = kxx.mean() + kyy.mean() - 2 * fid.polynomial_kernel(x, y).mean()
  assert biased > 10 * draws.std()
  # a shifted distribution: far above zero, in the metric's x100 form with a std
  metric = fid.KID(num_subsets=20, subset_size=100)
  state = metric.update(metric.empty(), rng.normal(size=(150, d)) + 0.5, None)
  state = metric.update(state, None, rng.normal(size=(150, d)))
  result = metric.compute(state)
  assert result.value > 5 * result.std > 0
  raw = fid.kernel_inception_distance(state[0].array(), state[1].array(), 20, 100, seed=0)
  assert result.value == pytest.approx(100 * raw.value)
  assert result.as_dict("kid") == {"kid": result.value, "kid_std": result.std}


def test_kid_caps_subset_size_and_refuses_tiny_sets():
  rng = np.random.default_rng(5)
  r = fid.kernel_inception_distance(rng.normal(size=(30, 4)), rng.normal(size=(20, 4)), 5, 1000)
  assert np.isfinite(r.value) and r.std >= 0
  with pytest.raises(ValueError, match="at least 2"):
    fid.kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))


# ----------------------------------------------------------------------------------------------------
# Mean / accuracy / target accuracy
# ----------------------------------------------------------------------------------------------------
def test_mean_state_streams_and_masks():
  values = np.array([1.0, 2.0, 4.0, 7.0])
  s = base.MeanState.empty().add(values[:2]).merge(base.MeanState.empty().add(values[2:]))
  r = s.result()
  assert r.value == pytest.approx(values.mean()) and r.std == pytest.approx(values.std())
  masked = jax.jit(lambda s, v, m: s.add(v, m))(base.MeanState.empty(), jnp.array([1.0, np.inf]),
                                                jnp.array([1.0, 0.0]))
  assert masked.result().value == 1.0
  with pytest.raises(ValueError, match="No items"):
    base.MeanState.empty().result()


def test_accuracy_single_and_multi_label():
  logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.0]])
  labels = np.array([0, 1, 1, 0])
  assert base.Accuracy()(logits, labels).value == pytest.approx(0.75)
  assert base.Accuracy()(np.array([0, 1, 2, 0]), labels).value == pytest.approx(0.75)
  # StarGAN-style attributes: each (image, attribute) counts once
  attr_logits = np.array([[1.0, -1.0, 2.0], [-0.5, 0.5, -3.0]])
  targets = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
  assert base.Accuracy()(attr_logits, targets).value == pytest.approx(5 / 6)
  masked = base.Accuracy().update(base.Accuracy().empty(), attr_logits, targets, np.array([1.0, 0.0]))
  assert masked.result().value == pytest.approx(2 / 3)


def test_target_accuracy_with_a_classifier_callable():
  # a "classifier" that reads the class off the mean brightness; translations asked for targets
  classifier = lambda images: np.round(images.mean(axis=(1, 2, 3)) * 9).astype(np.int32)  # noqa: E731
  targets = np.array([0, 3, 5, 9, 2, 7])
  translations = np.ones((6, 4, 4, 1)) * (targets / 9.0)[:, None, None, None]
  translations[5] = 0.0  # one translation failed to reach its target
  batches = [(translations[:4], targets[:4]), (translations[4:], targets[4:])]
  assert base.target_accuracy(classifier, batches).value == pytest.approx(5 / 6)


# ----------------------------------------------------------------------------------------------------
# PSNR / SSIM
# ----------------------------------------------------------------------------------------------------
def reference_ssim(a, b, max_value=255.0):
  """Wang et al.'s SSIM with scipy.ndimage (float64): gaussian_filter(sigma 1.5, truncate 3.5 -> an
  11-tap window), 'valid' positions only (5 px cut from every side), mean over channels."""
  c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
  out = []
  for ch in range(a.shape[-1]):
    x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
    f = lambda z: scipy.ndimage.gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    out.append((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())
  return float(np.mean(out))


def test_psnr_identical_and_constant_shift():
  rng = np.random.default_rng(6)
  img = rng.integers(20, 200, (2, 16, 16, 3)).astype(np.float32)
  assert np.all(np.isinf(image_quality.psnr(img, img)))
  for shift in (1.0, 5.0, 17.0):
    want = 10 * np.log10(255.0 ** 2 / shift ** 2)
    np.testing.assert_allclose(image_quality.psnr(img + shift, img), want, rtol=1e-5)
  # Y channel: a grey shift s in RGB moves Y by s * (65.481 + 128.553 + 24.966) / 255
  dy = 10.0 * sum(image_quality.BT601_Y) / 255
  np.testing.assert_allclose(image_quality.psnr(img + 10.0, img, y_channel=True),
                             10 * np.log10(255.0 ** 2 / dy ** 2), rtol=1e-5)
  # crop_border ignores a damaged frame
  damaged = img.copy()
  damaged[:, :2] = 0
  damaged[:, -2:] = 0
  damaged[:, :, :2] = 0
  damaged[:, :, -2:] = 0
  assert np.all(np.isinf(image_quality.psnr(damaged, img, crop_border=2)))
  assert np.all(np.isfinite(image_quality.psnr(damaged, img, crop_border=1)))


def test_y_channel_is_bt601():
  rgb = np.array([[[[255.0, 255.0, 255.0]], [[0.0, 0.0, 0.0]], [[255.0, 0.0, 0.0]]]])
  y = np.asarray(image_quality.to_y_channel(rgb))[0, :, 0, 0]
  np.testing.assert_allclose(y, [235.0, 16.0, 16 + 65.481], atol=1e-3)


def test_ssim_matches_scipy_reference():
  rng = np.random.default_rng(7)
  clean = scipy.ndimage.gaussian_filter(rng.uniform(0, 255, (2, 40, 36, 3)), (0, 2, 2, 0))
  noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255)
  got = np.asarray(image_quality.ssim(noisy, clean))
  want = [reference_ssim(noisy[i], clean[i]) for i in range(2)]
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert 0.2 < got.min() < got.max() < 0.99
  np.testing.assert_allclose(image_quality.ssim(clean, clean), 1.0, atol=1e-6)
  # Y channel with a crop equals the reference on the cropped luma
  y = lambda z: z[:, 3:-3, 3:-3] @ np.asarray(image_quality.BT601_Y)[:, None] / 255 + 16  # noqa: E731
  got_y = np.asarray(image_quality.ssim(noisy, clean, crop_border=3, y_channel=True))
  want_y = [reference_ssim(y(noisy)[i], y(clean)[i]) for i in range(2)]
  np.testing.assert_allclose(got_y, want_y, atol=2e-5)
  # a constant shift keeps the structure term but lowers the luminance term
  shifted = np.asarray(image_quality.ssim(clean + 30.0, clean))
  np.testing.assert_allclose(shifted, [reference_ssim(clean[i] + 30.0, clean[i]) for i in range(2)],
                             atol=2e-5)


def test_psnr_ssim_metrics_on_model_range_images():
  rng = np.random.default_rng(8)
  target = rng.uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  pred = np.clip(target + rng.normal(0, 0.05, target.shape), -1, 1).astype(np.float32)
  metric = image_quality.PSNR()
  state = metric.update(metric.empty(), pred[:2], target[:2])
  state = metric.merge(state, metric.update(metric.empty(), pred[2:], target[2:]))
  result = metric.compute(state)
  pixels = lambda z: np.round((z + 1) * 127.5)  # noqa: E731 -- 8-bit, as saved images
  per_image = [10 * np.log10(255 ** 2 / np.mean((pixels(pred[i]) - pixels(target[i])) ** 2))
               for i in range(3)]
  assert result.value == pytest.approx(np.mean(per_image), rel=1e-5)
  assert result.std == pytest.approx(np.std(per_image), rel=1e-3, abs=1e-4)
  s = image_quality.SSIM()(pred, target)
  assert s.value == pytest.approx(np.mean([reference_ssim(pixels(pred[i]), pixels(target[i]))
                                           for i in range(3)]), abs=2e-5)
  with pytest.raises(ValueError, match="11 px"):
    image_quality.ssim(np.zeros((1, 16, 16, 1)), np.zeros((1, 16, 16, 1)), crop_border=3)


def test_psnr_ssim_match_scikit_image_on_a_real_photo():
  """A published implementation on a published image: scikit-image's PSNR and SSIM (Wang et al.'s
  Gaussian-window settings) and its BT.601 luma, on the astronaut photo that ships inside skimage,
  degraded by JPEG at quality 30 and by Gaussian noise."""
  skimage = pytest.importorskip("skimage", reason="scikit-image is a dev dependency")
  import io
  from PIL import Image
  from skimage import color, data, metrics
  ref = data.astronaut()[:192, :160].astype(np.float64)
  buf = io.BytesIO()
  Image.fromarray(ref.astype(np.uint8)).save(buf, "JPEG", quality=30)
  jpeg = np.asarray(Image.open(buf)).astype(np.float64)
  noisy = np.clip(ref + np.random.default_rng(9).normal(0, 10, ref.shape), 0, 255).round()
  for degraded in (jpeg, noisy):
    want_psnr = metrics.peak_signal_noise_ratio(ref, degraded, data_range=255)
    want_ssim = metrics.structural_similarity(ref, degraded, data_range=255, channel_axis=-1,
                                              gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False)
    assert float(image_quality.psnr(degraded[None], ref[None])[0]) == pytest.approx(want_psnr, abs=1e-4)
    assert float(image_quality.ssim(degraded[None], ref[None])[0]) == pytest.approx(want_ssim, abs=1e-5)
    y_ref, y_deg = color.rgb2ycbcr(ref / 255)[..., 0], color.rgb2ycbcr(degraded / 255)[..., 0]
    want_y = metrics.peak_signal_noise_ratio(y_ref, y_deg, data_range=255)
    assert float(image_quality.psnr(degraded[None], ref[None], y_channel=True)[0]) == pytest.approx(
        want_y, abs=1e-3)
  assert 20 < want_psnr < 40 and 0.3 < want_ssim < 0.95  # a real degradation, not a trivial case
