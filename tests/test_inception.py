"""The FID InceptionV3 (translate.pretrained.inception): layer shapes, pytorch-fid key layout and conversion,
weight-file errors, the FID pooling quirks and pytorch-fid's resize protocol.

The torch side is described here independently of the module: torchvision's Inception3 blocks with
their constructor arguments (as pytorch-fid's `fid_inception_v3` builds them), from which the test makes
the state dict pytorch-fid's `pt_inception-2015-12-05-*.pth` holds (keys and shapes), with random values.
The full network is compiled once, at 75 px (the smallest input it takes), to keep the file fast.
"""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_torch_io import OrderedDict as TorchOrderedDict
from tests.test_torch_io import tensor, write_torch_file
from translate.pretrained import inception


# ----------------------------------------------------------------------------------------------------
# pytorch-fid's state dict, from torchvision's architecture description
# ----------------------------------------------------------------------------------------------------
def _block_convs(kind, cin, arg=None):
  """(branch name, in, out, (kh, kw)) of each BasicConv2d of a torchvision Inception block."""
  if kind == "A":
    return [("branch1x1", cin, 64, (1, 1)), ("branch5x5_1", cin, 48, (1, 1)),
            ("branch5x5_2", 48, 64, (5, 5)), ("branch3x3dbl_1", cin, 64, (1, 1)),
            ("branch3x3dbl_2", 64, 96, (3, 3)), ("branch3x3dbl_3", 96, 96, (3, 3)),
            ("branch_pool", cin, arg, (1, 1))]
  if kind == "B":
    return [("branch3x3", cin, 384, (3, 3)), ("branch3x3dbl_1", cin, 64, (1, 1)),
            ("branch3x3dbl_2", 64, 96, (3, 3)), ("branch3x3dbl_3", 96, 96, (3, 3))]
  if kind == "C":
    c7 = arg
    return [("branch1x1", cin, 192, (1, 1)), ("branch7x7_1", cin, c7, (1, 1)),
            ("branch7x7_2", c7, c7, (1, 7)), ("branch7x7_3", c7, 192, (7, 1)),
            ("branch7x7dbl_1", cin, c7, (1, 1)), ("branch7x7dbl_2", c7, c7, (7, 1)),
            ("branch7x7dbl_3", c7, c7, (1, 7)), ("branch7x7dbl_4", c7, c7, (7, 1)),
            ("branch7x7dbl_5", c7, 192, (1, 7)), ("branch_pool", cin, 192, (1, 1))]
  if kind == "D":
    return [("branch3x3_1", cin, 192, (1, 1)), ("branch3x3_2", 192, 320, (3, 3)),
            ("branch7x7x3_1", cin, 192, (1, 1)), ("branch7x7x3_2", 192, 192, (1, 7)),
            ("branch7x7x3_3", 192, 192, (7, 1)), ("branch7x7x3_4", 192, 192, (3, 3))]
  assert kind == "E"
  return [("branch1x1", cin, 320, (1, 1)), ("branch3x3_1", cin, 384, (1, 1)),
          ("branch3x3_2a", 384, 384, (1, 3)), ("branch3x3_2b", 384, 384, (3, 1)),
          ("branch3x3dbl_1", cin, 448, (1, 1)), ("branch3x3dbl_2", 448, 384, (3, 3)),
          ("branch3x3dbl_3a", 384, 384, (1, 3)), ("branch3x3dbl_3b", 384, 384, (3, 1)),
          ("branch_pool", cin, 192, (1, 1))]


STEM = [("Conv2d_1a_3x3", 3, 32, (3, 3)), ("Conv2d_2a_3x3", 32, 32, (3, 3)),
        ("Conv2d_2b_3x3", 32, 64, (3, 3)), ("Conv2d_3b_1x1", 64, 80, (1, 1)),
        ("Conv2d_4a_3x3", 80, 192, (3, 3))]
MIXED = [("Mixed_5b", "A", 192, 32), ("Mixed_5c", "A", 256, 64), ("Mixed_5d", "A", 288, 64),
         ("Mixed_6a", "B", 288, None), ("Mixed_6b", "C", 768, 128), ("Mixed_6c", "C", 768, 160),
         ("Mixed_6d", "C", 768, 160), ("Mixed_6e", "C", 768, 192), ("Mixed_7a", "D", 768, None),
         ("Mixed_7b", "E", 1280, None), ("Mixed_7c", "E", 2048, None)]


def torch_conv_specs():
  specs = list(STEM)
  for name, kind, cin, arg in MIXED:
    specs += [(f"{name}.{branch}", i, o, k) for branch, i, o, k in _block_convs(kind, cin, arg)]
  return specs


