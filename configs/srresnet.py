"""SRResNet (Ledig et al. 2017): the SRGAN generator trained on the MSE; x4 super-resolution.

    python -m translate.train --config=configs/srresnet.py:photos --workdir=runs/srresnet
    python -m translate.train --config=configs/srresnet.py:div2k --workdir=runs/srresnet_div2k
    python -m translate.train --config=configs/srresnet.py:folder --config.data.path=/data/DIV2K \
        --config.data.test_path=/data/Set5 --workdir=runs/srresnet_div2k
    python -m translate.upscale --workdir=runs/srresnet --input=photo.png --output=out/ --tile=512

Presets (the SR data kind, `translate.data.sr`: HR images, LR = MATLAB bicubic / scale):
  photos  the embedded default: the photos that ship inside scikit-image and scikit-learn (15 train,
          3 held-out test photos), no download. Sized for CPUs (see the preset's comment).
  div2k   tfds `div2k/bicubic_x4` (800 train HR images; the 100 'validation' images test); LR made
          here by MATLAB bicubic from HR, or the builder's own LR with --config.data.given_lr=True.
  folder  HR images in data.path/train and data.path/test, or data.test_path (a Set5, Set14 or
          BSD100 folder of HR images).
Paper settings (div2k, folder): B = 16 residual blocks, 64 channels, 96x96 HR crops, batch 16, Adam
1e-4 (b1 0.9), 10^6 updates. `,tiny` after a preset (or `tiny` alone: photos) shrinks it for tests:
8 channels, 1 block, 32 px crops, batch 4, test images cut to 64x64, no evaluation.
"""
import ml_collections

from translate import config_base

PRESETS = ("photos", "div2k", "folder")
TINY_MODEL = dict(n_channels=8, n_blocks=1)


def sr_data_config() -> ml_collections.ConfigDict:
  """Fields of the SR data kind (translate/data/sr.py)."""
  return ml_collections.ConfigDict(dict(
      source="photos",  # 'photos' | 'folder' | 'tfds'
      path="",  # folder: HR images in path/train and path/test
      test_path="",  # folder: the test HR images elsewhere (Set5, Set14, BSD100)
      tfds_name="div2k/bicubic_x4", data_dir="", tfds_train="train", tfds_test="validation",
      given_lr=False,  # tfds: use the builder's LR images instead of MATLAB bicubic of HR
      scale=4,
      crop_size=96,  # HR crop (the paper's 96x96; LR crops are crop_size / scale)
      augment="dihedral",  # 'dihedral' (8 flips/rotations) | 'flip' | 'none'
      max_dataset_size=0,  # first N images (0 = all)
      test_max_size=0,  # > 0: test images cut to their top-left N x N (quick evaluations)
  ))


def base_sr_config(method: str, arg: str):
  a = config_base.parse_arg(arg, PRESETS, default="photos", tiny_preset="photos")
  c = config_base.base_config(method)
  c.model = ml_collections.ConfigDict(dict(
      large_kernel_size=9, small_kernel_size=3, n_channels=64, n_blocks=16, scaling_factor=4))
  c.data = sr_data_config()
  # Adam b1 0.9; lr times lr_decay_factor from step lr_decay_step on (0: constant).
  c.optim.update(lr=1e-4, b1=0.9, b2=0.999)
  c.optim.lr_decay_step = 0
  c.optim.lr_decay_factor = 0.1
  c.batch_size = 16
  c.num_train_steps = 1_000_000
  c.eval.crop_border = 4  # the scale: the SR tables crop that many pixels on each side
  c.eval.batch_size = 1  # whole test images of different sizes
  c.eval.metrics = ("psnr_y", "ssim_y", "lpips", "bicubic")
  c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 100, 5000, 10000, 50000
  if a.preset == "div2k":
    c.data.update(source="tfds", tfds_name="div2k/bicubic_x4")
  elif a.preset == "folder":
    c.data.source = "folder"
  return a, c


def get_config(arg: str = "photos") -> ml_collections.ConfigDict:
  a, c = base_sr_config("srresnet", arg)
  if a.preset == "photos":
    # Sized for 2 CPU cores: n = 32, B = 8, 64 px crops, batch 16, lr 5e-4 (the paper: 1e-4 for 10^6
    # updates), 1200 steps: 13 min 13 s wall with the final evaluation on the 2-core machine (Nov 30,
    # lightly loaded; 1.4-2.5 steps/s, the process used about one core).
    # Held-out photos (chelsea, china, coffee; x4, Y, 4 px border): PSNR-Y 27.18 dB vs bicubic 27.06,
    # SSIM-Y 0.748 vs 0.736, LPIPS 0.371 vs 0.346 (docs/figures/srgan_photos.png). MSE on training
    # crops was still falling (0.039 at step 100, 0.016 at 500, 0.011 at 1200; bicubic 0.0115).
    c.model.update(n_channels=32, n_blocks=8)
    c.data.crop_size = 64
    c.batch_size = 16
    c.optim.lr = 5e-4
    c.num_train_steps = 1200
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 50, 400, 400, 0
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
    c.data.update(crop_size=32, test_max_size=64)
    c.num_train_steps = 4
  return c.lock()
