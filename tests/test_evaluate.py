"""translate.evaluate: the engine's periodic evaluation, the command line on a trained digits CycleGAN
(label accuracy, and FID/KID through a random-weight Inception at 75 px), which test images count, and
PSNR/SSIM on paired folders."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.helpers import tiny_config
from translate import evaluation as evaluate
from translate import train
from translate.methods import base
from translate.data import input_pipeline
from translate.pretrained import inception


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny CycleGAN trained 2 steps on the embedded digits, evaluated by the engine at the end."""
  base = tmp_path_factory.mktemp("evaluate")
  workdir = str(base / "run")
  config = tiny_config("cyclegan", batch_size=4)
  config.num_train_steps = 2
  config.eval.metrics = ("label_acc",)
  config.eval.max_images = 40
  results = train.train_and_evaluate(config, workdir)
  weights = str(base / "inception_random.npz")
  inception.save_npz(inception.init_variables(0), weights)
  return workdir, weights, config, results


def test_engine_runs_the_evaluation(trained):
  workdir, _, _, results = trained
  with open(os.path.join(workdir, "eval.json")) as f:
    history = json.load(f)
  assert history[-1]["step"] == 2
  assert history[-1]["label_acc"] == pytest.approx(results["label_acc"])
  assert 0.0 <= results["label_acc"] <= 1.0


def test_command_line_writes_json_and_table(trained):
  workdir, weights, config, _ = trained
  n = 20
  cmd = [sys.executable, "-m", "translate.evaluate", f"--workdir={workdir}",
         "--metrics=label_acc,fid,kid", f"--inception_path={weights}", "--inception_size=75",
         f"--max_images={n}", "--batch_size=10", "--kid_subsets=5", "--kid_subset_size=10"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "evaluation.json")) as f:
    record = json.load(f)
  res = record["results"]
  assert record["step"] == 2 and record["metrics"] == ["label_acc", "fid", "kid"]
  assert record["images"] == {"AtoB": {"translated": n, "real": n}}
  assert set(res) == {"label_acc", "fid", "kid", "kid_std"}
  assert np.isfinite(res["fid"]) and res["fid"] > 0  # 2-step translations are not MNIST digits
  assert np.isfinite(res["kid"]) and res["kid_std"] >= 0
  table = open(os.path.join(workdir, "evaluation.md")).read()
  for label in ("| label accuracy |", "| FID |", "| KID x100 |"):
    assert label in table
  assert f"{res['kid_std']:.4f}" in table and table in proc.stdout

  # label accuracy recomputed here: translate the first n test digits and classify them
  from translate.pretrained import classifiers
  from translate.translate import Translator
  batch = next(input_pipeline.create_dataset(config.data, "test", n, train=False).as_numpy_iterator())
  fake = Translator(workdir).translate(batch["A"])
  params, _ = classifiers.load_or_train(classifiers.DIGITS)
  want = float(np.mean(classifiers.predict(classifiers.DIGITS, params, fake) == batch["label_A"]))
  assert res["label_acc"] == pytest.approx(want)


def test_command_line_errors(trained):
  workdir, _, _, _ = trained
  with pytest.raises(ValueError, match="Unknown metric"):
    evaluate.evaluate_workdir(workdir, ["fdi"])
  with pytest.raises(inception.WeightsError, match="inception_path"):
    evaluate.evaluate_workdir(workdir, ["fid"], overrides={"max_images": 4})


def _write(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


IDENTITY = base.Method(
    name="identity", build_networks=lambda config: {}, create_state=None, train_step=None,
    sample_images=None, predicts={"AtoB": base.Predict(
        lambda config, state, frozen, images: {"image": images})})


def test_each_test_image_counts_once(tmp_path):
  rng = np.random.default_rng(0)
  images = {d: [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(n)]
            for d, n in (("A", 5), ("B", 3))}
  for d, arrays in images.items():
    for i, a in enumerate(arrays):
      _write(str(tmp_path / f"test{d}" / f"{i}.png"), a)
  config = tiny_config("cyclegan", preset="folder")
  config.data.update(path=str(tmp_path), preprocess="none")
  config.eval.batch_size = 2
  views = list(evaluate.test_pass(config, IDENTITY, None))
  fake = np.concatenate([v.fake for v in views])
  real = np.concatenate([v.real for v in views])
  assert len(fake) == 5 and len(real) == 3  # the pass itself pairs 5 A's with B's 0,1,2,0,1
  to_uint8 = lambda x: np.round((x + 1) * 127.5).astype(np.uint8)  # noqa: E731
  np.testing.assert_array_equal(to_uint8(fake), np.stack(images["A"]))
  np.testing.assert_array_equal(to_uint8(real), np.stack(images["B"]))
  config.eval.max_images = 2
  assert sum(len(v.real) for v in evaluate.test_pass(config, IDENTITY, None)) == 2
  with pytest.raises(ValueError, match="paired"):
    evaluate.evaluate_metrics(config, IDENTITY, None, ["psnr"])


def test_psnr_ssim_on_paired_data(tmp_path):
  rng = np.random.default_rng(1)
  for i in range(3):  # ground truth B = A + 10 grey levels: PSNR 20 log10(255 / 10) exactly
    a = rng.integers(0, 245, (32, 32, 3), dtype=np.uint8)
    _write(str(tmp_path / "test" / f"{i}.png"), np.concatenate([a, a + 10], axis=1))
  config = tiny_config("pix2pix", preset="folder")
  config.data.update(path=str(tmp_path), preprocess="none", load_size=32, crop_size=32)
  info = {}
  results = evaluate.evaluate_metrics(config, IDENTITY, None, ["psnr", "ssim", "psnr_y"], info)
  assert info == {"AtoB": {"translated": 3, "real": 3}}
  assert results["psnr"] == pytest.approx(20 * np.log10(255 / 10), rel=1e-5)
  assert results["psnr_std"] == pytest.approx(0, abs=1e-3)
  assert results["psnr_y"] == pytest.approx(20 * np.log10(255 / (10 * 219 / 255)), rel=1e-4)
  assert 0.9 < results["ssim"] < 1.0


def test_table_and_history_format(tmp_path):
  table = evaluate.format_table({"fid": 12.5, "kid": 0.51, "kid_std": 0.02, "extra": 3.0},
                                ["fid", "kid"])
  lines = table.strip().splitlines()
  assert lines[2] == "| FID | 12.5000 |  |"
  assert lines[3] == "| KID x100 | 0.5100 | 0.0200 |"
  assert lines[4] == "| extra | 3.0000 |  |"
  evaluate.append_results(str(tmp_path), 5, {"fid": 1.0})
  evaluate.append_results(str(tmp_path), 9, {"fid": 0.5})
  with open(tmp_path / "eval.json") as f:
    assert json.load(f) == [{"step": 5, "fid": 1.0}, {"step": 9, "fid": 0.5}]
