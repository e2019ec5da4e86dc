"""The method contract (translate/methods/base.py) with a method that exists only in this file.

`METHOD` below is a toy GAN (a generator and a discriminator) whose generator loss uses a FROZEN
pretrained network (a fixed random conv feature extractor registered with translate.pretrained), with a
multi-output predict (several noisy samples per input) and a two-input predict (content + style). It is
found by its dotted module path `tests.test_method_contract`, so no shared file knows its name, and it
trains, checkpoints, resumes, evaluates and runs through the inference CLI like the built-in methods.
Also here: the import graph of translate/ (no cycles; libraries never import the CLIs).
"""
import ast
import glob
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.helpers import straight_and_resumed_runs, tiny_config
from tests.test_train import final_state, max_diff
from translate import losses, methods, parallel, pretrained, training
from translate.methods import base

NAME = "tests.test_method_contract"


# ----------------------------------------------------------------------------------------------------
# The toy method
# ----------------------------------------------------------------------------------------------------
def _features_apply(params, images):
  """A fixed 3x3 conv + ReLU: (B, H, W, C) -> (B, H, W, 4)."""
  y = jax.lax.conv_general_dilated(images, params["kernel"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.nn.relu(y)


def _load_toy_features(path=None, channels: int = 1):
  del path
  kernel = np.random.default_rng(7).normal(size=(3, 3, channels, 4)).astype(np.float32)
  return pretrained.Pretrained({"kernel": jnp.asarray(kernel)}, _features_apply, "toy_features")


pretrained.register("toy_features", _load_toy_features, replace=True)


class ToyG(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.tanh(nn.Conv(x.shape[-1], (3, 3))(nn.relu(nn.Conv(4, (3, 3))(x))))


class ToyD(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(1, (4, 4), strides=(2, 2))(nn.leaky_relu(nn.Conv(4, (3, 3))(x), 0.2))


def build_networks(config):
  del config
  return {"G": ToyG(), "D": ToyD()}


def frozen(config):
  return {"features": pretrained.load("toy_features", channels=config.data.input_nc)}


def create_state(config, rng, optimizers, example_batch, frozen):
  del frozen
  a = jnp.zeros_like(example_batch["A"][:1])
  params, cols = training.init_networks(build_networks(config), {"G": (a,), "D": (a,)}, rng,
                                        METHOD.group_of)
  return training.new_state(params, cols, optimizers, jax.random.fold_in(rng, 1))


def train_step(config, optimizers, state, batch, frozen):
  nets = build_networks(config)
  real_A, real_B = batch["A"], batch["B"]

  def G(params, x):
    return nets["G"].apply({"params": params["G"]}, x)

  def D(params, x):
    return nets["D"].apply({"params": params["D"]}, x)

  fake = jax.lax.stop_gradient(G(state.params["G"], real_A))

  def d_loss(d_params):
    return 0.5 * (losses.gan_loss(D(d_params, real_B), True, "lsgan")
                  + losses.gan_loss(D(d_params, fake), False, "lsgan"))

  loss_D, d_grads = jax.value_and_grad(d_loss)(state.params["D"])
  d_params, d_opt = training.update_group(optimizers["D"], state, "D", d_grads)

  def g_loss(g_params):
    out = G(g_params, real_A)
    perceptual = losses.l1_loss(frozen["features"](out), frozen["features"](real_A))
    return losses.gan_loss(D(d_params, out), True, "lsgan", for_discriminator=False) + perceptual

  loss_G, g_grads = jax.value_and_grad(g_loss)(state.params["G"])
  g_params, g_opt = training.update_group(optimizers["G"], state, "G", g_grads)
  return state.replace(step=state.step + 1, params={"G": g_params, "D": d_params},
                       opt_state={"G": g_opt, "D": d_opt}), {"loss_G": loss_G, "loss_D": loss_D}


def translate(config, state, images):
  return build_networks(config)["G"].apply({"params": state.params["G"]["G"]}, images)


def sample_images(config, state, batch, frozen):
  del frozen
  return {"real_A": batch["A"], "fake_B": translate(config, state, batch["A"])}


def samples(config, state, frozen, images, rng):
  """K = 3 results per input: the translation of the input plus noise of three sizes."""
  del frozen
  noise = jax.random.normal(rng, images.shape)
  return {"image": jnp.stack([translate(config, state, images + s * noise) for s in (0.0, 0.1, 0.2)])}


def mix(config, state, frozen, content, style):
  del frozen
  return {"image": 0.5 * translate(config, state, content) + 0.5 * style}


def feature_mean(config, method, state, frozen):
  """A metric that runs the frozen network on translations of a fixed input."""
  x = jnp.linspace(-1, 1, 32 * 32 * config.data.input_nc).reshape(1, 32, 32, config.data.input_nc)
  return {"feature_mean": float(jnp.mean(frozen["features"](translate(config, state, x))))}


METHOD = base.Method(
    name=NAME, groups={"G": ("G",), "D": ("D",)}, build_networks=build_networks,
    create_state=create_state, train_step=train_step, sample_images=sample_images, frozen=frozen,
    metrics={"feature_mean": feature_mean},
    predicts={
        "AtoB": base.Predict(lambda config, state, frozen, images: {
            "image": translate(config, state, images)}, (base.Input("images"),)),
        "samples": base.Predict(samples, (base.Input("images"), base.Input("rng", base.RNG)),
                                columns=lambda config, k: [f"noise_{i}" for i in range(k)]),
        "mix": base.Predict(mix, (base.Input("content"), base.Input("style"))),
    })


def toy_config(batch_size: int = 4):
  config = tiny_config("cyclegan", batch_size=batch_size)
  config.method = NAME
  config.eval.metrics = ("feature_mean",)
  return config


# ----------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
  config = toy_config()
  straight, resumed, results = straight_and_resumed_runs(config, tmp_path_factory.mktemp("toy"))
  return straight, resumed, results


def test_found_by_dotted_path_without_registration():
  assert methods.get(NAME) is METHOD
  assert NAME not in methods.names()  # no shared file (nor the registry) knows it
  with pytest.raises(ValueError, match="Unknown method 'no_such_method'"):
    methods.get("no_such_method")


def test_trains_resumes_and_keeps_frozen_out_of_the_checkpoint(toy_runs):
  straight, resumed, results = toy_runs
  step, a = final_state(straight)
  _, b = final_state(resumed)
  assert step == 4 and max_diff(a, b) == 0.0  # resume == straight run, exactly
  # The checkpoint holds the two trained nets and nothing of the frozen one.
  assert set(a) == {"step", "params", "collections", "opt_state", "extra", "rng"}
  assert set(a["params"]) == {"G", "D"} and set(a["params"]["G"]) == {"G"}
  kernel = np.asarray(_load_toy_features().params["kernel"])
  assert not any(np.shape(x) == kernel.shape and np.array_equal(x, kernel)
                 for x in jax.tree_util.tree_leaves(a))
  assert results["feature_mean"] > 0
  assert len(glob.glob(os.path.join(straight, "samples", "step_*.png"))) == 4


def test_frozen_network_is_an_argument_not_a_constant():
  """The step takes the frozen weights as an input: other weights give other results from the same
  compiled program, and the weights stay bit-equal after steps (they are not donated or trained)."""
  from translate import loop
  config = toy_config()
  mesh = parallel.make_mesh(1)
  rng = np.random.default_rng(0)
  batch = {k: rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32) for k in "AB"}
  optimizers = METHOD.optimizers(config, 10, 20)
  frozen_a = parallel.replicate(METHOD.frozen(config), mesh)
  kernel_before = np.asarray(frozen_a["features"].params["kernel"]).copy()
  example = {k: v[:1] for k, v in batch.items()}
  step = loop.make_train_step(config, METHOD, mesh, optimizers)
  make = lambda: loop.create_train_state(config, METHOD, mesh, optimizers, example, frozen_a)  # noqa
  _, m_a = step(make(), parallel.shard_batch(batch, mesh), frozen_a)
  frozen_b = jax.tree_util.tree_map(lambda x: 2.0 * x, frozen_a)
  _, m_b = step(make(), parallel.shard_batch(batch, mesh), frozen_b)
  assert step._cache_size() == 1  # one program for both weights: they are not baked in
  assert float(m_a["loss_G"]) != float(m_b["loss_G"])
  np.testing.assert_array_equal(np.asarray(frozen_a["features"].params["kernel"]), kernel_before)


def test_evaluates_through_the_one_evaluation_path(toy_runs):
  from translate import evaluation
  straight, _, results = toy_runs
  record = evaluation.evaluate_workdir(straight, ["feature_mean"])
  assert record["results"]["feature_mean"] == pytest.approx(results["feature_mean"], rel=1e-6)
  with pytest.raises(ValueError, match="Unknown metric"):
    evaluation.evaluate_workdir(straight, ["target_acc"])


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "translate.translate", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_inference_cli_multi_output_and_two_inputs(toy_runs, tmp_path):
  straight, _, _ = toy_runs
  rng = np.random.default_rng(3)
  Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "c.png")
  Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "s.png")
  # several results per input: one grid (input, then 3 columns)
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path / 'c.png'}", f"--output={tmp_path / 'k'}",
              "--predict=samples", "--seed=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  grid = np.asarray(Image.open(tmp_path / "k" / "c.png"))
  assert grid.shape == (36, 4 * 34 + 2, 3)
  # two images in: content from --input, style from --style; equals the predict called directly
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path / 'c.png'}", f"--output={tmp_path / 'm'}",
              "--predict=mix", f"--style={tmp_path / 's.png'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  from translate import inference
  p = inference.Predictor(straight)
  c = inference.read_image(str(tmp_path / "c.png"), 1)[None]
  s = inference.read_image(str(tmp_path / "s.png"), 1)[None]
  expected = p.predict("mix", content=c, style=s)["image"][0, ..., 0]
  expected = np.clip((expected + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m" / "c.png")), expected)
  # errors name the problem before anything is written
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path / 'c.png'}", f"--output={tmp_path / 'x'}",
              "--predict=mix")
  assert proc.returncode != 0 and "--style" in proc.stderr
  proc = _cli(f"--workdir={straight}", f"--input={tmp_path / 'c.png'}", f"--output={tmp_path / 'x'}",
              "--predict=nope")
  assert proc.returncode != 0 and "has no predict 'nope'" in proc.stderr
  assert not os.path.exists(tmp_path / "x")


