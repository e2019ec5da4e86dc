"""Inference with a trained run through the method's named predict functions (`Method.predicts`).

    p = Predictor("runs/h2z")
    fake_B = p.translate(images, direction="AtoB")                 # predict "AtoB", NHWC in [-1, 1]
    out = p.predict("to_target", images=x, target=labels)           # any predict by name -> dict
    written = run_files(p, input_path="photos/", output="out/")    # what the CLI does

`Predictor` restores the latest (or a given) checkpoint of a workdir on one device with the method's
frozen networks, and jits each predict once. `run_files` drives ANY method with no per-method code:
which command-line values a predict takes follows from its declared inputs (`base.Input`): images
from files (--input, and --style for a second image), labels parsed by the method from --target or
--class text, a random key from --seed, a count from --num (also for count inputs, e.g. styles per
input). Outputs: one PNG per input image, a grid
per input image for predicts with several results per input, one grid PNG for predicts without image
inputs (generation), and the predict's extra outputs (e.g. attention maps) as <name>_<extra>.png.
The command line is `python -m translate.translate` (translate/translate.py).
"""
from __future__ import annotations

import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps

from translate import visualize, workdir as workdirs
from translate.data import images as image_files
from translate.methods import base

IMAGE_EXTENSIONS = image_files.IMAGE_EXTENSIONS  # the one list: what training folders read


class Predictor:
  """The trained networks of a workdir's latest (or `step`) checkpoint and its method's predicts."""

  def __init__(self, workdir: str, step: int | None = None):
    run = workdirs.load(workdir, step)
    self.config, self.method, self.state = run.config, run.method, run.state
    self.frozen, self.step, self.image_shapes = run.frozen, run.step, run.image_shapes
    self._jitted: dict = {}
    self._fitting: set = set()  # (predict, input shapes) that check_inputs has traced

  def channels(self, domain: str) -> int:
    """The channel count of the training data's batch key `domain` (the first key if unknown)."""
    shape = self.image_shapes.get(domain) or next(iter(self.image_shapes.values()))
    return int(shape[-1])

  def _prepare(self, name: str, inputs: dict) -> tuple:
    """The jitted predict `name` (one program per count value) and its traced keyword inputs."""
    spec = self.method.predict(name)
    expected = {i.name for i in spec.inputs}
    if set(inputs) != expected:
      raise ValueError(f"Predict {name!r} of {self.method.name} takes inputs {sorted(expected)}, got "
                       f"{sorted(inputs)}.")
    counts = {i.name: int(inputs[i.name]) for i in spec.inputs if i.kind == base.COUNT}
    for key, value in counts.items():
      if value < 1:
        raise ValueError(f"Predict {name!r}: {key} must be >= 1, got {value}.")
    jit_key = (name, tuple(sorted(counts.items())))
    if jit_key not in self._jitted:  # counts are static: one program per value
      self._jitted[jit_key] = jax.jit(
          lambda state, frozen, kwargs: spec.per_image(self.config, state, frozen, **kwargs, **counts))
    kwargs = {}
    for i in spec.inputs:
      if i.kind == base.COUNT:
        continue
      value = inputs[i.name]
      if i.kind == base.IMAGE and np.ndim(value) != 4:
        raise ValueError(f"Predict {name!r} of {self.method.name}: {i.name} must be a batch of images "
                         f"(B, H, W, C), got shape {np.shape(value)}.")
      kwargs[i.name] = (jnp.asarray(value, jnp.float32) if i.kind == base.IMAGE
                        else value if i.kind == base.RNG else jnp.asarray(value))
    return self._jitted[jit_key], kwargs

  def check_inputs(self, name: str, **inputs) -> None:
    """Traces predict `name` on the inputs' shapes without computing it. Raises ValueError, naming the
    training size, when an image input's height x width does not fit the networks: a network with a
    size-bound layer (DTN's f ends in a dense layer over its 32x32 input) takes only that size, while
    fully convolutional ones take any size the generator's strides divide."""
    self._check(name, *self._prepare(name, inputs))

  def _check(self, name: str, fn, kwargs: dict) -> None:
    """check_inputs on `_prepare`'s output (traced once per predict and input shapes)."""
    key = (name, tuple((k, np.shape(v)) for k, v in sorted(kwargs.items())))
    if key in self._fitting:
      return
    try:
      jax.eval_shape(fn, self.state, self.frozen, kwargs)
    except Exception as e:  # noqa: BLE001: shape errors come as flax, Type and Value errors
      images = self.method.predict(name).image_inputs
      trained = {i.name: tuple(self.image_shapes.get(i.domain, (None, None))[:2]) for i in images}
      given = {i.name: tuple(np.shape(kwargs[i.name])[1:3]) for i in images}
      odd = next((n for n in given if given[n] != trained[n] and None not in trained[n]), None)
      if odd is None:  # the training size itself, or no record of it: not a size problem
        raise
      (h, w), (th, tw) = given[odd], trained[odd]
      reason = (str(e).strip().splitlines() or [""])[0].split(" (http")[0]
      raise ValueError(f"Predict {name!r} of {self.method.name} cannot take {w}x{h} images "
                       f"(input {odd!r}): its networks were trained on {tw}x{th} and do not fit another size "
                       f"({type(e).__name__}: {reason[:200]}); resize the images to {tw}x{th}.") from e
    self._fitting.add(key)

  def predict(self, name: str, **inputs) -> dict[str, np.ndarray]:
    """Runs predict `name` on keyword inputs (as `Predict.fn` takes them); numpy outputs. Each input
    image is computed alone (`Predict.per_image`): its output never depends on its batch neighbours.
    Raises ValueError for inputs the predict does not take (names, counts, image sizes the networks
    do not fit: `check_inputs`)."""
    fn, kwargs = self._prepare(name, inputs)
    self._check(name, fn, kwargs)
    out = fn(self.state, self.frozen, kwargs)
    return {k: np.asarray(v) for k, v in out.items()}

  def translate(self, images, direction: str = "AtoB") -> np.ndarray:
    """float images (B, H, W, C) in [-1, 1], NHWC with the source domain's channel count -> the
    predict `direction`'s images."""
    spec = self.method.predict(direction)
    if len(spec.inputs) != 1 or not spec.image_inputs:
      raise ValueError(f"Predict {direction!r} of {self.method.name} takes "
                       f"{[i.name for i in spec.inputs]}, not just images; use predict().")
    return self.predict(direction, **{spec.inputs[0].name: images})["image"]

  def parse(self, name: str, text: str | None, count: int) -> dict:
    """The labels inputs of predict `name` from command-line text (the method's parse)."""
    spec = self.method.predict(name)
    return {i.name: i.parse(self.config, text, count) for i in spec.inputs if i.kind == base.LABELS}


