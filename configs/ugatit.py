"""U-GAT-IT (Kim, Kim, Kang & Lee 2020) with the defaults of znxlwm/UGATIT-pytorch (`main.py`).

    python -m translate.train --config=configs/ugatit.py:selfie2anime --config.data.path=/data/selfie2anime \
        --workdir=runs/s2a
    python -m translate.train --config=configs/ugatit.py:horse2zebra_light --workdir=runs/h2z_light
    python -m translate.train --config=configs/ugatit.py:digits --workdir=runs/ugatit_digits

Presets: `selfie2anime`, `cat2dog` and `folder` (trainA/trainB/testA/testB folders: the data sets of
the paper are not in tfds), `horse2zebra` (tfds cycle_gan/horse2zebra), `digits` (the embedded default,
no download). Append `_light` to any of them for the reference's `--light True` model (the gamma/beta
MLP sees the channel means of the bottleneck instead of all of it: far fewer parameters, and any image
size divisible by 4), e.g. `selfie2anime_light`. `,tiny` after a preset (or `tiny` alone: digits)
shrinks it for tests: TINY_MODEL widths, 32 px, batch 4, no evaluation.

The reference trains for `--iteration` steps (1,000,000 by default), not epochs: `num_train_steps`
holds that count here. `optim.lr_policy='linear'` is its `--decay_flag True`: the learning rate falls
linearly to zero over the second half of the run; 'constant' keeps it. The decay is a function of
num_train_steps, so resume a run with the num_train_steps it started with (as the reference's
--resume needs the same --iteration).

Augmentation as the reference's training transform (RandomHorizontalFlip, Resize(img_size + 30),
RandomCrop(img_size)) on the engine's options: preprocess='resize_and_crop', load_size=img_size + 30,
crop_size=img_size, flips on. The reference resizes bilinearly, the engine's pipeline bicubically (as
CycleGAN). Test images are resized to img_size (the engine's test phase), as the reference's test
transform does. The image size of the networks (`img_size`) is `data.crop_size`.
"""
import ml_collections

from translate import config_base

DATA_PRESETS = ("selfie2anime", "cat2dog", "horse2zebra", "folder", "digits")
# The paper's data sets (selfie2anime, cat2dog, ...) are distributed as folders, not through tfds.
FOLDER_PRESETS = ("selfie2anime", "cat2dog")
PRESETS = DATA_PRESETS + tuple(f"{p}_light" for p in DATA_PRESETS)
# The `tiny` modifier's networks: width 4, one residual block; discriminators shallow enough for 32 px.
TINY_MODEL = dict(ngf=4, n_res=1, ndf=4, n_layers_global=4, n_layers_local=3)


def get_config(arg: str = "selfie2anime") -> ml_collections.ConfigDict:
  a = config_base.parse_arg(arg, PRESETS, default="selfie2anime", tiny_preset="digits")
  light = a.preset.endswith("_light")
  preset = a.preset[:-len("_light")] if light else a.preset
  c = config_base.base_config("ugatit")
  c.model = ml_collections.ConfigDict(dict(
      ngf=64,  # the reference's --ch (generators and discriminators share it there)
      n_res=4,  # residual blocks in the encoder and, with AdaLIN, in the decoder
      light=light,
      ndf=64,
      n_layers_global=7,  # global discriminators (disGA, disGB)
      n_layers_local=5,  # local discriminators (disLA, disLB)
      init_type="default", init_gain=0.02))  # 'default': torch's layer init, as the reference
  c.loss = ml_collections.ConfigDict(dict(
      adv_weight=1.0, cycle_weight=10.0, identity_weight=10.0, cam_weight=1000.0))
  c.optim.update(lr=1e-4, b1=0.5, b2=0.999, weight_decay=1e-4, lr_policy="linear")
  c.num_train_steps = 1_000_000  # --iteration
  c.log_every, c.sample_every, c.checkpoint_every = 100, 1000, 10000

  config_base.apply_data_preset(c, "folder" if preset in FOLDER_PRESETS else preset, paired=False)
  if preset != "digits":
    img_size = 256
    c.data.update(preprocess="resize_and_crop", load_size=img_size + 30, crop_size=img_size,
                  no_flip=False)
  else:
    # Same data as the CycleGAN digits preset (grey in and out, 32x32, no flips: a mirrored digit is
    # not a digit), run length and batch, so their label accuracies compare. Small widths to train in
    # minutes on a CPU. At 32 px the reference's discriminator depths do not fit (n_layers 7 needs
    # 96 px): the global one keeps the deepest that fits (a 3x3 attention map), the local one sees
    # 7x7 patches of the image's 32x32, about the paper's local/global ratio.
    c.data.update(input_nc=1, output_nc=1)
    c.model.update(ngf=16, n_res=3, ndf=16, n_layers_global=5, n_layers_local=4)
    c.batch_size = 16
    c.optim.lr = 2e-4
    c.num_train_steps = 600
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 25, 100, 200, 200
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
  return c.lock()  # a mistyped key fails, also when configs are built in Python
