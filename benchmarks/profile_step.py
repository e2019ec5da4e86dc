"""Where a train step's time goes: the top XLA operations of one benchmark case, from a profiler trace.

    .venv/bin/python benchmarks/profile_step.py --case=cyclegan_256
    .venv/bin/python benchmarks/profile_step.py --case=pix2pix_256 --steps=3 --top=30

Compiles the case of benchmarks/train_step.py (random data, batch 1), runs one warm-up step, then
traces `--steps` steps with `jax.profiler` and sums the device events by HLO operation name (on CPU:
each thunk XLA runs; on GPU: each kernel). Prints the ops with the most time, their share of the traced
step time, and the totals per kind of op (convolution, fusion, dot, copy, ...). Reading the trace
needs TensorFlow's xplane protobuf module (TensorFlow is one of our dependencies).
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402

import train_step  # noqa: E402  (benchmarks/train_step.py: the cases)


def op_times(trace_dir: str) -> collections.Counter:
  """{event name: total seconds} over the trace's device planes (CPU: the XLA thunk events)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  totals: collections.Counter = collections.Counter()
  for path in glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      names = {k: v.name for k, v in plane.event_metadata.items()}
      device = plane.name.startswith("/device:")
      for line in plane.lines:
        # CPU: XLA's thunks run on the host plane's executor threads; GPU: the device planes.
        if not device and "XLA" not in line.name and "Eigen" not in line.name \
            and "tf_XLA" not in line.name and "thunk" not in line.name.lower():
          continue
        for event in line.events:
          name = names.get(event.metadata_id, "?")
          if not name.startswith("ThunkExecutor"):  # (the executor's own span around the thunks)
            totals[name] += event.duration_ps * 1e-12
  return totals


def kind(name: str) -> str:
  name = re.sub(r"[._]\d+$", "", name)
  for k in ("convolution", "fusion", "dot", "copy", "transpose", "reduce", "pad", "concatenate",
            "slice", "broadcast", "select", "scatter", "gather", "custom-call", "all-reduce"):
    if k in name:
      return k
  return name


def source_ops(hlo: str) -> dict:
  """{HLO instruction name: 'forward|backward <jax primitive>'} from the op_name metadata."""
  out = {}
  for m in re.finditer(r'%([\w.\-]+) = [^\n]*?metadata=\{op_name="([^"]+)"', hlo):
    path = m.group(2)
    direction = "backward" if "transpose(" in path else "forward"
    out[m.group(1)] = f"{direction} {path.rstrip(')').split('/')[-1]}"
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--case", default="cyclegan_256", choices=sorted(train_step.CASES))
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--hlo", default="", help="also write the compiled step's HLO text to this file "
                      "(to read what a fusion in the list holds)")
  args = parser.parse_args()
  config, step, state, batch, frozen = train_step.build_case(args.case, 1, args.dtype)
  compiled = step.lower(state, batch(), frozen).compile()
  hlo = compiled.as_text()
  if args.hlo:
    with open(args.hlo, "w") as f:
      f.write(hlo)
  state, _ = compiled(state, batch(), frozen)
  jax.block_until_ready(state)
  batches = [batch() for _ in range(args.steps)]
  trace_dir = tempfile.mkdtemp(prefix="profile_step_")
  start = time.perf_counter()
  with jax.profiler.trace(trace_dir):
    for b in batches:
      state, metrics = compiled(state, b, frozen)
    jax.block_until_ready((state, metrics))
  wall = (time.perf_counter() - start) / args.steps
  totals = op_times(trace_dir)
  if not totals:
    raise SystemExit(f"no XLA op events found in the trace under {trace_dir}")
  per_step = {k: v / args.steps for k, v in totals.items()}
  traced = sum(per_step.values())
  print(f"{args.case} ({jax.default_backend()}, {args.dtype}): {wall:.3f} s per step (traced), "
        f"op events sum to {traced:.3f} s per step (threads overlap: the sum can exceed the wall time)")
  print(f"{'seconds':>8s} {'share':>6s}  op")
  for name, sec in sorted(per_step.items(), key=lambda kv: -kv[1])[:args.top]:
    print(f"{sec:8.3f} {sec / traced:6.1%}  {name}")
  by_kind: collections.Counter = collections.Counter()
  for name, sec in per_step.items():
    by_kind[kind(name)] += sec
  sources = source_ops(hlo)
  by_source: collections.Counter = collections.Counter()
  for name, sec in per_step.items():
    by_source[sources.get(name, "other " + kind(name))] += sec
  print("by source op: " + ", ".join(f"{k} {v:.2f} s ({v / traced:.0%})"
                                     for k, v in by_source.most_common(12)))
  print("by kind: " + ", ".join(f"{k} {v:.2f} s ({v / traced:.0%})" for k, v in by_kind.most_common(10)))


if __name__ == "__main__":
  main()