# Kept for the library API the README documents: `Translator(workdir).translate(images, direction)`.
Translator = Predictor


def choose_predict(method: base.Method, predict: str | None = None, direction: str | None = None,
                   target: str | None = None, has_images: bool = True) -> str:
  """The predict the command line runs: --predict if given; with a --target/--class text (other than
  'all'), the predict that takes labels (and images when --input is given); else --direction when the
  method has a predict of that name; else the method's default."""
  if predict:
    method.predict(predict)
    return predict
  if target and target != "all":
    for name, spec in method.predicts.items():
      if spec.input_of(base.LABELS) and bool(spec.image_inputs) == has_images:
        return name
    raise ValueError(f"--target/--class: no predict of {method.name} takes labels"
                     f"{' with images' if has_images else ''} (it has {sorted(method.predicts)}).")
  if direction and direction in method.predicts:
    return direction
  if direction and direction != "AtoB":
    raise ValueError(f"Unknown direction {direction!r}: {method.name} has predicts "
                     f"{sorted(method.predicts)}.")
  return method.default_predict


def read_image(path: str, channels: int) -> np.ndarray:
  """An image file as float32 (H, W, channels) in [-1, 1], upright (EXIF orientation applied), RGB
  or grey (`channels` 3 or 1) as training reads it: PIL's convert('RGB'), grey as its convert('L') of
  that. The file is checked as training checks its data (`images.inspect_image`):
  `images.ImageFileError` (a ValueError) naming the file for an empty, corrupt or truncated file, a
  format TF does not decode, an alpha channel, 16-bit or float samples."""
  image_files.validate_images([path])  # the training data's checks (cached per file and mtime)
  try:
    with Image.open(path) as img:
      img = ImageOps.exif_transpose(img)  # upright, as training reads it
      rgb = np.asarray(img.convert("RGB"))
  except (OSError, SyntaxError, ValueError) as e:
    raise image_files.ImageFileError(f"{path}: not a readable image ({e}).") from None
  x = image_files.grey_uint8(rgb) if channels == 1 else rgb
  return x.astype(np.float32) / 127.5 - 1.0


