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
  elif method == "stargan":
    config = load_config("configs/stargan.py", preset or "digits")
    config.model.update(g_conv_dim=4, d_conv_dim=4, g_repeat_num=1, d_repeat_num=3)
    config.loss.n_critic = 2  # a G update within the first steps
    config.optim.update(num_steps=10, num_steps_decay=5)
  else:
    raise ValueError(method)
  config.batch_size = batch_size
  if method != "stargan":  # StarGAN's digits are 32 px already (its data has no load/crop sizes)
    config.data.update(load_size=32, crop_size=32)
  config.log_every = config.sample_every = config.checkpoint_every = 1
  config.eval_every = 0
  config.eval.metrics = ()
  config.optim.update(n_epochs=1, n_epochs_decay=1)
  return config


def make_batch(method: str, config, rng: np.random.Generator, batch_size: int | None = None) -> dict:
  """A random global batch of the shapes the method's input pipeline gives (32x32)."""
  n = batch_size or config.batch_size
  d = config.data
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
