"""Conditional GAN (Mirza & Osindero 2014) on the embedded MNIST digits.

    python -m translate.train --config=configs/cgan.py --workdir=runs/cgan
    python -m translate.train --config=configs/cgan.py:dcgan --workdir=runs/cgan_conv
    python -m translate.generate --workdir=runs/cgan --class=3 --num=64 --output=threes.png

Presets: `mnist` (default): the paper's MLP G and maxout D at 28x28; `dcgan`: a small conv G with
class-conditional batch norm and a projection D at 32x32. `,tiny` after a preset (or `tiny` alone:
mnist) shrinks it for tests: TINY_MODEL widths at the preset's own size, batch 4, no evaluation.

The paper's recipe (Sec. 4.1): z 100-d uniform on [0, 1]^100; G 200 (z) + 1000 (y) ReLU -> 1200 ReLU ->
784 sigmoid; D maxout 240x5 (x), 50x5 (y) -> 240x4 -> sigmoid; dropout 0.5 in both; SGD, batch 100,
lr 0.1 decayed exponentially (factor 1.00004 per step) to 1e-6, momentum 0.5 rising to 0.7; stopped on
validation log-likelihood. Here: the same nets (tanh output for [-1, 1] images), Adam (lr 2e-4,
b1 0.5: the DCGAN setting, stable without the paper's schedules), batch 100, sized to train in a few
minutes on 2 CPU cores.

Against mode collapse (not in the paper): z ~ N(0, I) instead of U(0, 1), LeakyReLU (0.2) instead of
ReLU in G's three hidden layers (a small architecture change), and D's joint layer also gets the
within-class minibatch standard deviation of its x features (Karras et al. 2018; one extra input).

Measured (default preset, 5000 steps, 2 shared CPU cores, ~20 min under load with evaluations):
class_acc 0.02 / 0.20 / 0.45 / 0.69 / 0.82 and class_div 0.49 / 0.59 / 0.73 / 0.78 / 0.78 at steps
1000-5000 (class_div 1.0 = as varied as real test digits). Samples are varied, mostly the right
class, still speckled. Without the minibatch std: class_acc 0.76, class_div 0.67 at step 5000.
With the paper's ReLU G the generator ignores z whatever the recipe (short runs, same class_div
formula on 1000 samples): class_div at step 1000 was 0.007
(U(0, 1) z; class_acc 1.0 only at 5000, one image per class), 0.03 (N(0, I) z), 0.07 (+ g_dropout 0,
d_real_target 0.9), 0.01 (no dropout in G or D), 0.10 (+ minibatch std); LeakyReLU gave 0.45
(0.45 with the minibatch std too, and class_acc 0.23 vs 0.07). No bug was found: z and the dropout
masks are fresh every step, and z and y are embedded separately, then joined, as in the paper. The
`dcgan` preset (batch 64) ran at ~1.5 steps/s and had not learned digits by step 800.
"""
import ml_collections

from translate import config_base

PRESETS = ("mnist", "dcgan")
# The `tiny` modifier's networks, both archs (mlp: z/y/joint layers and maxout pieces; dcgan: ngf/ndf).
TINY_MODEL = dict(z_dim=8, g_z_hidden=8, g_y_hidden=8, g_joint_hidden=16, d_x_units=8, d_x_pieces=3,
                  d_y_units=4, d_y_pieces=2, d_joint_units=8, d_joint_pieces=2, ngf=4, ndf=4)


def model_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      arch="mlp",  # 'mlp' (Mirza & Osindero) | 'dcgan' (conv G with conditional BN, projection D)
      z_dim=100, z_dist="normal",  # 'uniform' on [0, 1]^z_dim (the paper) | 'normal'
      g_z_hidden=200, g_y_hidden=1000, g_joint_hidden=1200, g_dropout=0.5,
      g_leaky_slope=0.2,  # 0: the paper's ReLU G (collapses, see above); > 0: LeakyReLU
      d_x_units=240, d_x_pieces=5, d_y_units=50, d_y_pieces=5, d_joint_units=240,
      d_joint_pieces=4, d_dropout=0.5,
      d_minibatch_std=True,  # D's joint layer also sees the within-class spread of its batch
      d_real_target=1.0,  # D's BCE target for real pairs; 0.9 = one-sided label smoothing
      ngf=64, ndf=64,  # widths of the dcgan nets
      init_type="default", init_gain=0.02))  # layers.kernel_init names; 'default' = torch's Linear


def gan_config(method: str, arg: str) -> ml_collections.ConfigDict:
  """The config of the 'gan'/'cgan' methods (they differ only in whether y is used), unlocked."""
  a = config_base.parse_arg(arg, PRESETS, default="mnist", tiny_preset="mnist")
  c = config_base.base_config(method)
  c.data = ml_collections.ConfigDict(dict(
      source="mnist",  # the 4500 / 500 MNIST digits of translate.data.digits (no download)
      image_size=28,  # 28: MNIST's own size (MLP nets); 32: padded as in the digits data (dcgan)
      max_dataset_size=0))  # 0 = all
  c.model = model_config()
  c.batch_size = 100  # the paper's mini-batch
  c.optim.update(lr=2e-4, b1=0.5, b2=0.999, n_epochs=100, n_epochs_decay=0, lr_policy="constant")
  c.num_train_steps = 5000  # ~110 epochs of 4500 digits
  c.samples_per_class = 8  # columns of the sample grid (a row per class)
  c.eval_mode = True  # generate without dropout, with running BN statistics
  c.eval.metrics = ("class_acc", "class_div") if method == "cgan" else ()
  c.eval.max_images = 1000  # class_acc: 100 generated digits per class
  c.log_every, c.sample_every, c.checkpoint_every, c.eval_every = 100, 500, 1000, 1000
  if a.preset == "dcgan":
    c.data.image_size = 32
    c.model.update(arch="dcgan", ngf=32, ndf=32, init_type="normal")
    c.batch_size = 64
    c.num_train_steps = 3000
  if a.tiny:
    config_base.make_tiny(c, **TINY_MODEL)
    c.samples_per_class = 3
  return c


def get_config(arg: str = "mnist") -> ml_collections.ConfigDict:
  return gan_config("cgan", arg).lock()