def pytorch_fid_state_dict(seed=0, with_fc=True):
  """Random values under pytorch-fid's keys and shapes (Inception3(num_classes=1008, aux_logits=False)
  with the FID blocks), in torch layout."""
  rng = np.random.default_rng(seed)
  sd = {}
  for prefix, cin, cout, (kh, kw) in torch_conv_specs():
    sd[f"{prefix}.conv.weight"] = rng.normal(0, np.sqrt(2 / (cin * kh * kw)),
                                             (cout, cin, kh, kw)).astype(np.float32)
    sd[f"{prefix}.bn.weight"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    sd[f"{prefix}.bn.bias"] = rng.normal(0, 0.1, cout).astype(np.float32)
    sd[f"{prefix}.bn.running_mean"] = rng.normal(0, 0.1, cout).astype(np.float32)
    sd[f"{prefix}.bn.running_var"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    sd[f"{prefix}.bn.num_batches_tracked"] = np.array(0, np.int64)
  if with_fc:
    sd["fc.weight"] = rng.normal(0, 0.01, (1008, 2048)).astype(np.float32)
    sd["fc.bias"] = np.zeros(1008, np.float32)
  return sd


@pytest.fixture(scope="module")
def torch_state_dict():
  return pytorch_fid_state_dict()


@pytest.fixture(scope="module")
def converted(torch_state_dict):
  return inception.from_torch_state_dict(torch_state_dict)


# ----------------------------------------------------------------------------------------------------
# Shapes (abstract only: no compilation)
# ----------------------------------------------------------------------------------------------------
def test_variables_match_pytorch_fid_layout():
  flat = inception._abstract_variables()
  specs = torch_conv_specs()
  assert len(specs) == 94  # BasicConv2d count of torchvision's Inception3 without the aux head
  kernels = {p[1:-2]: v.shape for p, v in flat.items() if p[0] == "params" and p[-1] == "kernel"}
  assert len(kernels) == len(specs)
  for prefix, cin, cout, (kh, kw) in specs:
    assert kernels[tuple(prefix.split("."))] == (kh, kw, cin, cout), prefix
  n_params = sum(int(np.prod(v.shape)) for p, v in flat.items() if p[0] == "params")
  n_torch = sum(cout * cin * kh * kw + 2 * cout for _, cin, cout, (kh, kw) in specs)
  assert n_params == n_torch
  assert all(p[-1] in ("mean", "var") for p in flat if p[0] == "batch_stats")


def test_block_shapes_at_299():
  variables = flax.traverse_util.unflatten_dict(inception._abstract_variables())
  x = jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32)
  pool3, blocks = jax.eval_shape(lambda v, x: inception.MODEL.apply(v, x, return_blocks=True),
                                 variables, x)
  expected = {"maxpool1": (73, 73, 64), "maxpool2": (35, 35, 192), "Mixed_5b": (35, 35, 256),
              "Mixed_5c": (35, 35, 288), "Mixed_5d": (35, 35, 288), "Mixed_6a": (17, 17, 768),
              "Mixed_6b": (17, 17, 768), "Mixed_6e": (17, 17, 768), "Mixed_7a": (8, 8, 1280),
              "Mixed_7b": (8, 8, 2048), "Mixed_7c": (8, 8, 2048)}
  for name, shape in expected.items():
    assert blocks[name].shape == (2, *shape), name
  assert pool3.shape == (2, 2048)
  # 75 px is the smallest input that still leaves Mixed_7c a 1x1 map
  _, small = jax.eval_shape(lambda v, x: inception.MODEL.apply(v, x, return_blocks=True), variables,
                            jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))
  assert small["Mixed_7c"].shape == (1, 1, 1, 2048)
  with pytest.raises(ValueError, match="at least 75"):
    jax.eval_shape(inception.MODEL.apply, variables, jax.ShapeDtypeStruct((1, 74, 74, 3), jnp.float32))


