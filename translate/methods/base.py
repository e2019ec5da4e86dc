"""The method contract: what a GAN method provides to the engine, written down once.

A method is one module of pure functions (`translate/methods/<name>.py`) that ends with

    METHOD = base.Method(name="cyclegan", groups={"G": ("G_A", "G_B"), "D": ("D_A", "D_B")},
                         build_networks=..., create_state=..., train_step=..., sample_images=...,
                         predicts={"AtoB": base.Predict(...), ...}, default_predict="AtoB")

The engine (`translate.loop`, `translate.inference`, `translate.evaluate`, `translate.workdir`) reads only
the fields below; it never looks for other module members. `translate.methods.get(name)` finds a method
by name (a module of `translate/methods/`, a method registered with `translate.methods.register`, or a
dotted module path such as `my_project.my_method` whose module defines `METHOD`).

Required members (signatures; `frozen` is a dict name -> `translate.pretrained.Pretrained`, the frozen
networks of `Method.frozen`, an argument of the jitted step: never in the state, never checkpointed,
never donated, never baked into the compiled program as constants):

  build_networks(config) -> {net name: flax module}
  create_state(config, rng, optimizers, example_batch, frozen) -> training.TrainState
      `example_batch`: a batch of one element with the shapes and dtypes of `data` (keys `input_keys`).
  train_step(config, optimizers, state, batch, frozen) -> (state, {metric name: scalar})
      one pure step on the GLOBAL batch; the engine jits it with data-parallel shardings.
  sample_images(config, state, batch, frozen) -> {column name: (B, H, W, C) in [-1, 1]}
      the columns of the sample grid, in display order (the engine keeps the order).
  predicts: {name: Predict}: what the method computes at inference (see `Predict`).

Optional members and their defaults:

  groups = {"G": (...), "D": (...)}: optimiser groups -> the names of the networks they update.
  default_predict: the predict the inference CLI runs when none is named (default: the first).
  data: the data kind (`DataKind`) that `config.data` describes (default: the unpaired/paired A/B images
      of `translate.data.input_pipeline`).
  input_keys = ("A", "B"): the batch keys `create_state`'s example batch carries.
  make_optimizers(config, steps_per_epoch, total_steps) -> {group: optax transformation}
      (default: `training.make_optimizers(config.optim, steps_per_epoch, groups)`: Adam, b1 0.5,
      constant then linear decay).
  check_config(config) -> {dotted config key: value}: start-up checks that raise ValueError naming the
      problem, and that RETURN derived values (e.g. label names read from the data); the engine sets
      them in the config it saves, so config.json records them. Default: no checks, nothing derived.
  frozen(config) -> {name: Pretrained}: frozen pretrained networks the losses or metrics use (loaded
      through `translate.pretrained.load`). Default: none.
  metrics: {name: fn(config, method, state, frozen) -> {name: value, ...}}: the method's own evaluation
      metrics, beside the engine's built-in ones (label_acc, fid, kid, psnr, ssim, lpips, ...), which
      translate test images with the predicts named "AtoB" / "BtoA" (`translate.evaluation`).
  sample_grid_rows = 8: samples per column of the grid.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

# Kinds of predict inputs (see Input).
IMAGE, LABELS, RNG, COUNT = "image", "labels", "rng", "count"


@dataclasses.dataclass(frozen=True)
class Input:
  """One input of a predict function, passed to `Predict.fn` as the keyword `name`.

  kind "image": float32 (B, H, W, C) NHWC in [-1, 1]; C is the channel count of the checkpoint's
      batch key `domain` (the CLI converts grey/RGB files to it). The CLI fills the first image input
      from --input (one file at a time) and the second from --style.
  kind "labels": an array that `parse(config, text, count)` makes from the CLI's --target (or --class)
      text; `count` is --num. parse raises ValueError naming the valid values.
  kind "rng": a `jax.random` key from the CLI's --seed.
  kind "count": a Python int >= 1 from the CLI's --num (e.g. how many styles per input); static: the
      predict is compiled once per value.
  """
  name: str
  kind: str = IMAGE
  domain: str = "A"
  parse: Callable[[Any, str, int], Any] | None = None

  def __post_init__(self):
    if self.kind not in (IMAGE, LABELS, RNG, COUNT):
      raise ValueError(f"Input {self.name!r}: unknown kind {self.kind!r}; expected "
                       f"{IMAGE!r}, {LABELS!r}, {RNG!r} or {COUNT!r}.")
    if self.kind == LABELS and self.parse is None:
      raise ValueError(f"Input {self.name!r} of kind 'labels' needs a parse function.")


@dataclasses.dataclass(frozen=True)
class Predict:
  """A named inference function of a method.

  `fn(config, state, frozen, **inputs) -> {output name: array}`, jittable. The output "image" is the
  result; the outputs named in `extras` (e.g. an attention map, (B, H, W, C) in [-1, 1]) are written by
  the CLI as <name>_<extra>.png when asked (--attention). Layout of "image":
    (B, H, W, C): one result per input image (or, with no image input, B generated images);
    (K, B, H, W, C): K results per input image (several styles, targets or samples), written as one
        grid per input: the input, then the K results, titled by `columns(config, K)`;
        with no image input, K columns of B generated images (a grid with B rows).
  """
  fn: Callable[..., Mapping[str, Any]]
  inputs: tuple[Input, ...] = (Input("images"),)
  columns: Callable[[Any, int], list[str]] | None = None
  extras: tuple[str, ...] = ()
  description: str = ""

  @property
  def image_inputs(self) -> tuple[Input, ...]:
    return tuple(i for i in self.inputs if i.kind == IMAGE)

  def input_of(self, kind: str) -> Input | None:
    return next((i for i in self.inputs if i.kind == kind), None)

  def per_image(self, config, state, frozen, **inputs) -> Mapping[str, Any]:
    """`fn` with every input image computed alone, as in a batch of one: a network that normalises
    with the batch's own statistics (batch norm in train mode, as the reference test scripts run
    pix2pix) otherwise gives each image an output that depends on its batch neighbours. The image
    and labels inputs with the first image input's batch size B are mapped over (jax.vmap of
    batch-of-one calls); other inputs (an rng, one style image for all) are shared. Same layouts as
    `fn`: "image" (B, ...) or (K, B, ...), extras (B, ...). Predicts without image inputs (generation)
    call `fn` as it is."""
    first = self.image_inputs[0].name if self.image_inputs else None
    b = None if first is None else jnp.shape(inputs[first])[0]
    if b is None or b == 1:
      return self.fn(config, state, frozen, **inputs)
    kinds = {i.name: i.kind for i in self.inputs}
    mapped = {k: v for k, v in inputs.items() if kinds[k] in (IMAGE, LABELS)
              and jnp.ndim(v) >= 1 and jnp.shape(v)[0] == b}
    shared = {k: v for k, v in inputs.items() if k not in mapped}

    def one(sample):
      return self.fn(config, state, frozen, **shared, **{k: v[None] for k, v in sample.items()})

    out = jax.vmap(one)(mapped)  # each leaf (B, <the fn's output for a batch of one>)
    # The batch-of-one axis is axis 0 of the fn's output, or axis 1 of a (K, 1, H, W, C) "image".
    return {k: (jnp.moveaxis(v[:, :, 0], 0, 1) if v.ndim == 6 else v[:, 0])
            for k, v in out.items()}


@dataclasses.dataclass(frozen=True)
class DataKind:
  """A kind of training data: how `config.data` becomes batches.

  create_dataset(config, split, batch_size, *, seed, train, process_index=None, process_count=None,
      start_batch=0) -> tf.data.Dataset of dict batches (numpy NHWC float32 images in [-1, 1], labels).
      train=True: shuffled, repeated, full batches of this process's share, `start_batch` batches
      skipped (resume); train=False: one pass in order.
  dataset_size(config, split) -> number of training examples (an epoch).
  describe(config) -> a one-line description for the log.
  test_counts(config) -> ({batch key: distinct images in the test split} or None when every test
      element is distinct, whether key A's element k is paired with key B's element k).
  """
  name: str
  create_dataset: Callable[..., Any]
  dataset_size: Callable[[Any, str], int]
  describe: Callable[[Any], str]
  test_counts: Callable[[Any], tuple[dict | None, bool]] = lambda config: (None, False)


def _ab_create_dataset(config, split, batch_size, **kwargs):
  from translate.data import input_pipeline
  return input_pipeline.create_dataset(config.data, split, batch_size, **kwargs)


def _ab_dataset_size(config, split):
  from translate.data import input_pipeline
  return input_pipeline.dataset_size(config.data, split)


def _ab_describe(config):
  from translate.data import input_pipeline
  return input_pipeline.describe(config.data)


def _ab_test_counts(config):
  from translate.data import input_pipeline
  return input_pipeline.test_counts(config.data)


# The engine's unpaired (A, B independent) or paired (A|B) image pipeline.
AB_IMAGES = DataKind("ab_images", _ab_create_dataset, _ab_dataset_size, _ab_describe, _ab_test_counts)


def _no_checks(config) -> dict:
  del config
  return {}


def _no_frozen(config) -> dict:
  del config
  return {}


@dataclasses.dataclass(frozen=True)
class Method:
  """A method (see the module docstring for every field's contract)."""
  name: str
  build_networks: Callable[[Any], dict]
  create_state: Callable[..., Any]
  train_step: Callable[..., tuple[Any, dict]]
  sample_images: Callable[..., dict]
  predicts: Mapping[str, Predict]
  groups: Mapping[str, tuple[str, ...]] = dataclasses.field(
      default_factory=lambda: {"G": (), "D": ()})
  default_predict: str = ""
  data: DataKind = AB_IMAGES
  input_keys: tuple[str, ...] = ("A", "B")
  make_optimizers: Callable[[Any, int, int], dict] | None = None
  check_config: Callable[[Any], dict] = _no_checks
  frozen: Callable[[Any], dict] = _no_frozen
  metrics: Mapping[str, Callable[..., dict]] = dataclasses.field(default_factory=dict)
  sample_grid_rows: int = 8

  def __post_init__(self):
    if not self.predicts:
      raise ValueError(f"Method {self.name!r} declares no predict function.")
    if self.default_predict and self.default_predict not in self.predicts:
      raise ValueError(f"Method {self.name!r}: default_predict {self.default_predict!r} is not one "
                       f"of its predicts {sorted(self.predicts)}.")
    if not self.default_predict:
      object.__setattr__(self, "default_predict", next(iter(self.predicts)))
    for group, nets in self.groups.items():
      if isinstance(nets, str):
        raise TypeError(f"Method {self.name!r}: groups[{group!r}] must be a tuple of network names.")

  def optimizers(self, config, steps_per_epoch: int, total_steps: int) -> dict:
    """The optimisers by group: the method's own `make_optimizers`, or the default Adam."""
    if self.make_optimizers is not None:
      return self.make_optimizers(config, steps_per_epoch, total_steps)
    from translate import training
    return training.make_optimizers(config.optim, steps_per_epoch, tuple(self.groups))

  def group_of(self, net_name: str) -> str:
    """The optimiser group that updates network `net_name`."""
    for group, nets in self.groups.items():
      if net_name in nets:
        return group
    raise KeyError(f"Method {self.name!r}: network {net_name!r} is in no optimiser group "
                   f"({dict(self.groups)}).")

  def predict(self, name: str) -> Predict:
    if name not in self.predicts:
      raise ValueError(f"Method {self.name!r} has no predict {name!r}; it has "
                       f"{sorted(self.predicts)}.")
    return self.predicts[name]
