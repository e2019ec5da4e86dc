"""Small configs and batches for tests: the real method configs, shrunk to tiny widths and sizes."""
import importlib.util

import numpy as np

from tests.conftest import REPO


def load_config(path: str, arg: str = ""):
  spec = importlib.util.spec_from_file_location("test_config", REPO / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def tiny_config(method: str, batch_size: int = 4, preset: str | None = None):
  """The method's config with tiny networks at 32x32, logging every step, no evaluation."""
  if method == "cyclegan":
    config = load_config("configs/cyclegan.py", preset or "digits")
    config.model.update(netG="resnet_2blocks", ngf=4, netD="n_layers", ndf=4, n_layers_D=1)
  elif method == "pix2pix":
    config = load_config("configs/pix2pix.py", preset or "folder")
    config.model.update(netG="unet_32", ngf=4, netD="n_layers", ndf=4, n_layers_D=1)
  elif method in ("cgan", "gan"):  # the MLP nets at 28x28, or the conv nets (preset 'dcgan') at 32
    config = load_config(f"configs/{method}.py", preset or "mnist")
    config.model.update(z_dim=8, g_z_hidden=8, g_y_hidden=8, g_joint_hidden=16, d_x_units=8,
                        d_x_pieces=3, d_y_units=4, d_y_pieces=2, d_joint_units=8, d_joint_pieces=2,
                        ngf=4, ndf=4)
    config.samples_per_class = 3
  elif method == "stargan":
    config = load_config("configs/stargan.py", preset or "digits")
    config.model.update(g_conv_dim=4, d_conv_dim=4, g_repeat_num=1, d_repeat_num=3)
    config.loss.n_critic = 2  # a G update within the first steps
    config.optim.update(num_steps=10, num_steps_decay=5)
  elif method == "ugatit":
    config = load_config("configs/ugatit.py", preset or "digits")
    config.model.update(ngf=4, n_res=1, ndf=4, n_layers_global=4, n_layers_local=3)
  elif method == "dtn":  # tiny widths, f trained for a few steps (cached like the real one)
    config = load_config("configs/dtn.py", preset or "tiny")
  else:
    raise ValueError(method)
  config.batch_size = batch_size
  if "load_size" in config.data:  # StarGAN's and the cGAN family's data have no load/crop sizes
    config.data.update(load_size=32, crop_size=32)
  config.log_every = config.sample_every = config.checkpoint_every = 1
  config.eval_every = 0
  config.eval.metrics = ()
  config.optim.update(n_epochs=1, n_epochs_decay=1)
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
  return {"A": rng.uniform(-1, 1, (n, 32, 32, d.input_nc)).astype(np.float32),
          "B": rng.uniform(-1, 1, (n, 32, 32, d.output_nc)).astype(np.float32)}


def straight_and_resumed_runs(config, base, steps: int = 4, stop_at: int = 2):
  """Trains `config` for `steps` straight in base/straight, and in base/resumed for `stop_at` steps,
  then again to `steps` (a fresh train_and_evaluate call resumes from the checkpoint). Returns the two
  workdirs and the straight run's results; `config.num_train_steps` is left at `steps`."""
  from translate import train
  straight, resumed = str(base / "straight"), str(base / "resumed")
  config.num_train_steps = steps
  results = train.train_and_evaluate(config, straight)
  config.num_train_steps = stop_at
  train.train_and_evaluate(config, resumed)
  config.num_train_steps = steps
  train.train_and_evaluate(config, resumed)
  return straight, resumed, results
