"""The embedded printed -> MNIST digits data set and the MNIST digit classifier that judges it."""
import os

import numpy as np
import pytest
from PIL import Image

from translate.data import digits
from translate.pretrained import classifiers


# ----------------------------------------------------------------------------------------------------
# MNIST (domain B)
# ----------------------------------------------------------------------------------------------------
def test_mnist_digits_format():
  images, labels = digits.mnist_digits()
  assert images.shape == (5000, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (5000,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 500))
  # Grey repeated over channels; white digits on black with the 2-px padding all black.
  np.testing.assert_array_equal(images[..., 0], images[..., 1])
  np.testing.assert_array_equal(images[..., 0], images[..., 2])
  assert images[:, :2].max() == 0 and images[:, -2:].max() == 0
  assert images[:, :, :2].max() == 0 and images[:, :, -2:].max() == 0
  assert images.max() == 255
  assert np.mean(images > 127) < 0.25  # mostly background, i.e. not inverted


def test_mnist_labels_match_the_pixels():
  """Class means must differ (a label column read from the wrong place would make them all alike)."""
  images, labels = digits.mnist_digits()
  means = np.stack([images[labels == d, ..., 0].mean(0) for d in range(10)]).reshape(10, -1)
  # A '1' is thin and a '0' is wide: the mean ink of 1s is clearly less than that of 0s.
  assert means[1].sum() < 0.6 * means[0].sum()
  distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
  assert distances[~np.eye(10, dtype=bool)].min() > 100


def test_mnist_split_is_stratified_disjoint_and_fixed():
  split = digits.mnist_split_indices()
  _, labels = digits.mnist_digits()
  assert len(split["train"]) == 4500 and len(split["test"]) == 500
  assert not set(split["train"]) & set(split["test"])
  np.testing.assert_array_equal(np.bincount(labels[split["test"]], minlength=10), np.full(10, 50))
  np.testing.assert_array_equal(np.bincount(labels[split["train"]], minlength=10), np.full(10, 450))
  assert len(np.unique(labels[split["train"][:20]])) > 3  # shuffled, not sorted by class
  again = digits.mnist_split_indices()
  np.testing.assert_array_equal(split["train"], again["train"])
  np.testing.assert_array_equal(split["test"], again["test"])


# ----------------------------------------------------------------------------------------------------
# Printed digits (domain A)
# ----------------------------------------------------------------------------------------------------
def test_printed_digits_format_balance_and_determinism():
  images, labels = digits.printed_digits(200, seed=3)
  assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
  assert labels.shape == (200,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 20))
  again_images, again_labels = digits.printed_digits(200, seed=3)
  np.testing.assert_array_equal(images, again_images)
  np.testing.assert_array_equal(labels, again_labels)
  other_images, _ = digits.printed_digits(200, seed=4)
  assert np.mean(images != other_images) > 0.5


def test_printed_digits_are_varied_and_contrasted():
  images, _ = digits.printed_digits(300, seed=0)
  x = images.astype(np.float32)
  grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
  # Every image has a visible digit: a real spread of grey levels, not a flat colour.
  spread = np.percentile(grey, 95, axis=(1, 2)) - np.percentile(grey, 5, axis=(1, 2))
  assert spread.min() > 30
  # Colour, not grey: channels differ in most images.
  assert np.mean(np.abs(x[..., 0] - x[..., 2]).mean(axis=(1, 2)) > 10) > 0.5
  # Both polarities: the centre (digit) brighter than the corners (background) in some, darker in others.
  centre = grey[:, 12:20, 14:18].mean(axis=(1, 2))
  corners = np.concatenate([grey[:, :3, :3], grey[:, :3, -3:], grey[:, -3:, :3], grey[:, -3:, -3:]],
                           axis=1).mean(axis=(1, 2))
  brighter = np.mean(centre > corners)
  assert 0.25 < brighter < 0.75
  # Many different images (fonts, sizes, colours): no two of them are equal.
  assert len({im.tobytes() for im in images}) == len(images)


