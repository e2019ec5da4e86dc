"""Vanilla (unconditional) GAN (Goodfellow et al. 2014) on the embedded MNIST digits.

The conditional GAN of `translate.methods.cgan` without y: its functions look at `config.method`, so
this module only re-exports them. Samples are a 10 x N grid of independent draws; there is no class to
check, so no class_acc.
"""
from translate.methods.cgan import (  # noqa: F401
    DIRECTIONS, GROUPS, INPUT_KEYS, SAMPLE_GRID_ROWS, build_networks, check_config, create_dataset,
    create_state, dataset_size, describe, generate, sample_images, sample_z, train_step, translate)

SAMPLE_ROWS = tuple(f"row_{i}" for i in range(SAMPLE_GRID_ROWS))
METRICS: dict = {}
