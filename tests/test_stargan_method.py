"""StarGAN: labelled data (tfds mock celeb_a, folders, embedded digits), losses, training, resume, CLI."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.helpers import load_config, straight_and_resumed_runs, tiny_config
from tests.test_train import final_state, max_diff
from translate import losses
from translate import translate as translate_cli
from translate.data import digits, labelled
from translate.methods import stargan


def data_config(**overrides):
  config = load_config("configs/stargan.py", "digits")
  config.data.update(**overrides)
  return config.data


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------
def test_celeba_labels_selected_by_name():
  import tensorflow_datasets as tfds
  d = load_config("configs/stargan.py", "celeba").data
  d.update(celeba_attrs=("Male", "Eyeglasses"), image_size=32, celeba_crop_size=64)
  with tfds.testing.mock_data(num_examples=6):
    ds = tfds.load("celeb_a", split="train")
    expected = [[float(e["attributes"]["Male"]), float(e["attributes"]["Eyeglasses"])]
                for e in ds.take(6).as_numpy_iterator()]
    batch = next(labelled.create_dataset(d, "train", 6, train=False).as_numpy_iterator())
  assert batch["image"].shape == (6, 32, 32, 3)
  assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  # mock data is random: the two columns are the named attributes, in the given order
  np.testing.assert_array_equal(batch["label"], np.asarray(expected, np.float32))
  d.celeba_attrs = ("Male", "Blond_Hiar")
  with pytest.raises(ValueError, match=r"Blond_Hiar.*valid names.*Blond_Hair"):
    labelled.label_layout(d)


def test_folder_per_domain(tmp_path):
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for domain, value in (("angry", 40), ("happy", 200)):
      os.makedirs(tmp_path / split / domain)
      for i in range(3):
        pixels = np.full((40, 36, 3), value, np.uint8) + rng.integers(0, 5, (40, 36, 3), np.uint8)
        Image.fromarray(pixels).save(tmp_path / split / domain / f"{i}.png")
  d = data_config(sources=("folder",), path=str(tmp_path), folder_crop_size=32, channels=3)
  batch = next(labelled.create_dataset(d, "test", 6, train=False).as_numpy_iterator())
  # sorted domains -> one-hot; each image's label names its folder (dark angry, bright happy)
  bright = batch["image"].mean(axis=(1, 2, 3)) > 0
  np.testing.assert_array_equal(batch["label"], np.eye(2, dtype=np.float32)[bright.astype(int)])
  assert labelled.label_layout(d).sets[0].names == ("angry", "happy")
  os.makedirs(tmp_path / "train" / "sad")
  with pytest.raises(ValueError, match="sad.*holds no images"):
    labelled.create_dataset(d, "train", 2)


def test_digits_labels_match_rendering_metadata():
  styled = digits.load_styled_split("test")
  # the attributes are what the font and the polarity say
  fonts = list(digits.STYLED_FONTS)
  style = np.array([digits.STYLED_FONTS[fonts[f]] for f in styled["font"]], np.float32)
  np.testing.assert_array_equal(styled["attributes"][:, :3], style)
  ink = styled["image"][..., 0].astype(np.float32)
  centre, corner = ink[:, 12:20, 12:20].mean((1, 2)), ink[:, :3, :3].mean((1, 2))
  inverted = styled["attributes"][:, 3] > 0.5
  assert np.all(corner[inverted] > 150) and np.all(corner[~inverted] < 100)  # light paper / dark
  del centre
  d = data_config(digits_attrs=("Inverted", "Bold"))
  batch = next(labelled.create_dataset(d, "test", 20, train=False).as_numpy_iterator())
  np.testing.assert_array_equal(batch["label"], styled["attributes"][:20][:, [3, 0]])
  np.testing.assert_allclose(batch["image"], styled["image"][:20] / 127.5 - 1.0, atol=1e-6)
  with pytest.raises(ValueError, match=r"Underlined.*valid names"):
    labelled.label_layout(data_config(digits_attrs=("Bold", "Underlined")))


def test_mask_vector_batches_alternate_sources():
  d = data_config(sources=("digits", "digits_class"))
  lay = labelled.label_layout(d)
  assert (lay.num_classes, lay.label_dim) == (14, 16)
  it = labelled.create_dataset(d, "train", 4, start_batch=3).as_numpy_iterator()
  labels = [next(it)["label"] for _ in range(3)]
  # batch 3 is source 1, then 0, then 1; each image labelled in its own part, zeros in the other
  assert [int(b[0, 15]) for b in labels] == [1, 0, 1]
  assert all(np.all(b[:, 14:].sum(1) == 1) for b in labels)
  assert np.all(labels[0][:, 4:14].sum(1) == 1) and np.all(labels[0][:, :4] == 0)
  assert np.all(labels[1][:, 4:14] == 0) and labels[1][:, :4].sum() > 0


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------
def test_gradient_penalty_equals_direct_computation():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(2, 3, 1)).astype(np.float32)
  x = rng.normal(size=(3, 2, 3, 1)).astype(np.float32)
  # critic(x)_b = sum_ij tanh(w_ij x_bij) x_bij^2: d/dx = w (1 - tanh^2) x^2 + 2 tanh x
  critic = lambda v: jnp.sum(jnp.tanh(w * v) * v ** 2, axis=(1, 2, 3))  # noqa: E731
  t = np.tanh(w * x)
  grad = w * (1 - t ** 2) * x ** 2 + 2 * t * x
  norms = np.sqrt((grad.reshape(3, -1) ** 2).sum(1))
  expected = np.mean((norms - 1) ** 2)
  gp = losses.gradient_penalty(critic, jnp.asarray(x), jnp.asarray(x), None, interpolation="real")
  np.testing.assert_allclose(float(gp), expected, rtol=1e-5)


def test_classification_loss_masks_inactive_source():
  config = tiny_config("stargan", preset="digits_both")
  lay = stargan.layout(config)
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(3, lay.num_classes)), jnp.float32)
  labels = lay.encode(0, (rng.uniform(size=(3, 4)) > 0.5).astype(np.float32))
  loss = float(stargan.classification_loss(lay, logits, labels))
  changed = labels.copy()
  changed[:, 4:14] = np.eye(10)[[2, 5, 7]]  # the inactive (digit class) part
  assert float(stargan.classification_loss(lay, logits, changed)) == loss
  # the active part is binary cross-entropy summed over the attributes, mean over images
  p = 1 / (1 + np.exp(-np.asarray(logits[:, :4], np.float64)))
  y = labels[:, :4]
  bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(1).mean()
  np.testing.assert_allclose(loss, bce, rtol=1e-5)
  # for the categorical source: softmax cross-entropy on its own logits only
  cls = lay.encode(1, np.eye(10, dtype=np.float32)[[1, 4, 9]])
  z = np.asarray(logits[:, 4:14], np.float64)
  ce = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(3), [1, 4, 9]])
  np.testing.assert_allclose(float(stargan.classification_loss(lay, logits, cls)), ce, rtol=1e-5)


def test_domain_targets_follow_reference_create_labels():
  config = load_config("configs/stargan.py", "celeba")
  c_org = jnp.asarray([[1, 0, 0, 1, 0]], jnp.float32)  # Black_Hair, Male, not Young
  targets = dict(stargan.domain_targets(config, c_org))
  np.testing.assert_array_equal(targets["Blond_Hair"], [[0, 1, 0, 1, 0]])  # hair set, others off
  np.testing.assert_array_equal(targets["Male"], [[1, 0, 0, 0, 0]])  # flipped
  np.testing.assert_array_equal(targets["Young"], [[1, 0, 0, 1, 1]])
  np.testing.assert_array_equal(stargan.target_labels_from_names(config, "Black_Hair,Male"),
                                [1, 0, 0, 1, 0])


# ----------------------------------------------------------------------------------------------------
# Training end to end
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
  """4 steps straight, and 2 + resume + 2 (n_critic 2: G updates at steps 2 and 4)."""
  base = tmp_path_factory.mktemp("stargan")
  config = tiny_config("stargan", batch_size=4)
  straight, resumed, _ = straight_and_resumed_runs(config, base)
  return straight, resumed


def test_trains_resumes_and_updates_g_every_n_critic(digits_runs):
  straight, resumed = digits_runs
  step, a = final_state(straight)
  _, b = final_state(resumed)
  assert step == 4 and int(b["step"]) == 4
  assert max_diff(a, b) <= 1e-6
  # Adam counts: D updated every step, G every n_critic = 2nd
  counts = [int(x) for x in jax.tree_util.tree_leaves(a["opt_state"]["G"]) if np.ndim(x) == 0]
  assert counts and set(counts) == {2}
  counts = [int(x) for x in jax.tree_util.tree_leaves(a["opt_state"]["D"]) if np.ndim(x) == 0]
  assert set(counts) == {4}
  assert float(a["extra"]["last_G"]["loss_G_rec"]) > 0


def test_translate_cli_with_target(digits_runs, tmp_path):
  straight, _ = digits_runs
  src = tmp_path / "in"
  os.makedirs(src)
  x = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
  Image.fromarray(x).save(src / "d.png")
  out = tmp_path / "out"
  translate_cli.translate_files(straight, str(src), str(out), target="Bold,Inverted")
  translator = translate_cli.Translator(straight)
  image = translate_cli.read_image(str(src / "d.png"), 1)
  expected = translator.predict("to_target", images=image[None],
                               target=np.array([[1, 0, 0, 1]], np.float32))["image"][0, ..., 0]
  expected = np.clip((expected + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(np.asarray(Image.open(out / "d.png")), expected)
  grid_dir = tmp_path / "grid"
  translate_cli.translate_files(straight, str(src), str(grid_dir), target="all")
  grid = np.asarray(Image.open(grid_dir / "d.png"))
  assert grid.shape == (36, 5 * 34 + 2, 3)  # input + one column per attribute, 2 px padding
  with pytest.raises(ValueError, match=r"Thin.*valid names"):
    translate_cli.translate_files(straight, str(src), str(out), target="Thin")


def test_sample_grid_starts_with_input(digits_runs):
  """The engine's samples PNG keeps the method's column order: the input first, then one column per
  target (jax's tree utilities would rebuild the dict with sorted keys, putting 'input' last)."""
  from translate import visualize
  straight, _ = digits_runs
  config = tiny_config("stargan", batch_size=4)
  batch = next(stargan.create_dataset(config, "test", 8, seed=config.seed, train=False)
               .as_numpy_iterator())
  grid = np.asarray(Image.open(os.path.join(straight, "samples", "step_00000004.png")))
  assert grid.shape == (8 * 34 + 2, 5 * 34 + 2, 3)  # 8 samples; input + 4 attributes
  inputs = visualize.to_uint8(batch["image"])
  for i in range(8):
    np.testing.assert_array_equal(grid[2 + 34 * i:34 * (i + 1), 2:34], inputs[i])


def test_mask_vector_training_end_to_end(tmp_path):
  """digits_both (styled-digit attributes + MNIST classes, the mask vector): 4 steps straight equal
  2 + resume + 2, and the CLI translates to a label of either source, with that source's mask set."""
  config = tiny_config("stargan", batch_size=4, preset="digits_both")
  lay = stargan.layout(config)
  assert lay.mask_dim == 2 and lay.label_dim == 4 + 10 + 2
  straight, resumed, _ = straight_and_resumed_runs(config, tmp_path)
  step, a = final_state(straight)
  _, b = final_state(resumed)
  assert step == 4 and max_diff(a, b) <= 1e-6
  src = tmp_path / "in"
  os.makedirs(src)
  Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)).save(
      src / "d.png")
  translator = translate_cli.Translator(straight)
  image = translate_cli.read_image(str(src / "d.png"), 1)[None]
  outs = {}
  for target, k in (("Bold", 0), ("7", 1)):
    label = stargan.target_labels_from_names(config, target)
    assert label[lay.num_classes + k] == 1 and label[lay.num_classes + 1 - k] == 0
    outs[target] = translator.predict("to_target", images=image, target=label[None])["image"]
    assert outs[target].shape == (1, 32, 32, 1) and np.isfinite(outs[target]).all()
  assert np.abs(outs["Bold"] - outs["7"]).max() > 0  # the label reaches the generator
  with pytest.raises(ValueError, match="mixes labels of both sources"):
    stargan.target_labels_from_names(config, "Bold,7")
