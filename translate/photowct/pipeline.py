"""PhotoWCT's stylization cascade and where its networks come from.

    model = pipeline.load_photo_wct("photo_wct.pth")           # FastPhotoStyle's released weights
    model = pipeline.load_workdir("runs/photowct")             # decoders trained by translate.train
    image = pipeline.transform(model, content, style)          # (H, W, 3) [0, 1] -> (H, W, 3), no clamp

`Model` holds the networks' architecture (`arch` 'vgg19' | 'vgg16', stage `widths`), the `levels` it
has decoders for, and `params` {'e<k>': encoder params, 'd<k>': decoder params}. An encoder may be
missing for a level: the deepest encoder present serves every shallower level (an encoder of level k is
a prefix of the one of level 4, so the same VGG weights give the same features); FastPhotoStyle's file
holds one encoder per level and each is used for its own level, as the reference does.

`transform` is the reference's `PhotoWCT.transform`: the style's relu<k>_1 features all come from one
pass of the deepest encoder; the content goes through the deepest level first: encode, WCT with the
style's features of that level, decode with the CONTENT's pooling indices; the decoded image is then
encoded again at the next level, and so on down to relu1_1 (coarse to fine). No alpha blending.

Encoders from torchvision's VGG weights (`vgg_encoder_params`): the VGG convs up to conv4_1 and a
`conv0` that holds ImageNet's normalisation (x - mean) / std for [0, 1] RGB input; the reference's
own encoder instead comes from its normalised Caffe VGG19, whose conv0 maps [0, 1] RGB to that
network's input. Both use reflection padding (the reference's), not torchvision's zero padding.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from translate.networks import photowct as nets
from translate.photowct import wct

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)


@dataclasses.dataclass(frozen=True)
class Model:
  params: dict  # {'e4': ..., 'd1': ..., ...}
  levels: tuple[int, ...] = nets.LEVELS
  arch: str = "vgg19"
  widths: tuple[int, ...] = nets.WIDTHS

  def encoder_params(self, level: int):
    """The params of the encoder used at `level` (its own, else the deepest one present)."""
    return encoder_params_for(self.params, level)


def encoder_params_for(params: dict, level: int):
  if f"e{level}" in params:
    return params[f"e{level}"]
  deeper = [k for k in range(level + 1, 5) if f"e{k}" in params]
  if not deeper:
    raise ValueError(f"No encoder for level {level}: the params hold {sorted(params)}.")
  return params[f"e{deeper[-1]}"]


def encode(params, level: int, images, arch: str = "vgg19", widths=nets.WIDTHS):
  """Encoder of `level` (params `{'params': ...}` of any level >= `level`) on NHWC [0, 1] images."""
  return nets.Encoder(level, arch, tuple(widths)).apply({"params": params}, images)


def decode(params, level: int, features, pools, arch: str = "vgg19", widths=nets.WIDTHS):
  return nets.Decoder(level, arch, tuple(widths)).apply({"params": params}, features, pools)


def vgg_encoder_params(vgg_params: dict, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
  """torchvision-layout VGG params (`translate.pretrained.vgg`: {'conv1_1': {'kernel', 'bias'}, ...})
  -> level-4 encoder params, with conv0 = the ImageNet normalisation of [0, 1] RGB."""
  arch = "vgg19" if "conv3_4" in vgg_params else "vgg16"
  out = {"conv0": {"kernel": np.diag(1.0 / np.asarray(std, np.float32))[None, None],
                   "bias": -np.asarray(mean, np.float32) / np.asarray(std, np.float32)}}
  for name in nets.encoder_convs(4, arch)[1:]:
    out[name] = {k: np.asarray(v, np.float32) for k, v in vgg_params[name].items()}
  return out


def load_photo_wct(path: str) -> Model:
  """FastPhotoStyle's `photo_wct.pth` (read without running pickle code) -> Model (vgg19, 4 levels).
  Raises `translate.convert.StateDictError` naming the key for a file of another network."""
  from translate import convert, torch_io
  _, variables = convert.from_torch("photo_wct", torch_io.load_state_dict(path))
  return Model(dict(variables["params"]), nets.LEVELS, "vgg19", nets.WIDTHS)


def load_workdir(workdir: str, step: int | None = None) -> Model:
  """Decoders trained by `python -m translate.train --config=configs/photowct.py:...` with their frozen
  encoder -> Model."""
  from translate import workdir as workdirs
  run = workdirs.load(workdir, step)
  if run.config.method != "photowct":
    raise ValueError(f"{workdir} holds a {run.config.method!r} run, not PhotoWCT decoders.")
  m = run.config.model
  params = dict(jax.device_get(run.frozen["encoder"].params))
  params.update(jax.device_get(run.state.params["decoders"]))
  return Model(params, tuple(sorted(m.levels)), m.arch, tuple(m.widths))


def load(path: str) -> Model:
  """A trained workdir (a folder) or a photo_wct.pth file."""
  import os
  if os.path.isdir(path):
    return load_workdir(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: neither a training workdir nor a photo_wct.pth file.")
  return load_photo_wct(path)


def _stylize(params, content, style, masks, *, levels, arch, widths, wct_dtype):
  levels = tuple(sorted(levels, reverse=True))
  deepest = levels[0]
  s_feats, _ = encode(encoder_params_for(params, deepest), deepest, style, arch, widths)
  image = content
  for level in levels:
    feats, pools = encode(encoder_params_for(params, level), level, image, arch, widths)
    name = nets.FEATURES[level]
    cm, sm = masks.get(level, (None, None))
    target = wct.feature_wct(feats[name][0], s_feats[name][0], cm, sm, dtype=wct_dtype)
    image = decode(params[f"d{level}"], level, target[None].astype(feats[name].dtype), pools, arch,
                   widths)
  return image


@functools.partial(jax.jit, static_argnames=("levels", "arch", "widths", "wct_dtype"))
def _stylize_jit(params, content, style, masks, *, levels, arch, widths, wct_dtype):
  return _stylize(params, content, style, masks, levels=levels, arch=arch, widths=widths,
                  wct_dtype=wct_dtype)


def feature_size(hw: tuple[int, int], level: int) -> tuple[int, int]:
  """(H, W) of relu<level>_1 for an (H, W) image (floor halving per pool)."""
  h, w = hw
  for _ in range(level - 1):
    h, w = h // 2, w // 2
  return h, w


def transform(model: Model, content, style, content_seg=None, style_seg=None, *,
              levels: Sequence[int] | None = None, wct_dtype=None) -> jax.Array:
  """PhotoWCT stylization of `content` (H, W, 3) with `style` (H_s, W_s, 3), both RGB in [0, 1]
  -> (H, W, 3) float32 (not clamped). With both label maps (H, W) / (H_s, W_s) (or colour maps),
  per-label WCT (`translate.photowct.wct`). `levels` (default: the model's) run deepest first.
  Images need at least 2^(deepest - 1) px per side."""
  content, style = jnp.asarray(content, jnp.float32), jnp.asarray(style, jnp.float32)
  for name, x in (("content", content), ("style", style)):
    if x.ndim != 3 or x.shape[-1] != 3:
      raise ValueError(f"The {name} image must be (H, W, 3) RGB, got shape {x.shape}.")
  levels = tuple(sorted(model.levels if levels is None else levels, reverse=True))
  missing = [k for k in levels if f"d{k}" not in model.params]
  if missing:
    raise ValueError(f"The model has no decoder for level(s) {missing} (it has {model.levels}).")
  need = 2 ** (levels[0] - 1)
  for name, x in (("content", content), ("style", style)):
    if min(x.shape[:2]) < 2 * need:
      raise ValueError(f"The {name} image is {x.shape[0]}x{x.shape[1]}; level {levels[0]} needs at "
                       f"least {2 * need} px per side.")
  masks = {}
  if (content_seg is None) != (style_seg is None):
    raise ValueError("Give both segmentation maps (content and style) or neither.")
  if content_seg is not None:
    cseg, sseg = wct.as_label_map(content_seg), wct.as_label_map(style_seg)
    for level in levels:
      m = wct.label_masks(cseg, sseg, feature_size(content.shape[:2], level),
                          feature_size(style.shape[:2], level))
      masks[level] = (jnp.asarray(m.content), jnp.asarray(m.style))
  out = _stylize_jit(model.params, content[None], style[None], masks, levels=levels,
                     arch=model.arch, widths=tuple(model.widths), wct_dtype=wct_dtype)
  return out[0]
