"""Command line for training (the loop itself is `translate.loop.train_and_evaluate`).

    python -m translate.train --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z \
        [--config.model.ngf=32 --config.num_train_steps=1000] [--distributed]

Rerunning with the same --workdir resumes from its latest checkpoint.
"""
from __future__ import annotations

import logging

from translate.loop import train_and_evaluate

__all__ = ["train_and_evaluate", "main"]


def main(argv):
  import jax
  from absl import flags
  if len(argv) > 1:
    raise ValueError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS
  logging.getLogger().setLevel(logging.INFO)
  # Orbax and clu log every save and every scalar through absl at INFO; the progress line says enough.
  logging.getLogger("absl").setLevel(logging.WARNING)
  if FLAGS.distributed:  # multi-host: TPU pods and Slurm/MPI GPU clusters are discovered by JAX
    jax.distributed.initialize()
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


def _define_flags():
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cyclegan.py:horse2zebra.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