def upright_size(path: str) -> tuple[int, int]:
  """(width, height) of an image file after its EXIF orientation, from the checked header."""
  (info,) = image_files.validate_images([path])
  return (info.height, info.width) if info.orientation >= 5 else (info.width, info.height)


def list_inputs(path: str) -> list[str]:
  """The image files of a folder (sorted; hidden files such as .DS_Store or macOS's ._x.png and
  sub-folders are ignored, other non-image files are named in a warning), or [path] for a file."""
  if os.path.isdir(path):
    files, others = [], []
    for name in sorted(os.listdir(path)):
      full = os.path.join(path, name)
      if name.startswith(".") or not os.path.isfile(full):
        continue
      (files if image_files.is_image_file(name) else others).append(full)
    if others:
      logging.warning("%s: left out %d file(s) without an image extension (%s): %s", path,
                      len(others), ", ".join(IMAGE_EXTENSIONS), image_files._some(others))
    if not files:
      raise ValueError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder.")
    return files
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file or folder.")
  return [path]


def output_names(inputs: list[str], output: str, extras: tuple[str, ...] = ()) -> dict[str, str]:
  """Input file -> its output PNG in folder `output`: `<stem>.png`, or `<stem>_<ext>.png` for inputs
  that share a stem (`cat.png` and `cat.jpg` give `cat_png.png` and `cat_jpg.png`), so every input
  gets its own file. ValueError, before anything is written, when an output (or an extra output such
  as `<stem>_attention.png`) would replace one of the input files."""
  stems: dict[str, list[str]] = {}
  for path in inputs:
    stems.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
  names = {}
  for stem, paths in stems.items():
    for path in paths:
      ext = os.path.splitext(path)[1].lstrip(".").lower()
      names[path] = os.path.join(output, f"{stem}_{ext}.png" if len(paths) > 1 else f"{stem}.png")
  originals = {os.path.realpath(p) for p in inputs}
  for path, out in names.items():
    candidates = [out] + [f"{os.path.splitext(out)[0]}_{e}.png" for e in extras]
    clash = [c for c in candidates if os.path.realpath(c) in originals]
    if clash:
      raise ValueError(f"Writing {clash[0]} would replace an input image; give an --output folder "
                       f"other than the input's (nothing was written).")
  return names


