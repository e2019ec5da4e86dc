"""Multi-host training on JAX's own distributed runtime, on one machine.

Two processes x 4 CPU devices (`jax.distributed.initialize` with a local coordinator, gloo collectives)
against one process x 8 devices, the same global batch of 8, each of the two processes reading only its
rows of every global batch; the states must agree as closely as tests/test_parallel.py's 8-device ==
1-device test asks (the same rule):
  * StarGAN `tiny` from initialisation (the pair's run goes through the command line's flags);
  * CycleGAN `tiny` from a step-2 checkpoint written by one process, resumed by the two processes to
    step 3, against the one process's straight run to step 3; CycleGAN's evaluation (test images
    translated on both processes' devices and gathered) and sample grid must match too;
  * StarGAN from the pair's step-2 checkpoint, resumed by one process to step 3, against the pair's
    straight run: checkpoints and the data position carry across process counts both ways.
(Runs that chain two layouts are not compared with straight ones: the noise-driven "dead" biases
before instance norms differ between layouts, and in float32 that moves later gradients by up to ~0.3%.)

The three processes run at once (one driver per role doing all its runs, so jax and TensorFlow are
imported once per process) and wait for each other's step-2 checkpoints through files. Process 1 of a
CPU pair cannot use the persistent compilation cache (jax writes it from process 0 only, and process 1's
keys differ), so it compiles every program: the reason this test trains no more runs than it needs.
The launchers of launch/ are checked by their dry runs (the commands they would execute).
"""
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

