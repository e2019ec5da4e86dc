"""Train-step benchmark: seconds per iteration, images/s, compile time and peak memory.

    .venv/bin/python benchmarks/train_step.py                 # the default cases below
    .venv/bin/python benchmarks/train_step.py --cases=cyclegan_128 --iters=10 --devices=all

Cases (the reference models at the reference widths, batch 1 per device):
  cyclegan_128, cyclegan_256   CycleGAN, resnet_9blocks, ngf 64, PatchGAN n_layers 3, 128 / 256 px
  pix2pix_256                  pix2pix, unet_256, ngf 64, batch norm, 256 px
  stargan_128                  StarGAN, CelebA preset (5 attributes, conv_dim 64, 6 res blocks), 128 px;
                               one D step plus, under lax.cond, a G step every n_critic-th step: the
                               median is over steps with and without G (a G step is ~1 in 5)
  ugatit_light_128, ugatit_128, ugatit_256
                               U-GAT-IT, ngf 64, 4 res blocks, global/local D (7/5 layers), light or
                               full generator (its MLP sized for the case's px), 128 / 256 px
  cyclegan_tiny, pix2pix_tiny, stargan_tiny, ugatit_tiny
                               the configs' `tiny` presets, as the tests use them (tiny widths,
                               32 px, grey images where the preset's data is the digits), batch 1 per
                               device: a check in seconds that each method's step still runs here, not
                               a figure (`--cases=tiny` runs them; they are not in the default list)
Each case: compile (first call) timed alone, then `--warmup` steps, then the median of `--iters` timed
steps (each ends with block_until_ready). Peak memory: the device allocator's peak on GPU/TPU; on CPU
the process's peak resident set size (includes everything the process holds). Random data, no input
pipeline: this measures the jitted step only. `--devices=all` runs data-parallel over every device
with batch 1 per device.

Side by side with the PyTorch originals (`--reference_cyclegan_dir` and/or `--reference_ugatit_dir`,
checkouts of junyanz/pytorch-CycleGAN-and-pix2pix and znxlwm/UGATIT-pytorch; never part of this repo):
each case runs ours in its own process, then the original training iteration in its own process
(`benchmarks/reference_torch.py`, under `--reference_python`, a Python with torch; same --iters and
--warmup; torch threads = the cores this process may use), and one table gives both s/iter, the ratio
reference/ours (> 1: ours is faster), images/s, our compile time beside the reference's first
iteration, and the peak memory of each process. Cases the originals lack (stargan_*, *_tiny) show "-".
With `--rounds=R` this happens R times, the reference first in every other round; s/iter is then the
median over rounds of each round's median, and a line above the table's row lists every round's
figures. (Alternating single iterations of the two processes was tried and dropped: XLA:CPU maps and
unmaps its ~0.9 GB step buffer every step, and right after the torch process ran, those fresh pages
took up to 1.2 ms each to fault in instead of 0.07 ms, which slowed our step by 10-40%, a cost no run
on its own pays.)

    .venv/bin/python benchmarks/train_step.py --cases=cyclegan_128,pix2pix_256 --iters=5 \
        --reference_cyclegan_dir=../pytorch-CycleGAN-and-pix2pix --reference_python=../torchenv/bin/python
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from translate import layers, loop, methods, parallel, training  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_torch  # noqa: E402  (benchmarks/reference_torch.py: imports no torch at module level)

CASES = {
    "cyclegan_128": ("configs/cyclegan.py:horse2zebra", 128, {}),
    "cyclegan_256": ("configs/cyclegan.py:horse2zebra", 256, {}),
    "pix2pix_256": ("configs/pix2pix.py:folder", 256, {}),
    "stargan_128": ("configs/stargan.py:celeba", 128, {}),
    "ugatit_light_128": ("configs/ugatit.py:selfie2anime_light", 128, {}),
    "ugatit_128": ("configs/ugatit.py:selfie2anime", 128, {}),
    "ugatit_256": ("configs/ugatit.py:selfie2anime", 256, {}),
}
TINY_CASES = {
    "cyclegan_tiny": ("configs/cyclegan.py:tiny", 32, {}),
    "pix2pix_tiny": ("configs/pix2pix.py:tiny", 32, {}),
    "stargan_tiny": ("configs/stargan.py:tiny", 32, {}),
    "ugatit_tiny": ("configs/ugatit.py:tiny", 32, {}),
}
DEFAULT_CASES = tuple(CASES)
CASES.update(TINY_CASES)


def load_config(spec: str):
  path, arg = spec.split(":")
  import importlib.util
  module_spec = importlib.util.spec_from_file_location("cfg", os.path.join(
      os.path.dirname(__file__), "..", path))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg)


def peak_memory_bytes() -> tuple[int, str]:
  device = jax.devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device peak"
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host peak RSS"


def build_case(name: str, num_devices: int = 1, dtype: str = "float32", batch_per_device: int = 1):
  """(config, step, state, batch, frozen) of a case: the jitted step, its initial state, a function
  returning a fresh random batch, and the frozen networks."""
  spec, size, overrides = CASES[name]
  config = load_config(spec)
  config.update(overrides)
  config.dtype = dtype
  config.batch_size = num_devices * batch_per_device
  if "crop_size" in config.data:  # networks built for an image size (U-GAT-IT's full G) use it
    config.data.crop_size = size
  else:  # StarGAN's labelled data
    config.data.image_size = size
  method = methods.get(config.method)
  mesh = parallel.make_mesh(num_devices)
  optimizers = method.optimizers(config, 1000, 200000)
  rng = np.random.default_rng(0)
  labelled = method.data.name == "labelled"  # an image and its label vector
  if labelled:
    from translate.data import labelled as labelled_data
    label_dim = labelled_data.label_layout(config.data).label_dim
  d = config.data  # image channels as the config's data gives them (the tiny presets' are grey)
  channels = {"image": d.channels} if labelled else {"A": d.input_nc, "B": d.output_nc}

  def host_batch(n):
    batch = {k: rng.uniform(-1, 1, (n, size, size, c)).astype(np.float32)
             for k, c in channels.items()}
    if labelled:
      batch["label"] = (rng.uniform(size=(n, label_dim)) > 0.5).astype(np.float32)
    return batch

  example = {k: np.zeros_like(v) for k, v in host_batch(1).items() if k != "label"}
  frozen = parallel.replicate(method.frozen(config), mesh)
  state = loop.create_train_state(config, method, mesh, optimizers, example, frozen)
  step = loop.make_train_step(config, method, mesh, optimizers)

  def batch():
    return parallel.shard_batch(host_batch(config.batch_size), mesh)

  return config, step, state, batch, frozen


def run_case(name: str, iters: int, warmup: int, num_devices: int, dtype: str = "float32",
             batch_per_device: int = 1) -> dict:
  config, step, state, batch, frozen = build_case(name, num_devices, dtype, batch_per_device)
  size = CASES[name][1]
  t0 = time.perf_counter()
  lowered = step.lower(state, batch(), frozen)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  # FLOPs of the whole step (all devices) from XLA's analysis of the HLO before compilation: the same
  # count on every backend (a GPU executable's own analysis leaves out the convolutions it hands to
  # cuDNN).
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float((cost or {}).get("flops", 0.0))
  for _ in range(warmup):
    state, metrics = compiled(state, batch(), frozen)
  jax.block_until_ready(state)
  times = []
  for _ in range(iters):
    b = batch()
    t0 = time.perf_counter()
    state, metrics = compiled(state, b, frozen)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  median = statistics.median(times)
  peak, peak_kind = peak_memory_bytes()
  return {"case": name, "size": size, "batch": config.batch_size, "devices": num_devices,
          "s_per_iter": median, "images_per_s": config.batch_size / median, "compile_s": compile_s,
          "peak_mem_gb": peak / 2**30, "peak_kind": peak_kind, "tflops_per_s": flops / median / 1e12,
          "params_G": training.count_params(state.params["G"])}


REFERENCE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_torch.py")
# case -> which reference checkout times it (benchmarks/reference_torch.py holds their flags)
REFERENCE_REPO = {"cyclegan_128": "cyclegan", "cyclegan_256": "cyclegan", "pix2pix_256": "cyclegan",
                  "ugatit_light_128": "ugatit", "ugatit_128": "ugatit", "ugatit_256": "ugatit"}


def our_case_command(args, name: str) -> list[str]:
  return [sys.executable, os.path.abspath(__file__), "--cases", name, "--iters", str(args.iters),
          "--warmup", str(args.warmup), "--devices", args.devices, "--no_header",
          "--conv_transpose_grad", args.conv_transpose_grad, "--conv_kernel_grad", args.conv_kernel_grad,
          "--winograd", args.winograd,
          "--dtype", args.dtype,
          "--batch_per_device", str(args.batch_per_device), "--peak_tflops", str(args.peak_tflops)]


def tagged_json(stdout: str, tag: str, command: list[str]) -> dict:
  """The JSON after the last line starting with `tag` in a child's stdout."""
  for line in reversed(stdout.splitlines()):
    if line.startswith(tag + " "):
      return json.loads(line[len(tag) + 1:])
  raise RuntimeError(f"no {tag} line in the output of {' '.join(command)}:\n{stdout}")


