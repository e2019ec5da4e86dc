"""Vanilla (unconditional) GAN on the embedded MNIST digits: configs/cgan.py's nets and recipe minus y.

    python -m translate.train --config=configs/gan.py --workdir=runs/gan

Presets: `mnist` (default: MLP G, maxout D, 28x28) and `dcgan` (conv nets with plain batch norm, 32x32);
`,tiny` after either (or `tiny` alone: mnist) shrinks it for tests, as in configs/cgan.py.
Goodfellow et al. (2014) trained their MNIST GAN with a ReLU/sigmoid MLP G and a maxout D and SGD with
momentum; the hyperparameters here are configs/cgan.py's.
"""
import importlib.util
import os

import ml_collections


def _cgan_config_module():
  # configs are files, not a package: load the sibling file by path
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cgan.py")
  spec = importlib.util.spec_from_file_location("cgan_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_CGAN = _cgan_config_module()
PRESETS, TINY_MODEL = _CGAN.PRESETS, _CGAN.TINY_MODEL


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
  return _CGAN.gan_config("gan", arg).lock()
