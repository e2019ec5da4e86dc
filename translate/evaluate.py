"""Command line for evaluating a trained run (the library is `translate.evaluation`).

    python -m translate.evaluate --workdir=runs/h2z --metrics=fid,kid --inception_path=fid_inception.npz
    python -m translate.evaluate --workdir=runs/digits                # the config's eval.metrics

Loads the config and the latest (or --step) checkpoint of a training workdir, computes the metrics and
writes `evaluation.json` and `evaluation.md` (a table) into the workdir. --verbose also shows the
libraries' INFO logs and tracebacks (`translate.cli`).
"""
from __future__ import annotations

import argparse
import os

if __name__ == "__main__":  # before tensorflow/jax are imported: their C++ logs (translate.cli)
  from translate import cli
  cli.quiet_native_logs()

from translate import cli  # noqa: E402
from translate.evaluation import evaluate_workdir  # noqa: E402


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints)")
  parser.add_argument("--metrics", default="", help="comma-separated names (default: config.eval.metrics)")
  parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
  parser.add_argument("--inception_path", default=None, help="FID Inception weights (.npz or .pth)")
  parser.add_argument("--inception_size", type=int, default=None, help=argparse.SUPPRESS)  # tests only
  parser.add_argument("--max_images", type=int, default=None, help="cap on test images (0 = all)")
  parser.add_argument("--batch_size", type=int, default=None, help="evaluation batch size")
  parser.add_argument("--kid_subsets", type=int, default=None)
  parser.add_argument("--kid_subset_size", type=int, default=None)
  parser.add_argument("--crop_border", type=int, default=None, help="PSNR/SSIM border crop (px)")
  cli.add_verbose_argument(parser)
  args = parser.parse_args(argv)
  cli.setup_logging(args.verbose)
  overrides = {k: getattr(args, k) for k in ("inception_path", "inception_size", "max_images",
                                             "batch_size", "kid_subsets", "kid_subset_size",
                                             "crop_border") if getattr(args, k) is not None}
  metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
  with cli.errors_as_messages(args.verbose):
    record = evaluate_workdir(args.workdir, metrics, args.step, overrides)
  with open(os.path.join(args.workdir, "evaluation.md")) as f:
    print(f.read())
  print(f"wrote {os.path.join(args.workdir, 'evaluation.json')} (step {record['step']})")


if __name__ == "__main__":
  main()
