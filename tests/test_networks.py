"""CycleGAN/pix2pix networks: shapes of every define_G/define_D name, the U-Net size check, dropout and
batch-norm behaviour in train vs eval, weight-init statistics, and converter key/shape checks."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from translate import convert, networks
from translate.networks import patchgan

# Keys of the 'unsafe_rbg' PRNG: XLA compiles threefry (the default) into a large graph for every
# parameter, which makes a jitted init of these nets 10x slower to compile on CPU. The networks do not
# care which PRNG draws their weights.
def _key(seed):
  return jax.random.key(seed, impl="unsafe_rbg")


KEY = _key(0)


def _init(module, x):
  # jitted: op-by-op (eager) init of these nets is many times slower than compiling them
  return jax.jit(module.init)(KEY, x)


def _apply(module, variables, x, rngs=None, **kwargs):
  return jax.jit(functools.partial(module.apply, **kwargs))(variables, x, rngs=rngs)


def _shapes(module, x_shape, **kwargs):
  """Output shape(s) of init_with_output, without computing anything."""
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  out, _ = jax.eval_shape(lambda x: module.init_with_output(KEY, x, **kwargs), x)
  return jax.tree_util.tree_map(lambda a: a.shape, out)


@pytest.mark.parametrize("name, size", [("resnet_9blocks", 32), ("resnet_6blocks", 24),
                                        ("unet_128", 128), ("unet_256", 256)])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_define_G_shapes(name, size, norm):
  G = networks.define_G(name, output_nc=2, ngf=4, norm=norm)
  assert _shapes(G, (2, size, size, 5)) == (2, size, size, 2)


def test_define_G_output_range_and_unknown_name():
  G = networks.define_G("resnet_6blocks", ngf=4, norm="instance", init_gain=1.0)
  x = jax.random.uniform(KEY, (1, 16, 16, 3), minval=-1, maxval=1)
  y, _ = jax.jit(G.init_with_output)(KEY, x)
  assert y.shape == (1, 16, 16, 3)
  assert float(jnp.max(jnp.abs(y))) <= 1.0 and float(jnp.std(y)) > 0.1  # tanh, not collapsed
  with pytest.raises(ValueError, match="resnet_9blocks"):
    networks.define_G("densenet")
  with pytest.raises(ValueError, match="power of 2"):
    networks.define_G("unet_48")
  # beyond the reference names: resnet_<n>blocks and unet_<size>
  assert networks.define_G("resnet_2blocks").n_blocks == 2
  assert networks.define_G("unet_32").num_downs == 5
  with pytest.raises(ValueError, match="norm"):
    networks.define_G("unet_128", norm="group").init(KEY, jnp.zeros((1, 128, 128, 3)))


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_define_D_shapes(norm):
  assert _shapes(networks.define_D("basic", ndf=4, norm=norm), (2, 64, 64, 6)) == (2, 6, 6, 1)
  # 256 px -> the 30x30 patch map of the 70x70 PatchGAN
  assert _shapes(networks.define_D("basic", ndf=4, norm=norm), (1, 256, 256, 3)) == (1, 30, 30, 1)
  assert _shapes(networks.define_D("n_layers", ndf=4, n_layers_D=2, norm=norm),
                 (2, 32, 32, 3)) == (2, 6, 6, 1)
  assert _shapes(networks.define_D("pixel", ndf=4, norm=norm), (2, 20, 24, 3)) == (2, 20, 24, 1)
  # multiscale: 64, 32, 16 px inputs of a 2-layer PatchGAN -> 14, 6, 2
  shapes = _shapes(networks.define_D("multiscale", ndf=4, n_layers_D=2, norm=norm, num_D=3),
                   (2, 64, 64, 3))
  assert shapes == [(2, 14, 14, 1), (2, 6, 6, 1), (2, 2, 2, 1)]
  with pytest.raises(ValueError, match="basic"):
    networks.define_D("global")


def test_multiscale_downsample_excludes_padding():
  x = jnp.ones((1, 5, 5, 1))
  y = patchgan.downsample_avg(x)
  assert y.shape == (1, 3, 3, 1)
  np.testing.assert_allclose(y, 1.0)  # count_include_pad=True would give 4/9 in the corners
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  y = patchgan.downsample_avg(x)
  # corner window covers rows/cols {0, 1}: mean of 0, 1, 4, 5
  assert float(y[0, 0, 0, 0]) == pytest.approx(2.5)
  # centre window at (2, 2) covers rows/cols {1, 2, 3}
  assert float(y[0, 1, 1, 0]) == pytest.approx(np.mean([5, 6, 7, 9, 10, 11, 13, 14, 15]))
  # each scale has its own weights
  D = networks.define_D("multiscale", ndf=2, n_layers_D=1, norm="none", num_D=2)
  params = jax.eval_shape(lambda: D.init(KEY, jnp.zeros((1, 16, 16, 3))))["params"]
  assert sorted(params) == ["scale0", "scale1"]


def test_unet_size_error():
  G = networks.define_G("unet_128", ngf=2)
  with pytest.raises(ValueError, match=r"divisible by 2\*\*7 = 128.*96x128"):
    G.init(KEY, jnp.zeros((1, 96, 128, 3)))
  with pytest.raises(ValueError, match="num_downs"):
    networks.UnetGenerator(num_downs=4).init(KEY, jnp.zeros((1, 16, 16, 3)))


@pytest.mark.parametrize("make, x_shape", [
    (lambda: networks.define_G("resnet_6blocks", ngf=4, norm="instance", use_dropout=True),
     (2, 16, 16, 3)),
    # num_downs=6: one intermediate ngf*8 level, the only one that has dropout
    (lambda: networks.UnetGenerator(num_downs=6, ngf=2, norm="instance", use_dropout=True),
     (2, 64, 64, 3)),
])
def test_dropout_only_in_train(make, x_shape):
  G = make()
  x = jax.random.uniform(KEY, x_shape, minval=-1, maxval=1)
  variables = _init(G, x)
  eval_a = _apply(G, variables, x, rngs={"dropout": _key(1)})
  eval_b = _apply(G, variables, x, rngs={"dropout": _key(2)})
  np.testing.assert_array_equal(eval_a, eval_b)
  np.testing.assert_array_equal(eval_a, _apply(G, variables, x))
  train = jax.jit(functools.partial(G.apply, train=True))
  train_a = train(variables, x, rngs={"dropout": _key(1)})
  train_a2 = train(variables, x, rngs={"dropout": _key(1)})
  train_b = train(variables, x, rngs={"dropout": _key(2)})
  np.testing.assert_array_equal(train_a, train_a2)
  assert float(jnp.max(jnp.abs(train_a - train_b))) > 1e-4
  assert float(jnp.max(jnp.abs(train_a - eval_a))) > 1e-4
  # the same net without dropout has no randomness in train mode (instance norm: train == eval)
  plain = G.clone(use_dropout=False)
  np.testing.assert_allclose(_apply(plain, variables, x, train=True), eval_a, atol=1e-6)


def test_batch_norm_running_stats_update_only_in_train():
  D = networks.define_D("n_layers", ndf=4, n_layers_D=2, norm="batch")
  x = jax.random.normal(KEY, (3, 32, 32, 3))
  variables = _init(D, x)
  stats0 = variables["batch_stats"]
  # eval: running statistics used and left alone
  _, updates = _apply(D, variables, x, train=False, mutable=["batch_stats"])
  jax.tree_util.tree_map(np.testing.assert_array_equal, updates["batch_stats"], stats0)
  # train: batch statistics; the running ones move with torch's momentum 0.1 and unbiased variance
  _, state = _apply(D, variables, x, train=True, mutable=["batch_stats", "intermediates"],
                    capture_intermediates=True)
  conv1_out = np.asarray(state["intermediates"]["conv1"]["__call__"][0], np.float64)
  n = conv1_out.size // conv1_out.shape[-1]
  batch_mean = conv1_out.mean(axis=(0, 1, 2))
  batch_var = conv1_out.var(axis=(0, 1, 2)) * n / (n - 1)
  new = state["batch_stats"]["norm1"]
  np.testing.assert_allclose(new["mean"], 0.1 * batch_mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["var"], 0.9 + 0.1 * batch_var, rtol=1e-4, atol=1e-6)
  # train mode without a mutable collection still runs and changes nothing
  y_train = _apply(D, variables, x, train=True)
  y_eval = _apply(D, variables, x)
  assert float(jnp.max(jnp.abs(y_train - y_eval))) > 1e-3


def _leaves(tree, name):
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(tree))
  return {"/".join(k): np.asarray(v) for k, v in flat.items() if k[-1] == name}


def test_init_normal_statistics():
  G = networks.define_G("resnet_9blocks", ngf=8, norm="instance", init_type="normal", init_gain=0.02)
  params = _init(G, jnp.zeros((1, 16, 16, 3)))["params"]
  kernels = np.concatenate([k.ravel() for k in _leaves(params, "kernel").values()])
  assert kernels.size > 50_000
  assert abs(kernels.mean()) < 1e-3
  assert kernels.std() == pytest.approx(0.02, rel=0.03)
  biases = _leaves(params, "bias")
  assert len(biases) == 2 + 2 * 9 + 2 + 2  # instance norm: every conv has a bias
  assert all(np.all(b == 0) for b in biases.values())

  D = networks.define_D("basic", ndf=32, norm="batch", init_type="normal", init_gain=0.05)
  params = _init(D, jnp.zeros((1, 32, 32, 3)))["params"]
  scales = np.concatenate([s for s in _leaves(params, "scale").values()])
  assert scales.size == 64 + 128 + 256
  assert scales.mean() == pytest.approx(1.0, abs=0.01)
  assert scales.std() == pytest.approx(0.05, rel=0.15)
  assert all(np.all(b == 0) for b in _leaves(params, "bias").values())
  # batch norm: only the first and last conv carry a bias (the reference's use_bias rule)
  assert sorted(k.split("/")[0] for k in _leaves(params, "bias") if k.startswith("conv")) == \
      ["conv0", "conv_out"]


def test_init_fan_based_types_use_torch_fans():
  G = networks.define_G("resnet_6blocks", ngf=16, norm="batch", init_type="kaiming")
  params = _init(G, jnp.zeros((1, 16, 16, 3)))["params"]
  # Conv2d 16 -> 32, k3: fan_in = 16 * 9
  assert np.std(params["down0"]["kernel"]) == pytest.approx(np.sqrt(2 / (16 * 9)), rel=0.05)
  # ConvTranspose2d 64 -> 32, k3: torch's weight is (in, out, k, k) and its fan_in is out * 9
  assert np.std(params["up0"]["kernel"]) == pytest.approx(np.sqrt(2 / (32 * 9)), rel=0.05)
  G = networks.define_G("resnet_6blocks", ngf=16, norm="instance", init_type="xavier", init_gain=1.0)
  params = _init(G, jnp.zeros((1, 16, 16, 3)))["params"]
  k = params["block0"]["conv1"]["kernel"]  # 64 -> 64, k3
  assert np.std(k) == pytest.approx(np.sqrt(2 / (2 * 64 * 9)), rel=0.05)
  with pytest.raises(ValueError, match="init_type"):
    networks.define_G("resnet_6blocks", init_type="uniform").init(KEY, jnp.zeros((1, 16, 16, 3)))


# ----------------------------------------------------------------------------------------------------
# Converter: key names and shapes
# ----------------------------------------------------------------------------------------------------
def _patchgan_golden(golden_state_dict):
  state_dict, _ = golden_state_dict("pix2pix_patchgan_nlayer3_ndf8.npz")
  return dict(state_dict)


PATCHGAN_ARGS = dict(input_nc=6, ndf=8, n_layers=3, norm="batch")


def test_converter_missing_key(golden_state_dict):
  state_dict = _patchgan_golden(golden_state_dict)
  del state_dict["model.5.weight"]
  with pytest.raises(convert.StateDictError, match=r"missing key 'model\.5\.weight'.*\(32, 16, 4, 4\)"):
    convert.from_torch("patchgan", state_dict, **PATCHGAN_ARGS)


def test_converter_wrong_shape(golden_state_dict):
  state_dict = _patchgan_golden(golden_state_dict)
  state_dict["model.9.running_var"] = np.ones(32, np.float32)
  with pytest.raises(convert.StateDictError,
                     match=r"'model\.9\.running_var' has shape \(32,\), expected \(64,\)"):
    convert.from_torch("patchgan", state_dict, **PATCHGAN_ARGS)
  # constructor arguments that do not fit the checkpoint: ndf 4 instead of 8
  with pytest.raises(convert.StateDictError, match=r"'model\.0\.weight'.*expected \(4, 6, 4, 4\)"):
    convert.from_torch("patchgan", _patchgan_golden(golden_state_dict), **{**PATCHGAN_ARGS, "ndf": 4})


def test_converter_extra_key_from_another_architecture(golden_state_dict):
  state_dict = _patchgan_golden(golden_state_dict)
  unet, _ = golden_state_dict("pix2pix_unet128_ngf4.npz")
  state_dict["model.model.1.model.1.weight"] = unet["model.model.1.model.1.weight"]
  with pytest.raises(convert.StateDictError, match=r"unexpected key\(s\) 'model\.model\.1\.model\.1\.weight'"):
    convert.from_torch("patchgan", state_dict, **PATCHGAN_ARGS)
  # a whole checkpoint of another architecture is refused too
  with pytest.raises(convert.StateDictError, match="missing key"):
    convert.from_torch("cyclegan_resnet", unet, ngf=4, n_blocks=6)


def _fake_state_dict(shapes):
  rng = np.random.default_rng(0)
  return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}


def _bn(prefix, c):
  return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
          f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def test_converter_resnet_batch_zero_padding_dropout_layout():
  # ResnetGenerator(1, 1, ngf=2, norm batch, use_dropout=True, n_blocks=1, padding_type='zero'),
  # keys written out by hand from the reference layer list: no conv bias with batch norm except the
  # output conv, no pad layers in the block, a Dropout at conv_block.3 shifting the second conv to .4.
  shapes = {"model.1.weight": (2, 1, 7, 7), **_bn("model.2", 2),
            "model.4.weight": (4, 2, 3, 3), **_bn("model.5", 4),
            "model.7.weight": (8, 4, 3, 3), **_bn("model.8", 8),
            "model.10.conv_block.0.weight": (8, 8, 3, 3), **_bn("model.10.conv_block.1", 8),
            "model.10.conv_block.4.weight": (8, 8, 3, 3), **_bn("model.10.conv_block.5", 8),
            "model.11.weight": (8, 4, 3, 3), **_bn("model.12", 4),
            "model.14.weight": (4, 2, 3, 3), **_bn("model.15", 2),
            "model.18.weight": (1, 2, 7, 7), "model.18.bias": (1,)}
  sd = _fake_state_dict(shapes)
  _, variables = convert.from_torch("cyclegan_resnet", sd, input_nc=1, output_nc=1, ngf=2, n_blocks=1,
                                    norm="batch", use_dropout=True, padding_type="zero")
  params, stats = variables["params"], variables["batch_stats"]
  np.testing.assert_array_equal(params["block0"]["conv2"]["kernel"],
                                sd["model.10.conv_block.4.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(stats["block0"]["norm2"]["var"], sd["model.10.conv_block.5.running_var"])
  np.testing.assert_array_equal(params["up1"]["kernel"],
                                sd["model.14.weight"][:, :, ::-1, ::-1].transpose(2, 3, 0, 1))
  np.testing.assert_array_equal(params["conv_out"]["bias"], sd["model.18.bias"])
  assert "bias" not in params["conv_in"]


def test_converter_unet_instance_norm_layout():
  # UnetGenerator(1, 1, num_downs=5, ngf=1, norm instance): every conv has a bias (instance norm),
  # no norm entries (affine=False, untracked); submodules at .1 (outermost) and .3 (others).
  p0, p1 = "model.model", "model.model.1.model"
  p2, p3 = p1 + ".3.model", p1 + ".3.model.3.model"
  p4 = p3 + ".3.model"
  shapes = {f"{p0}.0.weight": (1, 1, 4, 4), f"{p0}.0.bias": (1,),
            f"{p0}.3.weight": (2, 1, 4, 4), f"{p0}.3.bias": (1,),
            f"{p1}.1.weight": (2, 1, 4, 4), f"{p1}.1.bias": (2,),
            f"{p1}.5.weight": (4, 1, 4, 4), f"{p1}.5.bias": (1,),
            f"{p2}.1.weight": (4, 2, 4, 4), f"{p2}.1.bias": (4,),
            f"{p2}.5.weight": (8, 2, 4, 4), f"{p2}.5.bias": (2,),
            f"{p3}.1.weight": (8, 4, 4, 4), f"{p3}.1.bias": (8,),
            f"{p3}.5.weight": (16, 4, 4, 4), f"{p3}.5.bias": (4,),
            f"{p4}.1.weight": (8, 8, 4, 4), f"{p4}.1.bias": (8,),
            f"{p4}.3.weight": (8, 8, 4, 4), f"{p4}.3.bias": (8,)}
  sd = _fake_state_dict(shapes)
  _, variables = convert.from_torch("pix2pix_unet", sd, input_nc=1, output_nc=1, num_downs=5, ngf=1,
                                    norm="instance", use_dropout=True)
  assert "batch_stats" not in variables
  np.testing.assert_array_equal(variables["params"]["up4"]["bias"], sd[f"{p4}.3.bias"])
  np.testing.assert_array_equal(variables["params"]["down0"]["bias"], sd[f"{p0}.0.bias"])


def test_converter_patchgan_instance_norm_and_old_running_stats():
  # NLayerDiscriminator(3, ndf=2, n_layers=2, norm instance) with 2018-style IN running stats.
  shapes = {"model.0.weight": (2, 3, 4, 4), "model.0.bias": (2,),
            "model.2.weight": (4, 2, 4, 4), "model.2.bias": (4,),
            "model.3.running_mean": (4,), "model.3.running_var": (4,),
            "model.5.weight": (8, 4, 4, 4), "model.5.bias": (8,),
            "model.8.weight": (1, 8, 4, 4), "model.8.bias": (1,)}
  sd = _fake_state_dict(shapes)
  _, variables = convert.from_torch("patchgan", sd, input_nc=3, ndf=2, n_layers=2, norm="instance")
  np.testing.assert_array_equal(variables["params"]["conv_out"]["kernel"],
                                sd["model.8.weight"].transpose(2, 3, 1, 0))
  # A batch-norm checkpoint read as instance norm is still refused: its norm weights are unused.
  sd["model.3.weight"] = np.ones(4, np.float32)
  with pytest.raises(convert.StateDictError, match=r"unexpected key\(s\) 'model\.3\.weight'"):
    convert.from_torch("patchgan", sd, input_nc=3, ndf=2, n_layers=2, norm="instance")
