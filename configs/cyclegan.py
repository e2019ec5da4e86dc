"""CycleGAN (Zhu et al. 2017) with the reference defaults of pytorch-CycleGAN-and-pix2pix.

    python -m translate.train --config=configs/cyclegan.py:horse2zebra --workdir=runs/h2z
    python -m translate.train --config=configs/cyclegan.py:folder --config.data.path=/data/x2y ...
    python -m translate.train --config=configs/cyclegan.py:digits --workdir=runs/digits

Presets: the tfds `cycle_gan/*` names (horse2zebra, apple2orange, monet2photo, ...), `folder`
(trainA/trainB/testA/testB) and `digits` (the embedded default, no download). `,tiny` after a preset
(or `tiny` alone: digits) shrinks it for tests: TINY_MODEL widths, 32 px, batch 4, no evaluation.
"""
import ml_collections

from translate import config_base

PRESETS = config_base.DATA_PRESETS
# The `tiny` modifier's networks: two residual blocks, width 4, a one-layer PatchGAN.
TINY_MODEL = dict(netG="resnet_2blocks", ngf=4, netD="n_layers", ndf=4, n_layers_D=1)


def get_config(arg: str = "horse2zebra") -> ml_collections.ConfigDict:
  a = config_base.parse_arg(arg, PRESETS, default="horse2zebra", tiny_preset="digits")
  c = config_base.base_config("cyclegan")
  c.model = ml_collections.ConfigDict(dict(
      netG="resnet_9blocks", ngf=64, netD="basic", ndf=64, n_layers_D=3, num_D=3,
      norm="instance", no_dropout=True, init_type="normal", init_gain=0.02, gan_mode="lsgan"))
  c.loss = ml_collections.ConfigDict(dict(
      lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5, pool_size=50))
  config_base.apply_data_preset(c, a.preset, paired=False)
  if a.preset == "digits":
    # Sized to train in minutes on 2 CPU cores at 32x32 (see README). Both domains are read as grey:
    # MNIST has no colour, so with RGB A the cycle loss makes G_A hide the colours in its output;
    # measured on the embedded digits, grey A reaches a higher label-preserving accuracy.
    c.data.update(input_nc=1, output_nc=1)
    c.model.update(netG="resnet_6blocks", ngf=16, netD="n_layers", ndf=16, n_layers_D=2)
    c.batch_size = 16
    c.optim.update(lr=5e-4, n_epochs=1, n_epochs_decay=1)
    c.num_train_steps = 600
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 25, 100, 200, 200
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
  return c.lock()  # a mistyped key fails, also when configs are built in Python
