"""Time the ORIGINAL PyTorch training iteration of a benchmark case, driven through the original code.

    PYTHON_WITH_TORCH benchmarks/reference_torch.py --case=cyclegan_128 \
        --reference_dir=PATH/pytorch-CycleGAN-and-pix2pix --iters=5 --warmup=2

Run it with a Python that has torch (not the project's venv: torch is no dependency of ours);
`benchmarks/train_step.py --reference_cyclegan_dir=... --reference_ugatit_dir=...` runs it beside our
step. Nothing of the reference code lives in this repository: `--reference_dir` is a checkout of it
and this script imports its modules from there.

Cases (names as in benchmarks/train_step.py; batch 1, random images in [-1, 1], CPU):
  cyclegan_128, cyclegan_256   junyanz/pytorch-CycleGAN-and-pix2pix, `--model cycle_gan` with its
                               defaults: resnet_9blocks, ngf 64, basic PatchGAN (n_layers 3), instance
                               norm, lsgan, identity 0.5, image pool 50, no dropout
  pix2pix_256                  the same repository, `--model pix2pix`: unet_256, batch norm, vanilla
                               GAN, lambda_L1 100, pool 0, dropout in the U-Net
  ugatit_light_128             znxlwm/UGATIT-pytorch, `--light True --img_size 128` with its other
                               defaults (ch 64, n_res 4, lr 1e-4, weight decay 1e-4)
  ugatit_128, ugatit_256       the same, full generator (`--light False`), 128 / 256 px

What is timed, per iteration:
  CycleGAN / pix2pix: `model.set_input(data); model.optimize_parameters()`, the body of their
    train.py's inner loop. The model is built by their `models.create_model(opt)` and
    `model.setup(opt)`. `opt` is an argparse namespace: the defaults of their options/base_options.py
    and options/train_options.py for the fields the model reads (OPTION_DEFAULTS below), then their
    model class's own `modify_commandline_options(parser, is_train=True)` (their code: CycleGAN's
    lambdas and no_dropout, pix2pix's unet_256/batch/vanilla/pool 0/lambda_L1), then the case's flags,
    then what their TrainOptions.parse() does after parsing (isTrain=True, gpu_ids "-1" -> []). Their
    option parser itself is not run: it imports their data package (PIL, torchvision) to add dataset
    options, none of which the model reads.
  U-GAT-IT: their `UGATIT.train()` itself, unchanged. The args namespace comes from their main.py's
    `parse_args()` (sys.argv set to the case's flags, `--device cpu`, `--result_dir` a temporary
    folder). `build_model()` runs with the names `ImageFolder` and `DataLoader` in their UGATIT module
    replaced, for that call only, by stand-ins (no dataset folder); then `trainA_loader` and
    `trainB_loader` are random-image loaders whose iterators also have `.next()` (their loop calls
    `trainA_iter.next()`, which torch >= 1.13 DataLoader iterators no longer have). The A loader stamps
    the time at each fetch: iteration k lasts from fetch k to fetch k+1 (their whole loop body: lr
    decay check, both fetches, D update, G update, rho clipping, the progress print). After
    warmup+iters fetches it raises, which ends `train()` (iteration number << their print_freq 1000,
    so no sample images or checkpoints are written, and no lr decay: iteration 1e6 by default).

Stubbed imports, U-GAT-IT only, and only those the running Python cannot import (listed in the
output): `torchvision` (UGATIT.py imports `transforms` to build the data transforms the stand-in
dataset ignores), `PIL` (their dataset.py, the bypassed image folder), `cv2` and `scipy.misc` (their
utils.py; used only to write sample images and in test()). With them installed nothing is stubbed.
No compute of theirs is replaced. The CycleGAN/pix2pix path imports only torch.

Output: one human-readable line, then `REFERENCE_RESULT <json>` with s_per_iter (median of --iters
after --warmup), first_iter_s (the first iteration, eager PyTorch's analogue of a compile), the peak
resident set size of this process (resource.getrusage), threads, torch version and stubs.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types

CASES = {
    # name: (repository kind, image size, flags for their option parser)
    "cyclegan_128": ("cyclegan", 128, ["--model", "cycle_gan", "--load_size", "128", "--crop_size", "128"]),
    "cyclegan_256": ("cyclegan", 256, ["--model", "cycle_gan"]),
    "pix2pix_256": ("cyclegan", 256, ["--model", "pix2pix"]),
    "ugatit_light_128": ("ugatit", 128, ["--light", "True", "--img_size", "128"]),
    "ugatit_128": ("ugatit", 128, ["--light", "False", "--img_size", "128"]),
    "ugatit_256": ("ugatit", 256, ["--light", "False", "--img_size", "256"]),
}

# Defaults of junyanz/pytorch-CycleGAN-and-pix2pix options/base_options.py + options/train_options.py
# for every field that models/ (base_model, networks, cycle_gan_model, pix2pix_model) reads. Both
# spellings of the epoch counts (niter/niter_decay before 2020, n_epochs/n_epochs_decay after) are
# given; only get_scheduler (setup(), not timed) reads them. gpu_ids: their "-1" means CPU.
OPTION_DEFAULTS = {
    "name": "experiment_name", "gpu_ids": "-1", "checkpoints_dir": "./checkpoints",
    "model": "cycle_gan", "input_nc": 3, "output_nc": 3, "ngf": 64, "ndf": 64, "netD": "basic",
    "netG": "resnet_9blocks", "n_layers_D": 3, "norm": "instance", "init_type": "normal",
    "init_gain": 0.02, "no_dropout": False, "dataset_mode": "unaligned", "direction": "AtoB",
    "batch_size": 1, "load_size": 286, "crop_size": 256, "preprocess": "resize_and_crop",
    "epoch": "latest", "load_iter": 0, "verbose": False, "continue_train": False, "epoch_count": 1,
    "phase": "train", "beta1": 0.5, "lr": 0.0002, "gan_mode": "lsgan", "pool_size": 50,
    "lr_policy": "linear", "lr_decay_iters": 50, "niter": 100, "niter_decay": 100, "n_epochs": 100,
    "n_epochs_decay": 100,
}


class _Stub(types.ModuleType):
  """A module whose every attribute is a do-nothing callable class (for imports only)."""

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return type(name, (), {"__init__": lambda self, *a, **k: None,
                           "__call__": lambda self, *a, **k: None})


def stub_missing(names: list[str]) -> list[str]:
  """Put a _Stub in sys.modules for each of `names` (parents first) that does not import; returns
  those stubbed. A package that is installed but fails to import (torchvision from PyPI beside a CPU
  torch build) counts as missing."""
  stubbed = []
  for name in names:
    try:
      importlib.import_module(name)
    except Exception:  # noqa: BLE001 -- ImportError, or a broken install's own error
      sys.modules[name] = _Stub(name)
      parent, _, child = name.rpartition(".")
      if parent in sys.modules:
        setattr(sys.modules[parent], child, sys.modules[name])
      stubbed.append(name)
  return stubbed


def random_image(torch, size: int):
  return torch.rand(1, 3, size, size) * 2 - 1


def time_cyclegan_repo(torch, ref_dir: str, size: int, flags: list[str], n: int):
  """Their train.py iteration (set_input + optimize_parameters) n times; returns per-iteration s."""
  sys.path.insert(0, ref_dir)
  import models  # their package
  parser = argparse.ArgumentParser()
  for key, value in OPTION_DEFAULTS.items():
    if isinstance(value, bool):
      parser.add_argument("--" + key, action="store_true", default=value)
    else:
      parser.add_argument("--" + key, type=type(value), default=value)
  opt, _ = parser.parse_known_args(flags)
  parser = models.get_option_setter(opt.model)(parser, True)  # their model's defaults and options
  opt = parser.parse_args(flags)
  opt.isTrain = True  # what their TrainOptions.parse() sets after parsing
  opt.gpu_ids = [int(i) for i in opt.gpu_ids.split(",") if int(i) >= 0]
  opt.checkpoints_dir = tempfile.mkdtemp(prefix="reference_torch_")
  try:
    model = models.create_model(opt)
    model.setup(opt)
  except AttributeError as e:
    raise SystemExit(f"their model code read an option this driver does not set ({e}); add it to "
                     "OPTION_DEFAULTS in benchmarks/reference_torch.py with their default") from e
  times = []
  for _ in range(n):
    data = {"A": random_image(torch, size), "B": random_image(torch, size),
            "A_paths": ["random"], "B_paths": ["random"]}
    t0 = time.perf_counter()
    model.set_input(data)
    model.optimize_parameters()
    times.append(time.perf_counter() - t0)
  return times


class _StopTraining(Exception):
  pass


class _RandomLoader:
  """Stands in for their DataLoader: yields (image batch, label); iterators have .next() as theirs used."""

  def __init__(self, torch, size: int, limit: int | None = None):
    self.torch, self.size, self.limit, self.stamps = torch, size, limit, []

  def __iter__(self):
    loader = self

    class _It:
      def __next__(self):
        if loader.limit is not None:
          now = time.perf_counter()
          if len(loader.stamps) > loader.limit:  # the end stamp is taken: leave their train()
            raise _StopTraining
          loader.stamps.append(now)
          if len(loader.stamps) > loader.limit:
            raise _StopTraining
        return random_image(loader.torch, loader.size), loader.torch.zeros(1, dtype=loader.torch.long)

      next = __next__

    return _It()


def time_ugatit_repo(torch, ref_dir: str, size: int, flags: list[str], n: int):
  """Their UGATIT.train() for n iterations; returns per-iteration s from the A loader's stamps."""
  sys.path.insert(0, ref_dir)
  result_dir = tempfile.mkdtemp(prefix="reference_torch_")
  argv = sys.argv
  sys.argv = ["main.py", "--phase", "train", "--dataset", "random", "--device", "cpu",
              "--result_dir", result_dir] + flags
  try:
    import main as their_main  # their main.py: parse_args, check_args
    args = their_main.parse_args()
  finally:
    sys.argv = argv
  import UGATIT as their_ugatit
  gan = their_ugatit.UGATIT(args)
  saved = their_ugatit.ImageFolder, their_ugatit.DataLoader
  their_ugatit.ImageFolder = lambda root, transform=None: None  # no dataset folder is read
  their_ugatit.DataLoader = lambda dataset, **kwargs: None
  try:
    gan.build_model()
  finally:
    their_ugatit.ImageFolder, their_ugatit.DataLoader = saved
  gan.trainA_loader = _RandomLoader(torch, size, limit=n)
  gan.trainB_loader = _RandomLoader(torch, size)
  gan.testA_loader = gan.testB_loader = None
  if n >= min(gan.print_freq, gan.save_freq, 1000):
    raise SystemExit(f"--warmup + --iters must stay below {min(gan.print_freq, gan.save_freq, 1000)} "
                     "(their train() writes samples/checkpoints there)")
  try:
    gan.train()
  except _StopTraining:
    pass
  stamps = gan.trainA_loader.stamps
  if len(stamps) != n + 1:
    raise SystemExit(f"their train() fetched {len(stamps)} batches, expected {n + 1}")
  return [b - a for a, b in zip(stamps, stamps[1:])]


