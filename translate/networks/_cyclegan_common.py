"""Conventions shared by the CycleGAN/pix2pix networks (resnet.py, unet.py, patchgan.py).

These follow junyanz/pytorch-CycleGAN-and-pix2pix `models/networks.py`:
  * `--norm` is 'batch' (BatchNorm2d, affine, running statistics), 'instance' (InstanceNorm2d without
    affine and without running statistics, so always per-sample statistics) or 'none' (Identity).
  * Convolutions followed by a norm carry a bias only for instance norm: the reference computes
    `use_bias = (norm_layer is InstanceNorm2d)`. For 'none' the norm layer is a function returning
    Identity, so `use_bias` is **False** there too, although nothing follows the conv that would absorb
    a bias. We keep that quirk, so that checkpoints trained with `--norm none` load key for key.
  * `init_weights`: conv/linear weights from `layers.kernel_init(init_type, gain)`, biases 0,
    BatchNorm weight ~ N(1, gain) (`layers.norm_scale_init`), bias 0.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from translate import layers

NORMS = ("batch", "instance", "none")
# The reference's `padding_type` names -> layers.Conv2d padding modes.
PADDING_TYPES = {"reflect": "reflect", "replicate": "replicate", "zero": "zeros"}
# Torch keys that carry nothing we need. Besides BatchNorm's counter, old (2018) CycleGAN checkpoints
# stored running statistics for InstanceNorm, which the reference's `BaseModel` deletes on load. With
# batch norm those keys are consumed by the mapping before this pattern is consulted, and a batch-norm
# checkpoint loaded as instance norm is still rejected because of its unused norm weight/bias keys.
IGNORE_KEYS = (r"(^|\.)num_batches_tracked$", r"(^|\.)running_(mean|var)$")


def check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; expected one of {NORMS}.")


def conv_bias(norm: str) -> bool:
  """The reference's `use_bias` for convs that feed a norm layer (see the module docstring)."""
  check_norm(norm)
  return norm == "instance"


def norm_factory(norm: str, init_type: str, init_gain: float) -> Callable[..., nn.Module] | None:
  """`layers.get_norm`, with the BatchNorm weight initialised as `init_weights` does."""
  check_norm(norm)
  if norm == "batch":
    return layers.get_norm("batch", scale_init=layers.norm_scale_init(init_type, init_gain))
  return layers.get_norm(norm)