# ----------------------------------------------------------------------------------------------------
# Conversion and weight files
# ----------------------------------------------------------------------------------------------------
def _np_conv_bn_relu(x_nchw, sd, prefix, stride=1, padding=(0, 0)):
  """torch's BasicConv2d in numpy: cross-correlation, BatchNorm(eps=1e-3) inference, ReLU."""
  w = sd[f"{prefix}.conv.weight"].astype(np.float64)
  ph, pw = padding
  x = np.pad(x_nchw.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
  cout, _, kh, kw = w.shape
  n, _, h, wd = x.shape
  oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
  y = np.zeros((n, cout, oh, ow))
  for i in range(kh):
    for j in range(kw):
      patch = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
      y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
  bn = lambda k: sd[f"{prefix}.bn.{k}"][None, :, None, None]  # noqa: E731
  y = (y - bn("running_mean")) / np.sqrt(bn("running_var") + 1e-3) * bn("weight") + bn("bias")
  return np.maximum(y, 0)


@pytest.mark.parametrize("prefix,cin,kernel,stride,padding", [
    ("Conv2d_1a_3x3", 3, (3, 3), 2, (0, 0)),
    ("Mixed_6b.branch7x7_2", 128, (1, 7), 1, (0, 3)),
    ("Mixed_7b.branch3x3_2b", 384, (3, 1), 1, (1, 0)),
])
def test_converted_conv_bn_matches_torch_formula(torch_state_dict, converted, prefix, cin, kernel,
                                                 stride, padding):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, cin, 9, 11)).astype(np.float32)
  path = prefix.split(".")
  sub = {c: functools_reduce(converted[c], path) for c in ("params", "batch_stats")}
  cout = torch_state_dict[f"{prefix}.conv.weight"].shape[0]
  module = inception.BasicConv2d(cout, kernel, stride=stride, padding=padding)
  with jax.default_matmul_precision("highest"):
    y = module.apply(sub, jnp.asarray(x.transpose(0, 2, 3, 1)))
  want = _np_conv_bn_relu(x, torch_state_dict, prefix, stride, padding)
  np.testing.assert_allclose(np.asarray(y).transpose(0, 3, 1, 2), want, atol=1e-4)


def functools_reduce(tree, path):
  for p in path:
    tree = tree[p]
  return tree


def test_pth_round_trip_npz_and_forward(tmp_path, torch_state_dict, converted):
  # a real torch.save file of pytorch-fid's layout, read without torch
  items = [(k, tensor(v, i)) for i, (k, v) in enumerate(torch_state_dict.items())]
  pth = write_torch_file(tmp_path / "pt_inception-2015-12-05-test.pth", TorchOrderedDict(items))
  from_pth = inception.load_weights(str(pth))
  np.testing.assert_array_equal(from_pth["params"]["Mixed_5b"]["branch5x5_2"]["conv"]["kernel"],
                                torch_state_dict["Mixed_5b.branch5x5_2.conv.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(from_pth["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
                                torch_state_dict["Mixed_7c.branch_pool.bn.running_var"])
  np.testing.assert_array_equal(from_pth["params"]["Conv2d_4a_3x3"]["bn"]["scale"],
                                torch_state_dict["Conv2d_4a_3x3.bn.weight"])
  # our .npz layout, written and read back, also through the command line's main()
  npz = str(tmp_path / "fid_inception.npz")
  inception.main(["--pth", str(pth), "--out", npz])
  from_npz = inception.load_weights(npz)
  same = jax.tree_util.tree_map(np.array_equal, from_pth, from_npz)
  assert all(jax.tree_util.tree_leaves(same))

  # the whole network at 75 px: 2048-d pool3 features, non-negative (a mean of ReLUs), finite;
  # padding the last batch does not change a row (inference BatchNorm is per-sample)
  rng = np.random.default_rng(2)
  images = rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  extractor = inception.FeatureExtractor(from_npz, batch_size=2, size=75)
  feats = extractor(images)
  assert feats.shape == (3, 2048) and np.isfinite(feats).all() and (feats >= 0).all()
  assert feats.std(axis=0).mean() > 0  # different images, different features
  np.testing.assert_allclose(extractor(images[2:]), feats[2:], rtol=1e-5, atol=1e-5)


def test_loader_refuses_other_networks_and_broken_files(tmp_path, torch_state_dict, converted):
  # a ResNet-generator state dict (CycleGAN keys) is not the Inception
  resnet = {"model.1.weight": np.zeros((8, 3, 7, 7), np.float32), "model.1.bias": np.zeros(8, np.float32)}
  with pytest.raises(inception.WeightsError, match="Conv2d_1a_3x3.conv.weight"):
    inception.from_torch_state_dict(resnet)
  # torchvision's ImageNet Inception has an AuxLogits head: unexpected keys are named
  extra = dict(torch_state_dict, **{"AuxLogits.conv0.conv.weight": np.zeros((128, 768, 1, 1), np.float32)})
  with pytest.raises(inception.WeightsError, match="AuxLogits.conv0.conv.weight"):
    inception.from_torch_state_dict(extra)
  # a mis-shaped tensor
  bad = dict(torch_state_dict)
  bad["Mixed_6c.branch7x7_2.conv.weight"] = np.zeros((160, 160, 7, 1), np.float32)
  with pytest.raises(inception.WeightsError, match=r"Mixed_6c.branch7x7_2.conv.weight.*\(160, 160, 1, 7\)"):
    inception.from_torch_state_dict(bad)

  # npz: a file missing a key (truncated layout), a wrong shape, another format, and cut-off bytes
  flat = {"/".join(p): v for p, v in flax.traverse_util.flatten_dict(converted).items()}
  missing = dict(flat)
  del missing["params/Mixed_7c/branch_pool/conv/kernel"]
  np.savez(tmp_path / "missing.npz", format=np.array(inception.FORMAT), **missing)
  with pytest.raises(inception.WeightsError, match="missing key 'params/Mixed_7c/branch_pool/conv/kernel'"):
    inception.load_weights(str(tmp_path / "missing.npz"))
  wrong = dict(flat)
  wrong["batch_stats/Mixed_5b/branch1x1/bn/mean"] = np.zeros(63, np.float32)
  np.savez(tmp_path / "wrong.npz", format=np.array(inception.FORMAT), **wrong)
  with pytest.raises(inception.WeightsError, match="branch1x1/bn/mean.*expected \\(64,\\)"):
    inception.load_weights(str(tmp_path / "wrong.npz"))
  np.savez(tmp_path / "other.npz", w=np.zeros(3))
  with pytest.raises(inception.WeightsError, match="format"):
    inception.load_weights(str(tmp_path / "other.npz"))
  good = tmp_path / "good.npz"
  inception.save_npz(converted, str(good))
  (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:100000])
  with pytest.raises(inception.WeightsError, match="truncated"):
    inception.load_weights(str(tmp_path / "cut.npz"))
  with pytest.raises(inception.WeightsError, match="inception_path"):
    inception.load_weights("")


