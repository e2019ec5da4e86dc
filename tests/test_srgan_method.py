"""SRResNet and SRGAN (translate/methods/srresnet.py, srgan.py) and their data (translate/data/sr.py):
PixelShuffle in torch's order, the content loss's 1/12.75 scaling, MATLAB bicubic against a published
implementation and the kernel's definition, the warm start (G and nothing else), exact resume, tiled ==
untiled upscaling and the 53x37 -> 212x148 CLI, and clear errors for bad warm starts.
"""
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.helpers import straight_and_resumed_runs, tiny_config
from tests.test_train import final_state, max_diff
from translate import inference, loop, parallel, pretrained, train
from translate.data import sr
from translate.methods import srgan, srresnet
from translate.networks import srgan as nets
from translate.pretrained import vgg


# ----------------------------------------------------------------------------------------------------
# Layers and losses
# ----------------------------------------------------------------------------------------------------
def test_pixel_shuffle_is_torch_order():
  rng = np.random.default_rng(0)
  c, r, h, w = 3, 2, 4, 5
  x_nchw = rng.normal(size=(2, c * r * r, h, w)).astype(np.float32)
  # torch.nn.PixelShuffle: out[n, c, r*y + i, r*x + j] = in[n, c*r*r + r*i + j, y, x]
  want = x_nchw.reshape(2, c, r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(2, c, h * r, w * r)
  for n in range(2):  # and element by element, straight from the formula
    for k in range(c):
      for i in range(r):
        for j in range(r):
          np.testing.assert_array_equal(want[n, k, i::r, j::r], x_nchw[n, k * r * r + r * i + j])
  out = nets.PixelShuffle(r).apply({}, jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
  np.testing.assert_array_equal(np.asarray(out).transpose(0, 3, 1, 2), want)
  # TF's depth_to_space order, channel (r*i + j)*C + c, is another one (it would silently scramble
  # converted weights)
  tf_order = x_nchw.reshape(2, r, r, c, h, w).transpose(0, 3, 4, 1, 5, 2).reshape(2, c, h * r, w * r)
  assert not np.array_equal(tf_order, want)


def test_prelu_has_one_shared_slope():
  layer = nets.PReLU()
  variables = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 5)))
  assert variables["params"]["weight"].shape == (1,) and float(variables["params"]["weight"][0]) == 0.25
  x = jnp.asarray([[-2.0, 3.0]])
  np.testing.assert_allclose(np.asarray(layer.apply({"params": {"weight": jnp.asarray([0.1])}}, x)),
                             [[-0.2, 3.0]])


def test_content_loss_is_the_mse_of_feature_maps_scaled_by_1_over_12_75():
  config = tiny_config("srgan")
  with config.unlocked():
    config.loss.content_layer = "relu5_4"  # the paper's phi_5,4 on a (narrow, random) VGG19
  params = vgg.init_params("vgg19", seed=0, channels=(4, 4, 8, 8, 8))
  frozen = {"vgg": pretrained.Pretrained(params, vgg.features, "vgg19")}
  rng = np.random.default_rng(0)
  sr_img, hr = (rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32) for _ in range(2))
  got = float(srgan.content_loss(config, frozen, sr_img, hr))
  # phi_5,4 = torchvision features[:36]: conv5_4 and its ReLU, before pool5
  assert vgg.torchvision_indices("vgg19")["conv5_4"] == 34
  phi = lambda x: np.asarray(vgg.features(params, x, ("relu5_4",))["relu5_4"], np.float64)  # noqa
  a, b = phi(sr_img), phi(hr)
  assert a.shape == (2, 2, 2, 8) and np.abs(a - b).max() > 0
  want = np.mean((a / 12.75 - b / 12.75) ** 2)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got, np.mean((a - b) ** 2) / 162.5625, rtol=1e-5)
  # the adversarial weight and the optimiser are the paper's
  full = srgan_config("div2k")
  assert (full.loss.beta, full.loss.content_scale, full.loss.content_layer) == (1e-3, 1 / 12.75,
                                                                                "relu5_4")
  assert (full.optim.lr, full.optim.b1) == (1e-4, 0.9)
  assert full.optim.lr_decay_step * 2 == full.num_train_steps  # 1e-5 for the second half
  schedule = srresnet.adam_schedule(full, full.num_train_steps)
  np.testing.assert_allclose([float(schedule(0)), float(schedule(99_999)), float(schedule(100_000))],
                             [1e-4, 1e-4, 1e-5], rtol=1e-6)


def srgan_config(arg):
  from tests.helpers import load_config
  return load_config("configs/srgan.py", arg)


