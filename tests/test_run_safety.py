"""A run never saves a non-finite state, and a resume never changes its schedule or data position."""
import json
import os

import jax
import numpy as np
import pytest

from tests.helpers import make_batch, tiny_config
from tests.test_train import final_state
from translate import checkpoint, loop, methods, parallel, train, training


@pytest.fixture(scope="module")
def exploding_run(tmp_path_factory):
  """CycleGAN tiny at lr 1e30: Adam's first step throws the weights to +-1e30, the next losses
  overflow. Checkpoints every step."""
  workdir = str(tmp_path_factory.mktemp("nan") / "run")
  config = tiny_config("cyclegan", batch_size=2)
  config.optim.lr = 1e30
  config.num_train_steps = 6
  config.checkpoint_every = 1
  config.keep_checkpoints = 3
  with pytest.raises(loop.NonFiniteLossError) as error:
    train.train_and_evaluate(config, workdir)
  return workdir, config, str(error.value)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(exploding_run):
  workdir, _, message = exploding_run
  bad_step = int(message.split("Non-finite loss at step ")[1].split(":")[0])
  assert "loss_" in message and "skip_nonfinite_steps" in message
  step, state = final_state(workdir)
  assert step == bad_step - 1  # every good step was saved, the bad one was not
  for leaf in jax.tree_util.tree_leaves(state["params"]):
    assert np.all(np.isfinite(leaf))


def test_resume_with_another_batch_size_is_refused_and_config_kept(exploding_run):
  workdir, config, _ = exploding_run
  before = json.load(open(os.path.join(workdir, "config.json")))
  other = tiny_config("cyclegan", batch_size=4)
  other.optim.lr = config.optim.lr
  with pytest.raises(checkpoint.CheckpointMismatchError, match="batch_size.* 2.* 4"):
    train.train_and_evaluate(other, workdir)
  assert json.load(open(os.path.join(workdir, "config.json"))) == before


def test_num_train_steps_past_the_schedule_is_refused(tmp_path):
  config = tiny_config("cyclegan", batch_size=2)
  config.data.max_dataset_size = 4
  config.optim.n_epochs, config.optim.n_epochs_decay = 1, 1  # a 4-step schedule
  config.num_train_steps = 40
  with pytest.raises(ValueError, match="num_train_steps=40 is past the end"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


@pytest.mark.parametrize("key,value", [("log_every", 0), ("checkpoint_every", 0), ("sample_every", -1),
                                       ("eval_every", -5)])
def test_step_intervals_out_of_range_are_refused_at_start(key, value):
  config = tiny_config("cyclegan")
  config[key] = value
  with pytest.raises(ValueError, match=f"{key} must be >= "):
    loop.validate_config(config, methods.get("cyclegan"))


def test_sample_every_zero_writes_samples_at_the_end_only(tmp_path):
  config = tiny_config("cyclegan", batch_size=2)
  config.data.max_dataset_size = 4
  config.num_train_steps, config.sample_every = 3, 0
  train.train_and_evaluate(config, str(tmp_path / "run"))
  assert sorted(os.listdir(tmp_path / "run" / "samples")) == ["step_00000003.png"]


def test_skip_nonfinite_steps_leaves_the_learned_state_unchanged():
  # The toy method of the contract test (a generator, a discriminator, a frozen feature network):
  # the same jitted step as any method's, compiled in seconds.
  from tests import test_method_contract as toy
  config = toy.toy_config(batch_size=2)
  config.skip_nonfinite_steps = True
  method = methods.get(config.method)
  mesh = parallel.make_mesh(1)
  optimizers = method.optimizers(config, 10, 100)
  batch = make_batch("cyclegan", config, np.random.default_rng(0))
  frozen = parallel.replicate(method.frozen(config), mesh)
  state = loop.create_train_state(config, method, mesh, optimizers,
                                  {k: v[:1] for k, v in batch.items()}, frozen)
  step = loop.make_train_step(config, method, mesh, optimizers)
  before = jax.device_get(state)
  poisoned = dict(batch, A=np.full_like(batch["A"], np.nan))
  state, metrics = step(state, parallel.shard_batch(poisoned, mesh), frozen)
  after = jax.device_get(state)
  assert float(metrics[loop.SKIPPED]) == 1.0
  assert int(after.step) == 1  # the run moves on ...
  for a, b in zip(jax.tree_util.tree_leaves((before.params, before.opt_state)),
                  jax.tree_util.tree_leaves((after.params, after.opt_state))):
    np.testing.assert_array_equal(a, b)  # ... without learning from the poisoned batch
  state, metrics = step(state, parallel.shard_batch(batch, mesh), frozen)
  assert float(metrics[loop.SKIPPED]) == 0.0
  assert bool(training.all_finite(state.params))
  assert not all(np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(after.params), jax.tree_util.tree_leaves(jax.device_get(state.params))))


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  config = tiny_config("cyclegan", batch_size=2)
  config.num_train_steps = 3
  config.checkpoint_every = 1
  train.train_and_evaluate(config, workdir)
  # A run killed while writing step 3, or a full disk: its biggest array file is cut short.
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(workdir, "checkpoints", "3", "state"))
           for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  config.num_train_steps = 4
  with caplog.at_level("WARNING"):
    train.train_and_evaluate(config, workdir)
  assert "step 3" in caplog.text and "damaged" in caplog.text
  assert os.path.isdir(os.path.join(workdir, "damaged_checkpoints", "3"))  # kept, not deleted
  step, state = final_state(workdir)
  assert step == 4 and int(state["step"]) == 4  # resumed from step 2, trained steps 3 and 4
