"""PhotoWCT (translate/networks/photowct.py, translate/photowct/, translate/methods/photowct.py):
unpooling, WCT statistics, per-label WCT, smoothing against direct computations, decoder training
(exact resume, encoder outside the checkpoint) and the stylize CLI. Golden parity with the reference is
in tests/test_parity_photowct.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.helpers import straight_and_resumed_runs, tiny_config
from translate.networks import photowct as nets
from translate.photowct import smoothing, wct


# ----------------------------------------------------------------------------------------------------
# Pooling indices and unpooling
# ----------------------------------------------------------------------------------------------------
def test_unpool_puts_values_at_the_pooled_argmax_positions():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 3, (2, 7, 9, 3)).astype(np.float32)  # many ties; odd sizes
  x[0, :2, :2, 0] = 0.0  # an all-tied window
  pooled, pool = nets.max_pool_with_indices(jnp.asarray(x))
  values = rng.normal(size=pooled.shape).astype(np.float32)
  up = np.asarray(nets.max_unpool(jnp.asarray(values), pool))
  ones_up = np.asarray(nets.max_unpool(jnp.ones_like(pooled), pool))
  pooled, indices = np.asarray(pooled), np.asarray(pool.indices)
  assert pool.size == (7, 9) and up.shape == x.shape
  want = np.zeros_like(x)
  for n in range(2):
    for c in range(3):
      for i in range(3):
        for j in range(4):
          window = x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, c].ravel()
          k = int(np.argmax(window))  # the first maximum, row-major (torch's choice)
          assert pooled[n, i, j, c] == window.max()
          assert indices[n, i, j, c] == (2 * i + k // 2) * 9 + 2 * j + k % 2
          want[n, 2 * i + k // 2, 2 * j + k % 2, c] = values[n, i, j, c]
  np.testing.assert_array_equal(up, want)  # last row / column never pooled: zeros
  # Gradients of the pool go to the argmax only (torch), also in a tied window.
  g = jax.grad(lambda a: nets.max_pool_with_indices(a)[0].sum())(jnp.asarray(x))
  np.testing.assert_array_equal(np.asarray(g), ones_up)


# ----------------------------------------------------------------------------------------------------
# WCT
# ----------------------------------------------------------------------------------------------------
def _features(rng, n, c, scale, offset):
  mix = np.eye(c) + 0.5 * rng.uniform(-1, 1, (c, c))
  return (rng.normal(size=(n, c)) @ mix * scale + offset).astype(np.float32)


def test_wct_output_has_the_style_mean_and_covariance():
  rng = np.random.default_rng(1)
  c = 6
  content = _features(rng, 300, c, 30.0, 2.0)
  style = _features(rng, 250, c, 10.0, rng.uniform(-5, 5, c))
  out = np.asarray(jax.jit(wct.wct_core)(content, style), np.float64)
  s64 = style.astype(np.float64)
  np.testing.assert_allclose(out.mean(0), s64.mean(0), atol=1e-3)
  cov_s = np.cov(s64, rowvar=False)
  cov_c = np.cov(content.astype(np.float64), rowvar=False)
  # With the reference's ridge (+I on the content covariance) the exact covariance is
  # Cs^1/2 Cc (Cc + I)^-1 Cs^1/2 ...
  e, v = np.linalg.eigh(cov_s)
  root = v @ np.diag(np.sqrt(e)) @ v.T
  exact = root @ cov_c @ np.linalg.inv(cov_c + np.eye(c)) @ root
  np.testing.assert_allclose(np.cov(out, rowvar=False), exact, rtol=1e-3, atol=1e-3)
  # ... which is the style's covariance up to Cs^1/2 (Cc + I)^-1 Cs^1/2, of norm <= |Cs| / (1 + min
  # eigenvalue of Cc): the ridge matters little for content variances >> 1.
  bound = np.linalg.norm(cov_s, 2) / (1 + np.linalg.eigvalsh(cov_c).min())
  assert np.linalg.norm(np.cov(out, rowvar=False) - cov_s, 2) <= 1.01 * bound < 0.05 * np.linalg.norm(
      cov_s, 2)
  # A rank-deficient style (fewer pixels than channels): only its rank is kept, no blow-up.
  # (At unit scale: the threshold is absolute, 1e-5 in variance units, above float32 eigh noise.)
  low = np.asarray(wct.wct_core(content, style[:4] / 10))
  assert np.all(np.isfinite(low)) and np.linalg.matrix_rank(low - low.mean(0), tol=1e-2) == 3
  with pytest.raises(ValueError, match="jax_enable_x64"):
    wct.wct_core(content, style, dtype=jnp.float64)


def _numpy_wct(c, s):
  """The reference's formula in float64 numpy: whiten with (Cc + I), colour with Cs (eig >= 1e-5)."""
  c, s = c.astype(np.float64), s.astype(np.float64)
  def power(cov, p):
    e, v = np.linalg.eigh(cov)
    keep = e >= 1e-5
    return (v[:, keep] * e[keep] ** p) @ v[:, keep].T
  fc, fs = c - c.mean(0), s - s.mean(0)
  whiten = power(fc.T @ fc / (len(c) - 1) + np.eye(c.shape[1]), -0.5)
  return fc @ whiten @ power(fs.T @ fs / (len(s) - 1), 0.5) + s.mean(0)


