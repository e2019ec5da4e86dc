"""Translate images with a trained model.

    python -m translate.translate --workdir=runs/h2z --input=photo.jpg --output=out/ [--direction=AtoB]
    python -m translate.translate --workdir=runs/h2z --input=folder/ --output=out/ --direction=BtoA
    python -m translate.translate --workdir=runs/celeba --input=face.jpg --output=out/ \
        --target=Black_Hair,Male                     # label-conditioned methods (StarGAN)

One image or a folder of images (png/jpg/bmp/webp), any size the generator accepts (divisible by 4 for
ResNet generators, by 2**num_downs for U-Nets), grayscale or RGB: each is converted to the channel count
of the model's input domain. Outputs are PNGs with the input's base name. With `--attention`, methods
whose generator has an attention map (those with `translate_with_attention`, e.g. U-GAT-IT) also write
it as <name>_attention.png. As a library: `Translator(workdir).translate(images, direction)`.

A label-conditioned method (one whose module has `target_labels_from_names`, i.e. StarGAN) takes
`--target`: label names to set (all others 0), e.g. `--target=Black_Hair,Male`; `--target=all` (the
default for such a method) writes a grid: the input, then its translation to each single-label target
(each attribute flipped from what the model's classifier reads in the input; a domain set).
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from translate import checkpoint, parallel, train, training, visualize

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class Translator:
  """The generator(s) of the latest checkpoint in a training workdir."""

  def __init__(self, workdir: str, step: int | None = None):
    self.config = train.load_config(workdir)
    self.method = train.get_method(self.config.method)
    ckpt = checkpoint.Checkpointer(workdir, meta={}, async_save=False)
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{workdir} holds no checkpoint to translate with.")
    meta = ckpt.stored_meta(step)
    if meta.get("method") != self.config.method:
      raise checkpoint.CheckpointMismatchError(
          f"{workdir}: the checkpoint is of method {meta.get('method')!r} but config.json says "
          f"{self.config.method!r}.")
    example = {k: np.zeros((1, *shape), np.float32) for k, shape in meta["image_shapes"].items()}
    self.image_shapes = meta["image_shapes"]
    mesh = parallel.make_mesh(1)
    optimizers = (self.method.make_optimizers(self.config, 1)
                  if hasattr(self.method, "make_optimizers")
                  else training.make_optimizers(self.config.optim, 1, self.method.GROUPS))
    target = jax.eval_shape(
        lambda: self.method.create_state(self.config, jax.random.PRNGKey(0), optimizers, example))
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=parallel.replicated(mesh)), target)
    self.state = ckpt.manager.restore(step, args=checkpoint.ocp.args.Composite(
        state=checkpoint.ocp.args.StandardRestore(target)))["state"]
    self.step = step
    ckpt.close()
    self.labelled = hasattr(self.method, "target_labels_from_names")
    if self.labelled:  # translate(config, state, images, target_labels)
      self._fn = jax.jit(functools.partial(self.method.translate, self.config))
      self._all = jax.jit(lambda state, x: self.method.translate_all(self.config, state, x)[1])
    else:
      self._fn = jax.jit(functools.partial(self.method.translate, self.config),
                         static_argnames="direction")
    self._attention_fn = None
    if hasattr(self.method, "translate_with_attention"):
      self._attention_fn = jax.jit(functools.partial(self.method.translate_with_attention,
                                                     self.config), static_argnames="direction")

  def channels(self, direction: str = "AtoB") -> int:
    domain = "A" if direction == "AtoB" else "B"
    shape = self.image_shapes.get(domain) or next(iter(self.image_shapes.values()))
    return int(shape[-1])

  def translate_to(self, images: np.ndarray, target: str | np.ndarray) -> np.ndarray:
    """Label-conditioned methods: images -> the target labels (names 'A,B' or a label vector)."""
    labels = (self.method.target_labels_from_names(self.config, target) if isinstance(target, str)
              else np.asarray(target, np.float32))
    labels = np.broadcast_to(labels, (len(images), labels.shape[-1]))
    return np.asarray(self._fn(self.state, jnp.asarray(images, jnp.float32), jnp.asarray(labels)))

  def translate_all(self, images: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Label-conditioned methods: (target names, (T, B, H, W, C)) for every single-label target."""
    out = self._all(self.state, jnp.asarray(images, jnp.float32))
    return self.method.target_names(self.config), np.asarray(out)

  def translate(self, images: np.ndarray, direction: str = "AtoB") -> np.ndarray:
    """float images in [-1, 1], NHWC with the input domain's channel count -> translated images."""
    return np.asarray(self._fn(self.state, jnp.asarray(images, jnp.float32), direction=direction))

  @property
  def has_attention(self) -> bool:
    return self._attention_fn is not None

  def check_attention(self) -> None:
    if not self.has_attention:
      raise ValueError(f"Method {self.config.method!r} has no generator attention map; translate "
                       "without --attention.")

  def translate_with_attention(self, images: np.ndarray, direction: str = "AtoB"):
    """(translated images, attention images in [-1, 1]) for methods that have an attention map."""
    self.check_attention()
    y, attention = self._attention_fn(self.state, jnp.asarray(images, jnp.float32),
                                      direction=direction)
    return np.asarray(y), np.asarray(attention)


