"""The command lines print what a user needs (progress, results, paths written, errors) and hide the
libraries' chatter (orbax/absl INFO, TF's C++ oneDNN and InitializeLog lines, jax's TPU-backend probe)
unless --verbose (`translate.cli`). One subprocess: a 1-step tiny training run."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.test_fuzz_images import restore_logging  # noqa: F401 -- a fixture
from translate import evaluate, stylize, upscale
from translate import translate as translate_cli

CHATTER = ("oneDNN", "absl::InitializeLog", "Unable to initialize backend", "INFO:absl", "orbax",
           "CheckpointManager", "libtpu", "cuda", "xla_bridge")
# absl/glog-formatted lines (I1130 20:34:22.02 ... file.py:12]) and C++ ones (I0000 00:00:...)
NATIVE_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d", re.M)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cli") / "run")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the CLI's own choice
  proc = subprocess.run([sys.executable, "-m", "translate.train", "--config=configs/cyclegan.py:tiny",
                         f"--workdir={workdir}", "--config.num_train_steps=1"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  return workdir, proc


def test_train_prints_progress_and_paths_without_library_chatter(trained):
  workdir, proc = trained
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout + proc.stderr
  for line in (f"Workdir {workdir}", "step 1/1 |", "loss_G", "Saving checkpoint of step 1",
               f"Done: the trained run is in {workdir}",
               f"-m translate.translate --workdir={workdir} --output=DIR"):
    assert line in out, out[-3000:]
  for chatter in CHATTER:
    assert chatter not in out, out[-3000:]
  assert not NATIVE_LINE.search(out), out[-3000:]
  if "glibc.malloc.hugetlb" not in os.environ.get("GLIBC_TUNABLES", "") and sys.platform == "linux":
    assert "On CPU, GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (as launch/cpu.sh sets it) makes the steps " \
        "of large networks up to ~15% faster" in out, out[-3000:]


def test_translate_verbose_brings_the_library_logs_back(trained, tmp_path, capfd, restore_logging):
  workdir, _ = trained
  src = tmp_path / "in"
  src.mkdir()
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "a.png")
  args = [f"--workdir={workdir}", f"--input={src}", f"--output={tmp_path / 'out'}"]
  translate_cli.main(args)
  quiet = capfd.readouterr()
  assert "Wrote 1 image(s)" in quiet.out
  assert "Restored checkpoint of step 1" in quiet.err  # translate's own line
  assert "orbax" not in quiet.err.lower() and "CheckpointManager" not in quiet.err
  translate_cli.main(args + ["--verbose"])
  verbose = capfd.readouterr()
  assert "Wrote 1 image(s)" in verbose.out
  assert "CheckpointManager" in verbose.err and "orbax" in verbose.err.lower()  # orbax's INFO


def test_errors_are_one_line_and_verbose_keeps_the_traceback(tmp_path, restore_logging):
  missing = str(tmp_path / "nowhere")
  with pytest.raises(SystemExit) as exit_:
    translate_cli.main([f"--workdir={missing}", f"--input={missing}", f"--output={tmp_path}"])
  assert str(exit_.value).startswith("error: ") and missing in str(exit_.value)
  with pytest.raises(FileNotFoundError, match="config.json"):
    translate_cli.main([f"--workdir={missing}", f"--input={missing}", f"--output={tmp_path}",
                        "--verbose"])


@pytest.mark.parametrize("module", [translate_cli, evaluate, upscale, stylize])
def test_every_command_line_takes_verbose(module, capsys):
  with pytest.raises(SystemExit) as exit_:
    module.main(["--help"])
  assert exit_.value.code == 0 and "--verbose" in capsys.readouterr().out


def test_tensorflow_imported_late_after_a_probe_is_quiet_too():
  # translate imports TF only when it meets a GIF/BMP/WebP (images._tf_decodes), after libraries have
  # probed for it with importlib.util.find_spec: the import must still be silenced.
  code = ("import importlib.util, sys\n"
          "from translate import cli\n"
          "cli.quiet_native_logs(['translate'])\n"
          "assert importlib.util.find_spec('tensorflow') is not None\n"
          "import tensorflow as tf\n"
          "print(int(tf.reduce_sum(tf.io.decode_image(tf.io.encode_png(tf.ones([2, 2, 3], tf.uint8))))))\n"
          "print('stderr works', file=sys.stderr)\n")
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == "12"
  assert proc.stderr.strip() == "stderr works"  # restored after the import, and nothing else