def _shape_feature(mask: np.ndarray, size: int = 12) -> np.ndarray:
  """Ink cropped to its box, centred in a square (aspect kept), resized, zero-mean and unit-norm."""
  ys, xs = np.nonzero(mask > 0.2)
  crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  side = max(crop.shape)
  square = np.zeros((side, side), np.float32)
  top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
  square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
  image = Image.fromarray((square * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
  feature = np.asarray(image, np.float32).ravel()
  feature -= feature.mean()
  return feature / (np.linalg.norm(feature) + 1e-8)


def _digit_features(font) -> np.ndarray:
  return np.stack([_shape_feature(digits.render_digit_mask(font, d, size=40, canvas=64))
                   for d in range(10)])


def test_every_font_renders_ten_distinct_digits():
  for font in digits.font_paths():
    masks = [digits.render_digit_mask(font, d, size=24) for d in range(10)]
    for d, mask in enumerate(masks):
      assert mask.max() > 0.9, f"{font.name}: digit {d} has no ink"
    flat = np.stack(masks).reshape(10, -1)
    distances = np.abs(flat[:, None] - flat[None]).sum(-1)
    assert distances[~np.eye(10, dtype=bool)].min() > 5, f"{font.name}: two digits render alike"


def test_every_font_draws_the_right_digits():
  """Each chosen font's 0-9 look like the same digits in the other chosen fonts.

  Leave-one-out: a font's digit d must correlate best with the mean shape of d over the other fonts.
  Symbol fonts whose 0-9 slots hold other glyphs (cmsy10, cmex10) and the placeholder font
  (LastResortHE) fail this check, which the second half asserts, so the check can tell.
  """
  fonts = digits.font_paths()
  features = {font: _digit_features(font) for font in fonts}
  for font in fonts:
    templates = np.mean([features[other] for other in fonts if other != font], axis=0)
    predicted = (features[font] @ templates.T).argmax(axis=1)
    np.testing.assert_array_equal(predicted, np.arange(10), err_msg=font.name)

  templates = np.mean(list(features.values()), axis=0)
  for name in ("cmsy10.ttf", "cmex10.ttf", "LastResortHE-Regular.ttf"):
    assert name not in digits.PRINTED_FONTS
    path = digits.font_dir() / name
    if path.exists():
      predicted = (_digit_features(path) @ templates.T).argmax(axis=1)
      assert np.sum(predicted == np.arange(10)) <= 3, name


# ----------------------------------------------------------------------------------------------------
# Splits and the cache
# ----------------------------------------------------------------------------------------------------
def test_load_split_writes_then_reads_the_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path))
  first = digits.load_split("test", num_printed=40, seed=5)
  assert set(first) == {"A", "label_A", "B", "label_B"}
  assert first["A"].shape == (40, 32, 32, 3) and first["A"].dtype == np.uint8
  assert first["B"].shape == (500, 32, 32, 3) and first["B"].dtype == np.uint8
  assert first["label_A"].dtype == np.int32 and first["label_B"].dtype == np.int32
  np.testing.assert_array_equal(np.bincount(first["label_B"], minlength=10), np.full(10, 50))
  files = [f for f in os.listdir(tmp_path) if not f.endswith(".lock")]  # (filled_once's lock file)
  assert files == [digits.split_cache_path("test", 40, 5).name]  # no temporary file left behind
  assert digits.DATA_VERSION in files[0]

  # The second call must not render: make rendering fail and read the cache.
  def no_render(*args, **kwargs):
    raise AssertionError("rendered although the split was cached")

  monkeypatch.setattr(digits, "printed_digits", no_render)
  second = digits.load_split("test", num_printed=40, seed=5)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])
  with pytest.raises(AssertionError, match="rendered"):
    digits.load_split("test", num_printed=41, seed=5)  # another size is another cache entry


def test_default_test_split(tmp_path, monkeypatch):
  monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path))
  split = digits.load_split("test")
  assert split["A"].shape == (digits.NUM_PRINTED["test"], 32, 32, 3)
  assert split["B"].shape == (500, 32, 32, 3)
  np.testing.assert_array_equal(split["B"], digits.mnist_split("test")[0])
  with pytest.raises(ValueError):
    digits.load_split("validation")


