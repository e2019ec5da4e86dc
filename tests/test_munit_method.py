"""MUNIT and UNIT (translate/methods/munit.py, unit.py): AdaIN parameters land in the right layers,
styles change the output while content codes come from the image alone, UNIT's KL term and loss
weights against direct computations, the step schedule, the edges2shoes split of side-by-side images,
exact resume, the inference CLI (random styles, example-guided, non-square) and lpips_diversity.
(8 devices == 1 device: tests/test_parallel.py.)
"""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.helpers import load_config, straight_and_resumed_runs, tiny_config
from tests.test_train import final_state, max_diff
from translate.methods import munit, unit
from translate.networks import munit as nets


# ----------------------------------------------------------------------------------------------------
# Networks: AdaIN parameters, styles and contents
# ----------------------------------------------------------------------------------------------------
def test_adain_params_from_the_mlp_land_in_the_decoder_layers_in_order():
  """The MLP output is split as the reference's assign_adain_params: AdaIN layer k (res0.block0,
  res0.block1, res1.block0, res1.block1) takes columns [2Ck, 2Ck+C) as its bias and [2Ck+C, 2Ck+2C) as
  its weight. With the MLP's last layer set to output a chosen vector, each layer's output must have
  per-channel mean = its bias and std = |its weight| (instance norm gives zero mean, unit variance)."""
  gen = nets.AdaINGen(input_dim=1, dim=2, style_dim=3, n_downsample=1, n_res=2, mlp_dim=5,
                      init_type="kaiming")
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 1)), jnp.float32)
  v = jax.tree_util.tree_map(np.array, gen.init(jax.random.PRNGKey(0), x))
  c = 4  # content channels: dim * 2^n_downsample
  layers_ = 4
  bias = 5.0 + np.arange(layers_ * c).reshape(layers_, c)  # > 0: block0's relu keeps everything
  weight = 0.01 * (1 + np.arange(layers_ * c).reshape(layers_, c)) * np.where(
      np.arange(c) % 2, -1, 1)  # signs differ: used as is (no 1 +, no exp)
  p = np.concatenate([np.concatenate([bias[k], weight[k]]) for k in range(layers_)])
  assert p.size == nets.num_adain_params(2, c)
  last = v["params"]["mlp"]["fc2"]
  last["kernel"][:] = 0.0
  last["bias"][:] = p
  content, style = gen.apply(v, x, method=gen.encode)
  _, inter = gen.apply(v, content, style, method=gen.decode, capture_intermediates=True)
  dec = inter["intermediates"]["dec"]
  order = [("res0", "block0"), ("res0", "block1"), ("res1", "block0"), ("res1", "block1")]
  for k, (res, block) in enumerate(order):
    out = np.asarray(dec[res][block]["__call__"][0], np.float64)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), np.broadcast_to(bias[k], (2, c)), rtol=1e-4)
    # std = |weight| * sqrt(var / (var + 1e-5)): within 2% on these maps, while neighbouring weights
    # differ by >= 6%, so a shifted or swapped slice would fail
    np.testing.assert_allclose(out.std(axis=(1, 2)), np.broadcast_to(np.abs(weight[k]), (2, c)),
                               rtol=2e-2)


def test_style_codes_change_the_output_and_content_comes_from_the_image_alone():
  config = tiny_config("munit")
  state = _init_state(config)
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  style_images = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)

  @jax.jit
  def outputs(state, images, style_images):  # one program: compiled once
    s1, s2 = (munit.random_styles(config, jax.random.PRNGKey(k), 2) for k in (1, 2))
    s = munit.random_styles(config, jax.random.PRNGKey(3), 3)

    def content_of(style_image):  # the content code next to a style code of the style image
      c_a = munit.run(config, state.params["G"], "gen_a", "encode_content", images)
      return jnp.sum(c_a) + 0.0 * jnp.sum(munit.encode_style(config, state, style_image, "b"))

    return {
        "out1": munit.translate(config, state, images, s1),
        "out2": munit.translate(config, state, images, s2),
        "content_grad": jax.grad(content_of)(style_images),
        "guided": munit.predict_example_guided(config, state, {}, images, style_images)["image"],
        "via_code": munit.translate(config, state, images,
                                    munit.encode_style(config, state, style_images)),
        "other": munit.predict_example_guided(config, state, {}, images, style_images[::-1])["image"],
        "many": munit.predict_random_styles(config, state, {}, images, jax.random.PRNGKey(3),
                                            3)["image"],
        "row1": munit.translate(config, state, images, jnp.tile(s[1:2], (2, 1)))}

  o = {k: np.asarray(v) for k, v in outputs(state, images, style_images).items()}
  assert np.max(np.abs(o["out1"] - o["out2"])) > 1e-3  # the style code changes the translation
  # the content code does not see the style input: zero gradient w.r.t. the style image ...
  assert np.max(np.abs(o["content_grad"])) == 0.0
  # ... and the example-guided output depends on the style image through its style code only
  np.testing.assert_allclose(o["guided"], o["via_code"], atol=1e-6)
  assert np.max(np.abs(o["guided"] - o["other"])) > 1e-3
  # K random styles: (K, B, H, W, C), row k = the translation under style k
  assert o["many"].shape == (3, 2, 32, 32, 1)
  np.testing.assert_allclose(o["many"][1], o["row1"], atol=1e-6)