def test_per_label_wct_leaves_unlabelled_regions_to_their_features():
  rng = np.random.default_rng(2)
  c, h, w = 4, 12, 12
  content = _features(rng, h * w, c, 3.0, 0.0).reshape(h, w, c)
  style = _features(rng, 10 * 10, c, 2.0, 1.0).reshape(10, 10, c)
  cseg = np.zeros((h, w), np.uint8)
  cseg[:, 6:] = 1
  cseg[0, :3] = 2  # 3 px: invalid (<= 10)
  cseg[1, :3] = 3  # label 3: no style pixels
  sseg = np.zeros((10, 10), np.uint8)
  sseg[5:] = 1
  sseg[0, :4] = 2
  masks = wct.label_masks(cseg, sseg, (h, w), (10, 10))
  np.testing.assert_array_equal(masks.labels, [0, 1])
  out = np.asarray(jax.jit(wct.feature_wct)(content, style, masks.content, masks.style))
  untouched = (cseg == 2) | (cseg == 3)
  np.testing.assert_array_equal(out[untouched], content[untouched])
  for label in (0, 1):
    sel, ssel = cseg == label, sseg == label
    np.testing.assert_allclose(out[sel], _numpy_wct(content[sel], style[ssel]), atol=1e-3)
  # Without masks: one global transform, different from the per-label one.
  glob = np.asarray(wct.feature_wct(content, style))
  assert np.max(np.abs(glob[cseg == 1] - out[cseg == 1])) > 0.1


