"""Command line for training (the loop itself is `translate.loop.train_and_evaluate`).

    python -m translate.train --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z \
        [--config.model.ngf=32 --config.num_train_steps=1000] [--distributed]

Rerunning with the same --workdir resumes from its latest checkpoint. Prints progress, evaluation
results and warnings; --verbose also shows the libraries' INFO logs (orbax, absl, jax, TensorFlow).
"""
from __future__ import annotations

import logging

if __name__ == "__main__":  # before tensorflow/jax are imported: their C++ logs (translate.cli)
  from translate import cli
  cli.quiet_native_logs()

from translate import cli  # noqa: E402
from translate.loop import train_and_evaluate  # noqa: E402

__all__ = ["train_and_evaluate", "main"]


def main(argv):
  import jax
  from absl import flags
  if len(argv) > 1:
    raise ValueError(f"Unexpected arguments: {argv[1:]}")
  FLAGS = flags.FLAGS
  # Progress lines shown; orbax's and clu's INFO (every save, every scalar) only with --verbose.
  cli.setup_logging(FLAGS.verbose)
  if FLAGS.distributed:  # multi-host: TPU pods and Slurm/MPI GPU clusters are discovered by JAX
    jax.distributed.initialize()
  logging.info("Workdir %s: checkpoints, sample grids, TensorBoard logs.", FLAGS.workdir)
  with cli.errors_as_messages(FLAGS.verbose):
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  logging.info("Done: the trained run is in %s (python -m translate.translate --workdir=...).",
               FLAGS.workdir)


def _define_flags():
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cyclegan.py:horse2zebra.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs).")
  flags.DEFINE_bool("verbose", False, "Also show the libraries' INFO logs (orbax, absl, jax, "
                    "TensorFlow) and tracebacks.")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
