"""Conditional GAN family: conditional norms, maxout, the nets, class_acc, and the cgan/gan methods end to
end on the embedded MNIST digits (train, checkpoint, exact resume, sample grid, generate CLI)."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.helpers import straight_and_resumed_runs, tiny_config
from tests.test_train import final_state, max_diff
from translate import translate as translate_cli
from translate import layers, train
from translate.methods import cgan
from translate.networks import gan as gan_nets


def _x(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).normal(2.0, 3.0, size=shape), jnp.float32)


# ----------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------
def test_maxout_matches_numpy():
  x = _x(0, (6, 7))
  layer = layers.Maxout(units=4, pieces=3)
  variables = layer.init(jax.random.PRNGKey(0), x)
  w = np.asarray(variables["params"]["linear"]["kernel"], np.float64)
  b = np.random.default_rng(1).normal(size=12)  # a non-zero bias, so its grouping is checked too
  variables = {"params": {"linear": {"kernel": jnp.asarray(w, jnp.float32),
                                     "bias": jnp.asarray(b, jnp.float32)}}}
  z = np.asarray(x, np.float64) @ w + b
  expected = np.stack([z[:, u * 3:(u + 1) * 3].max(axis=1) for u in range(4)], axis=1)
  np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="pieces"):
    layers.Maxout(units=4, pieces=0).init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("cls", [layers.ConditionalBatchNorm, layers.ConditionalInstanceNorm])
def test_conditional_norm_with_equal_params_per_class_is_the_plain_norm(cls):
  x = _x(2, (5, 4, 3, 6))
  labels = jnp.asarray([0, 3, 1, 2, 3])
  cond = cls(num_classes=4)
  variables = cond.init(jax.random.PRNGKey(0), x, labels)
  rng = np.random.default_rng(3)
  gamma, beta = rng.normal(1.0, 0.5, size=6), rng.normal(size=6)
  # every class row holds the same gain - 1 and bias
  params = {"gain": {"kernel": jnp.asarray(np.tile(gamma - 1.0, (4, 1)), jnp.float32)},
            "bias": {"kernel": jnp.asarray(np.tile(beta, (4, 1)), jnp.float32)}}
  batch = cls is layers.ConditionalBatchNorm
  plain = layers.BatchNorm() if batch else layers.InstanceNorm(affine=True)
  plain_vars = {"params": {"scale": jnp.asarray(gamma, jnp.float32),
                           "bias": jnp.asarray(beta, jnp.float32)}}
  if batch:
    stats = {"mean": jnp.asarray(rng.normal(size=6), jnp.float32),
             "var": jnp.asarray(rng.uniform(0.5, 2.0, size=6), jnp.float32)}
    plain_vars["batch_stats"] = stats
    variables = {"params": params, "batch_stats": {"norm": stats}}
  else:
    variables = {"params": params}
  for train_mode in (True, False):
    y = cond.apply(variables, x, labels, train=train_mode)
    expected = plain.apply(plain_vars, x, use_running_average=not train_mode)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_conditional_norm_classes_differ_and_conditioning_vectors():
  x = _x(4, (3, 2, 2, 5))
  same_x = jnp.broadcast_to(x[:1], x.shape)
  cond = layers.ConditionalInstanceNorm(num_classes=3)
  variables = cond.init(jax.random.PRNGKey(0), x, jnp.asarray([0, 1, 2]))
  rng = np.random.default_rng(5)
  params = {"gain": {"kernel": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)},
            "bias": {"kernel": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)}}
  y = np.asarray(cond.apply({"params": params}, same_x, jnp.asarray([0, 1, 2])))
  assert not np.allclose(y[0], y[1], atol=1e-2) and not np.allclose(y[1], y[2], atol=1e-2)
  # num_classes=0: BigGAN's form, gain and bias from a linear map of any conditioning vector
  vec = layers.ConditionalBatchNorm(num_classes=0)
  c = _x(6, (3, 7))
  v_vars = vec.init(jax.random.PRNGKey(0), x, c)
  wg, wb = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
  v_vars = {**v_vars, "params": {"gain": {"kernel": jnp.asarray(wg, jnp.float32)},
                                 "bias": {"kernel": jnp.asarray(wb, jnp.float32)}}}
  xn = np.asarray(x, np.float64)
  normed = (xn - xn.mean(axis=(0, 1, 2))) / np.sqrt(xn.var(axis=(0, 1, 2)) + 1e-5)
  cn = np.asarray(c, np.float64)
  expected = normed * (1 + cn @ wg)[:, None, None] + (cn @ wb)[:, None, None]
  out, _ = vec.apply(v_vars, x, c, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="num_classes"):
    vec.apply(v_vars, x, jnp.asarray([0, 1, 2]), train=True, mutable=["batch_stats"])
  with pytest.raises(ValueError, match="classes"):
    cond.apply({"params": params}, x, jnp.zeros((3, 4)))


def test_conditional_batch_norm_updates_running_stats_in_train_mode_only():
  x = _x(7, (4, 3, 3, 2))
  labels = jnp.asarray([0, 1, 1, 0])
  cond = layers.ConditionalBatchNorm(num_classes=2)
  variables = cond.init(jax.random.PRNGKey(0), x, labels)
  _, new = cond.apply(variables, x, labels, train=True, mutable=["batch_stats"])
  xn = np.asarray(x, np.float64).reshape(-1, 2)
  # torch's momentum 0.1 (flax's 0.9): 0.9 * init + 0.1 * batch, the variance unbiased
  np.testing.assert_allclose(new["batch_stats"]["norm"]["mean"], 0.1 * xn.mean(0), rtol=1e-5)
  np.testing.assert_allclose(new["batch_stats"]["norm"]["var"], 0.9 + 0.1 * xn.var(0, ddof=1),
                             rtol=1e-5)
  _, same = cond.apply(variables, x, labels, train=False, mutable=["batch_stats"])
  np.testing.assert_array_equal(same["batch_stats"]["norm"]["mean"], np.zeros(2))


# ----------------------------------------------------------------------------------------------------
# Nets
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("conditional", [True, False])
def test_network_shapes(conditional):
  k = 10 if conditional else 0
  z = jnp.zeros((3, 100))
  y = jnp.asarray([1, 5, 9]) if conditional else None
  nets = [(gan_nets.MLPGenerator(num_classes=k), (z, y), (3, 28, 28, 1)),
          (gan_nets.MaxoutDiscriminator(num_classes=k), (jnp.zeros((3, 28, 28, 1)), y), (3,)),
          (gan_nets.ConvGenerator(num_classes=k, ngf=8), (z, y), (3, 32, 32, 1)),
          (gan_nets.ProjectionDiscriminator(num_classes=k, ndf=8), (jnp.zeros((3, 32, 32, 1)), y),
           (3,))]
  for net, args, shape in nets:
    out, variables = jax.eval_shape(lambda: net.init_with_output(jax.random.PRNGKey(0), *args))
    assert out.shape == shape, (net, out.shape)
  # the paper's layer sizes
  g_params = jax.eval_shape(lambda: nets[0][0].init(jax.random.PRNGKey(0), z, y))["params"]
  assert g_params["joint_fc"]["kernel"].shape == ((200 + 1000 if conditional else 200), 1200)
  d_params = jax.eval_shape(lambda: nets[1][0].init(jax.random.PRNGKey(0), *nets[1][1]))["params"]
  assert d_params["x_maxout"]["linear"]["kernel"].shape == (784, 240 * 5)
  assert d_params["joint_maxout"]["linear"]["kernel"].shape == ((240 + 50 if conditional else 240),
                                                                240 * 4)
  with pytest.raises(ValueError, match="labels" if conditional else "no labels"):
    nets[0][0].init(jax.random.PRNGKey(0), z, None if conditional else jnp.asarray([1, 2, 3]))


def test_within_class_stddev_on_known_inputs():
  # class 0: three identical rows; class 2: feature values {0, 2} and {1, 1}: stds 1 and 0
  h = jnp.asarray([[5.0, 1.0], [0.0, 1.0], [5.0, 1.0], [2.0, 1.0], [5.0, 1.0]])
  labels = jnp.asarray([0, 2, 0, 2, 0])
  spread = np.asarray(gan_nets.within_class_stddev(h, labels, num_classes=3))
  assert spread.shape == (5, 1)
  np.testing.assert_allclose(spread[:, 0], [0.0, 0.5, 0.0, 0.5, 0.0], atol=1e-3)
  # unconditional: the whole batch's per-feature stds (2.4 and 0), averaged
  whole = np.asarray(gan_nets.within_class_stddev(h, None, num_classes=0))
  np.testing.assert_allclose(whole[:, 0], np.full(5, np.std([5, 0, 5, 2, 5]) / 2), atol=1e-3)
  # the D's logits depend on the batch's spread only with the option on
  x = _x(6, (4, 28, 28, 1))
  labels = jnp.asarray([1, 1, 3, 3])
  for option in (False, True):
    d = gan_nets.MaxoutDiscriminator(num_classes=10, x_units=8, y_units=4, joint_units=8,
                                     minibatch_std=option)
    params = d.init(jax.random.PRNGKey(0), x, labels)
    alone = d.apply(params, x[:1], labels[:1])
    in_batch = d.apply(params, x, labels)[:1]
    assert np.allclose(alone, in_batch, atol=1e-5) != option


# ----------------------------------------------------------------------------------------------------
# class_acc
# ----------------------------------------------------------------------------------------------------
def test_class_accuracy_on_known_inputs():
  def generate_fn(labels, batch_index):  # an image whose mean encodes the requested class
    return np.broadcast_to(labels[:, None, None, None] / 10.0, (len(labels), 28, 28, 1))

  def classify(images):  # reads the class back, but calls every 3 a 4
    classes = np.rint(np.asarray(images).mean(axis=(1, 2, 3)) * 10).astype(int)
    return np.where(classes == 3, 4, classes)

  result = cgan.class_accuracy(generate_fn, classify, per_class=7, batch_size=8)
  assert result.value == pytest.approx(0.9)  # one class of ten is always wrong
  logits = lambda images: jax.nn.one_hot(classify(images), 10)  # logits work as well
  assert cgan.class_accuracy(generate_fn, logits, per_class=3).value == pytest.approx(0.9)
  padded = cgan.pad_to_classifier(np.zeros((2, 28, 28, 1), np.float32))
  assert padded.shape == (2, 32, 32, 1) and padded[0, 0, 0, 0] == -1.0 and padded[0, 2, 2, 0] == 0.0


def test_class_diversity_on_known_inputs():
  real, labels = cgan.load_images("test", 28)
  # the real digits against themselves: exactly as varied as real data
  assert cgan.class_diversity(real, labels, real, labels).value == pytest.approx(1.0)
  # one image per class (a G that ignores z): no diversity
  collapsed = np.stack([real[np.flatnonzero(labels == c)[0]] for c in labels])
  result = cgan.class_diversity(collapsed, labels, real, labels)
  assert result.value == 0.0 and result.std == 0.0
  # distances scale with the images: digits half as far from each other give 0.5
  assert cgan.class_diversity(0.5 * real, labels, real, labels).value == pytest.approx(0.5)
  # two images at L2 distance 3 among three identical ones: pairs (0,1),(0,2) 3, (1,2) 0 -> mean 2
  three = np.zeros((3, 2, 2, 1))
  three[0, 0, 0, 0] = 3.0
  assert cgan.mean_pairwise_distance(three) == pytest.approx(2.0)
  with pytest.raises(ValueError, match="class 9"):
    cgan.class_diversity(real[labels != 9], labels[labels != 9], real, labels)
  with pytest.raises(ValueError, match="shape"):
    cgan.class_diversity(real[:, :20], labels, real, labels)


# ----------------------------------------------------------------------------------------------------
# Data and config
# ----------------------------------------------------------------------------------------------------
def test_dataset_pairs_images_with_labels_and_resumes():
  config = tiny_config("cgan")
  images, labels = cgan.load_images("train", 28)
  assert images.shape == (4500, 28, 28, 1) and images.min() == -1.0 and images.max() == 1.0
  ds = cgan.create_dataset(config, "train", 5, seed=0, train=True)
  first = list(ds.take(3).as_numpy_iterator())
  for batch in first:  # each image comes with its own label
    for img, label in zip(batch["image"], batch["label"]):
      matches = np.flatnonzero(np.all(images == img, axis=(1, 2, 3)))
      assert label in labels[matches]
  resumed = next(iter(cgan.create_dataset(config, "train", 5, seed=0, train=True, start_batch=2)
                      .as_numpy_iterator()))
  np.testing.assert_array_equal(resumed["image"], first[2]["image"])
  assert cgan.dataset_size(config, "test") == 500


def test_config_errors(tmp_path):
  config = tiny_config("cgan")
  config.data.image_size = 30
  with pytest.raises(ValueError, match="image_size"):
    train.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config("gan")
  config.eval.metrics = ("class_acc",)  # no classes to check
  with pytest.raises(ValueError, match="class_acc"):
    train.train_and_evaluate(config, str(tmp_path / "b"))
  config = tiny_config("cgan")
  config.eval.metrics = ("fid",)  # a built-in metric that translates test images
  with pytest.raises(ValueError, match="do not apply to cgan"):
    train.train_and_evaluate(config, str(tmp_path / "d"))
  config = tiny_config("cgan")
  config.model.arch = "dcgan"  # conv nets are 32x32
  with pytest.raises(ValueError, match="image_size=32"):
    train.train_and_evaluate(config, str(tmp_path / "c"))


# ----------------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cgan_runs(tmp_path_factory):
  """cGAN (MLP) on the embedded MNIST: 4 steps straight, and 2 steps + a restart + 2."""
  base = tmp_path_factory.mktemp("cgan")
  config = tiny_config("cgan", batch_size=4)
  config.eval.metrics = ("class_acc", "class_div")
  config.eval.max_images = 20
  straight, resumed, results = straight_and_resumed_runs(config, base)
  return straight, resumed, config, results


def test_cgan_trains_and_writes_a_class_grid(cgan_runs):
  straight, _, config, results = cgan_runs
  step, state = final_state(straight)
  assert step == 4 and int(state["step"]) == 4
  grids = sorted(glob.glob(os.path.join(straight, "samples", "step_*.png")))
  assert len(grids) == 4
  grid = np.asarray(Image.open(grids[-1]))
  # 10 rows (one per class) x 3 columns of 28x28 cells with a 2 px border
  assert grid.shape == (10 * 30 + 2, 3 * 30 + 2, 3)
  assert grid[2:30, 2:30].std() > 1  # a generated image, not a blank cell
  assert 0.0 <= results["class_acc"] <= 1.0
  assert results["class_div"] > 0.0  # 2 images per class, from different z: not identical


def test_cgan_resume_equals_straight_run(cgan_runs):
  straight, resumed, _, _ = cgan_runs
  _, a = final_state(straight)
  _, b = final_state(resumed)
  assert int(b["step"]) == 4
  assert max_diff(a, b) <= 1e-6


def test_generate_cli(cgan_runs, tmp_path):
  straight, _, config, _ = cgan_runs
  out = str(tmp_path / "threes.png")
  translate_cli.main(["--workdir", straight, "--class", "3", "--num", "7", "--output", out])
  assert np.asarray(Image.open(out)).shape == (3 * 30 + 2, 3 * 30 + 2, 3)  # 3 x 3 cells
  # the CLI's images are the generator applied by hand to class 3
  translator = translate_cli.Predictor(straight)
  images = translator.predict("generate", labels=np.full((7,), 3), rng=jax.random.PRNGKey(0))["image"]
  z = cgan.sample_z(translator.config, jax.random.PRNGKey(0), 7)
  np.testing.assert_allclose(images, cgan.generate(translator.config, translator.state,
                                                   jnp.full((7,), 3), z=z), atol=1e-6)
  all_png = str(tmp_path / "all.png")
  translate_cli.translate_files(straight, None, all_png, target="all", num=2)
  assert np.asarray(Image.open(all_png)).shape == (10 * 30 + 2, 2 * 30 + 2, 3)
  with pytest.raises(ValueError, match="0-9"):
    translate_cli.translate_files(straight, None, out, target="12", num=4)
  with pytest.raises(ValueError, match="needs --class"):
    translate_cli.translate_files(straight, None, out, num=4)


def test_gan_with_conv_nets(tmp_path):
  """The unconditional method with the DCGAN preset (batch norm, 32x32) trains and samples."""
  config = tiny_config("gan", batch_size=4, preset="dcgan")
  config.num_train_steps = 2
  workdir = str(tmp_path / "gan")
  train.train_and_evaluate(config, workdir)
  step, state = final_state(workdir)
  assert step == 2
  bn_means = [v for p, v in jax.tree_util.tree_flatten_with_path(state["collections"]["G"])[0]
              if "mean" in str(p[-1])]
  assert bn_means and max(float(np.abs(m).max()) for m in bn_means) > 0
  grid = np.asarray(Image.open(sorted(glob.glob(os.path.join(workdir, "samples", "*.png")))[-1]))
  assert grid.shape == (10 * 34 + 2, 3 * 34 + 2, 3)
  with pytest.raises(ValueError, match="unconditional"):
    translate_cli.translate_files(workdir, None, str(tmp_path / "g.png"), target="3", num=4)


def test_evaluate_cli_computes_class_acc(cgan_runs):
  from translate import evaluation
  straight, _, _, results = cgan_runs
  record = evaluation.evaluate_workdir(straight, ["class_acc"], overrides={"max_images": 20})
  # the same checkpoint, noise and classifier as the run's final evaluation
  assert record["results"]["class_acc"] == pytest.approx(results["class_acc"])
  assert os.path.exists(os.path.join(straight, "evaluation.md"))