def write_png(image: np.ndarray, path: str) -> None:
  """A [-1, 1] float (H, W, C) image as an 8-bit PNG (grey for one channel)."""
  y = np.clip((image + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  Image.fromarray(y[..., 0] if y.shape[-1] == 1 else y).save(path)


def generated_grid(images: np.ndarray) -> np.ndarray:
  """The uint8 grid of generated images: (N, H, W, C) in a near-square layout (ceil(sqrt(N)) rows,
  blank white cells at the end), or (K, N, H, W, C) as K columns of N rows."""
  if images.ndim == 4:
    num = len(images)
    rows = math.ceil(math.sqrt(num))
    cols = math.ceil(num / rows)
    pad = rows * cols - num
    images = np.concatenate([images, np.ones((pad, *images.shape[1:]), images.dtype)])
    images = images.reshape(cols, rows, *images.shape[1:])
  return visualize.make_grid({f"c{j}": c for j, c in enumerate(images)}, max_rows=images.shape[1])


def run_files(predictor: Predictor, input_path: str | None, output: str, predict: str | None = None,
              direction: str | None = None, target: str | None = None, style: str | None = None,
              extras: bool = False, num: int = 1, seed: int = 0) -> list[str]:
  """Runs a predict on image files (or generates, for predicts without image inputs) and writes PNGs;
  returns the written paths. See the module docstring; errors are raised before anything is written."""
  method = predictor.method
  name = choose_predict(method, predict, direction, target, has_images=input_path is not None)
  spec = method.predict(name)
  images_in = spec.image_inputs
  if extras and not spec.extras:
    raise ValueError(f"Predict {name!r} of {method.name} has no extra outputs (such as an attention "
                     f"map) to write; leave out --attention.")
  if len(images_in) > 2:
    raise ValueError(f"Predict {name!r} takes {len(images_in)} images; the command line gives two.")
  if images_in and input_path is None:
    raise ValueError(f"Predict {name!r} of {method.name} translates images: give --input.")
  if not images_in and input_path is not None:
    raise ValueError(f"Predict {name!r} of {method.name} generates from labels/noise and takes no "
                     f"--input.")
  if len(images_in) == 2 and not style:
    raise ValueError(f"Predict {name!r} takes a second image ({images_in[1].name}): give --style.")
  if style and len(images_in) < 2:
    raise ValueError(f"Predict {name!r} takes no second image; leave out --style.")
  if num < 1:
    raise ValueError(f"--num must be >= 1, got {num}.")
  text = None if target in (None, "", "all") else target
  if target == "all" and spec.input_of(base.LABELS):
    text = "all"
  labels = predictor.parse(name, text, num)  # bad names fail before anything is written
  others = dict(labels)
  if spec.input_of(base.RNG):
    others[spec.input_of(base.RNG).name] = jax.random.PRNGKey(seed)
  if spec.input_of(base.COUNT):
    others[spec.input_of(base.COUNT).name] = num

  if not images_in:  # generation: one grid
    out = predictor.predict(name, **others)["image"]
    path = output if output.lower().endswith(".png") else os.path.join(output, f"{name}.png")
    visualize.save_png(generated_grid(out), path)
    return [path]

  inputs = list_inputs(input_path)
  out_names = output_names(inputs, output, extras=spec.extras if extras else ())
  sizes = {}  # (w, h) -> the first file of that size
  for path in inputs:  # every file is checked before anything is written
    w, h = upright_size(path)
    if h % 4 or w % 4:
      raise ValueError(f"{path}: size {w}x{h} is not divisible by 4, which the generator needs; "
                       f"crop or resize it first (nothing was written).")
    sizes.setdefault((w, h), path)
  style_image = None
  if style:
    style_image = read_image(style, predictor.channels(images_in[1].domain))[None]

  def predict_inputs(x):
    kwargs = {images_in[0].name: x[None], **others}
    if style_image is not None:
      kwargs[images_in[1].name] = style_image
    return {k: (np.broadcast_to(v, (1, *np.shape(v)[-1:])) if k in labels and np.ndim(v) == 1
                else v) for k, v in kwargs.items()}

  channels = predictor.channels(images_in[0].domain)
  for (w, h), path in sizes.items():  # sizes the networks do not fit fail here, before any writing
    try:
      predictor.check_inputs(name, **predict_inputs(np.zeros((h, w, channels), np.float32)))
    except ValueError as e:
      raise ValueError(f"{path}: {str(e).rstrip('.')}; nothing was written.") from None
  os.makedirs(output, exist_ok=True)
  written = []
  for path in inputs:
    x = read_image(path, channels)
    outputs = predictor.predict(name, **predict_inputs(x))
    out_path = out_names[path]
    stem = os.path.splitext(out_path)[0]
    y = outputs["image"]
    if y.ndim == 5:  # several results per input: the input, then each result
      titles = spec.columns(predictor.config, len(y)) if spec.columns else [f"{k}" for k in range(len(y))]
      columns = {"input": x[None], **{t: y[k] for k, t in enumerate(titles)}}
      visualize.save_png(visualize.make_grid(columns), out_path)
    else:
      write_png(y[0], out_path)
    written.append(out_path)
    if extras:
      for extra in spec.extras:
        extra_path = f"{stem}_{extra}.png"
        write_png(outputs[extra][0], extra_path)
        written.append(extra_path)
  return written