# ----------------------------------------------------------------------------------------------------
# FID quirks and input protocol
# ----------------------------------------------------------------------------------------------------
def _np_pool(x, op):
  """3x3 stride-1 pooling with padding 1 over real pixels only (NHWC)."""
  n, h, w, c = x.shape
  out = np.zeros_like(x)
  for i in range(h):
    for j in range(w):
      window = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
      out[:, i, j] = op(window.reshape(n, -1, c), axis=1)
  return out


def test_pooling_quirks():
  x = -np.abs(np.random.default_rng(3).normal(size=(2, 5, 6, 3))).astype(np.float32) - 0.1  # all < 0
  # TF average pool: corners average 4 real pixels, not 9 with zeros
  np.testing.assert_allclose(inception.avg_pool_3x3_exclude_pad(jnp.asarray(x)), _np_pool(x, np.mean),
                             rtol=1e-5, atol=1e-6)
  # FIDInceptionE_2's max pool: the padding never wins, even over negative values
  np.testing.assert_array_equal(inception.max_pool_3x3_same(jnp.asarray(x)), _np_pool(x, np.max))
  assert float(jnp.max(inception.max_pool_3x3_same(jnp.asarray(x)))) < 0


def _torch_bilinear_matrix(n_in, n_out):
  """Interpolation matrix of torch F.interpolate(mode='bilinear', align_corners=False) along an axis."""
  m = np.zeros((n_out, n_in))
  scale = n_in / n_out
  for i in range(n_out):
    src = max((i + 0.5) * scale - 0.5, 0.0)
    i0 = min(int(np.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    frac = src - i0
    m[i, i0] += 1 - frac
    m[i, i1] += frac
  return m


@pytest.mark.parametrize("size_in,size_out", [(32, 299), (64, 40), (299, 299)])
def test_resize_is_pytorch_fid_bilinear(size_in, size_out):
  rng = np.random.default_rng(4)
  x = rng.uniform(-1, 1, (2, size_in, size_in, 3)).astype(np.float32)
  got = np.asarray(inception.preprocess(x, size=size_out, quantize=False))
  m = _torch_bilinear_matrix(size_in, size_out)
  want = np.einsum("jw,niwc->nijc", m, np.einsum("ih,nhwc->niwc", m, x.astype(np.float64)))
  np.testing.assert_allclose(got, want, atol=2e-5)
  if size_in == size_out:
    np.testing.assert_allclose(got, x, atol=1e-6)


def test_preprocess_quantizes_and_makes_rgb():
  x = np.linspace(-1, 1, 75 * 75).reshape(1, 75, 75, 1).astype(np.float32)
  y = np.asarray(inception.preprocess(x, size=75))
  assert y.shape == (1, 75, 75, 3)
  np.testing.assert_array_equal(y[..., 0], y[..., 2])
  levels = (y + 1) * 127.5
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # 8-bit levels, as a saved PNG