# ----------------------------------------------------------------------------------------------------
# Smoothing
# ----------------------------------------------------------------------------------------------------
def _pair(h=14, w=12, seed=3):
  rng = np.random.default_rng(seed)
  content = np.where(np.arange(w)[None, :, None] < w // 2, 0.2, 0.7) + 0.05 * rng.normal(size=(h, w, 3))
  stylized = 0.5 * content + 0.3 + 0.1 * rng.normal(size=(h, w, 3))
  return np.clip(stylized, 0, 1), np.clip(content, 0, 1)


def test_matting_smoothing_beta_to_zero_returns_the_input_and_cg_matches_exact():
  stylized, content = _pair()
  for beta in (1e-9, 0.0):
    np.testing.assert_allclose(smoothing.matting_smooth(stylized, content, beta=beta), stylized,
                               atol=1e-8)
  np.testing.assert_allclose(smoothing.matting_smooth_cg(stylized, content, beta=1e-9), stylized,
                             atol=1e-8)
  # The matrix-free affinity equals the sparse W; CG reaches the exact solve at beta 0.9999.
  w = smoothing.matting_affinity(content)
  v = np.random.default_rng(4).normal(size=content.shape[:2])
  got = np.asarray(smoothing.affinity_matvec(jnp.asarray(content, jnp.float32), jnp.asarray(v, jnp.float32)))
  np.testing.assert_allclose(got.ravel(), w @ v.ravel(), rtol=1e-3, atol=2e-3)
  np.testing.assert_allclose(np.asarray(smoothing.affinity_diagonal(jnp.asarray(content, jnp.float32))),
                             w.diagonal().reshape(content.shape[:2]), rtol=1e-4, atol=1e-3)
  exact = smoothing.matting_smooth(stylized, content)
  cg = smoothing.matting_smooth_cg(stylized, content, tol=1e-10)
  assert np.max(np.abs(cg - exact)) < 1e-6 and cg.dtype == np.float64
  assert not jax.config.jax_enable_x64  # 64-bit only inside the call
  with pytest.raises(ValueError, match="beta"):
    smoothing.matting_smooth(stylized, content, beta=1.0)
  with pytest.raises(ValueError, match="same size"):
    smoothing.matting_smooth(stylized[:-1], content)


def test_guided_filter_against_a_direct_box_computation():
  stylized, content = _pair(9, 11, seed=5)
  r, eps = 2, 1e-2
  h, w, _ = content.shape
  a = np.zeros((h, w, 3, 3))
  b = np.zeros((h, w, 3))
  for y in range(h):
    for x in range(w):
      win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
      guide = content[win].reshape(-1, 3)
      p = stylized[win].reshape(-1, 3)
      mu_i, mu_p = guide.mean(0), p.mean(0)
      cov = (guide - mu_i).T @ (guide - mu_i) / len(guide)
      cov_ip = (guide - mu_i).T @ (p - mu_p) / len(guide)
      a[y, x] = np.linalg.solve(cov + eps * np.eye(3), cov_ip)  # ridge regression per window
      b[y, x] = mu_p - mu_i @ a[y, x]
  want = np.zeros_like(stylized)
  for y in range(h):
    for x in range(w):
      win = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
      want[y, x] = content[y, x] @ a[win].reshape(-1, 3, 3).mean(0) + b[win].reshape(-1, 3).mean(0)
  got = np.asarray(jax.jit(smoothing.guided_filter, static_argnums=2)(
      jnp.asarray(stylized, jnp.float32), jnp.asarray(content, jnp.float32), r, eps))
  np.testing.assert_allclose(got, want, atol=1e-4)


# ----------------------------------------------------------------------------------------------------
# Decoder training, the CLI
# ----------------------------------------------------------------------------------------------------
def _write_photos(root, n=6, size=40, seed=0):
  rng = np.random.default_rng(seed)
  for split, count in (("train", n), ("test", 2)):
    (root / split).mkdir(parents=True)
    for i in range(count):
      base = rng.uniform(0, 255, (1, 1, 3)) * np.ones((size, size + 4 * i, 3))
      base[: size // 2] = rng.uniform(0, 255, 3)
      img = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
      Image.fromarray(img).save(root / split / f"{i}.png")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("photowct")
  _write_photos(root / "data")
  config = tiny_config("photowct", preset="folder")
  config.data.path = str(root / "data")
  config.eval_every = 0
  config.eval.metrics = ("recon_psnr",)
  config.model.levels = (1, 4)  # the shallowest and the deepest decoder (compile time)
  straight, resumed, results = straight_and_resumed_runs(config, root)
  return config, root, straight, resumed, results


def _final(workdir):
  from translate import workdir as workdirs
  run = workdirs.load(workdir)
  return run.step, jax.device_get(run.state), run


def test_decoder_training_resumes_exactly_keeps_the_encoder_out_and_stylizes(tiny_runs):
  config, root, straight, resumed, results = tiny_runs
  step, a, run = _final(straight)
  _, b, _ = _final(resumed)
  assert step == 4
  diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))),
                                 a.params, b.params)
  assert max(jax.tree_util.tree_leaves(diffs)) == 0.0  # 2 + resume + 2 steps == 4 straight
  assert set(a.params) == {"decoders"} and set(a.params["decoders"]) == {"d1", "d4"}
  encoder = jax.tree_util.tree_leaves(run.frozen["encoder"].params)
  assert not any(np.shape(x) == np.shape(e) and np.array_equal(x, e)
                 for e in encoder for x in jax.tree_util.tree_leaves(a) if np.size(e) > 3)
  # recon_psnr: one value per level, the PSNR of each decoder's reconstruction of the test images.
  assert set(results) == {"psnr_relu1_1", "psnr_relu4_1"}
  assert all(0 < v < 60 for v in results.values()), results
  # The stylize CLI, on an odd-sized content (any size) with label maps and the guided filter.
  rng = np.random.default_rng(1)
  Image.fromarray(rng.integers(0, 255, (37, 45, 3), np.uint8)).save(root / "c.png")
  Image.fromarray(rng.integers(0, 255, (33, 30, 3), np.uint8)).save(root / "s.png")
  seg_c = np.zeros((37, 45), np.uint8)
  seg_c[:, 20:] = 1
  seg_s = np.zeros((33, 30), np.uint8)
  seg_s[15:] = 1
  Image.fromarray(seg_c).save(root / "cs.png")
  Image.fromarray(seg_s).save(root / "ss.png")
  out = root / "out.png"
  from translate import stylize
  stylize.main([f"--workdir={straight}", f"--content={root / 'c.png'}", f"--style={root / 's.png'}",
                f"--content_seg={root / 'cs.png'}", f"--style_seg={root / 'ss.png'}",
                "--smoothing=guided", f"--output={out}"])
  assert np.asarray(Image.open(out)).shape == (37, 45, 3)
  with pytest.raises(SystemExit, match="missing.png"):
    stylize.main([f"--workdir={straight}", f"--content={root / 'c.png'}",
                  f"--style={root / 'missing.png'}", f"--output={out}"])


