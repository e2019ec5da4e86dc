"""Small configs and batches for tests: the method configs' `tiny` presets, and random batches."""
import importlib.util
import os

import numpy as np

from tests.conftest import REPO


def load_config(path: str, arg: str = ""):
  spec = importlib.util.spec_from_file_location("test_config", REPO / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def tiny_config(method: str, batch_size: int = 4, preset: str | None = None):
  """The method's `tiny` config (configs/<method>.py:tiny, or :<preset>,tiny): tiny networks at 32x32
  (cgan/gan's MLP preset: 28x28), logging every step, no evaluation; `batch_size` overrides its 4."""
  config = load_config(f"configs/{method}.py", f"{preset},tiny" if preset else "tiny")
  config.batch_size = batch_size
  return config


def make_batch(method: str, config, rng: np.random.Generator, batch_size: int | None = None) -> dict:
  """A random global batch of the shapes the method's input pipeline gives (32x32; cgan/gan: their
  image_size, with labels)."""
  n = batch_size or config.batch_size
  d = config.data
  if method in ("cgan", "gan"):
    s = d.image_size
    return {"image": rng.uniform(-1, 1, (n, s, s, 1)).astype(np.float32),
            "label": rng.integers(0, 10, (n,)).astype(np.int32)}
  if method == "stargan":
    from translate.data import labelled
    lay = labelled.label_layout(d)
    labels = (rng.uniform(size=(n, lay.label_dim)) > 0.5).astype(np.float32)
    if lay.mask_dim:  # one source per batch, as the pipeline gives
      k = int(rng.integers(lay.mask_dim))
      labels = lay.encode(k, labels[:, lay.offset(k):lay.offset(k) + len(lay.sets[k].names)])
    return {"image": rng.uniform(-1, 1, (n, 32, 32, d.channels)).astype(np.float32),
            "label": labels}
  if method == "photowct":  # images only (key A), RGB, at the crop size
    return {"A": rng.uniform(-1, 1, (n, d.crop_size, d.crop_size, 3)).astype(np.float32)}
  if method in ("srresnet", "srgan"):  # LR 'A' and HR 'B' crops (tiny: 32 px HR at scale 4)
    s = d.crop_size
    return {"A": rng.uniform(-1, 1, (n, s // d.scale, s // d.scale, 3)).astype(np.float32),
            "B": rng.uniform(-1, 1, (n, s, s, 3)).astype(np.float32)}
  if method == "diat":  # images without / with the attribute, data.channels each
    return {"A": rng.uniform(-1, 1, (n, 32, 32, d.channels)).astype(np.float32),
            "B": rng.uniform(-1, 1, (n, 32, 32, d.channels)).astype(np.float32)}
  return {"A": rng.uniform(-1, 1, (n, 32, 32, d.input_nc)).astype(np.float32),
          "B": rng.uniform(-1, 1, (n, 32, 32, d.output_nc)).astype(np.float32)}


def straight_and_resumed_runs(config, base, steps: int = 4, stop_at: int = 2, restart: str = "copy"):
  """Trains `config` for `steps` straight in base/straight and again, interrupted at `stop_at`, in
  base/resumed; returns the two workdirs and the straight run's results.

  restart='copy' (one training run fewer): base/resumed is a copy of the straight run's workdir without
  its checkpoints after `stop_at` (the tiny presets checkpoint every step), which a second
  train_and_evaluate call resumes, as after a preemption. restart='stop': a run told to stop at
  `stop_at` (num_train_steps = stop_at), then continued to `steps` by another call (the engine's
  cap-then-continue path). `config.num_train_steps` is left at `steps`."""
  import shutil

  from translate import train
  straight, resumed = str(base / "straight"), str(base / "resumed")
  config.num_train_steps = steps
  if restart == "copy":
    keep = max(config.keep_checkpoints, steps - stop_at + 1)
    config.keep_checkpoints = keep  # the straight run must keep its step-`stop_at` checkpoint
    results = train.train_and_evaluate(config, straight)
    shutil.copytree(straight, resumed)
    folder = os.path.join(resumed, "checkpoints")
    for name in os.listdir(folder):
      if name.isdigit() and int(name) > stop_at:
        shutil.rmtree(os.path.join(folder, name))
    assert os.path.isdir(os.path.join(folder, str(stop_at))), os.listdir(folder)
    train.train_and_evaluate(config, resumed)
    return straight, resumed, results
  if restart != "stop":
    raise ValueError(f"restart must be 'copy' or 'stop', got {restart!r}")
  results = train.train_and_evaluate(config, straight)
  config.num_train_steps = stop_at
  train.train_and_evaluate(config, resumed)
  config.num_train_steps = steps
  train.train_and_evaluate(config, resumed)
  return straight, resumed, results