# ----------------------------------------------------------------------------------------------------
# The classifier
# ----------------------------------------------------------------------------------------------------
SHORT_STEPS = 150  # ~95% on MNIST test; the default (DIGITS.steps) trains longer
DIGITS = classifiers.DIGITS


def label_accuracy(params, images, labels):
  return float(np.mean(classifiers.predict(DIGITS, params, images) == labels))


@pytest.fixture(scope="module")
def short_classifier(tmp_path_factory):
  cache = tmp_path_factory.mktemp("classifier_cache")
  params, accuracy = classifiers.load_or_train(DIGITS, cache, steps=SHORT_STEPS)
  return cache, params, accuracy


def test_short_training_learns_mnist_but_not_printed_digits(short_classifier, tmp_path, monkeypatch):
  _, params, mnist_accuracy = short_classifier
  test_images, test_labels = digits.mnist_split("test")
  assert mnist_accuracy == label_accuracy(params, test_images, test_labels)
  assert mnist_accuracy > 0.9
  # The identity baseline: printed digits as they are, not translated, are mostly misread, which is
  # what leaves room for a translator to show that it keeps digits' identities.
  printed, printed_labels = digits.printed_digits(500, seed=digits.PRINTED_SEED["test"])
  printed_accuracy = label_accuracy(params, printed, printed_labels)
  assert printed_accuracy < mnist_accuracy - 0.3


def test_load_or_train_loads_the_second_time(short_classifier, monkeypatch):
  cache, params, accuracy = short_classifier
  path = classifiers.params_cache_path(DIGITS, cache, steps=SHORT_STEPS)
  assert [p.name for p in cache.iterdir() if p.suffix != ".lock"] == [path.name]

  def no_training(*args, **kwargs):
    raise AssertionError("trained although the parameters were cached")

  monkeypatch.setattr(classifiers, "train_classifier", no_training)
  loaded, loaded_accuracy = classifiers.load_or_train(DIGITS, cache, steps=SHORT_STEPS)
  assert loaded_accuracy == pytest.approx(accuracy)
  import jax
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_concurrent_callers_train_once_and_share_the_cached_file(tmp_path, monkeypatch):
  """Two callers asking for the same uncached classifier at once: one trains, the other waits for its
  file and loads it (parallel test workers, two runs started together on an empty cache)."""
  import threading
  import time
  trained = []

  def slow_training(spec, seed, steps, verbose):
    trained.append(threading.get_ident())
    time.sleep(1.0)  # long enough for the other caller to find no file yet
    return {"w": np.full((2,), float(len(trained)), np.float32)}, 0.5

  monkeypatch.setattr(classifiers, "train_classifier", slow_training)
  results = [None, None]

  def call(i):
    results[i] = classifiers.load_or_train(DIGITS, tmp_path, steps=3)

  threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(trained) == 1
  for params, accuracy in results:
    np.testing.assert_array_equal(np.asarray(params["w"]), [1.0, 1.0])
    assert accuracy == pytest.approx(0.5)


def test_predict_accepts_uint8_and_float_and_any_batch(short_classifier):
  _, params, _ = short_classifier
  images, _ = digits.mnist_split("test")
  images = images[:37]  # not a multiple of the batch: the padded tail must be cut off
  as_uint8 = classifiers.predict(DIGITS, params, images, batch_size=16)
  as_float = classifiers.predict(DIGITS, params, images.astype(np.float32) / 127.5 - 1.0,
                                 batch_size=16)
  assert as_uint8.shape == (37,) and as_uint8.dtype == np.int32
  np.testing.assert_array_equal(as_uint8, as_float)
  np.testing.assert_array_equal(as_uint8, classifiers.predict(DIGITS, params, images))
  # Grey input (one channel) is read the same as the same grey repeated over RGB.
  np.testing.assert_array_equal(as_uint8, classifiers.predict(DIGITS, params, images[..., :1]))