def test_config_errors_name_the_problem():
  from translate.methods import photowct
  config = tiny_config("photowct")
  config.unlock()
  config.model.levels = (1, 5)
  with pytest.raises(ValueError, match="model.levels"):
    photowct.check_config(config)
  config = tiny_config("photowct")
  config.model.encoder = "vgg16"
  with pytest.raises(ValueError, match="model.arch"):
    photowct.check_config(config)
  config = tiny_config("photowct")
  config.data.source = "folder"
  with pytest.raises(ValueError, match="data.path"):
    photowct.check_config(config)


def test_cascade_transfers_colour_statistics_with_an_exact_level1_autoencoder():
  """A level-1 encoder that is 100 x (the image, its negative) through the ReLU, and the decoder that
  undoes it: PhotoWCT at relu1_1 is then a colour transfer, so the output has the style image's mean
  colour and (up to the ridge, negligible at this scale) its colour covariance."""
  from translate.photowct import pipeline
  eye = np.eye(3, dtype=np.float32)
  enc_kernel = np.zeros((3, 3, 3, 6), np.float32)
  enc_kernel[1, 1] = 100 * np.concatenate([eye, -eye], axis=1)
  dec_kernel = np.zeros((3, 3, 6, 3), np.float32)
  dec_kernel[1, 1] = np.concatenate([eye, -eye], axis=0) / 100
  params = {"e1": {"conv0": {"kernel": eye[None, None], "bias": np.zeros(3, np.float32)},
                   "conv1_1": {"kernel": enc_kernel, "bias": np.zeros(6, np.float32)}},
            "d1": {"conv1_1": {"kernel": dec_kernel, "bias": np.zeros(3, np.float32)}}}
  model = pipeline.Model(params, (1,), "vgg19", (6, 8, 8, 8))
  rng = np.random.default_rng(6)
  content = rng.uniform(0.1, 0.9, (20, 24, 3)).astype(np.float32)
  style = (rng.uniform(0, 0.3, (18, 16, 3)) + [0.5, 0.3, 0.1]).astype(np.float32)
  np.testing.assert_allclose(np.asarray(pipeline.transform(model, content, content)), content, atol=1e-3)
  out = np.asarray(pipeline.transform(model, content, style)).reshape(-1, 3).astype(np.float64)
  s = style.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(out.mean(0), s.mean(0), atol=1e-4)
  np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(s, rowvar=False), atol=1e-4)
  from translate import stylize
  assert stylize.capped_size(600, 800) == (600, 800)  # the reference's cap: shorter side <= 960 kept
  assert stylize.capped_size(1000, 2000) == (480, 960)  # else the longer side becomes 960


def test_coco_source_through_tfds_mock_data():
  import tensorflow_datasets as tfds
  from translate.methods import photowct
  from tests.helpers import load_config
  config = load_config("configs/photowct.py", "coco,tiny")
  with tfds.testing.mock_data(num_examples=6):
    photowct.check_config(config)
    batch = next(photowct.DATA.create_dataset(config, "train", 2, seed=0).as_numpy_iterator())
    assert batch["A"].shape == (2, 32, 32, 3) and -1 <= batch["A"].min() < batch["A"].max() <= 1
    test = [b["A"].shape for b in photowct.DATA.create_dataset(
        config, "test", 4, seed=0, train=False).as_numpy_iterator()]
    assert test == [(4, 32, 32, 3), (2, 32, 32, 3)]
    assert photowct.DATA.dataset_size(config, "train") == 6
