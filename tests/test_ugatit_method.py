"""U-GAT-IT as a method: training on the embedded digits and on a folder, samples with attention maps,
exact resume, rho clipping, torch-style Adam weight decay and lr decay, the translate CLI's
--attention, and config errors. Tiny widths at 32x32 so the file runs in about a minute on a CPU."""
import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from tests.helpers import load_config, tiny_config
from tests.test_train import final_state, max_diff, write_folder_dataset
from translate import loop, methods, parallel, train
from translate import translate as translate_cli
from translate.methods import ugatit

# The sample grid's columns: per direction, the paper's Figure-2 layout (source, generator attention,
# result, the target domain's global and local discriminator attention, cycle reconstruction).
SAMPLE_COLUMNS = ("real_A", "attention_G_A2B", "fake_B", "attention_disGB", "attention_disLB", "rec_A",
                  "real_B", "attention_G_B2A", "fake_A", "attention_disGA", "attention_disLA", "rec_B")


def _leaves(tree, name):
  """Leaves whose path ends in `name`, keyed by their path."""
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
          if str(getattr(p[-1], "key", "")) == name}


def _saturation(rgb):
  """Mean (max - min) over channels of a uint8 RGB array: 0 for grey."""
  rgb = rgb.astype(np.int32)
  return float(np.mean(rgb.max(-1) - rgb.min(-1)))


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
  """4 steps straight on the embedded digits (grey, 32x32), and the same run resumed from its step-2
  checkpoint. (Not a 2-step run continued to 4: the lr decay spans the second half of
  num_train_steps, so a run told to stop at 2 has another schedule, as in the reference.)"""
  base = tmp_path_factory.mktemp("ugatit_digits")
  config = tiny_config("ugatit", batch_size=2)
  config.num_train_steps = 4
  straight = str(base / "straight")
  train.train_and_evaluate(config, straight)
  resumed = str(base / "resumed")
  shutil.copytree(straight, resumed)
  for step in ("3", "4"):
    shutil.rmtree(os.path.join(resumed, "checkpoints", step))
  train.train_and_evaluate(config, resumed)  # the compiled programs come from JAX's cache
  return straight, resumed, config


def test_trains_writes_samples_with_attention_maps(digits_runs):
  straight, _, _ = digits_runs
  step, state = final_state(straight)
  assert step == 4 and int(state["step"]) == 4
  assert set(state["params"]["G"]) == {"genA2B", "genB2A"}
  assert set(state["params"]["D"]) == {"disGA", "disGB", "disLA", "disLB"}
  grids = sorted(glob.glob(os.path.join(straight, "samples", "step_*.png")))
  assert len(grids) == 4
  grid = np.asarray(Image.open(grids[-1]).convert("RGB"))
  cell, pad = 32, 2
  assert grid.shape[1] == len(SAMPLE_COLUMNS) * (cell + pad) + pad  # 12 columns
  columns = {name: grid[pad:pad + cell, pad + j * (cell + pad):pad + j * (cell + pad) + cell]
             for j, name in enumerate(SAMPLE_COLUMNS)}
  # The grid keeps the method's column order: the digits are grey, the attention maps jet-coloured.
  for name, image in columns.items():
    if name.startswith("attention"):
      assert _saturation(image) > 40, name
    else:
      assert _saturation(image) == 0 and image.std() > 5, name


def test_rho_in_range_and_spectral_vectors_move(digits_runs):
  straight, _, _ = digits_runs
  _, state = final_state(straight)
  rhos = _leaves(state["params"]["G"], "rho")
  assert len(rhos) == 2 * (2 * 1 + 2)  # per generator: 2 per AdaLIN block (n_res=1), 2 ILN
  assert all(r.min() >= 0.0 and r.max() <= 1.0 for r in rhos.values())
  # The power iteration ran in train mode: the stored u vectors differ from an earlier checkpoint's.
  import orbax.checkpoint as ocp
  mngr = ocp.CheckpointManager(os.path.join(straight, "checkpoints"), item_names=("state", "meta"))
  earlier = mngr.restore(min(mngr.all_steps()), args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore()))["state"]
  mngr.close()
  for name in ugatit.GROUPS["D"]:
    now, before = _leaves(state["collections"][name], "u"), _leaves(earlier["collections"][name], "u")
    assert now and max(float(np.abs(now[k] - before[k]).max()) for k in now) > 0, name


