"""Shared test fixtures.

Golden files: outputs of the original PyTorch networks, kept beside the repo in ../shared/golden (or
$TRANSLATE_GOLDEN_DIR). A user's clone has none, so parity tests skip with a reason there; in CI
(CI=true, as .ci/run is run) or with TRANSLATE_REQUIRE_GOLDEN=1 a missing file fails the test instead.
"""
import json
import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Tests compile many identical small programs (in several processes: xdist workers, subprocess tests);
# a persistent compilation cache lets each be compiled once per machine.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".pytest_cache" / "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
# Much of the suite's time is XLA:CPU compiling tiny programs that then run a few steps; LLVM's
# optimising passes are about half of that compile time. Without them a U-GAT-IT tiny step compiles in
# about half the time (init 21.6 -> 12.1 s, first step 40.2 -> 20.2 s, one side-by-side measurement)
# and runs ~1.4x slower; the net effect on the whole suite (which also trains 1000-step classifiers)
# has not been measured yet. The programs are the same: only the machine code is less optimised, so results
# agree to rounding. TRANSLATE_TEST_FULL_XLA_OPT=1 runs the tests with XLA's default optimisation.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
                      if os.environ.get("TRANSLATE_TEST_FULL_XLA_OPT", "") != "1" else "")
if FAST_COMPILE_FLAGS and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_FLAGS).strip()
GOLDEN_DIR = pathlib.Path(os.environ.get("TRANSLATE_GOLDEN_DIR", REPO.parent / "shared" / "golden"))


def golden_required() -> bool:
  return (os.environ.get("TRANSLATE_REQUIRE_GOLDEN", "") == "1"
          or os.environ.get("CI", "").lower() in ("1", "true", "yes"))


@pytest.fixture
def golden():
  """`golden(name)` -> dict of arrays from GOLDEN_DIR/name (plus `meta` parsed from meta_json)."""

  def load(name: str) -> dict:
    path = GOLDEN_DIR / name
    if not path.exists():
      reason = f"golden file {path} not found (it lives in ../shared/golden beside the repo)"
      if golden_required():
        pytest.fail(reason + "; CI requires it")
      pytest.skip(reason)
    with np.load(path, allow_pickle=False) as data:
      out = {k: data[k] for k in data.files}
    if "meta_json" in out:
      out["meta"] = json.loads(str(out["meta_json"]))
    return out

  return load


@pytest.fixture
def golden_state_dict(golden):
  """`golden_state_dict(name)` -> (state dict in torch key order, the whole golden dict)."""

  def load(name: str):
    g = golden(name)
    keys = [str(k) for k in g["meta_state_dict_keys"]]
    return {k: g[k] for k in keys}, g

  return load


def nchw_to_nhwc(x):
  return np.transpose(x, (0, 2, 3, 1))


def nhwc_to_nchw(x):
  return np.transpose(np.asarray(x), (0, 3, 1, 2))


def max_diff_nchw(ours, ref) -> float:
  """max |ours - ref| where `ours` is NHWC (or flat) and `ref` the reference's NCHW (or flat) array."""
  ours = np.asarray(ours)
  if ours.ndim == 4:
    ours = nhwc_to_nchw(ours)
  assert ours.shape == ref.shape, (ours.shape, ref.shape)
  return float(np.max(np.abs(ours - ref)))


@pytest.fixture
def golden_network(golden_state_dict):
  """`golden_network(name, arch)` -> (module, variables, golden dict): the golden file's weights
  converted with the constructor arguments its metadata records."""
  from translate import convert

  def load(name: str, arch: str):
    state_dict, g = golden_state_dict(name)
    module, variables = convert.from_torch(arch, state_dict, **g["meta"]["args"])
    return module, variables, g

  return load