def _init_state(config, method=munit):
  example = {"A": np.zeros((1, 32, 32, 1), np.float32), "B": np.zeros((1, 32, 32, 1), np.float32)}
  optimizers = method.METHOD.optimizers(config, 10, 10)
  return method.create_state(config, jax.random.PRNGKey(0), optimizers, example, {})


# ----------------------------------------------------------------------------------------------------
# Losses and optimisers
# ----------------------------------------------------------------------------------------------------
def test_unit_kl_and_weighted_total_match_direct_computation():
  config = tiny_config("unit")
  state = _init_state(config, unit)
  rng = np.random.default_rng(2)
  x_a, x_b = (jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 1)), jnp.float32) for _ in range(2))
  g, d = state.params["G"], state.params["D"]
  terms = unit.gen_losses(config, g, d, x_a, x_b, jax.random.PRNGKey(0), {})
  net = unit.build_networks(config)["gen_a"]
  h_a = np.asarray(net.apply({"params": g["gen_a"]}, x_a, method="encode"), np.float64)
  np.testing.assert_allclose(float(terms["loss_gen_recon_kl_a"]), np.mean(h_a ** 2), rtol=1e-5)
  assert float(unit.kl(jnp.asarray([[1.0, -3.0]]))) == 5.0
  # the reference weights: gan 1, recon_x 10, kl 0.01, cyc_x 10, kl_cyc 0.01
  lo = config.loss
  assert (lo.gan_w, lo.recon_x_w, lo.recon_kl_w, lo.recon_x_cyc_w, lo.recon_kl_cyc_w) == (
      1.0, 10.0, 0.01, 10.0, 0.01)
  t = {k: float(v) for k, v in terms.items()}
  expected = (t["loss_gen_adv_a"] + t["loss_gen_adv_b"]
              + 10 * (t["loss_gen_recon_x_a"] + t["loss_gen_recon_x_b"])
              + 0.01 * (t["loss_gen_recon_kl_a"] + t["loss_gen_recon_kl_b"])
              + 10 * (t["loss_gen_cyc_x_a"] + t["loss_gen_cyc_x_b"])
              + 0.01 * (t["loss_gen_recon_kl_cyc_aba"] + t["loss_gen_recon_kl_cyc_bab"]))
  np.testing.assert_allclose(float(unit.total(config, terms)), expected, rtol=1e-5)
  # MUNIT's weights by term name: gan 1, recon_x 10, recon_s 1, recon_c 1, recon_x_cyc
  mc = tiny_config("munit")
  fake = {f"loss_gen_{k}_{d}": 1.0 for k in ("adv", "recon_x", "recon_s", "recon_c", "cycrecon_x")
          for d in "ab"}
  assert float(munit.total(mc, fake)) == 2 * (1 + 10 + 1 + 1 + mc.loss.recon_x_cyc_w)


def test_optimiser_is_torch_adam_with_l2_decay_and_step_lr():
  config = load_config("configs/munit.py", "edges2shoes")
  o = config.optim
  assert (o.lr, o.b1, o.b2, o.weight_decay, o.step_size, o.gamma) == (1e-4, 0.5, 0.999, 1e-4,
                                                                       100000, 0.5)
  sched = munit.step_schedule(1e-4, 10, 0.5)
  assert [float(sched(i)) for i in (0, 8, 9, 19)] == [1e-4, 1e-4, 5e-5, 2.5e-5]
  # torch Adam(weight_decay=wd): grad + wd * param enters the moments; one step moves by -lr*sign
  opt = munit.make_optimizers(config, 1, 1)["G"]
  p = {"w": jnp.asarray([1.0, -2.0])}
  updates, _ = opt.update({"w": jnp.asarray([0.0, 0.0])}, opt.init(p), p)
  np.testing.assert_allclose(np.asarray(updates["w"]), [-1e-4, 1e-4], rtol=1e-3)