def read_image(path: str, channels: int) -> np.ndarray:
  """An image file as float32 (H, W, channels) in [-1, 1]; grayscale <-> RGB converted as needed."""
  try:
    with Image.open(path) as img:
      img.load()
      mode = img.mode
      if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise ValueError(f"{path}: {mode} images (16-bit or float) are not supported; save it as 8-bit.")
      img = img.convert("L" if channels == 1 else "RGB")
      x = np.asarray(img, np.float32)
  except (OSError, SyntaxError) as e:
    raise ValueError(f"{path}: not a readable image ({e}).") from None
  if x.ndim == 2:
    x = x[..., None]
  return x / 127.5 - 1.0


def list_inputs(path: str) -> list[str]:
  if os.path.isdir(path):
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
      raise ValueError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder.")
    return files
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file or folder.")
  return [path]


def _write_png(image: np.ndarray, path: str) -> None:
  """A [-1, 1] float (H, W, C) image as an 8-bit PNG (grey for one channel)."""
  y = np.clip((image + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  Image.fromarray(y[..., 0] if y.shape[-1] == 1 else y).save(path)


def translate_files(workdir: str, input_path: str, output_dir: str, direction: str = "AtoB",
                    target: str | None = None, attention: bool = False) -> list[str]:
  """Translates an image or a folder; returns the written paths (with `attention`, each translation
  is followed by its <name>_attention.png)."""
  translator = Translator(workdir)
  if target and not translator.labelled:
    raise ValueError(f"--target is for label-conditioned methods; {translator.config.method} "
                     f"translates by --direction.")
  if translator.labelled and target and target != "all":
    translator.method.target_labels_from_names(translator.config, target)  # bad names fail first
  if attention:
    translator.check_attention()  # before any file is written
  channels = translator.channels(direction)
  os.makedirs(output_dir, exist_ok=True)
  written = []
  for path in list_inputs(input_path):
    x = read_image(path, channels)
    h, w = x.shape[:2]
    if h % 4 or w % 4:
      raise ValueError(f"{path}: size {w}x{h} is not divisible by 4, which the generator needs; "
                       f"crop or resize it first.")
    name = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(output_dir, name + ".png")
    if translator.labelled and (not target or target == "all"):
      names, ys = translator.translate_all(x[None])
      columns = {"input": x[None], **{n: y for n, y in zip(names, ys)}}
      Image.fromarray(visualize.make_grid(columns)).save(out)
      written.append(out)
      continue
    if translator.labelled:
      y = translator.translate_to(x[None], target)[0]
    elif attention:
      y, heat = translator.translate_with_attention(x[None], direction)
      y, heat = y[0], heat[0]
    else:
      y = translator.translate(x[None], direction)[0]
    _write_png(y, out)
    written.append(out)
    if attention:
      out = os.path.join(output_dir, name + "_attention.png")
      _write_png(heat, out)
      written.append(out)
  return written


def main(argv):
  from absl import flags
  del argv
  FLAGS = flags.FLAGS
  written = translate_files(FLAGS.workdir, FLAGS.input, FLAGS.output, FLAGS.direction,
                            FLAGS.target or None, attention=FLAGS.attention)
  print(f"Wrote {len(written)} image(s) to {FLAGS.output}")


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints).")
  flags.DEFINE_string("input", None, "An image file or a folder of images.")
  flags.DEFINE_string("output", None, "Output folder for the translated PNGs.")
  flags.DEFINE_enum("direction", "AtoB", ["AtoB", "BtoA"], "Which generator to use.")
  flags.DEFINE_bool("attention", False, "Also write the generator's attention map as "
                    "<name>_attention.png (methods with one, e.g. U-GAT-IT).")
  flags.DEFINE_string("target", "", "Label-conditioned methods (StarGAN): label names to set, e.g. "
                      "Black_Hair,Male, or 'all' (default) for a grid of every single-label target.")
  flags.mark_flags_as_required(["workdir", "input", "output"])
  app.run(main)