def test_resume_equals_straight_run(digits_runs):
  straight, resumed, _ = digits_runs
  _, a = final_state(straight)
  _, b = final_state(resumed)
  assert int(b["step"]) == 4
  # parameters, spectral-norm vectors, Adam moments: 2 + restart + 2 steps equal 4 steps straight
  assert max_diff(a, b) <= 1e-6


def test_translate_cli_writes_attention(digits_runs, tmp_path):
  straight, _, _ = digits_runs
  src = tmp_path / "in"
  os.makedirs(src)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(src / "digit.png")
  out = tmp_path / "out"
  written = translate_cli.translate_files(straight, str(src), str(out), "BtoA", attention=True)
  assert [os.path.basename(p) for p in written] == ["digit.png", "digit_attention.png"]
  image = np.asarray(Image.open(out / "digit.png"))
  attention = np.asarray(Image.open(out / "digit_attention.png"))
  assert image.shape == (32, 32)  # the digits preset is grey
  assert attention.shape == (32, 32, 3) and _saturation(attention) > 40  # a jet-coloured map
  # The translation equals plain `translate` of the same image.
  translator = translate_cli.Translator(straight)
  x = translate_cli.read_image(str(src / "digit.png"), 1)
  expected = np.clip((translator.translate(x[None], "BtoA")[0, ..., 0] + 1) * 127.5 + 0.5, 0, 255)
  np.testing.assert_array_equal(image, expected.astype(np.uint8))


def test_rho_clipped_after_an_update_that_pushes_it_out(digits_runs):
  """Every rho set to a bound of [0, 1]: the gradient pushes some of them outwards, and the clip must
  leave those exactly on the bound while the others move inwards by about lr (Adam's first step)."""
  _, _, config = digits_runs
  method = methods.get("ugatit")
  mesh = parallel.make_mesh(1)
  optimizers = ugatit.make_optimizers(config, 1, config.num_train_steps)
  data = method.data
  batch = next(data.create_dataset(config, "train", 2, seed=0, train=True).as_numpy_iterator())
  example = {k: np.zeros_like(batch[k][:1]) for k in ("A", "B")}
  # The engine's own jitted functions, so JAX's compilation cache serves the fixture's programs.
  state = loop.create_train_state(config, method, mesh, optimizers, example)
  on_bounds = jax.tree_util.tree_map_with_path(
      lambda p, x: (jnp.where(jnp.arange(x.size) % 2 == 0, 1.0, 0.0).astype(x.dtype)
                    if str(getattr(p[-1], "key", "")) == "rho" else x), state.params)
  state = state.replace(params=on_bounds)
  start = np.concatenate(list(_leaves(state.params["G"], "rho").values()))
  step = loop.make_train_step(config, method, mesh, optimizers)
  new_state, metrics = step(state, parallel.shard_batch(batch, mesh), {})  # donates `state`
  assert np.isfinite(float(metrics["loss_G"]))
  rhos = np.concatenate(list(_leaves(new_state.params["G"], "rho").values()))
  assert rhos.min() >= 0.0 and rhos.max() <= 1.0
  moved = np.abs(rhos - start)
  clipped = moved == 0.0
  # Both happened: rhos pushed outwards (clipped back to the bound), rhos moved inwards by ~lr.
  assert clipped.sum() >= 3 and (~clipped).sum() >= 3, (clipped.sum(), rhos.size)
  assert np.all(moved[~clipped] > 0.5 * config.optim.lr)


