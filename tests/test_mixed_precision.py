"""config.dtype = "bfloat16": convolutions and matmuls in bf16, parameters, losses and checkpoints f32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import helpers
from translate import loop, methods, parallel, training


def _step_from_same_state(config, batch):
  method = methods.get(config.method)
  mesh = parallel.make_mesh(1)
  optimizers = method.optimizers(config, 10, 100)
  example = {k: v[:1] for k, v in batch.items()}
  frozen = parallel.replicate(method.frozen(config), mesh)
  state = loop.create_train_state(config, method, mesh, optimizers, example, frozen)
  step = loop.make_train_step(config, method, mesh, optimizers)
  placed = parallel.shard_batch(batch, mesh)
  text = step.lower(state, placed, frozen).as_text()
  state, metrics = step(state, placed, frozen)
  return state, jax.device_get(metrics), text


@pytest.mark.parametrize("method", ["pix2pix"])  # batch norm, U-Net transposed convs, the GAN loss
def test_bfloat16_step_runs_close_to_float32_and_keeps_float32_state(method):
  config = helpers.tiny_config(method, batch_size=2)
  batch = helpers.make_batch(method, config, np.random.default_rng(0))
  state32, m32, text32 = _step_from_same_state(config, batch)
  config.dtype = "bfloat16"
  state16, m16, text16 = _step_from_same_state(config, batch)
  # The bf16 program convolves bf16 operands; the float32 one has no bf16 at all.
  assert "bf16" not in text32
  assert any("convolution" in line and "bf16" in line for line in text16.splitlines())
  # Parameters, optimiser states and collections stay float32 (what checkpoints hold).
  for leaf in jax.tree_util.tree_leaves((state16.params, state16.opt_state, state16.collections)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  losses = [k for k in m32 if k.startswith("loss")]
  assert losses
  for k in losses:
    assert np.isfinite(m16[k]), k
    # bf16 keeps 8 bits of mantissa: the first step's losses agree to a few percent, not exactly.
    np.testing.assert_allclose(m16[k], m32[k], rtol=0.05, atol=0.02, err_msg=k)
  assert any(m16[k] != m32[k] for k in losses)  # it did compute differently


def test_unknown_dtype_is_refused():
  config = helpers.tiny_config("cyclegan")
  config.dtype = "float16"
  with pytest.raises(ValueError, match="config.dtype"):
    loop.validate_config(config, methods.get("cyclegan"))
  with pytest.raises(ValueError, match="bfloat16"):
    with training.mixed_precision("fp8"):
      pass