# ----------------------------------------------------------------------------------------------------
# Data: edges2shoes side-by-side pairs as two unpaired domains
# ----------------------------------------------------------------------------------------------------
def test_edges2shoes_splits_side_by_side_images_into_unpaired_halves(tmp_path):
  for split, n in (("train", 8), ("test", 2)):
    os.makedirs(tmp_path / split)
    for i in range(n):  # left half grey level 10*i, right half 10*i + 5: the file is readable in both
      im = np.zeros((16, 32, 3), np.uint8)
      im[:, :16], im[:, 16:] = 10 * i, 10 * i + 5
      Image.fromarray(im).save(tmp_path / split / f"{i}.png")
  config = load_config("configs/munit.py", "edges2shoes,tiny")
  config.data.update(path=str(tmp_path), preprocess="none", load_size=16, crop_size=16)
  batches = list(munit.DATA.create_dataset(config, "train", 4, seed=0, train=True).take(6)
                 .as_numpy_iterator())
  level = lambda x: np.round((x[:, 0, 0, 0] + 1) * 127.5).astype(int)  # noqa: E731
  a = np.concatenate([level(b["A"]) for b in batches])
  bb = np.concatenate([level(b["B"]) for b in batches])
  assert set(a % 10) == {0} and set(bb % 10) == {5}  # A = left halves, B = right halves
  assert set(a // 10) == set(range(8)) and set(bb // 10) == set(range(8))
  assert np.mean(a // 10 == bb // 10) < 0.5  # shuffled independently: unpaired
  test = next(munit.DATA.create_dataset(config, "test", 2, seed=0, train=False).as_numpy_iterator())
  np.testing.assert_array_equal(level(test["A"]) // 10, level(test["B"]) // 10)  # test stays in order
  with pytest.raises(ValueError, match="split_pairs"):
    bad = load_config("configs/munit.py", "folder,tiny")
    bad.data.update(path=str(tmp_path), split_pairs=True)
    munit.check_config(bad)


# ----------------------------------------------------------------------------------------------------
# Training, resume, inference, diversity (one tiny run)
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  config = tiny_config("munit")
  straight, resumed, _ = straight_and_resumed_runs(config, tmp_path_factory.mktemp("munit"))
  return config, straight, resumed


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "translate.translate", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_resume_equals_straight_run_and_inference(tiny_runs, tmp_path):
  config, straight, resumed = tiny_runs
  step, a = final_state(straight)
  _, b = final_state(resumed)
  assert step == 4 and max_diff(a, b) == 0.0  # 2 steps + resume + 2 steps == 4 steps straight
  assert set(a["params"]["G"]) == {"gen_a", "gen_b"} and set(a["params"]["D"]) == {"dis_a", "dis_b"}
  from translate import inference
  p = inference.Predictor(straight)
  # fully convolutional: a non-square input translates to its own size
  wide = np.random.default_rng(0).uniform(-1, 1, (1, 32, 48, 1)).astype(np.float32)
  assert p.translate(wide, "AtoB").shape == (1, 32, 48, 1)
  out = p.predict("random_styles", images=wide, rng=jax.random.PRNGKey(0), num_styles=3)["image"]
  assert out.shape == (3, 1, 32, 48, 1)
  # the CLI: --num_styles -> a grid (input + 3 styles), --style_image -> one image of the input's size
  Image.fromarray(np.full((32, 48), 128, np.uint8)).save(tmp_path / "x.png")
  Image.fromarray(np.full((24, 24), 30, np.uint8)).save(tmp_path / "s.png")
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path / 'x.png'}", "--predict=random_styles",
              "--num_styles=3", f"--output={tmp_path / 'grid'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  grid = np.asarray(Image.open(tmp_path / "grid" / "x.png"))
  assert grid.shape[1] >= 4 * 48  # four columns: the input and three styles
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path / 'x.png'}", "--predict=example_guided",
              f"--style_image={tmp_path / 's.png'}", f"--output={tmp_path / 'guided'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert np.asarray(Image.open(tmp_path / "guided" / "x.png")).shape[:2] == (32, 48)


def test_lpips_diversity_positive_for_munit_and_zero_for_identical_outputs(tiny_runs):
  from translate import workdir
  from translate.metrics import diversity, lpips
  config, straight, _ = tiny_runs
  run = workdir.load(straight)
  result = munit.lpips_diversity(run.config, run.method, run.state, run.frozen)
  assert result["lpips_diversity"] > 0.0
  network = lpips.load_network()
  same = np.repeat(np.random.default_rng(0).uniform(-1, 1, (1, 2, 32, 32, 1)), 3, axis=0)
  assert np.all(diversity.pairwise_lpips(network, same) < 1e-9)  # identical outputs (float noise)
  # features shared across pairs: the same numbers as the LPIPS metric on each pair
  samples = np.random.default_rng(1).uniform(-1, 1, (3, 2, 32, 32, 1)).astype(np.float32)
  metric = lpips.LPIPS(network)
  pairs = [(0, 1), (0, 2), (1, 2)]
  direct = np.mean([metric._distances(samples[i], samples[j]) for i, j in pairs], axis=0)
  np.testing.assert_allclose(diversity.pairwise_lpips(network, samples), direct, rtol=1e-4, atol=1e-6)