# ----------------------------------------------------------------------------------------------------
# MATLAB bicubic
# ----------------------------------------------------------------------------------------------------
def test_bicubic_matches_resize_right_and_the_kernel_definition():
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "No PyTorch found": it then works on numpy
    resize_right = pytest.importorskip("resize_right")
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 255, (40, 52, 3))
  for scale in (0.25, 0.5, 4.0):  # antialiased shrinking and plain bicubic enlarging
    ref = resize_right.resize(x, scale_factors=[scale, scale, 1], antialiasing=True,
                              interp_method=resize_right.interp_methods.cubic, pad_mode="symmetric")
    np.testing.assert_allclose(sr.imresize(x, scale), ref, atol=1e-9)
  odd = x[:37, :53]  # sizes that are not multiples: by output shape
  ref = resize_right.resize(odd, out_shape=(10, 14, 3), antialiasing=True,
                            interp_method=resize_right.interp_methods.cubic, pad_mode="symmetric")
  np.testing.assert_allclose(sr.imresize(odd, output_shape=(10, 14)), ref, atol=1e-9)
  # From the definition: x1/4 output pixel i (1-based) samples u = 4 i - 1.5 with the kernel
  # cubic(x / 4) / 4 over |x| < 8; interior rows need no mirroring.
  row = x[:, 7, 0]
  i = 5
  u = 4 * i - 1.5
  taps = np.arange(int(np.floor(u - 8)), int(np.floor(u - 8)) + 18)
  weights = sr.cubic((u - taps) / 4) / 4
  want = np.sum(weights * row[taps - 1]) / weights.sum()
  np.testing.assert_allclose(sr.imresize(x[:, 7:8, 0:1], output_shape=(10, 1))[i - 1, 0, 0], want,
                             rtol=1e-12)
  # uint8 images are rounded after each axis, as MATLAB does; JAX arrays give the float result
  u8 = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
  rows = np.clip(np.round(np.tensordot(sr.bicubic_weights(16, 4, 0.25), u8.astype(float), 1)), 0, 255)
  both = np.clip(np.round(np.einsum("wx,hxc->hwc", sr.bicubic_weights(24, 6, 0.25), rows)), 0, 255)
  np.testing.assert_array_equal(sr.downsample(u8, 4), both.astype(np.uint8))
  np.testing.assert_allclose(np.asarray(sr.imresize(jnp.asarray(x, jnp.float32), 0.25)),
                             sr.imresize(x, 0.25), atol=1e-3)


def test_sr_ops_crop_and_rotate():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (50, 61, 3), dtype=np.uint8)
  assert sr.crop_to_multiple(image, 4).shape == (48, 60, 3)
  hr, lr = sr.random_crop(image[:48, :60], 16, rng, 4, lr=sr.downsample(image[:48, :60], 4))
  assert hr.shape == (16, 16, 3) and lr.shape == (4, 4, 3)
  assert len({sr.dihedral(hr, k).tobytes() for k in range(8)}) == 8
  with pytest.raises(ValueError, match="smaller than"):
    sr.random_crop(image, 64, rng)


# ----------------------------------------------------------------------------------------------------
# Training runs: one SRResNet, then SRGAN warm-started from it (straight and resumed)
# ----------------------------------------------------------------------------------------------------
def _folder(root, sizes=((40, 48), (44, 36), (52, 40))):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    os.makedirs(root / split)
    for i, (w, h) in enumerate(sizes):
      # smooth random images (noise is not what SR is about, and stays far from bicubic)
      small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
      Image.fromarray(small).resize((w, h), Image.BICUBIC).save(root / split / f"{i}.png")
  return root


def _tiny(method, folder):
  config = tiny_config(method)
  config.data.update(source="folder", path=str(folder))
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("sr")
  folder = _folder(base / "data")
  config = _tiny("srresnet", folder)
  config.num_train_steps = 2
  config.sample_every = config.checkpoint_every = 100
  srresnet_dir = str(base / "srresnet")
  train.train_and_evaluate(config, srresnet_dir)
  g_config = _tiny("srgan", folder)
  g_config.init_from = srresnet_dir
  assert g_config.optim.lr_decay_step == 2  # the resumed run restarts at the lr drop
  g_config.sample_every = g_config.checkpoint_every = 100  # a grid and a checkpoint at the end only
  straight, resumed, _ = straight_and_resumed_runs(g_config, base / "srgan", restart="stop")
  return folder, srresnet_dir, g_config, straight, resumed


def test_srgan_warm_start_loads_g_and_nothing_else(runs):
  _, srresnet_dir, config, _, _ = runs
  _, pre = final_state(srresnet_dir)
  method = srgan.METHOD
  mesh = parallel.make_mesh(1)
  optimizers = method.optimizers(config, 1, 4)
  example = {"A": np.zeros((1, 8, 8, 3), np.float32), "B": np.zeros((1, 32, 32, 3), np.float32)}
  frozen = method.frozen(config)
  warm = parallel.to_host(loop.create_train_state(config, method, mesh, optimizers, example, frozen))
  cold_config = _tiny("srgan", runs[0])
  cold = parallel.to_host(loop.create_train_state(cold_config, method, mesh, optimizers, example,
                                                  frozen))
  # G: the SRResNet's parameters and BN statistics, exactly
  assert max_diff(warm.params["G"]["G"], pre["params"]["G"]["G"]) == 0.0
  assert max_diff(warm.collections["G"], pre["collections"]["G"]) == 0.0
  assert max_diff(cold.params["G"]["G"], pre["params"]["G"]["G"]) > 0.0
  # nothing else: D, the optimiser states, the step and the RNG are those of a cold start
  assert max_diff(warm.params["D"], cold.params["D"]) == 0.0
  assert max_diff(warm.collections["D"], cold.collections["D"]) == 0.0
  assert max_diff(warm.opt_state, cold.opt_state) == 0.0
  assert int(warm.step) == 0 and np.array_equal(warm.rng, cold.rng)


