"""DIAT (translate/methods/diat.py): the identity loss against a direct computation, no gradient of the
adaptive (DIAT-A) identity loss into D, exact resume, the enhancement stage started from a trained T,
and the data: styled digits split by attribute, CelebA through tfds mock data with names checked.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import load_config, straight_and_resumed_runs, tiny_config
from tests.test_train import final_state, max_diff
from translate import pretrained
from translate.data import attribute_pairs, digits
from translate.methods import diat


def _batch(config, n=4, seed=0):
  rng = np.random.default_rng(seed)
  c = config.data.channels
  return {"A": rng.uniform(-1, 1, (n, 32, 32, c)).astype(np.float32),
          "B": rng.uniform(-1, 1, (n, 32, 32, c)).astype(np.float32)}


def _state(config, batch, frozen=None):
  optimizers = diat.METHOD.optimizers(config, 10, 20)
  return optimizers, diat.create_state(config, jax.random.PRNGKey(0), optimizers, batch, frozen or {})


# A toy frozen feature network (fixed conv + ReLU + 4x4 average pool) standing in for VGG.
def _toy_apply(params, images, layers=None):
  y = jax.nn.relu(jax.lax.conv_general_dilated(images, params["kernel"], (1, 1), "SAME",
                                               dimension_numbers=("NHWC", "HWIO", "NHWC")))
  pooled = jax.lax.reduce_window(y, 0.0, jax.lax.add, (1, 4, 4, 1), (1, 4, 4, 1), "VALID") / 16.0
  feats = {"relu": y, "pool": pooled}
  return {name: feats[name] for name in layers}


def _load_toy(path=None):
  del path
  kernel = np.random.default_rng(5).normal(size=(3, 3, 1, 6)).astype(np.float32)
  return pretrained.Pretrained({"kernel": jnp.asarray(kernel)}, _toy_apply, "diat_toy_f")


pretrained.register("diat_toy_f", _load_toy, replace=True)


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
def test_identity_loss_matches_direct_computation():
  config = tiny_config("diat")
  config.loss.update(id_layers=("conv1", "conv2"), id_weights=(0.3, 2.0))
  batch = _batch(config)
  _, state = _state(config, batch)
  x, y = batch["A"], batch["B"]
  d = diat.build_networks(config)["D"]
  d_params = state.params["D"]["D"]
  _, fx = d.apply({"params": d_params}, x, features=True)
  _, fy = d.apply({"params": d_params}, y, features=True)
  # sum_l w_l / (C H W) ||psi_l(x) - psi_l(y)||^2, averaged over the batch
  expected = 0.0
  for name, w in (("conv1", 0.3), ("conv2", 2.0)):
    a, b = np.asarray(fx[name], np.float64), np.asarray(fy[name], np.float64)
    per_image = ((a - b) ** 2).reshape(len(a), -1).sum(1) / np.prod(a.shape[1:])
    expected += w * per_image.mean()
  got = diat.identity_loss(config, {}, d_params, {}, x, y)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  assert float(diat.identity_loss(config, {}, d_params, {}, x, x)) == 0.0
  # DIAT with a fixed f: the frozen network's layers, same formula
  config.loss.update(identity="pretrained", f="diat_toy_f", id_layers=("relu", "pool"),
                     id_weights=(1.0, 0.5))
  frozen = diat.frozen(config)
  fx, fy = _toy_apply(frozen["f"].params, x, ("relu", "pool")), _toy_apply(frozen["f"].params, y,
                                                                          ("relu", "pool"))
  expected = sum(w * np.mean((np.asarray(fx[n], np.float64) - np.asarray(fy[n], np.float64)) ** 2)
                 for n, w in (("relu", 1.0), ("pool", 0.5)))
  np.testing.assert_allclose(float(diat.identity_loss(config, frozen, d_params, {}, x, y)), expected,
                             rtol=1e-5)
  config.loss.identity = "none"
  assert float(diat.identity_loss(config, frozen, d_params, {}, x, y)) == 0.0


def test_adaptive_identity_loss_sends_no_gradient_into_d():
  config = tiny_config("diat")
  batch = _batch(config)
  _, state = _state(config, batch)
  x, y = batch["A"], batch["B"]
  d_params = state.params["D"]["D"]
  g_d = jax.grad(lambda p: diat.identity_loss(config, {}, p, {}, x, y))(d_params)
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(g_d))
  g_y = jax.grad(lambda v: diat.identity_loss(config, {}, d_params, {}, x, v))(y)
  assert float(jnp.max(jnp.abs(g_y))) > 0.0  # it does train the generator
  # In the step: D's update is the same with lambda_id 0 and 50; T's is not (one program, both).
  heavy = tiny_config("diat")
  heavy.loss.lambda_id = 50.0
  config.loss.lambda_id = 0.0
  optimizers = diat.METHOD.optimizers(config, 10, 20)
  both = jax.jit(lambda s, b: (diat.train_step(config, optimizers, s, b, {}),
                               diat.train_step(heavy, optimizers, s, b, {})))
  (new0, _), (new1, m1) = both(state, batch)
  assert float(m1["loss_G_id"]) > 0.0
  jax.tree_util.tree_map(np.testing.assert_array_equal, new0.params["D"], new1.params["D"])
  assert max_diff(new0.params["G"], new1.params["G"]) > 0.0


def test_config_checks_name_the_problem():
  config = tiny_config("diat")
  config.loss.identity = "vgg"
  with pytest.raises(ValueError, match="loss.identity"):
    diat.check_config(config)
  config = tiny_config("diat")
  config.loss.id_layers = ("conv1", "conv7")
  config.loss.id_weights = (1.0, 1.0)
  with pytest.raises(ValueError, match=r"conv7.*D's feature maps"):
    diat.check_config(config)
  config = tiny_config("diat")
  config.data.attribute = "Boldd"
  with pytest.raises(ValueError, match=r"Boldd.*valid names.*Bold"):
    diat.check_config(config)
  config = tiny_config("diat")
  config.stage = "enhance"
  with pytest.raises(ValueError, match="init_from"):
    diat.check_config(config)


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------
def test_digits_split_by_attribute_with_digit_labels():
  config = load_config("configs/diat.py", "digits")
  data = digits.load_styled_split("test")
  column = digits.STYLE_ATTRIBUTES.index("Bold")
  ds = attribute_pairs.domain_dataset(config.data, "A", "test", 1000)
  a = next(ds.as_numpy_iterator())
  without = data["attribute" + "s"][:, column] == 0
  assert len(a["image"]) == without.sum() == attribute_pairs.domain_size(config.data, "A", "test")
  np.testing.assert_array_equal(a["label"], data["digit"][without])
  np.testing.assert_allclose(a["image"], data["image"][without] / 127.5 - 1.0, atol=1e-6)
  # training batches: A all without, B all with the attribute; skipping batches resumes the stream
  stream = list(diat.DATA.create_dataset(config, "train", 8, seed=0).take(3).as_numpy_iterator())
  skipped = next(diat.DATA.create_dataset(config, "train", 8, seed=0, start_batch=2)
                 .as_numpy_iterator())
  for key in ("A", "B", "label_A", "label_B"):
    np.testing.assert_array_equal(stream[2][key], skipped[key])
  train = digits.load_styled_split("train")
  from translate.pretrained import classifiers
  del classifiers
  with_b = train["image"][train["attributes"][:, column] == 1] / 127.5 - 1.0
  for image in stream[0]["B"]:
    assert np.min(np.abs(with_b - image).reshape(len(with_b), -1).max(1)) < 1e-6


def test_celeba_preset_through_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  config = load_config("configs/diat.py", "celeba,tiny")
  config.data.update(attribute="Smiling", celeba_crop_size=64)
  assert (config.data.tfds_name, config.data.image_size) == ("celeb_a", 32)
  with tfds.testing.mock_data(num_examples=12):
    smiling = [bool(e["attributes"]["Smiling"]) for e in
               tfds.load("celeb_a", split="test").as_numpy_iterator()]
    assert diat.check_config(config) == {"loss.id_layers": ("conv1", "conv2"),
                                         "loss.id_weights": (1.0, 1.0)}
    counts, _ = diat.DATA.test_counts(config)
    assert counts == {"A": smiling.count(False), "B": smiling.count(True)}
    a = list(attribute_pairs.domain_dataset(config.data, "A", "test", 64).as_numpy_iterator())[0]
    assert a["image"].shape == (smiling.count(False), 32, 32, 3)
    assert -1.0 <= a["image"].min() and a["image"].max() <= 1.0
    b = list(attribute_pairs.domain_dataset(config.data, "B", "test", 64).as_numpy_iterator())[0]
    assert len(b["image"]) == smiling.count(True)
    batch = next(diat.DATA.create_dataset(config, "train", 2, seed=0).as_numpy_iterator())
    assert batch["A"].shape == batch["B"].shape == (2, 32, 32, 3)
    config.data.attribute = "Smilling"
    with pytest.raises(ValueError, match=r"Smilling.*valid names.*Smiling"):
      diat.check_config(config)


# ----------------------------------------------------------------------------------------------------
# Training: resume, enhancement stage from a trained T
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
  config = tiny_config("diat")
  base = tmp_path_factory.mktemp("diat")
  straight, resumed, _ = straight_and_resumed_runs(config, base)
  return config, base, straight, resumed


def test_resume_equals_straight_run(tiny_runs):
  _, _, straight, resumed = tiny_runs
  step, a = final_state(straight)
  _, b = final_state(resumed)
  assert step == 4 and max_diff(a, b) == 0.0
  assert set(a["params"]["G"]) == {"T"} and set(a["params"]["D"]) == {"D"}


def test_enhancement_stage_starts_from_the_trained_transform(tiny_runs):
  _, base, straight, _ = tiny_runs
  config = tiny_config("diat")
  config.update(stage="enhance", init_from=straight)
  config.num_train_steps = 2
  _, stage1 = final_state(straight)
  derived = diat.check_config(config)
  assert derived["model.ngf"] == 4 and derived["model.n_layers_D"] == 2
  frozen = diat.frozen(config)
  # T is the stage-1 checkpoint's T, frozen; D starts from the stage-1 D
  jax.tree_util.tree_map(np.testing.assert_array_equal, frozen["stage1"].params["T"],
                         stage1["params"]["G"]["T"])
  batch = _batch(config)
  _, state = _state(config, batch, frozen)
  assert set(state.params["G"]) == {"E"}
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.params["D"]["D"],
                         stage1["params"]["D"]["D"])
  # E starts as the identity on T's outputs: the stage starts from T's results
  t = frozen["stage1"](batch["A"])
  e = diat.translate(config, state, frozen, batch["A"])
  np.testing.assert_allclose(np.asarray(e), np.clip(np.asarray(t), -0.999, 0.999), atol=1e-5)
  # one step trains E and D only; T stays the stage-1 T (an argument of the step, not in the state)
  optimizers = diat.METHOD.optimizers(config, 10, 20)
  new, metrics = jax.jit(lambda st, b, fr: diat.train_step(config, optimizers, st, b, fr))(
      state, batch, frozen)
  assert set(new.params["G"]) == {"E"} and float(metrics["loss_G_content"]) < 1e-3
  assert max_diff(new.params["G"], state.params["G"]) > 0.0
  jax.tree_util.tree_map(np.testing.assert_array_equal, frozen["stage1"].params["T"],
                         stage1["params"]["G"]["T"])
  # init_from another method's workdir, or another attribute, is refused by name
  other = base / "other"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"method": "dtn"}))
  config.init_from = str(other)
  with pytest.raises(ValueError, match="'dtn' run, not a DIAT one"):
    diat.check_config(config)
  config.update(init_from=straight)
  config.data.attribute = "Italic"
  with pytest.raises(ValueError, match="attribute 'Bold', not 'Italic'"):
    diat.check_config(config)
