"""Command line for training (the loop itself is `translate.loop.train_and_evaluate`).

    python -m translate.train --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z \
        [--config.model.ngf=32 --config.num_train_steps=1000] [--distributed]

Multi-host (one process per host, the same command on each): `--distributed` alone lets JAX discover
the cluster (TPU pods, Slurm, Open MPI); `--coordinator_address=HOST:PORT --num_processes=N
--process_id=I` give it explicitly (any cluster, or N processes on one machine:
launch/local_processes.sh). Each process reads its own rows of every global batch; the workdir must be
storage every process can write.

Rerunning with the same --workdir resumes from its latest checkpoint. Prints progress, evaluation
results and warnings; --verbose also shows the libraries' INFO logs (orbax, absl, jax, TensorFlow).
"""
from __future__ import annotations

import logging
import os
import sys

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
  explicit = {name: FLAGS[name].value for name in ("coordinator_address", "num_processes",
                                                    "process_id") if FLAGS[name].value is not None}
  if explicit and len(explicit) < 3:
    raise ValueError(f"--coordinator_address, --num_processes and --process_id go together; got only "
                     f"{sorted(explicit)}. Give all three, or --distributed alone for auto-discovery.")
  if FLAGS.distributed or explicit:  # multi-host; without the three flags JAX discovers the cluster
    jax.distributed.initialize(**explicit)
  if (jax.default_backend() == "cpu" and sys.platform.startswith("linux")
      and "glibc.malloc.hugetlb" not in os.environ.get("GLIBC_TUNABLES", "")):
    logging.info("On CPU, GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (as launch/cpu.sh sets it) makes the "
                 "steps of large networks up to ~15% faster: fewer page faults on XLA's per-step "
                 "buffers (README, Speed).")
  logging.info("Workdir %s: checkpoints, sample grids, TensorBoard logs.", FLAGS.workdir)
  with cli.errors_as_messages(FLAGS.verbose):
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  python = sys.executable
  if python and not os.path.relpath(python).startswith(".."):
    python = os.path.relpath(python)  # .venv/bin/python, as the README runs it
  logging.info("Done: the trained run is in %s (inference: %s -m translate.translate --workdir=%s "
               "--output=DIR [--input=IMAGE_OR_FOLDER]; README, Translating).", FLAGS.workdir,
               python or "python", FLAGS.workdir)


def _define_flags():
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cyclegan.py:horse2zebra.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host runs); "
                    "TPU pods, Slurm and Open MPI are discovered.")
  flags.DEFINE_string("coordinator_address", None, "Multi-host: HOST:PORT of process 0's "
                      "coordinator (jax.distributed.initialize); implies --distributed.")
  flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes (with "
                       "--coordinator_address).")
  flags.DEFINE_integer("process_id", None, "Multi-host: this process's index in [0, num_processes).")
  flags.DEFINE_bool("verbose", False, "Also show the libraries' INFO logs (orbax, absl, jax, "
                    "TensorFlow) and tracebacks.")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
