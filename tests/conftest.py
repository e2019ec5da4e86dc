"""Shared test fixtures.

Golden files: outputs of the original PyTorch networks, kept beside the repo in ../shared/golden (or
$TRANSLATE_GOLDEN_DIR). A user's clone has none, so parity tests skip with a reason there; in CI
(CI=true, as .ci/run is run) or with TRANSLATE_REQUIRE_GOLDEN=1 a missing file fails the test instead.
"""
import ast
import functools
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
# and runs ~1.4x slower. Net, measured on a sixth of the suite (cgan, U-GAT-IT, MUNIT, train, digits
# and kill tests: the classifier training and the subprocess runs included), fresh caches, -n 2, 2 cores:
# 431 s wall / 733 CPU-s with these flags against 487 s / 815 CPU-s without. The programs are the same:
# only the machine code is less optimised, so results agree to rounding. TRANSLATE_TEST_FULL_XLA_OPT=1
# runs the tests with XLA's default optimisation.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
                      if os.environ.get("TRANSLATE_TEST_FULL_XLA_OPT", "") != "1" else "")
if FAST_COMPILE_FLAGS and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_FLAGS).strip()
GOLDEN_DIR = pathlib.Path(os.environ.get("TRANSLATE_GOLDEN_DIR", REPO.parent / "shared" / "golden"))


# ----------------------------------------------------------------------------------------------------
# Scheduling over pytest-xdist workers (`-n 2`)
# ----------------------------------------------------------------------------------------------------
# xdist's plain `load` hands out tests one by one in file order. Two things cost the suite minutes with
# that: a module-scoped fixture (a trained tiny run) is built again on each worker that gets one of its
# tests, and the slowest tests, late in the order, leave one worker busy while the other idles. So the
# controller groups the tests that share a module-scoped fixture into one work unit (found by reading
# the test file: fixtures with scope="module" and every fixture or test depending on them) and hands
# out the units longest first, by the durations a previous run recorded in tests/durations.json
# (`--record-durations=tests/durations.json` rewrites it; tests it does not list count 1 s).
# (`--dist loadgroup` with xdist_group marks would do the grouping, but it is broken with pytest 9.2:
# pytest-dev/pytest-xdist#1386.)
DURATIONS_FILE = pathlib.Path(__file__).with_name("durations.json")


def pytest_addoption(parser):
  parser.addoption("--record-durations", default=None, metavar="PATH",
                   help="write each test's setup + call + teardown seconds to PATH (JSON), which the "
                        "xdist scheduler in tests/conftest.py reads from tests/durations.json")


@functools.lru_cache(maxsize=None)
def module_fixture_users(path: str) -> frozenset:
  """Names of the tests in the file `path` that use a module-scoped fixture, directly or through
  other fixtures of the same file."""
  try:
    tree = ast.parse(pathlib.Path(path).read_text())
  except (OSError, SyntaxError):
    return frozenset()
  functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

  def fixture_scope(fn):
    for d in fn.decorator_list:
      if isinstance(d, ast.Call):
        for kw in d.keywords:
          if kw.arg == "scope" and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None

  shared = {fn.name for fn in functions if fixture_scope(fn) in ("module", "package", "session")}
  args = {fn.name: {a.arg for a in fn.args.args} for fn in functions}
  changed = True
  while changed:  # fixtures that depend on a shared fixture share it too
    changed = False
    for name, needs in args.items():
      if name not in shared and not name.startswith("test") and needs & shared:
        shared.add(name)
        changed = True
  return frozenset(n for n, needs in args.items() if n.startswith("test") and needs & shared)


def work_unit(nodeid: str, rootdir: pathlib.Path) -> str:
  """The xdist work unit of a test: its file's shared-fixture group, or the test alone."""
  path, _, name = nodeid.partition("::")
  if name.split("[")[0] in module_fixture_users(str(rootdir / path)):
    return path + "::<module fixtures>"
  return nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  if config.getvalue("dist") != "load":
    return None
  from xdist.scheduler import LoadScopeScheduling

  try:
    durations = json.loads(DURATIONS_FILE.read_text())
  except (OSError, ValueError):
    durations = {}
  rootdir = config.rootpath

  class Scheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid):
      return work_unit(nodeid, rootdir)

    def schedule(self):
      if self.collection is None and self.collection_is_completed and \
          self._check_nodes_have_same_collection():
        # Queue the units longest first. xdist's schedule() then fills this same ordered dict: keys
        # already in it keep their place.
        units = {}
        for nodeid in next(iter(self.registered_collections.values())):
          units.setdefault(self._split_scope(nodeid), []).append(nodeid)
        cost = {u: sum(durations.get(n, 1.0) for n in ids) for u, ids in units.items()}
        for unit in sorted(units, key=lambda u: -cost[u]):
          self.workqueue[unit] = dict.fromkeys(units[unit], False)
      super().schedule()

  return Scheduling(config, log)


_recorded: dict = {}


def pytest_runtest_logreport(report):
  _recorded[report.nodeid] = _recorded.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
  path = session.config.getoption("--record-durations")
  if path and not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
    pathlib.Path(path).write_text(json.dumps({k: round(v, 2) for k, v in sorted(_recorded.items())},
                                             indent=0) + "\n")


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
