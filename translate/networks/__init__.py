"""Networks. `define_G` / `define_D` build the CycleGAN/pix2pix networks by the reference's names.

    G = define_G('resnet_9blocks', norm='instance')      # CycleGAN
    D = define_D('basic', norm='instance')                # 70x70 PatchGAN
    variables = G.init({'params': key}, x_nhwc)          # x in [-1, 1], any channel count
    y = G.apply(variables, x_nhwc)                        # eval; train=True for dropout/batch stats

The input channel count (the reference's `input_nc`) is taken from the input at `init`. Weights are
initialised as the reference's `init_weights(net, init_type, init_gain)` (which upstream applies in
`BaseModel.setup()`): conv/linear weights from `layers.kernel_init`, biases 0, BatchNorm weight
~ N(1, init_gain). U-GAT-IT and StarGAN networks live in their own modules.
"""
from __future__ import annotations

import re

import flax.linen as nn

from translate.networks.patchgan import (MultiscaleDiscriminator, NLayerDiscriminator,
                                         PixelDiscriminator)
from translate.networks.resnet import ResnetBlock, ResnetGenerator
from translate.networks.unet import UnetGenerator

GENERATORS = ("resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256")
# Besides the reference names, any `resnet_<n>blocks` and `unet_<size>` (size = 2**num_downs, >= 32)
# is accepted: small images (the embedded 32x32 digits, tests) need fewer blocks and levels.
_RESNET = re.compile(r"^resnet_(\d+)blocks$")
_UNET = re.compile(r"^unet_(\d+)$")
DISCRIMINATORS = ("basic", "n_layers", "pixel", "multiscale")


def define_G(netG: str, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
             use_dropout: bool = False, init_type: str = "normal",
             init_gain: float = 0.02) -> nn.Module:
  """Generator by the reference's `--netG` name."""
  common = dict(output_nc=output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout,
                init_type=init_type, init_gain=init_gain)
  resnet, unet = _RESNET.match(netG), _UNET.match(netG)
  if resnet:
    return ResnetGenerator(n_blocks=int(resnet.group(1)), **common)
  if unet:
    size = int(unet.group(1))
    num_downs = size.bit_length() - 1
    if size >= 32 and size == 2**num_downs:
      return UnetGenerator(num_downs=num_downs, **common)
  raise ValueError(f"Unknown generator {netG!r}; expected one of {GENERATORS}, or resnet_<n>blocks, "
                   f"or unet_<size> with size a power of 2 >= 32.")


def define_D(netD: str, ndf: int = 64, n_layers_D: int = 3, norm: str = "batch",
             init_type: str = "normal", init_gain: float = 0.02, num_D: int = 3) -> nn.Module:
  """Discriminator by the reference's `--netD` name, plus pix2pixHD's 'multiscale' (`num_D` scales of
  an `n_layers_D` PatchGAN). 'basic' is the 70x70 PatchGAN (n_layers=3, `n_layers_D` ignored)."""
  init = dict(init_type=init_type, init_gain=init_gain)
  if netD == "basic":
    return NLayerDiscriminator(ndf=ndf, n_layers=3, norm=norm, **init)
  if netD == "n_layers":
    return NLayerDiscriminator(ndf=ndf, n_layers=n_layers_D, norm=norm, **init)
  if netD == "pixel":
    return PixelDiscriminator(ndf=ndf, norm=norm, **init)
  if netD == "multiscale":
    return MultiscaleDiscriminator(num_D=num_D, ndf=ndf, n_layers=n_layers_D, norm=norm, **init)
  raise ValueError(f"Unknown discriminator {netD!r}; expected one of {DISCRIMINATORS}.")


__all__ = [
    "GENERATORS", "DISCRIMINATORS", "define_G", "define_D", "ResnetGenerator", "ResnetBlock",
    "UnetGenerator", "NLayerDiscriminator", "PixelDiscriminator", "MultiscaleDiscriminator",
]
