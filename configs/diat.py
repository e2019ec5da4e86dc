"""DIAT (Li, Zuo & Zhang 2016, "Deep Identity-aware Transfer of Facial Attributes"): one attribute.

    python -m translate.train --config=configs/diat.py:digits --workdir=runs/diat_digits
    python -m translate.train --config=configs/diat.py:celeba --config.data.attribute=Smiling \
        --workdir=runs/diat_smiling
    # second stage, the enhancement network E, from the trained transform network:
    python -m translate.train --config=configs/diat.py:celeba --config.data.attribute=Smiling \
        --config.stage=enhance --config.init_from=runs/diat_smiling --workdir=runs/diat_smiling_E

Presets:
  celeba  tfds celeb_a; `data.attribute` one of its 40 attribute names (default Eyeglasses; checked at
          start-up): A = faces without it, B = faces with it; centre crop 178, resized to 128 px (as
          StarGAN's CelebA pipeline); the paper-sized networks.
  folder  data.path/{train,test}/<domain>/ with two domain folders; `data.attribute` names the folder
          of the images WITH the attribute.
  digits  the embedded styled digits (no download), attribute Bold (or Italic, Serif, Inverted):
          grey 32 px, small widths, minutes on a CPU; evaluated by target_acc and label_acc (the
          attribute was transferred / the digit was kept).
Identity loss: loss.identity = 'adaptive' (DIAT-A, D's features, the default) | 'pretrained' (DIAT, a
frozen network: loss.f, loss.f_path, VGG16 by default) | 'none' (ablation); layers loss.id_layers with
weights loss.id_weights. `,tiny` after a preset (or `tiny` alone: digits) shrinks it for tests.
"""
import ml_collections

from translate import config_base

PRESETS = ("celeba", "folder", "digits")
# The `tiny` modifier's networks: width 4, one residual block, 2 D convs, one E layer.
TINY_MODEL = dict(ngf=4, n_blocks=1, ndf=4, n_layers_D=2, e_ngf=4, e_layers=1)


def get_config(arg: str = "celeba") -> ml_collections.ConfigDict:
  a = config_base.parse_arg(arg, PRESETS, default="celeba", tiny_preset="digits")
  preset = a.preset
  c = config_base.base_config("diat")
  c.stage = "transform"  # 'transform' (T) | 'enhance' (E, from init_from's trained T)
  c.init_from = ""  # the enhancement stage: workdir of a trained transform stage
  c.data = ml_collections.ConfigDict(dict(
      source="celeba",  # celeba | folder | digits (translate/data/attribute_pairs.py)
      attribute="Eyeglasses",  # images without it (A) -> with it (B)
      tfds_name="celeb_a", data_dir="", celeba_crop_size=178,
      path="", folder_crop_size=256,
      image_size=128, channels=3, no_flip=False, serial_batches=False, shuffle_buffer=1000,
      max_dataset_size=0))
  c.model = ml_collections.ConfigDict(dict(
      ngf=32, n_blocks=5, norm="instance", upsample="deconv",  # T: 3 conv, 5 res blocks, 2 deconv, 1 conv
      ndf=64, n_layers_D=5, d_norm="none",  # D: 4x4 stride-2 convs, dense logit
      e_ngf=32, e_layers=3,  # E: residual refiner (enhancement stage)
      init_type="normal", init_gain=0.02))  # weights N(0, 0.02) (layers.kernel_init)
  c.loss = ml_collections.ConfigDict(dict(
      gan_mode="vanilla",
      identity="adaptive",  # adaptive (DIAT-A) | pretrained (DIAT) | none
      # layers of f and their weights; () = conv1, conv2 of D (adaptive) / relu1_2, relu2_2 of VGG
      # (pretrained), weight 1 each
      id_layers=(), id_weights=(),
      f="vgg16", f_path="",  # loss.identity='pretrained': translate.pretrained network and weights
      lambda_id=1.0,
      lambda_content=10.0))  # enhancement stage: L1 to T's output
  c.optim.update(lr=2e-4, b1=0.5, b2=0.999)
  c.optim.decay_fraction = 0.5
  c.batch_size = 16
  c.num_train_steps = 100000
  c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 100, 1000, 5000, 0
  if preset == "folder":
    c.data.update(source="folder", attribute="")
  elif preset == "digits":
    c.data.update(source="digits", attribute="Bold", image_size=32, channels=1, no_flip=True)
    c.model.update(ngf=16, ndf=16, n_layers_D=3, e_ngf=16, e_layers=2)
    # The adaptive identity loss is small in value (D's features at N(0, 0.02) weights): lambda_id 30
    # (one measured point: 300 steps, 300 test digits, target_acc 0.97, label_acc 0.997).
    # Measured, 600 steps, the 468 styled test digits without Bold (2 CPU cores shared with 4 other
    # jobs, load 8-16; benchmarks/diat_vs_stargan.py gives the table):
    #   DIAT-A (this preset): target_acc 0.962, label_acc 0.998 (19 min wall, contended);
    #   loss.identity=none: target_acc 0.000, label_acc 0.113: T ignores its input and draws one
    #     pattern (the attribute judge read it as Bold at step 400: 1.000 / 0.122);
    #   loss.identity=pretrained (VGG16 relu1_2, relu2_2): lambda_id 0.02: 0.951 / 1.000 (13 min);
    #     lambda_id 0.002: 0.972 / 0.327 (the digit drifts after step 400);
    #   StarGAN's digits preset on Bold alone (data.digits_attrs=Bold), 1500 steps: 1.000 / 1.000;
    #   the digit judge reads the untranslated sources at 1.000, the attribute judge at 0.000.
    c.loss.lambda_id = 30.0
    c.batch_size = 32
    c.num_train_steps = 600
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 50, 200, 200, 200
    c.eval.metrics = ("target_acc",)  # gives target_acc and label_acc
    c.eval.max_images = 0
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
    c.data.image_size = 32
    c.num_train_steps = 4
  return c.lock()  # a mistyped key fails, also when configs are built in Python
