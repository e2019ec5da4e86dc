"""Data parallelism: a step on 8 devices equals the same global batch on 1 device.

Runs in a subprocess because the 8 fake CPU devices must be configured (XLA_FLAGS) before jax is
imported, and the test process has imported jax already.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Methods compared in float64. U-GAT-IT's float32 step amplifies rounding (layer/instance norms of
# tiny feature maps, a CAM loss weighted 1000) to ~1e-4 relative in some gradients, so Adam's first
# step flips the sign of components where gradient + weight decay is near zero; in float64 the 1- and
# 8-device steps agree to ~1e-12, which shows the data-parallel step itself is exact.
# DTN's summed squared distances (the paper's L_CONST, L_TID) give g's output bias gradients of ~3e2:
# Adam's second moment there is ~160 after 2 steps, and 2 float32 ulps of it (3e-5) exceed the absolute
# 1e-5 below, while the parameters agree to 1.5e-8.
# SRGAN: G's gradient comes through the frozen VGG16 (relu5_3) and a D whose BN sees 2x2 maps; in
# float32 the two summation orders leave 5e-5 (Adam steps of near-zero gradient components, lr 1e-4).
# MUNIT in float32 differed by 0.035 (max over parameters and Adam moments, absolute) between 1 and 8
# devices after 2 steps; UNIT, the same networks without styles, agrees in float32. In float64 MUNIT
# agrees to 1e-5, so the data-parallel step is exact and the float32 gap is summation-order rounding
# (which element carries it was not pinned down).
# UNIT agreed in float32 with XLA's default optimisation, but not under the suite's faster compile
# options (tests/conftest.py: the per-device programs round differently): G's Adam first moments then
# differed by 0.015 (the largest is 0.24; encoder conv0 and decoder up-convs of the width-4 tiny nets).
# In float64 the 1- and 8-device steps agree to 5e-12: the same amplified rounding as MUNIT's.
# SRResNet: its convs before batch norm carry dead biases (see SCRIPT), whose float32 noise Adam turns
# into steps of +-lr (1e-4) that differ between the two layouts; the next step's batch mean includes
# the bias, so the running mean (momentum 0.1) differs by up to 0.1 * lr = 1e-5 exactly where a sign
# flipped: 9.2e-6 here, 1.06e-5 on the CI machine (res0 bn1's running mean, every other leaf <= 2e-6).
# In float64 nothing flips and every element, running means included, is compared.
FLOAT64 = ("ugatit", "dtn", "srgan", "munit", "unit", "srresnet")

SCRIPT = r"""
import json, sys, traceback
import numpy as np
import jax
sys.path.insert(0, REPO)
from translate import loop, methods, parallel
from tests.helpers import tiny_config, make_batch

assert jax.device_count() == 8, jax.devices()
out = {}


