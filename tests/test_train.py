"""The training engine end to end: real data, checkpoints, exact resume, preemption, translation CLI."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.helpers import straight_and_resumed_runs, tiny_config
from translate import checkpoint, train
from translate import translate as translate_cli


def final_state(workdir):
  """The latest checkpoint's state as a nested dict of numpy arrays (no target needed)."""
  mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("state", "meta"))
  step = mngr.latest_step()
  state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))["state"]
  mngr.close()
  return step, state


def max_diff(a, b):
  diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                                 if np.size(x) else 0.0, a, b)
  return max(jax.tree_util.tree_leaves(diffs))


def write_folder_dataset(root, n=6, size=(40, 36)):
  """trainA/trainB/testA/testB of small random RGB images."""
  rng = np.random.default_rng(0)
  for sub in ("trainA", "trainB", "testA", "testB"):
    os.makedirs(root / sub)
    for i in range(n):
      Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(
          root / sub / f"{i}.png")


def write_paired_dataset(root, n=6, size=32):
  """train/test of A|B side-by-side images with B = 255 - A (a learnable paired mapping)."""
  rng = np.random.default_rng(1)
  for sub in ("train", "test"):
    os.makedirs(root / sub)
    for i in range(n):
      a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
      Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / sub / f"{i}.jpg", quality=95)


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
  """CycleGAN on the embedded digits: 4 steps straight, and 2 steps + a new process-like restart + 2."""
  base = tmp_path_factory.mktemp("digits")
  config = tiny_config("cyclegan", batch_size=4)
  straight, resumed, _ = straight_and_resumed_runs(config, base, restart="stop")
  return straight, resumed, config


def test_trains_and_writes_outputs(digits_runs):
  straight, _, _ = digits_runs
  step, state = final_state(straight)
  assert step == 4 and int(state["step"]) == 4
  assert os.path.exists(os.path.join(straight, "config.json"))
  grids = sorted(glob.glob(os.path.join(straight, "samples", "step_*.png")))
  assert len(grids) == 4
  grid = np.asarray(Image.open(grids[-1]))
  assert grid.shape[1] > 6 * 32 and grid.std() > 10  # six columns of images, not a blank canvas
  assert glob.glob(os.path.join(straight, "events.out.tfevents.*"))
  # the image pools filled with 4 fakes per step
  assert int(state["extra"]["pool_A"]["count"]) == 16


def test_resume_equals_straight_run(digits_runs):
  straight, resumed, _ = digits_runs
  _, a = final_state(straight)
  _, b = final_state(resumed)
  assert int(b["step"]) == 4
  # parameters, optimiser moments, pools and RNG: 2 + resume + 2 steps equal 4 steps straight
  assert max_diff(a, b) <= 1e-6


def test_refuses_checkpoint_of_another_model(digits_runs, tmp_path):
  straight, _, config = digits_runs
  before = sorted(os.listdir(os.path.join(straight, "checkpoints")))
  other = tiny_config("cyclegan", batch_size=4)
  other.model.ngf = 8
  other.num_train_steps = 6
  with pytest.raises(checkpoint.CheckpointMismatchError, match="model.ngf"):
    train.train_and_evaluate(other, straight)
  assert sorted(os.listdir(os.path.join(straight, "checkpoints"))) == before


def test_translate_cli_on_files(digits_runs, tmp_path):
  straight, _, _ = digits_runs
  src = tmp_path / "in"
  os.makedirs(src)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(src / "rgb.png")
  Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(src / "grey.png")
  out = tmp_path / "out"
  written = translate_cli.translate_files(straight, str(src), str(out), "AtoB")
  assert sorted(os.path.basename(p) for p in written) == ["grey.png", "rgb.png"]
  # the digits preset is grey in and out: any input size divisible by 4, RGB read as grey
  assert np.asarray(Image.open(out / "grey.png")).shape == (40, 48)
  assert np.asarray(Image.open(out / "rgb.png")).shape == (32, 32)
  # the CLI's output equals the generator applied by hand to the same image
  translator = translate_cli.Translator(straight)
  x = translate_cli.read_image(str(src / "rgb.png"), 1)
  expected = np.clip((translator.translate(x[None])[0, ..., 0] + 1) * 127.5 + 0.5, 0, 255
                     ).astype(np.uint8)
  np.testing.assert_array_equal(np.asarray(Image.open(out / "rgb.png")), expected)
  Image.fromarray(rng.integers(0, 255, (30, 32, 3), dtype=np.uint8)).save(src / "odd.png")
  with pytest.raises(ValueError, match="divisible by 4"):
    translate_cli.translate_files(straight, str(src / "odd.png"), str(out))


