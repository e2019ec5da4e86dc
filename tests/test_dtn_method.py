"""DTN (translate/methods/dtn.py): its losses against numpy, f frozen and outside the checkpoint, exact
resume, the svhn2mnist data through tfds mock data, transfer_acc on known inputs, and the inference CLI.
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
from translate import parallel, pretrained
from translate.methods import dtn


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
def test_ternary_d_loss_and_gang_match_numpy():
  rng = np.random.default_rng(0)
  gs, gt, t = (rng.normal(size=(5, 3)).astype(np.float32) * 3 for _ in range(3))
  # L_D = -mean log D1(G(s)) - mean log D2(G(t)) - mean log D3(t)  (classes 1, 2, 3 = indices 0, 1, 2)
  expected_d = -(log_softmax(gs)[:, 0].mean() + log_softmax(gt)[:, 1].mean()
                 + log_softmax(t)[:, 2].mean())
  # L_GANG = -mean log D3(G(s)) - mean log D3(G(t))
  expected_g = -(log_softmax(gs)[:, 2].mean() + log_softmax(gt)[:, 2].mean())
  np.testing.assert_allclose(float(dtn.d_loss(gs, gt, t)), expected_d, rtol=1e-5)
  np.testing.assert_allclose(float(dtn.gang_loss(gs, gt)), expected_g, rtol=1e-5)
  # D perfectly right: L_D -> 0, and then G's adversarial loss is large
  sure = lambda k: np.tile(np.eye(3, dtype=np.float32)[k] * 50, (4, 1))  # noqa: E731
  assert float(dtn.d_loss(sure(0), sure(1), sure(2))) < 1e-6
  assert float(dtn.gang_loss(sure(0), sure(1))) > 90


def test_tv_loss_is_anisotropic_total_variation():
  x = np.zeros((1, 4, 4, 1), np.float32)
  x[0, :, 2:] = 1.0  # one vertical edge: 4 horizontal jumps of 1 among 4 * 3, no vertical ones
  np.testing.assert_allclose(float(dtn.tv_loss(x)), 4 / 12)
  assert float(dtn.tv_loss(np.ones((2, 5, 5, 3), np.float32))) == 0.0


def _constant_f(value: float):
  """A frozen f whose representation does not depend on the image: every pair is identity-like."""
  def apply(params, images, layers=None):
    rep = jnp.broadcast_to(params["v"], (images.shape[0], 8))
    return {name: rep for name in layers} if layers else rep
  return pretrained.Pretrained({"v": jnp.full((8,), value, jnp.float32)}, apply, "constant_f")


def test_const_loss_zero_for_identity_like_pairs():
  config = tiny_config("dtn")
  rng = np.random.default_rng(0)
  s = rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
  frozen = dtn.frozen(config)
  f_s = dtn.represent(config, frozen, s)
  assert float(dtn.const_loss(f_s, dtn.represent(config, frozen, s.copy()))) == 0.0
  # (f is blind to polarity, by its ink-positive input: another image, not -s)
  other = rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
  assert float(dtn.const_loss(f_s, dtn.represent(config, frozen, other))) > 0.0
  # In a train step: f(G(s)) == f(s) whatever G draws when f ignores the image.
  batch = {"A": s, "B": rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)}
  constant = {"f": _constant_f(0.5)}
  optimizers = dtn.METHOD.optimizers(config, 10, 20)
  state = dtn.create_state(config, jax.random.PRNGKey(0), optimizers, batch, constant)
  _, metrics = jax.jit(lambda st, b, fr: dtn.train_step(config, optimizers, st, b, fr))(
      state, batch, constant)
  assert float(metrics["loss_CONST"]) == 0.0
  assert float(metrics["loss_TID"]) > 0.0 and float(metrics["loss_GANG"]) > 0.0


# ----------------------------------------------------------------------------------------------------
# Training: f frozen, out of the checkpoint; exact resume; the CLI
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  config = tiny_config("dtn")
  f_before = jax.tree_util.tree_map(np.array, dtn.frozen(config)["f"].params)
  straight, resumed, results = straight_and_resumed_runs(config, tmp_path_factory.mktemp("dtn"))
  return config, f_before, straight, resumed, results


def test_f_is_the_source_classifier_not_the_judge():
  config = tiny_config("dtn")
  from translate.pretrained import source_classifier as sc
  f = dtn.frozen(config)["f"]
  assert f.name == sc.PRINTED_DIGITS.name and "mnist" not in f.name.lower()
  assert sc.PRINTED_DIGITS.load_data is sc._printed_digits  # trained on domain A's labels only


def test_trains_f_frozen_and_out_of_the_checkpoint_resume_exact_and_cli(tiny_runs, tmp_path):
  config, f_before, straight, resumed, results = tiny_runs
  step, a = final_state(straight)
  _, b = final_state(resumed)
  assert step == 4 and max_diff(a, b) == 0.0  # 2 steps + resume + 2 steps == 4 steps straight
  assert set(a["params"]) == {"G", "D"}
  assert set(a["params"]["G"]) == {"g"} and set(a["params"]["D"]) == {"D"}
  f_leaves = jax.tree_util.tree_leaves(f_before)
  ckpt_leaves = jax.tree_util.tree_leaves(a)
  for leaf in f_leaves:
    assert not any(np.shape(x) == leaf.shape and np.array_equal(x, leaf) for x in ckpt_leaves)
  # f after training: bit-equal (loaded again from the cache, and as the engine held it)
  f_after = dtn.frozen(config)["f"].params
  jax.tree_util.tree_map(np.testing.assert_array_equal, f_before, f_after)
  del results
  # The trained run translates: the engine's label_acc runs the predict 'AtoB' on test sources (one
  # image input, domain A); the inference CLI writes G(input) (a grey model, RGB files).
  from translate import evaluation, inference, workdir
  from translate.data import digits
  run = workdir.load(straight)
  fn = evaluation._direction_fn(run.config, run.method, "AtoB")
  assert np.asarray(fn(run.state, run.frozen, np.zeros((3, 32, 32, 1), np.float32))).shape == \
      (3, 32, 32, 1)
  assert run.method.predicts["AtoB"].inputs[0].domain == "A"
  printed = digits.load_split("test")["A"][:2]
  for i, image in enumerate(printed):
    Image.fromarray(image).save(tmp_path / f"d{i}.png")  # RGB files; the model reads grey
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path}", f"--output={tmp_path / 'out'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  p = inference.Predictor(straight)
  x = np.stack([inference.read_image(str(tmp_path / f"d{i}.png"), 1) for i in range(2)])
  expected = p.translate(x, "AtoB")
  for i in range(2):
    out = np.asarray(Image.open(tmp_path / "out" / f"d{i}.png"))
    want = np.clip((expected[i, ..., 0] + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, want)


def test_f_is_an_argument_of_the_step_and_bit_equal_after_steps():
  from translate import loop
  config = tiny_config("dtn")
  mesh = parallel.make_mesh(1)
  rng = np.random.default_rng(0)
  batch = {k: rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32) for k in "AB"}
  optimizers = dtn.METHOD.optimizers(config, 10, 20)
  frozen = parallel.replicate(dtn.METHOD.frozen(config), mesh)
  before = jax.tree_util.tree_map(np.array, frozen["f"].params)
  state = loop.create_train_state(config, dtn.METHOD, mesh, optimizers,
                                  {k: v[:1] for k, v in batch.items()}, frozen)
  step = loop.make_train_step(config, dtn.METHOD, mesh, optimizers)
  for _ in range(3):
    state, metrics = step(state, parallel.shard_batch(batch, mesh), frozen)
  jax.tree_util.tree_map(np.testing.assert_array_equal, before, frozen["f"].params)
  # other weights of f, the same compiled program, another L_CONST: f is an input, not a constant
  other = jax.tree_util.tree_map(lambda x: 1.5 * x, frozen)
  _, metrics_other = step(state, parallel.shard_batch(batch, mesh), other)
  assert step._cache_size() == 1
  assert float(metrics_other["loss_CONST"]) != float(metrics["loss_CONST"])


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "translate.translate", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------------------------------
# transfer_acc
# ----------------------------------------------------------------------------------------------------
def test_transfer_acc_on_known_inputs():
  from translate.data import digits
  train_x, train_y = digits.mnist_split("train")
  test_x, test_y = digits.mnist_split("test")
  train_x, test_x = train_x[..., :1], test_x[..., :1]
  # A perfect "translation": the classifier trains on real target digits with their labels.
  perfect = dtn.transfer_accuracy(train_x[:2000], train_y[:2000], test_x, test_y, steps=150)
  assert perfect > 0.85, perfect
  # A translation that loses the digit: labels shuffled against the images -> chance.
  shuffled = np.random.default_rng(0).permutation(train_y[:2000])
  chance = dtn.transfer_accuracy(train_x[:2000], shuffled, test_x, test_y, steps=150)
  assert chance < 0.3, chance


# ----------------------------------------------------------------------------------------------------
# svhn2mnist through tfds mock data
# ----------------------------------------------------------------------------------------------------
def test_svhn2mnist_preset_through_mock_data(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))  # a mock-trained f stays here
  config = load_config("configs/dtn.py", "svhn2mnist")
  assert (config.data.tfds_A, config.data.tfds_B, config.model.f) == ("svhn_cropped", "mnist", "svhn")
  assert config.data.input_nc == 3 and config.data.output_nc == 1
  from translate.data import tfds_pair
  from translate.pretrained import source_classifier as sc
  with tfds.testing.mock_data(num_examples=12):
    batch = next(dtn.DATA.create_dataset(config, "train", 4, seed=0).as_numpy_iterator())
    assert batch["A"].shape == (4, 32, 32, 3) and batch["B"].shape == (4, 32, 32, 1)  # 28 -> 32
    assert batch["label_A"].dtype == np.int32 and batch["label_B"].shape == (4,)
    assert -1.0 <= batch["B"].min() and batch["B"].max() <= 1.0
    # resume: skipping batches gives the same stream
    stream = list(dtn.DATA.create_dataset(config, "train", 4, seed=0).take(3).as_numpy_iterator())
    skipped = next(dtn.DATA.create_dataset(config, "train", 4, seed=0, start_batch=2)
                   .as_numpy_iterator())
    np.testing.assert_array_equal(stream[2]["A"], skipped["A"])
    np.testing.assert_array_equal(stream[2]["label_B"], skipped["label_B"])
    test = list(dtn.DATA.create_dataset(config, "test", 5, train=False).as_numpy_iterator())
    assert [len(b["A"]) for b in test] == [5, 5, 2]  # one pass of max(nA, nB) = 12
    assert dtn.DATA.test_counts(config) == ({"A": 12, "B": 12}, False)
    assert dtn.DATA.dataset_size(config, "train") == 12
    # f is trained on SVHN `extra` (the paper's choice), tested on `test`
    images, labels = sc.svhn_spec().load_data("train")
    assert images.shape == (12, 32, 32, 3) and labels.shape == (12,)
    # and the preset trains (tiny sizes; steps driven here, since Orbax cannot write under the mock)
    config.model.update(f_steps=3, ngf=4, ndf=4, n_layers_D=2)
    config.eval.update(batch_size=4, transfer_images=8, transfer_steps=2)
    frozen = dtn.frozen(config)
    optimizers = dtn.METHOD.optimizers(config, 3, 2)
    state = dtn.create_state(config, jax.random.PRNGKey(0), optimizers, batch, frozen)
    step = jax.jit(lambda st, b, fr: dtn.train_step(config, optimizers, st, b, fr))
    for b in stream[:2]:
      state, metrics = step(state, b, frozen)
    assert np.isfinite(float(metrics["loss_G"])) and np.isfinite(float(metrics["loss_D"]))
    assert 0.0 <= dtn.transfer_acc(config, dtn.METHOD, state, frozen)["transfer_acc"] <= 1.0
  assert "tfds svhn_cropped" in tfds_pair.describe(config.data)


# ----------------------------------------------------------------------------------------------------
# folder: f is any network of translate.pretrained, by name
# ----------------------------------------------------------------------------------------------------
def _toy_features_apply(params, images, layers=None):
  """A fixed 3x3 conv + ReLU + 4x4 average pool: (B, H, W, 3) -> 'relu' (B, H/4, W/4, 8)."""
  y = jax.nn.relu(jax.lax.conv_general_dilated(images, params["kernel"], (1, 1), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC")))
  y = jax.lax.reduce_window(y, 0.0, jax.lax.add, (1, 4, 4, 1), (1, 4, 4, 1), "VALID") / 16.0
  return {name: {"relu": y}[name] for name in layers} if layers else y


def _load_toy_features(path=None):
  del path
  kernel = np.random.default_rng(5).normal(size=(3, 3, 3, 8)).astype(np.float32)
  return pretrained.Pretrained({"kernel": jnp.asarray(kernel)}, _toy_features_apply, "dtn_toy_f")


pretrained.register("dtn_toy_f", _load_toy_features, replace=True)


def test_folder_preset_with_a_pretrained_feature_network(tmp_path):
  from tests.test_train import write_folder_dataset
  from translate import train
  write_folder_dataset(tmp_path / "data", n=4)
  config = load_config("configs/dtn.py", "folder")
  assert (config.model.f, config.model.f_layer) == ("vgg16", "relu3_3")
  assert (config.loss.alpha, config.loss.beta, config.loss.gamma) == (100.0, 1.0, 0.05)
  config.data.update(path=str(tmp_path / "data"), load_size=36, crop_size=32)
  # g decodes a spatial map (8x8x8 here) up to 32 px; batch norm in g and D; the TV term is on
  config.model.update(f="dtn_toy_f", f_layer="relu", ngf=4, ndf=4, n_layers_D=2)
  config.batch_size, config.num_train_steps = 2, 2
  config.log_every = config.sample_every = config.checkpoint_every = 1
  train.train_and_evaluate(config, str(tmp_path / "run"))
  step, state = final_state(str(tmp_path / "run"))
  assert step == 2 and "batch_stats" in state["collections"]["g"]
  with pytest.raises(ValueError, match="need digit labels"):
    config.eval.metrics = ("label_acc",)
    dtn.check_config(config)


def test_inference_refuses_a_size_f_does_not_fit_before_writing(tiny_runs, tmp_path):
  # f ends in a dense layer over its 32x32 input: a 64x64 file used to end the CLI in a raw flax
  # ScopeParamShapeError after the folder's other outputs had been written.
  from translate import inference
  _, _, straight, _, _ = tiny_runs
  src, out = tmp_path / "in", tmp_path / "out"
  src.mkdir()
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(src / "a.png")
  Image.fromarray(np.zeros((64, 64), np.uint8)).save(src / "z.png")
  p = inference.Predictor(straight)
  with pytest.raises(ValueError, match=r"z.png: Predict 'AtoB' of dtn cannot take 64x64 images .*"
                                       r"trained on 32x32.*nothing was written"):
    inference.run_files(p, str(src), str(out))
  assert not out.exists()
  with pytest.raises(ValueError, match="cannot take 64x64 images"):  # the library says the same
    p.translate(np.zeros((1, 64, 64, 1), np.float32), "AtoB")
  assert p.translate(np.zeros((1, 32, 32, 1), np.float32), "AtoB").shape == (1, 32, 32, 1)
  # one image without its batch axis: named as such, not as a 1x32 size
  with pytest.raises(ValueError, match=r"images must be a batch of images \(B, H, W, C\), got shape "
                                       r"\(32, 32, 1\)"):
    p.translate(np.zeros((32, 32, 1), np.float32), "AtoB")
