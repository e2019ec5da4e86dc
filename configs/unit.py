"""UNIT (Liu, Breuel & Kautz 2017) with the reference defaults of mingyuliutw/UNIT (master) configs.

    python -m translate.train --config=configs/unit.py:summer2winter --workdir=runs/unit_s2w
    python -m translate.train --config=configs/unit.py:edges2shoes --config.data.path=/data/edges2shoes \
        --workdir=runs/unit_e2s
    python -m translate.train --config=configs/unit.py:digits --workdir=runs/unit_digits
    python -m translate.translate --workdir=runs/unit_s2w --direction=BtoA --input=x.jpg --output=out/

Presets as configs/munit.py (edges2shoes / edges2handbags from side-by-side A|B folders split into
unpaired halves, summer2winter, folder, digits). `,tiny` shrinks a preset for tests.
"""
import ml_collections

from translate import config_base

PRESETS = ("edges2shoes", "edges2handbags", "summer2winter", "folder", "digits")
TINY_MODEL = dict(  # whole gen/dis dicts, locked like the config they are compared with
    gen=ml_collections.ConfigDict(dict(dim=4, activ="relu", n_downsample=2, n_res=1,
                                       pad_type="reflect")).lock(),
    dis=ml_collections.ConfigDict(dict(dim=4, norm="none", activ="lrelu", n_layer=2, gan_type="lsgan",
                                       num_scales=2, pad_type="reflect")).lock())


def _munit_config():
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).with_name("munit.py")
  spec = importlib.util.spec_from_file_location("configs_munit", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str = "summer2winter") -> ml_collections.ConfigDict:
  m = _munit_config()
  a = config_base.parse_arg(arg, PRESETS, default="summer2winter", tiny_preset="digits")
  c = config_base.base_config("unit")
  c.model = ml_collections.ConfigDict(dict(
      gen=dict(dim=64, activ="relu", n_downsample=2, n_res=4, pad_type="reflect"),
      dis=dict(dim=64, norm="none", activ="lrelu", n_layer=4, gan_type="lsgan", num_scales=3,
               pad_type="reflect"),
      init="kaiming", vgg_path=""))
  c.loss = ml_collections.ConfigDict(dict(gan_w=1.0, recon_x_w=10.0, recon_kl_w=0.01,
                                          recon_x_cyc_w=10.0, recon_kl_cyc_w=0.01, vgg_w=0.0))
  m.optim_config(c)
  m.apply_preset(c, a.preset)
  if a.preset == "digits":
    c.model.gen.update(dim=16, n_res=2)
    c.model.dis.update(dim=16, n_layer=3)
    c.optim.lr = 2e-4  # as MUNIT's digits preset
    c.num_train_steps = 800
    c.checkpoint_every = c.sample_every = 200
  if a.tiny:
    m.tiny(c, TINY_MODEL)
  return c.lock()
