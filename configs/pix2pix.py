"""pix2pix (Isola et al. 2017) with the reference defaults of pytorch-CycleGAN-and-pix2pix.

    python -m translate.train --config=configs/pix2pix.py:folder --config.data.path=/data/facades ...
    python -m translate.train --config=configs/pix2pix.py:facades --workdir=runs/facades

Presets: `folder` (train/test folders of A|B side-by-side images, facades style), the tfds
`cycle_gan/*` names (unpaired data: only for smoke tests, pix2pix needs pairs).
"""
import ml_collections

from translate import config_base


def get_config(arg: str = "folder") -> ml_collections.ConfigDict:
  c = config_base.base_config("pix2pix")
  c.model = ml_collections.ConfigDict(dict(
      netG="unet_256", ngf=64, netD="basic", ndf=64, n_layers_D=3, num_D=3,
      norm="batch", no_dropout=False, init_type="normal", init_gain=0.02, gan_mode="vanilla"))
  c.loss = ml_collections.ConfigDict(dict(lambda_L1=100.0))
  c.data.direction = "BtoA" if arg == "facades" else "AtoB"  # facades: labels (B) -> photos (A)
  preset = "folder" if arg in ("", "facades") else arg
  config_base.apply_data_preset(c, preset, paired=True)
  return c.lock()  # a mistyped key fails, also when configs are built in Python
