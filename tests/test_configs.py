"""The method configs: every preset builds without heavy imports, and the `tiny` presets that the tests
(tests/helpers.tiny_config) and the benchmark use are locked and run no evaluation."""
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers import load_config

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py"))
HEAVY = ("tensorflow", "jax", "jaxlib", "flax", "optax", "orbax", "torch")

# Builds every preset of every config, plain and with ',tiny', and parses a --config flag with a
# preset and the modifier as the CLIs do; then lists the heavy modules that got imported.
SCRIPT = r"""
import importlib.util, json, pathlib, sys
from absl import flags
from ml_collections import config_flags

repo, HEAVY = pathlib.Path(sys.argv[1]), sys.argv[2].split(",")
sys.path.insert(0, str(repo))
built = {}
for path in sorted((repo / "configs").glob("*.py")):
  spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  args = ["", "tiny"] + [a for p in module.PRESETS for a in (p, p + ",tiny")]
  built[path.stem] = {a: module.get_config(a).method for a in args}
config = config_flags.DEFINE_config_file("config")
sys.argv = [sys.argv[0], f"--config={repo}/configs/stargan.py:digits_both,tiny",
            "--config.batch_size=2"]  # config_flags reads its overrides from sys.argv
flags.FLAGS(sys.argv)
flag = {"sources": list(config.value.data.sources), "batch_size": config.value.batch_size,
        "d_conv_dim": config.value.model.d_conv_dim}
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"built": built, "flag": flag, "heavy": heavy}))
"""


def test_configs_build_every_preset_without_heavy_imports():
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO), ",".join(HEAVY)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["heavy"] == []  # building configs imported none of TensorFlow, JAX, Flax, ...
  assert sorted(result["built"]) == CONFIGS
  for name, built in result["built"].items():
    assert set(built.values()) == {name}, built  # each preset is a config of its own method
    assert "tiny" in built and len(built) >= 4
  assert result["flag"] == {"sources": ["digits", "digits_class"], "batch_size": 2, "d_conv_dim": 4}


def load_module(name):
  spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_presets_are_small_locked_and_do_not_evaluate(name):
  module = load_module(name)
  tiny_model = module.TINY_MODEL  # the config's own tiny widths
  for arg in ["tiny"] + [f"{p},tiny" for p in module.PRESETS]:
    c = module.get_config(arg)
    assert c.method == name
    assert (c.batch_size, c.log_every, c.sample_every, c.checkpoint_every) == (4, 1, 1, 1), arg
    assert c.eval_every == 0 and tuple(c.eval.metrics) == (), arg
    assert (c.optim.n_epochs, c.optim.n_epochs_decay) == (1, 1), arg
    assert {k: c.model[k] for k in tiny_model} == tiny_model, arg
    size = c.data.crop_size if "crop_size" in c.data else c.data.image_size
    assert size <= 32 and (c.data.load_size if "load_size" in c.data else size) == size, arg
    with pytest.raises(AttributeError, match="ngff"):
      c.model.ngff = 3  # locked: a mistyped key fails
    with pytest.raises(AttributeError, match="eval_everyy"):
      c.eval_everyy = 1
    c.batch_size = 2  # an existing key can still be set (tests override the batch)


def test_tiny_alone_is_the_tests_default_data_shrunk():
  defaults = {"cyclegan": "digits", "pix2pix": "folder", "cgan": "mnist", "gan": "mnist",
              "stargan": "digits", "ugatit": "digits", "dtn": "digits", "photowct": "photos",
              "srresnet": "photos", "srgan": "photos", "munit": "digits", "unit": "digits",
              "diat": "digits"}
  assert sorted(defaults) == CONFIGS
  for name, preset in defaults.items():
    assert load_config(f"configs/{name}.py", "tiny").to_dict() == load_config(
        f"configs/{name}.py", f"{preset},tiny").to_dict(), name
  # a modifier may come first; a preset keeps what sets it apart from the others
  a = load_config("configs/stargan.py", "tiny,digits_both")
  assert a.to_dict() == load_config("configs/stargan.py", "digits_both,tiny").to_dict()
  assert tuple(a.data.sources) == ("digits", "digits_class")
  assert load_config("configs/ugatit.py", "folder_light,tiny").model.light
  assert load_config("configs/gan.py", "dcgan,tiny").model.arch == "dcgan"
  assert load_config("configs/cgan.py", "dcgan,tiny").data.image_size == 32
  assert load_config("configs/pix2pix.py", "facades,tiny").data.direction == "BtoA"
  # the presets without the modifier are untouched by it
  assert load_config("configs/cyclegan.py", "digits").model.ngf == 16


@pytest.mark.parametrize("name, arg, message", [
    ("cyclegan", "horse2zebraa", "Unknown preset or modifier 'horse2zebraa'"),
    ("stargan", "digits,tinyy", "Unknown preset or modifier 'tinyy'"),
    ("stargan", "digits,folder,tiny", r"More than one preset \(digits, folder\)"),
    ("ugatit", "selfie2animee,tiny", "Unknown preset or modifier 'selfie2animee'"),
    ("gan", "mnsit", "Unknown preset or modifier 'mnsit'"),
])
def test_unknown_presets_fail_listing_the_valid_ones(name, arg, message):
  with pytest.raises(ValueError, match=message) as error:
    load_config(f"configs/{name}.py", arg)
  for preset in load_module(name).PRESETS:
    assert repr(preset) in str(error.value)
  assert "'tiny'" in str(error.value)