def reference_python(flag_value: str | None) -> str:
  """--reference_python, else this Python when it can import torch; else an error naming the flag."""
  if flag_value:
    return flag_value
  if importlib.util.find_spec("torch") is not None:
    return sys.executable
  raise SystemExit(f"{sys.executable} cannot import torch (it is no dependency of ours): pass "
                   "--reference_python=PATH, a Python with torch, to time the references")


def run_with_reference(args, names: list[str]) -> None:
  """Ours and the original, each case in two processes in turn, printed as one table."""
  dirs = {"cyclegan": args.reference_cyclegan_dir, "ugatit": args.reference_ugatit_dir}
  flags = {"cyclegan": "--reference_cyclegan_dir", "ugatit": "--reference_ugatit_dir"}
  kinds = {REFERENCE_REPO[n] for n in names if dirs.get(REFERENCE_REPO.get(n))}
  for kind in sorted(kinds):  # checked before anything is timed
    problem = reference_torch.reference_dir_problem(kind, os.path.abspath(dirs[kind]))
    if problem:
      raise SystemExit(f"{flags[kind]}: {problem}")
  for kind in sorted(k for k in dirs if dirs[k] and k not in kinds):
    print(f"warning: {flags[kind]} is given but no case in --cases={','.join(names)} has that original")
  python = "none (no case here has an original)"
  if kinds:  # all checked before anything is timed, not after the first case of ours
    if args.batch_per_device != 1 or args.devices != "1":
      raise SystemExit("the originals are timed at batch 1 on one device: drop --batch_per_device and "
                       "--devices, or the reference dirs")
    python = reference_python(args.reference_python)
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
      raise SystemExit(f"--reference_python={python} is not an executable file")
    probe = subprocess.run([python, "-c", "import torch"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    if probe.returncode:
      raise SystemExit(f"--reference_python={python} cannot import torch:\n{probe.stdout.strip()}")
  print(f"reference: {python}, iteration of the original code on CPU, batch 1 "
        f"(benchmarks/reference_torch.py); median of {args.iters} after {args.warmup} warm-up, both"
        + (f", {args.rounds} rounds" if args.rounds > 1 else "") + "; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} for both")
  print(f"{'case':16s} {'px':>4s} {'ours s/it':>9s} {'ref s/it':>9s} {'ref/ours':>8s} {'ours img/s':>10s} "
        f"{'compile s':>9s} {'ref 1st s':>9s} {'ours GB':>7s} {'ref GB':>6s}  ours: backend, peak kind")
  for name in names:
    ref_dir = dirs.get(REFERENCE_REPO.get(name))
    sides = {"ours": (our_case_command(args, name) + ["--json_result"], "OURS_RESULT")}
    if ref_dir:
      sides["ref"] = ([python, REFERENCE_SCRIPT, "--case", name, "--reference_dir", ref_dir,
                       "--iters", str(args.iters), "--warmup", str(args.warmup)], "REFERENCE_RESULT")
    runs = {"ours": [], "ref": []}
    for r in range(args.rounds if ref_dir else 1):
      for side in (sides if r % 2 == 0 else reversed(sides)):  # each goes first in every other round
        command, tag = sides[side]
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        runs[side].append(tagged_json(out, tag, command))
    ours = dict(runs["ours"][0], s_per_iter=statistics.median(o["s_per_iter"] for o in runs["ours"]),
                peak_mem_gb=max(o["peak_mem_gb"] for o in runs["ours"]))
    ours["images_per_s"] = runs["ours"][0]["batch"] / ours["s_per_iter"]
    ref = None
    if runs["ref"]:
      ref = dict(runs["ref"][0], s_per_iter=statistics.median(o["s_per_iter"] for o in runs["ref"]),
                 peak_rss_gb=max(o["peak_rss_gb"] for o in runs["ref"]))
      ratios = [b["s_per_iter"] / a["s_per_iter"] for a, b in zip(runs["ours"], runs["ref"])]
      if len(ratios) > 1:
        print(f"  ({name}, {len(ratios)} rounds: ours s/it "
              + " ".join(f"{o['s_per_iter']:.3f}" for o in runs["ours"]) + ", reference s/it "
              + " ".join(f"{o['s_per_iter']:.3f}" for o in runs["ref"]) + ", reference/ours per round "
              + " ".join(f"{x:.2f}" for x in ratios) + ")")
      print(f"  ({name} reference: {ref['reference']}, torch {ref['torch']}, {ref['threads']} threads"
            + (f", imports stubbed: {', '.join(ref['stubbed'])}" if ref["stubbed"] else "") + ")")
    dash = lambda width: f"{'-':>{width}s}"  # noqa: E731
    print(f"{name:16s} {ours['size']:4d} {ours['s_per_iter']:9.3f} "
          f"{ref and format(ref['s_per_iter'], '9.3f') or dash(9)} "
          f"{ref and format(ref['s_per_iter'] / ours['s_per_iter'], '8.2f') or dash(8)} "
          f"{ours['images_per_s']:10.2f} {ours['compile_s']:9.1f} "
          f"{ref and format(ref['first_iter_s'], '9.1f') or dash(9)} {ours['peak_mem_gb']:7.2f} "
          f"{ref and format(ref['peak_rss_gb'], '6.2f') or dash(6)}  {ours['backend']}, {ours['peak_kind']}",
          flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                      help=f"comma-separated names out of {', '.join(CASES)}, or 'tiny' for "
                           f"{', '.join(TINY_CASES)}")
  parser.add_argument("--iters", type=int, default=10, help="timed steps (the median is reported)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
  parser.add_argument("--devices", default="1", help="a number, or 'all'")
  parser.add_argument("--conv_transpose_grad", default="auto", choices=("auto", "taps", "dilated"),
                      help="how transposed convolutions take their gradients "
                           "(translate.layers.CONV_TRANSPOSE_GRAD)")
  parser.add_argument("--conv_kernel_grad", default="auto", choices=("auto", "taps", "xla"),
                      help="how convolutions take their kernel gradient (translate.layers.CONV_KERNEL_GRAD)")
  parser.add_argument("--winograd", default="auto", choices=("auto", "on", "off"),
                      help="3x3 stride-1 convolutions as Winograd F(2x2, 3x3) (translate.layers.WINOGRAD)")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="config.dtype: the networks' compute dtype (mixed precision)")
  parser.add_argument("--batch_per_device", type=int, default=1,
                      help="examples per device in each step (the batch is this times --devices); "
                           "the originals are timed at 1")
  parser.add_argument("--peak_tflops", type=float, default=0.0,
                      help="the chip's peak TFLOP/s for --dtype (per device): prints MFU = achieved "
                           "FLOP/s (XLA's cost analysis of the step) over peak")
  parser.add_argument("--reference_cyclegan_dir", default=None,
                      help="checkout of junyanz/pytorch-CycleGAN-and-pix2pix: time its iteration for "
                           "cyclegan_*/pix2pix_256 beside ours")
  parser.add_argument("--reference_ugatit_dir", default=None,
                      help="checkout of znxlwm/UGATIT-pytorch: time its iteration for ugatit_* beside ours")
  parser.add_argument("--rounds", type=int, default=1,
                      help="with references: run ours and the reference this many times each, in turn "
                           "(each goes first in every other round), and report the medians; the "
                           "machine's speed drifts over minutes, and rounds spread that drift over both")
  parser.add_argument("--reference_python", default=None,
                      help="a Python with torch for the references (none given: this one, if it has torch)")
  parser.add_argument("--glibc_tunables", default="glibc.malloc.hugetlb=1",
                      help="on Linux, rerun this script with GLIBC_TUNABLES holding this (appended), so "
                           "that ours and the reference run with it alike ('' leaves the environment "
                           "as it is): huge pages for malloc spare XLA:CPU most page faults on its "
                           "per-step buffers (launch/cpu.sh)")
  parser.add_argument("--no_header", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--json_result", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  if args.glibc_tunables and sys.platform.startswith("linux") and args.glibc_tunables not in tunables:
    env = dict(os.environ, GLIBC_TUNABLES=":".join(filter(None, [tunables, args.glibc_tunables])))
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
  names = (",".join(TINY_CASES) if args.cases == "tiny" else args.cases).split(",")
  unknown = [n for n in names if n not in CASES]
  if unknown:
    raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
  if args.reference_cyclegan_dir or args.reference_ugatit_dir:
    run_with_reference(args, names)
    return
  num_devices = jax.device_count() if args.devices == "all" else int(args.devices)
  layers.CONV_TRANSPOSE_GRAD = args.conv_transpose_grad
  layers.CONV_KERNEL_GRAD = args.conv_kernel_grad
  layers.WINOGRAD = args.winograd
  if not args.no_header:
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s): {jax.devices()[0].device_kind}")
    print(f"dtype {args.dtype}, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    print(f"{'case':16s} {'px':>4s} {'batch':>5s} {'s/iter':>8s} {'img/s':>7s} {'compile s':>9s} "
          f"{'peak GB':>8s} {'TFLOP/s':>8s} {'MFU':>6s}  kind")
  if len(names) > 1:  # one process per case, so each peak-memory figure is that case's alone
    for name in names:
      subprocess.run(our_case_command(args, name), check=True)
    return
  for name in names:
    r = run_case(name, args.iters, args.warmup, num_devices, args.dtype, args.batch_per_device)
    mfu = (f"{r['tflops_per_s'] / (args.peak_tflops * num_devices):6.1%}" if args.peak_tflops
           else f"{'-':>6s}")
    print(f"{r['case']:16s} {r['size']:4d} {r['batch']:5d} {r['s_per_iter']:8.3f} "
          f"{r['images_per_s']:7.2f} {r['compile_s']:9.1f} {r['peak_mem_gb']:8.2f} "
          f"{r['tflops_per_s']:8.3f} {mfu}  {r['peak_kind']}", flush=True)
    if args.json_result:
      print("OURS_RESULT " + json.dumps({**r, "backend": jax.default_backend()}), flush=True)


if __name__ == "__main__":
  main()