def test_adam_weight_decay_is_torch_l2_and_lr_decays_in_second_half():
  config = load_config("configs/ugatit.py", "selfie2anime")
  config.num_train_steps = 10
  opt = ugatit.make_optimizers(config, 1, config.num_train_steps)["G"]
  lr, wd, b1, b2, eps = 1e-4, 1e-4, 0.5, 0.999, 1e-8  # the reference's defaults
  assert (config.optim.lr, config.optim.weight_decay, config.optim.b1) == (lr, wd, b1)
  rng = np.random.default_rng(0)
  p = rng.normal(size=(5,)).astype(np.float64) * 3
  params = {"w": jnp.asarray(p, jnp.float32)}
  state = opt.init(params)
  m = v = np.zeros_like(p)
  # The reference's schedule: after T // 2 = 5 steps, lr -= lr0 / 5 before each step.
  ref_lr = lr
  for t in range(1, 11):
    if t > 5:
      ref_lr -= lr / 5
    g = rng.normal(size=(5,)) * 1e-3  # small gradients, so the L2 term (wd * p ~ 3e-4) matters
    updates, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    params = optax.apply_updates(params, updates)
    # torch.optim.Adam with weight_decay: the decay joins the gradient before the moments.
    g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step = max(ref_lr, 0.0) * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    p = p - step
    np.testing.assert_allclose(np.asarray(params["w"]), p, rtol=0, atol=2e-6)
  assert abs(ref_lr) < 1e-12  # the last step ran at lr 0
  # With a zero gradient, torch's L2 term alone drives Adam (a step of ~lr against the weight's sign);
  # decoupled decay (AdamW) would only shrink the weight by lr * wd * w.
  w0 = {"w": jnp.asarray([3.0, -3.0], jnp.float32)}
  g0 = {"w": jnp.zeros((2,), jnp.float32)}
  u_ours, _ = opt.update(g0, opt.init(w0), w0)
  np.testing.assert_allclose(np.asarray(u_ours["w"]), [-lr, lr], rtol=1e-4)
  adamw = optax.adamw(lr, b1, b2, eps, weight_decay=wd)
  u_adamw, _ = adamw.update(g0, adamw.init(w0), w0)
  np.testing.assert_allclose(np.asarray(u_adamw["w"]), [-3 * lr * wd, 3 * lr * wd], rtol=1e-4)


def test_heatmap_image_is_jet_over_min_to_max():
  heat = jnp.asarray(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) * 3 - 7)
  image = np.asarray(ugatit.heatmap_image(heat, (4, 4)))
  assert image.shape == (1, 4, 4, 3) and image.min() >= -1 and image.max() <= 1
  np.testing.assert_allclose(image[0, 0, 0], [-1.0, -1.0, 0.0], atol=1e-6)  # jet(0): dark blue
  np.testing.assert_allclose(image[0, 3, 3], [0.0, -1.0, -1.0], atol=1e-6)  # jet(1): dark red
  flat = np.asarray(ugatit.heatmap_image(jnp.ones((2, 3, 3, 1)), (12, 12)))  # constant: no NaN
  assert flat.shape == (2, 12, 12, 3) and np.all(np.isfinite(flat))


def test_folder_light_rgb_run(tmp_path):
  root = tmp_path / "x2y"
  write_folder_dataset(root, n=4)
  config = tiny_config("ugatit", batch_size=2, preset="folder_light")
  assert config.model.light and config.data.preprocess == "resize_and_crop"
  config.data.update(path=str(root), load_size=36, crop_size=32)
  config.num_train_steps = 1
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  step, state = final_state(workdir)
  assert step == 1
  # light: the gamma/beta MLP sees the 4 * ngf channel means, not the flattened bottleneck
  assert state["params"]["G"]["genA2B"]["fc1"]["kernel"].shape == (16, 16)
  assert state["params"]["G"]["genA2B"]["down_conv0"]["kernel"].shape[2] == 3  # RGB in


def test_presets_and_config_errors(tmp_path):
  full = load_config("configs/ugatit.py", "selfie2anime")
  assert (full.data.source, full.data.load_size, full.data.crop_size, full.data.no_flip) == (
      "folder", 286, 256, False)
  assert (full.model.ngf, full.model.n_res, full.model.light, full.batch_size) == (64, 4, False, 1)
  assert (full.model.n_layers_global, full.model.n_layers_local) == (7, 5)
  assert full.num_train_steps == 1_000_000
  assert load_config("configs/ugatit.py", "cat2dog_light").model.light
  assert load_config("configs/ugatit.py", "horse2zebra").data.tfds_name == "cycle_gan/horse2zebra"
  digits = load_config("configs/ugatit.py", "digits")
  cyclegan = load_config("configs/cyclegan.py", "digits")
  assert digits.data.to_dict() == cyclegan.data.to_dict()  # comparable label accuracy
  assert (digits.num_train_steps, digits.batch_size) == (cyclegan.num_train_steps, cyclegan.batch_size)
  with pytest.raises(ValueError, match="selfie2animee"):
    load_config("configs/ugatit.py", "selfie2animee")
  config = tiny_config("ugatit")
  config.model.n_layers_global = 7
  with pytest.raises(ValueError, match=r"n_layers_global=7 needs images of at least 96 px"):
    train.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config("ugatit")
  config.data.output_nc = 3
  with pytest.raises(ValueError, match="input_nc == data.output_nc"):
    train.train_and_evaluate(config, str(tmp_path / "b"))
  assert not os.path.exists(tmp_path / "a" / "checkpoints")
