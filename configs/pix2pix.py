"""pix2pix (Isola et al. 2017) with the reference defaults of pytorch-CycleGAN-and-pix2pix.

    python -m translate.train --config=configs/pix2pix.py:folder --config.data.path=/data/facades ...
    python -m translate.train --config=configs/pix2pix.py:facades --workdir=runs/facades

Presets: `folder` (train/test folders of A|B side-by-side images, facades style; `facades`: the
same, labels B -> photos A), the tfds `cycle_gan/*` names (unpaired data: only for smoke tests, pix2pix
needs pairs). `,tiny` after a preset (or `tiny` alone: folder) shrinks it for tests: TINY_MODEL widths,
32 px, batch 4, no evaluation.
"""
import ml_collections

from translate import config_base

PRESETS = config_base.DATA_PRESETS
# The `tiny` modifier's networks: a U-Net for 32 px, width 4, a one-layer PatchGAN.
TINY_MODEL = dict(netG="unet_32", ngf=4, netD="n_layers", ndf=4, n_layers_D=1)


def get_config(arg: str = "folder") -> ml_collections.ConfigDict:
  a = config_base.parse_arg(arg, PRESETS, default="folder", tiny_preset="folder")
  c = config_base.base_config("pix2pix")
  c.model = ml_collections.ConfigDict(dict(
      netG="unet_256", ngf=64, netD="basic", ndf=64, n_layers_D=3, num_D=3,
      norm="batch", no_dropout=False, init_type="normal", init_gain=0.02, gan_mode="vanilla"))
  c.loss = ml_collections.ConfigDict(dict(lambda_L1=100.0))
  c.data.direction = "BtoA" if a.preset == "facades" else "AtoB"  # facades: labels (B) -> photos (A)
  config_base.apply_data_preset(c, "folder" if a.preset == "facades" else a.preset, paired=True)
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
  return c.lock()  # a mistyped key fails, also when configs are built in Python