def test_srgan_resume_equals_straight_and_keeps_vgg_out(runs):
  _, _, config, straight, resumed = runs
  step, a = final_state(straight)
  _, b = final_state(resumed)
  # 2 steps + resume + 2 steps == 4 steps straight: the resumed run did not warm-start again
  assert step == 4 and max_diff(a, b) == 0.0
  assert set(a["params"]) == {"G", "D"}
  assert set(a["params"]["G"]) == {"G"} and set(a["params"]["D"]) == {"D"}
  vgg_shapes = {np.shape(x) for x in jax.tree_util.tree_leaves(srgan.frozen(config)["vgg"].params)}
  assert not {np.shape(x) for x in jax.tree_util.tree_leaves(a)} & {s for s in vgg_shapes
                                                                     if len(s) == 4 and s[-1] >= 256}


def test_tiled_upscale_equals_untiled_and_cli_upscales_any_size(runs, tmp_path):
  _, srresnet_dir, _, straight, _ = runs
  rng = np.random.default_rng(1)
  Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(tmp_path / "in.png")
  from translate import upscale  # the command line's main, in this process
  upscale.main([f"--workdir={straight}", f"--input={tmp_path / 'in.png'}",
                f"--output={tmp_path / 'out'}", "--tile=16"])
  out = Image.open(tmp_path / "out" / "in.png")
  assert out.size == (212, 148)
  p = inference.Predictor(straight)
  x = inference.read_image(str(tmp_path / "in.png"), 3)
  fn = lambda lr: p.translate(lr)  # noqa: E731
  whole = srresnet.upscale(fn, x, 4, tile=0)
  radius = srresnet.receptive_radius(p.config)
  tiled = srresnet.upscale(fn, x, 4, tile=16, overlap=radius)
  np.testing.assert_allclose(tiled, whole, atol=1e-5)
  # the CLI wrote the tiled result (8-bit)
  want = np.clip((tiled + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  assert np.abs(np.asarray(out).astype(int) - want).max() <= 1
  # too little context differs near the tile seams: the overlap is what makes it exact
  assert np.abs(srresnet.upscale(fn, x, 4, tile=16, overlap=1) - whole).max() > 1e-3


def test_bicubic_baseline_and_sr_metrics_on_whole_test_images(runs):
  from translate import evaluation, workdir
  folder, srresnet_dir, _, _, _ = runs
  run = workdir.load(srresnet_dir)
  config = run.config
  with config.unlocked():
    config.eval.metrics = ("psnr_y", "ssim_y", "bicubic")
    config.data.test_max_size = 0  # whole test images of three sizes (batches of one)
  with pytest.MonkeyPatch.context() as mp:  # LPIPS is tested elsewhere; keep the run small
    mp.setattr(srresnet, "BASELINE_METRICS", ("psnr_y", "ssim_y"))
    results = evaluation.evaluate(config, run.method, run.state, run.frozen)
  # the bicubic baseline, by hand: MATLAB bicubic up of the MATLAB-bicubic LR, Y, 4-pixel border
  from translate.metrics import image_quality as iq
  want = []
  for name in sorted(os.listdir(folder / "test")):
    hr = sr.crop_to_multiple(np.asarray(Image.open(folder / "test" / name)), 4)
    lr = jnp.asarray(sr.to_float(sr.downsample(hr, 4))[None])  # float32, as the method computes it
    up = np.asarray(sr.imresize(lr, output_shape=(hr.shape[0], hr.shape[1])))[0]
    want.append(float(iq.psnr(iq.to_pixels(up[None]), iq.to_pixels(sr.to_float(hr)[None]),
                              crop_border=4, y_channel=True)[0]))
  np.testing.assert_allclose(results["psnr_y_bicubic"], np.mean(want), rtol=1e-5)
  assert {"psnr_y", "ssim_y", "ssim_y_bicubic"} <= set(results)


def test_warm_start_errors_name_the_problem(runs, tmp_path):
  folder, srresnet_dir, _, _, _ = runs
  config = _tiny("srgan", folder)
  config.init_from = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="not a folder"):
    srgan.check_config(config)
  config.init_from = srresnet_dir
  config.model.n_channels = 16
  with pytest.raises(ValueError, match="model.n_channels=8"):
    srgan.check_config(config)
  other = tmp_path / "cyclegan_run"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"method": "cyclegan", "model": {}}))
  config.init_from = str(other)
  with pytest.raises(ValueError, match="'cyclegan' workdir"):
    srgan.check_config(config)