def compare(method_name):
  float64 = method_name in FLOAT64
  jax.config.update("jax_enable_x64", float64)
  # A method defined in a test module (its dotted path) trains on the tiny CycleGAN config's data.
  data_like = "cyclegan" if method_name.startswith("tests.") else method_name
  config = tiny_config(data_like, batch_size=8)
  config.method = method_name
  method = methods.get(method_name)
  rng = np.random.default_rng(0)
  batches = [make_batch(data_like, config, rng) for _ in range(2)]
  if float64:
    batches = [{k: v.astype(np.float64) for k, v in b.items()} for b in batches]
  example = {k: v[:1] for k, v in batches[0].items()}
  optimizers = method.optimizers(config, 10, 20)
  frozen_host = method.frozen(config)
  # One initial state (made on 1 device) for both layouts: the comparison is of the steps alone.
  initial = parallel.to_host(loop.create_train_state(
      config, method, parallel.make_mesh(1), optimizers, example,
      parallel.replicate(frozen_host, parallel.make_mesh(1))))
  if float64:
    initial = jax.tree_util.tree_map(
        lambda x: x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x, initial)
  results = {}
  for n in (1, 8):
    mesh = parallel.make_mesh(n)
    frozen = parallel.replicate(frozen_host, mesh)
    state = parallel.replicate(initial, mesh)
    step = loop.make_train_step(config, method, mesh, optimizers)
    for b in batches:
      state, metrics = step(state, parallel.shard_batch(b, mesh), frozen)
    leaf = jax.tree_util.tree_leaves(state.params)[0]
    results[n] = (parallel.to_host(state), len(leaf.sharding.device_set))
  (s1, d1), (s8, d8) = results[1], results[8]
  maxdiff = lambda a, b: float(np.max(np.abs(a - b))) if a.size else 0.0
  # A bias right before an instance/batch norm has a zero gradient in exact arithmetic; what it gets
  # is rounding noise, which Adam scales up to steps of size lr, so such a parameter's value differs
  # between any two summation orders. So does a kernel tap that only ever sees a constant input
  # before a norm (StarGAN's taps on a label channel that is constant over the image: a bias in
  # effect, up to the zero-padded border). Those elements are "dead": their Adam first moment on 1
  # device stays under 1e-4 of the largest in its group (a whole bias), or, inside a live tensor,
  # under 1e-4 of the largest in the same tensor (measured: such noise is ~1e-6 of it). They are
  # compared through the optimiser moments (the averaged gradients) instead.
  def adam_states(opt_state):
    return [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: hasattr(x, "mu"))
            if hasattr(s, "mu")]
  def moments(state):
    return [(s.mu, s.nu) for s in adam_states(state.opt_state)]
  mu1 = {g: adam_states(s1.opt_state[g])[0].mu for g in s1.params}
  top = {g: max(float(np.max(np.abs(m))) for m in jax.tree_util.tree_leaves(mu1[g]) if m.size)
         for g in mu1}
  def is_dead(m, group_top):
    m = np.abs(np.asarray(m))
    return m < 1e-4 * (group_top if m.size and m.max() < 1e-4 * group_top else m.max(initial=0.0))
  # float64 rounding noise is too small to flip anything: every element is compared.
  dead = {g: jax.tree_util.tree_map(lambda m: np.zeros(np.shape(m), bool) if float64
                                    else is_dead(m, top[g]), mu1[g]) for g in mu1}
  live = lambda x, d: np.where(d, 0.0, np.asarray(x))  # noqa: E731
  param_diffs = jax.tree_util.tree_map(lambda a, b, d: maxdiff(live(a, d), live(b, d)),
                                       s1.params, s8.params, dead)
  other_diffs = jax.tree_util.tree_map(maxdiff, (s1.collections, s1.extra, moments(s1)),
                                       (s8.collections, s8.extra, moments(s8)))
  flat_dead = jax.tree_util.tree_flatten_with_path(dead)[0]
  dead_names = [jax.tree_util.keystr(p) for p, d in flat_dead if d.size and d.all()]
  # dead elements inside live tensors whose values differ beyond the tolerance: the ones excused
  excused = jax.tree_util.tree_map(
      lambda a, b, d: int((d & (np.abs(np.asarray(a) - np.asarray(b)) > 1e-5)).sum())
      if d.size and not d.all() else 0, s1.params, s8.params, dead)
  partly_dead = int(sum(jax.tree_util.tree_leaves(excused)))
  return {"max_diff": max(jax.tree_util.tree_leaves((param_diffs, other_diffs))),
          "devices": [d1, d8], "dead": dead_names, "partly_dead": partly_dead,
          "num_params": sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(s1.params)),
          "moved": float(max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
              lambda a: float(np.max(np.abs(a))), s1.params))))}


for method_name in sys.argv[1:]:
  try:
    out[method_name] = compare(method_name)
  except Exception:  # reported by that method's test; the other methods still run
    out[method_name] = {"error": traceback.format_exc()}
print("RESULT" + json.dumps(out))
"""


# Every method's train step must be data-parallel exactly: add new methods here (and to
# tests/helpers.py: tiny_config, make_batch). tests.test_method_contract is a toy method whose step
# uses a frozen pretrained network (a separate, replicated argument of the jitted step).
METHODS = ["cyclegan", "pix2pix", "stargan", "cgan", "gan", "ugatit", "dtn", "photowct", "srresnet",
           "srgan", "munit", "unit", "diat", "tests.test_method_contract"]


def run_on_eight_devices(methods) -> dict:
  """{method: result} from one subprocess with 8 CPU devices (one process for all methods: each
  start-up imports jax, flax, optax and TF again)."""
  # (keeps conftest's XLA_FLAGS: the test-speed compile options)
  xla_flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env = dict(os.environ, XLA_FLAGS=xla_flags,
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "-c", f"REPO = {str(REPO)!r}\nFLOAT64 = {FLOAT64!r}\n" + SCRIPT,
                         *methods], env=env,
                        capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])


@pytest.fixture(scope="module")
def eight_device_results():
  return run_on_eight_devices(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_eight_devices_equal_one_device(method, eight_device_results):
  r = eight_device_results[method]
  assert "error" not in r, r.get("error")
  assert r["devices"] == [1, 8]  # the state really lived on 1 and on 8 devices
  assert r["moved"] > 0
  # Parameters, batch-norm statistics, image pools and Adam moments after 2 steps agree to 1e-5.
  assert r["max_diff"] <= 1e-5, r
  # Only biases feeding a norm layer may be dead (see SCRIPT); anything else means a lost gradient.
  assert all(name.endswith("['bias']") for name in r["dead"]), r["dead"]
  # Noise-level elements of live tensors that differ beyond 1e-5 (excused above) must stay rare: a
  # lost or unaveraged gradient would show as differences everywhere, not in a few elements
  # (StarGAN: 12 of its ~15k parameters, all in the first conv's label-channel taps).
  assert r["partly_dead"] <= 0.002 * r["num_params"], r
