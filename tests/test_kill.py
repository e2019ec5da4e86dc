"""Training survives SIGKILL at any instant: killed and resumed five times (once while an
asynchronous checkpoint is being written), the final state equals an uninterrupted run's bit for bit."""
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from tests.conftest import REPO
from tests.test_train import final_state

STEPS = 6  # few steps: later kills land at start-up or during a restore, cheaply


def _command(workdir):
  return [sys.executable, "-m", "translate.train", "--config=configs/cyclegan.py:tiny",
          f"--workdir={workdir}", f"--config.num_train_steps={STEPS}", "--config.checkpoint_every=1",
          "--config.sample_every=1000"]


def _checkpoints(workdir):
  folder = os.path.join(workdir, "checkpoints")
  names = os.listdir(folder) if os.path.isdir(folder) else []
  done = [int(n) for n in names if n.isdigit()]
  return max(done, default=0), any("tmp" in n for n in names)


def test_sigkill_at_random_moments_then_resume_equals_straight_run(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  subprocess.run(_command(straight), cwd=REPO, env=env, check=True, capture_output=True)
  rng = random.Random(17)
  kills, during_save = 0, 0
  while kills < 5:
    start, _ = _checkpoints(killed)
    target = min(start + rng.choice((1, 2)), STEPS - 1)
    process = subprocess.Popen(_command(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_save = kills == 0  # the first kill lands while a checkpoint is being written
    while process.poll() is None:
      latest, writing = _checkpoints(killed)
      if (wait_for_save and writing) or (not wait_for_save and latest >= target):
        time.sleep(0 if wait_for_save else rng.uniform(0, 0.3))
        during_save += _checkpoints(killed)[1]
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        break
      time.sleep(0.01)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert during_save >= 1
  subprocess.run(_command(killed), cwd=REPO, env=env, check=True, capture_output=True)
  step_a, a = final_state(straight)
  step_b, b = final_state(killed)
  assert step_a == step_b == STEPS
  same = jax.tree_util.tree_map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b)
  assert all(jax.tree_util.tree_leaves(same))  # parameters, optimiser moments, pools, rng: bit for bit