# repository kind -> (a file every checkout of it has, the repository)
REPOSITORIES = {"cyclegan": ("models/cycle_gan_model.py", "junyanz/pytorch-CycleGAN-and-pix2pix"),
                "ugatit": ("UGATIT.py", "znxlwm/UGATIT-pytorch")}


def reference_dir_problem(kind: str, ref_dir: str) -> str | None:
  """Why `ref_dir` cannot be the checkout for `kind` ('cyclegan' or 'ugatit'), or None."""
  marker, repository = REPOSITORIES[kind]
  if not os.path.isfile(os.path.join(ref_dir, marker)):
    return f"{ref_dir} has no {marker}; it should be a checkout of {repository}"
  return None


def reference_commit(ref_dir: str) -> str:
  try:
    out = subprocess.run(["git", "-C", ref_dir, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    return out or ref_dir
  except (OSError, subprocess.CalledProcessError):
    return f"{ref_dir} (not a git checkout)"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--case", required=True, choices=sorted(CASES))
  parser.add_argument("--reference_dir", required=True,
                      help="checkout of junyanz/pytorch-CycleGAN-and-pix2pix (cyclegan_*, pix2pix_*) or "
                           "znxlwm/UGATIT-pytorch (ugatit_*)")
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                      help="torch.set_num_threads (default: the cores this process may use)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--show_reference_output", action="store_true",
                      help="let their prints through (to stderr); by default they are discarded")
  args = parser.parse_args()
  kind, size, flags = CASES[args.case]
  ref_dir = os.path.abspath(args.reference_dir)
  problem = reference_dir_problem(kind, ref_dir)
  if problem:
    raise SystemExit(f"--reference_dir: {problem} (case {args.case})")
  try:
    import torch
  except ImportError:
    raise SystemExit(f"{sys.executable} cannot import torch: run this script with a Python that has it")
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  random.seed(args.seed)
  stubbed = []
  if kind == "ugatit":
    stubbed = stub_missing(["torchvision", "torchvision.transforms", "PIL", "PIL.Image", "cv2", "scipy",
                            "scipy.misc"])
  n = args.warmup + args.iters
  sink = sys.stderr if args.show_reference_output else open(os.devnull, "w")
  with contextlib.redirect_stdout(sink):
    if kind == "cyclegan":
      times = time_cyclegan_repo(torch, ref_dir, size, flags, n)
    else:
      times = time_ugatit_repo(torch, ref_dir, size, flags, n)
  timed = times[args.warmup:]
  result = {
      "case": args.case, "size": size, "batch": 1, "s_per_iter": statistics.median(timed),
      "first_iter_s": times[0], "iters": args.iters, "warmup": args.warmup, "threads": args.threads,
      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30,
      "torch": torch.__version__, "reference": reference_commit(ref_dir), "flags": flags,
      "stubbed": stubbed,
  }
  print(f"reference {args.case}: {result['s_per_iter']:.3f} s/iter (median of {args.iters} after "
        f"{args.warmup} warm-up), first iteration {result['first_iter_s']:.2f} s, peak RSS "
        f"{result['peak_rss_gb']:.2f} GB, torch {torch.__version__}, {args.threads} threads"
        + (f", stubbed imports: {', '.join(stubbed)}" if stubbed else ""))
  print("REFERENCE_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