# ----------------------------------------------------------------------------------------------------
# Import graph
# ----------------------------------------------------------------------------------------------------
CLIS = {"translate.train", "translate.translate", "translate.evaluate"}
LIBRARY_PACKAGES = ("translate.methods", "translate.networks", "translate.metrics",
                    "translate.pretrained", "translate.data")


def import_graph() -> dict[str, set[str]]:
  """module -> the translate modules it imports (at any depth in the file, lazy imports included)."""
  root = pathlib.Path(REPO) / "translate"
  modules = {}
  for path in root.rglob("*.py"):
    rel = path.relative_to(root.parent).with_suffix("")
    name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    modules[name] = path
  graph = {}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base_name = node.module or ""
        if node.level:
          base_name = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] +
                               ([base_name] if base_name else []))
        # `from pkg import sub` depends on the module pkg.sub; `from pkg import name` on pkg
        targets = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in modules else base_name
                   for a in node.names]
      else:
        continue
      for t in targets:
        while t and t not in modules:
          t = t.rsplit(".", 1)[0] if "." in t else ""
        if t and t != name:
          deps.add(t)
    graph[name] = deps
  return graph


def test_import_graph_has_no_cycle_and_libraries_do_not_import_clis():
  graph = import_graph()
  assert "translate.loop" in graph and "translate.methods.base" in graph
  edges = graph
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for d in sorted(edges.get(m, ())):
      if state.get(d) == 1:
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
      if d not in state:
        visit(d)
    stack.pop()
    state[m] = 2

  for m in sorted(edges):
    if m not in state:
      visit(m)
  offenders = {m: sorted(d & CLIS) for m, d in graph.items()
               if m.startswith(LIBRARY_PACKAGES) and d & CLIS}
  assert not offenders, offenders


def test_engine_never_probes_methods():
  hits = []
  for path in (pathlib.Path(REPO) / "translate").rglob("*.py"):
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if "hasattr(method" in line or "getattr(method" in line:
        hits.append(f"{path}:{i}")
  assert not hits, hits