DRIVER = r"""
import json, logging, os, pathlib, resource, shutil, sys, time
import numpy as np
role, base, port = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
sys.path.insert(0, REPO)
logging.getLogger().setLevel(logging.INFO)  # as the command line: the loop's own lines, not absl's
logging.getLogger("absl").setLevel(logging.WARNING)
T0 = time.time()

def note(what):
  cpu = resource.getrusage(resource.RUSAGE_SELF)
  logging.info("TIMING %s: %.1f s wall, %.1f s cpu", what, time.time() - T0, cpu.ru_utime + cpu.ru_stime)

def adjust(config, steps):
  # batch 8 = the 8 devices; checkpoints and sample grids at step 2 and at the end; CycleGAN evaluates
  # label_acc on 16 test images at the end
  config.batch_size, config.num_train_steps = 8, steps
  config.sample_every = config.checkpoint_every = 2
  if config.method == "cyclegan":
    config.eval.batch_size, config.eval.max_images, config.eval.metrics = 8, 16, ("label_acc",)
  return config

def tiny(method, steps):
  from tests.helpers import tiny_config
  return adjust(tiny_config(method), steps)

def wait_for(name):
  deadline = time.time() + 900
  while not (base / name).exists():
    if time.time() > deadline:
      raise TimeoutError(f"{role}: {name} never came")
    time.sleep(0.5)

def mark(name):
  (base / name).write_text("done")

def copy_step_2(source, target):
  # the other side's run as it was at its step-2 checkpoint (its later steps left out)
  def ignore(folder, names):
    if folder.endswith("checkpoints"):
      return [n for n in names if n.isdigit() and n != "2"]
    return [n for n in names if n in ("eval.json", "samples") or n.startswith("events.")]
  shutil.copytree(base / source, base / target, ignore=ignore)

if role == "single":
  from translate import loop
  results = loop.train_and_evaluate(tiny("cyclegan", 3), str(base / "c1"))
  (base / "single_eval.json").write_text(json.dumps(results))
  mark("single_c1")
  loop.train_and_evaluate(tiny("stargan", 2), str(base / "s1"))
  note("single trained")
  wait_for("pair_s2")  # 1 process resumes what 2 processes wrote
  copy_step_2("s2", "s2_then_1")
  loop.train_and_evaluate(tiny("stargan", 3), str(base / "s2_then_1"))
  note("single resumed")
  wait_for("pair_done")
  import jax
  from translate import parallel, workdir
  def compare(ref_dir, other_dir, step):
    s1 = parallel.to_host(workdir.load(str(base / ref_dir), step).state)
    s2 = parallel.to_host(workdir.load(str(base / other_dir), step).state)
    tree = jax.tree_util
    def adam(opt):
      return [s for s in tree.tree_leaves(opt, is_leaf=lambda x: hasattr(x, "mu")) if hasattr(s, "mu")]
    maxdiff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0
    # tests/test_parallel.py's rule: elements whose Adam first moment on the reference stays under
    # 1e-4 of the largest of their group (a whole tensor) or tensor are rounding noise scaled up by
    # Adam ("dead"); they are compared through the moments, the rest directly.
    mu1 = {g: adam(s1.opt_state[g])[0].mu for g in s1.params}
    top = {g: max(float(np.max(np.abs(m))) for m in tree.tree_leaves(mu1[g]) if m.size) for g in mu1}
    def is_dead(m, group_top):
      m = np.abs(np.asarray(m))
      return m < 1e-4 * (group_top if m.size and m.max() < 1e-4 * group_top else m.max(initial=0.0))
    dead = {g: tree.tree_map(lambda m: is_dead(m, top[g]), mu1[g]) for g in mu1}
    live = lambda x, d: np.where(d, 0.0, np.asarray(x))
    params = tree.tree_map(lambda a, b, d: maxdiff(live(a, d), live(b, d)), s1.params, s2.params, dead)
    moments = lambda s: [(a.mu, a.nu) for a in adam(s.opt_state)]
    others = tree.tree_map(maxdiff, (s1.collections, s1.extra, moments(s1)),
                           (s2.collections, s2.extra, moments(s2)))
    excused = tree.tree_map(lambda a, b, d: int((d & (np.abs(np.asarray(a) - np.asarray(b)) > 1e-5)).sum())
                            if d.size and not d.all() else 0, s1.params, s2.params, dead)
    return {"step": [int(s1.step), int(s2.step)], "max_diff": max(tree.tree_leaves((params, others))),
            "dead": [tree.keystr(p) for p, d in tree.tree_flatten_with_path(dead)[0] if d.size and d.all()],
            "partly_dead": int(sum(tree.tree_leaves(excused))),
            "num_params": sum(int(np.size(x)) for x in tree.tree_leaves(s1.params))}
  from PIL import Image
  grid = lambda d, step: np.asarray(Image.open(base / d / "samples" / f"step_{step:08d}.png"), np.int32)
  result = {
      "stargan": compare("s1", "s2", 2),
      "restored_2_to_1": compare("s2", "s2_then_1", 3), "restored_1_to_2": compare("c1", "c1_then_2", 3),
      "grid_diff": {"cyclegan": int(np.abs(grid("c1", 3) - grid("c1_then_2", 3)).max()),
                    "stargan": int(np.abs(grid("s1", 2) - grid("s2", 2)).max())},
      "grid_shape": list(grid("c1_then_2", 3).shape),
      "eval": {"single": results, "pair": json.loads((base / "c1_then_2" / "eval.json").read_text())}}
  note("single compared")
  print("RESULT" + json.dumps(result))
else:  # role "pair": process 0 or 1 of 2; the first run goes through the command line's main
  pid = int(role[-1])
  from absl import flags
  from translate import train
  train._define_flags()
  flags.FLAGS(["train", f"--config={REPO}/configs/stargan.py:tiny", f"--workdir={base / 's2'}",
               f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}"])
  adjust(flags.FLAGS.config, 3)
  train.main(["train"])
  import jax
  from translate import loop, parallel
  assert (jax.process_count(), jax.process_index(), jax.local_device_count()) == (2, pid, 4)
  note("pair trained")
  if pid == 0:
    mark("pair_s2")
    wait_for("single_c1")  # 2 processes resume what 1 process wrote
    copy_step_2("c1", "c1_then_2")
  parallel.barrier("copied")  # the coordination service: process 1 waits without spinning
  loop.train_and_evaluate(tiny("cyclegan", 3), str(base / "c1_then_2"))
  note("pair resumed")
  if pid == 0:
    mark("pair_done")
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("multiprocess")
  port = str(_free_port())
  script = f"REPO = {str(REPO)!r}\n" + DRIVER
  procs = []
  for role, devices in (("pair0", 4), ("pair1", 4), ("single", 8)):
    # (keeps conftest's XLA_FLAGS: the test-speed compile options)
    xla_flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    env = dict(os.environ, XLA_FLAGS=xla_flags, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    log = open(base / f"{role}.log", "w")
    procs.append((role, log, subprocess.Popen([sys.executable, "-c", script, role, str(base), port],
                                              env=env, stdout=subprocess.PIPE, stderr=log,
                                              text=True)))
  outputs = {}
  try:
    for role, log, proc in procs:
      outputs[role] = proc.communicate(timeout=1200)[0]
      log.close()
      assert proc.returncode == 0, (role, (base / f"{role}.log").read_text()[-4000:])
  finally:
    for _, _, proc in procs:
      if proc.poll() is None:
        proc.kill()
  line = [l for l in outputs["single"].splitlines() if l.startswith("RESULT")][-1]
  return json.loads(line[len("RESULT"):]), base


def test_two_processes_equal_one_process_and_checkpoints_cross(runs):
  runs, base = runs
  for key in ("stargan", "restored_2_to_1", "restored_1_to_2"):
    r = runs[key]
    # test_parallel's tolerance: parameters, norm statistics, pools and Adam moments to 1e-5
    assert r["max_diff"] <= 1e-5, (key, r)
    assert all(name.endswith("['bias']") for name in r["dead"]), (key, r["dead"])
    assert r["partly_dead"] <= 0.002 * r["num_params"], (key, r)
  assert runs["stargan"]["step"] == [2, 2]
  assert runs["restored_2_to_1"]["step"] == runs["restored_1_to_2"]["step"] == [3, 3]
  for role, workdir in (("pair0", "c1_then_2"), ("single", "s2_then_1")):
    log = (base / f"{role}.log").read_text()
    assert f"Restored checkpoint of step 2 from {base / workdir / 'checkpoints'}" in log, role
  # sample grids (process 0 writes what all processes computed) and the evaluation (test images
  # translated on both processes' devices, gathered) as one process gives them
  assert runs["grid_shape"][0] > 0 and max(runs["grid_diff"].values()) <= 1, runs["grid_diff"]
  single, pair = runs["eval"]["single"], runs["eval"]["pair"]
  assert [e["step"] for e in pair] == [3] and set(single) == {"label_acc"}
  assert pair[-1]["label_acc"] == pytest.approx(single["label_acc"], abs=1e-6)


# ----------------------------------------------------------------------------------------------------
# Each process's rows of the global stream (no jax: TensorFlow only, in this process)
# ----------------------------------------------------------------------------------------------------
def test_processes_read_their_rows_of_the_global_labelled_stream():
  """StarGAN's labelled data with two sources (mask vector mode: batches alternate between them) and
  flips on: process p of 2 gets rows [4p, 4p + 4) of each global batch of 8, also after a resume."""
  from tests.helpers import tiny_config
  from translate.data import labelled
  config = tiny_config("stargan", preset="digits_both")
  config.data.no_flip = False
  whole = list(labelled.create_dataset(config.data, "train", 8, seed=5, start_batch=1)
               .take(2).as_numpy_iterator())
  parts = [list(labelled.create_dataset(config.data, "train", 4, seed=5, start_batch=1,
                                        process_index=p, process_count=2)
                .take(2).as_numpy_iterator()) for p in range(2)]
  assert whole[0]["label"][:, -2:].argmax(-1).tolist() == [1] * 8  # batch 1: the second source
  for j in range(2):
    for key in ("image", "label"):
      np.testing.assert_array_equal(whole[j][key], np.concatenate([parts[0][j][key],
                                                                    parts[1][j][key]]))


# ----------------------------------------------------------------------------------------------------
# Launchers: dry runs print the commands
# ----------------------------------------------------------------------------------------------------
def _dry_run(*args, env=None):
  proc = subprocess.run(["bash", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, DRY_RUN="1", **(env or {})))
  assert proc.returncode == 0, proc.stderr
  return proc.stdout


def test_launchers_dry_run():
  local = _dry_run("launch/local_processes.sh", "3", "configs/cyclegan.py:tiny", "/tmp/runs/x",
                   "--config.batch_size=12", env={"PORT": "12345"})
  lines = [l for l in local.splitlines() if "translate.train" in l]
  assert len(lines) == 3
  for i, line in enumerate(lines):
    assert "--coordinator_address=127.0.0.1:12345" in line and "--num_processes=3" in line
    assert f"--process_id={i}" in line and "--config.batch_size=12" in line
    assert "--workdir=/tmp/runs/x" in line and "xla_force_host_platform_device_count" in line
    assert "glibc.malloc.hugetlb=1" in line
  pod = _dry_run("launch/tpu_pod.sh", "my-tpu", "us-central2-b", "configs/cyclegan.py:horse2zebra",
                 "gs://b/h2z", "--config.batch_size=64")
  assert "gcloud compute tpus tpu-vm ssh my-tpu --zone=us-central2-b --worker=all" in pod
  assert "--distributed" in pod and "--workdir=gs://b/h2z" in pod and "--config.batch_size=64" in pod
  slurm = _dry_run("launch/slurm_multinode.sbatch", "configs/cyclegan.py:horse2zebra",
                   "/shared/h2z", env={"SLURM_JOB_NUM_NODES": "2"})
  assert "srun" in slurm and "--distributed" in slurm and "--workdir=/shared/h2z" in slurm