def test_sigterm_checkpoints_and_resume_finishes(digits_runs, tmp_path):
  """A real process killed with SIGTERM saves its step; rerunning finishes the same run."""
  straight, _, _ = digits_runs
  workdir = tmp_path / "killed"
  overrides = ["--config.model.netG=resnet_2blocks", "--config.model.ngf=4", "--config.model.ndf=4",
               "--config.model.netD=n_layers", "--config.model.n_layers_D=1", "--config.batch_size=4",
               "--config.log_every=1", "--config.sample_every=100", "--config.checkpoint_every=100",
               "--config.eval.metrics=()", "--config.optim.n_epochs=1", "--config.optim.n_epochs_decay=1",
               "--config.eval_every=0"]
  cmd = [sys.executable, "-m", "translate.train", "--config=configs/cyclegan.py:digits",
         f"--workdir={workdir}"] + overrides
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  proc = subprocess.Popen(cmd + ["--config.num_train_steps=400"], cwd=REPO, env=env,
                          stderr=subprocess.PIPE, text=True)
  seen = []
  deadline = time.time() + 600
  for line in proc.stderr:
    seen.append(line)
    if "step 2/400" in line:
      proc.send_signal(signal.SIGTERM)
      break
    assert time.time() < deadline, "".join(seen[-20:])
  rest = proc.communicate(timeout=300)[1]
  assert proc.returncode == 0, rest[-3000:]
  assert "preemption" in rest
  stopped, _ = final_state(str(workdir))
  assert 2 <= stopped < 400
  # rerun with the straight run's length: it resumes and ends at step 4 if it stopped before
  done = subprocess.run(cmd + ["--config.num_train_steps=4"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  if stopped <= 4:
    _, a = final_state(straight)
    _, b = final_state(str(workdir))
    assert max_diff(a["params"], b["params"]) <= 1e-6


def test_pix2pix_on_paired_folder(tmp_path):
  root = tmp_path / "facades"
  write_paired_dataset(root)
  config = tiny_config("pix2pix", batch_size=2)
  config.data.path = str(root)
  config.data.update(load_size=36, crop_size=32)
  config.num_train_steps = 3
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  step, state = final_state(workdir)
  assert step == 3
  # batch norm running statistics moved during training
  bn_means = [v for path, v in jax.tree_util.tree_flatten_with_path(state["collections"]["G"])[0]
              if "mean" in str(path[-1])]
  assert bn_means and max(float(np.abs(m).max()) for m in bn_means) > 0


def test_cyclegan_on_folder_grayscale_to_rgb(tmp_path):
  root = tmp_path / "x2y"
  write_folder_dataset(root)
  config = tiny_config("cyclegan", batch_size=2, preset="folder")
  config.data.update(path=str(root), load_size=36, crop_size=32, input_nc=1, output_nc=3)
  with pytest.raises(ValueError, match="input_nc == output_nc"):  # the identity loss needs it
    train.train_and_evaluate(config, str(tmp_path / "refused"))
  config.loss.lambda_identity = 0.0
  config.num_train_steps = 2
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  meta = json.load(open(os.path.join(workdir, "config.json")))
  assert meta["data"]["input_nc"] == 1
  step, state = final_state(workdir)
  assert step == 2
  assert state["extra"]["pool_A"]["images"].shape[-1] == 1  # fakes of A are grey
  assert state["extra"]["pool_B"]["images"].shape[-1] == 3


def test_config_errors(tmp_path):
  config = tiny_config("cyclegan")
  with pytest.raises(AttributeError, match="ngff"):
    config.model.ngff = 3  # configs come locked: a mistyped key fails where it is written
  config = tiny_config("cyclegan")
  config.eval.metrics = ("fid_typo",)
  with pytest.raises(ValueError, match="fid_typo"):
    train.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config("cyclegan")
  config.method = "cyclegann"
  with pytest.raises(ValueError, match="Unknown method 'cyclegann'"):
    train.train_and_evaluate(config, str(tmp_path / "b"))


def test_command_line_rejects_unknown_key_and_wrong_type(tmp_path):
  base = [sys.executable, "-m", "translate.train", "--config=configs/cyclegan.py:digits",
          f"--workdir={tmp_path}"]
  typo = subprocess.run(base + ["--config.model.ngff=8"], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert typo.returncode != 0 and "ngff" in typo.stderr
  wrong = subprocess.run(base + ["--config.model.ngf=wide"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
  assert wrong.returncode != 0 and "ngf" in wrong.stderr
  assert not os.path.exists(tmp_path / "checkpoints")
