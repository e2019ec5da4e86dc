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

SCRIPT = r"""
import json, sys
import numpy as np
import jax
sys.path.insert(0, REPO)
from translate import parallel, train, training
from tests.helpers import tiny_config, make_batch

assert jax.device_count() == 8, jax.devices()
out = {}
for method_name in sys.argv[1:]:
  config = tiny_config(method_name, batch_size=8)
  method = train.get_method(method_name)
  rng = np.random.default_rng(0)
  batches = [make_batch(method_name, config, rng) for _ in range(2)]
  example = {k: v[:1] for k, v in batches[0].items()}
  results = {}
  for n in (1, 8):
    mesh = parallel.make_mesh(n)
    optimizers = training.make_optimizers(config.optim, 10, method.GROUPS)
    state = train.create_train_state(config, method, mesh, optimizers, example)
    step = train.make_train_step(config, method, mesh, optimizers)
    for b in batches:
      state, metrics = step(state, parallel.shard_batch(b, mesh))
    leaf = jax.tree_util.tree_leaves(state.params)[0]
    results[n] = (parallel.to_host(state), len(leaf.sharding.device_set))
  (s1, d1), (s8, d8) = results[1], results[8]
  diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))) if a.size else 0.0,
                                 (s1.params, s1.collections, s1.extra),
                                 (s8.params, s8.collections, s8.extra))
  out[method_name] = {"max_diff": max(jax.tree_util.tree_leaves(diffs)), "devices": [d1, d8],
                      "moved": float(max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
                          lambda a: float(np.max(np.abs(a))), s1.params))))}
print("RESULT" + json.dumps(out))
"""


def run_on_eight_devices(method: str) -> dict:
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "-c", f"REPO = {str(REPO)!r}\n" + SCRIPT, method], env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):])[method]


# Every method's train step must be data-parallel exactly: add new methods here (and to
# tests/helpers.py: tiny_config, make_batch).
@pytest.mark.parametrize("method", ["cyclegan", "pix2pix"])
def test_eight_devices_equal_one_device(method):
  r = run_on_eight_devices(method)
  assert r["devices"] == [1, 8]  # the state really lived on 1 and on 8 devices
  assert r["moved"] > 0
  # Parameters, batch-norm statistics and image pools after 2 steps agree to 1e-5.
  assert r["max_diff"] <= 1e-5, r
