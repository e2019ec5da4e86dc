"""Images without / with one attribute (DIAT): batches of {'A': without, 'B': with} (+ digit labels).

Built on `translate.data.labelled` (its sources, decoding, centre crop, resize, flip, seeds), for
single-attribute transfer: domain A holds the images WITHOUT the attribute `data.attribute`, domain B
the images WITH it; the two are independent streams (unpaired), zipped.

  celeba  tfds `celeb_a`: `data.attribute` is one of its 40 attribute names (checked, e.g.
          'Eyeglasses', 'Smiling'); centre crop `celeba_crop_size` (178, as StarGAN), resize to
          `image_size` (128). The split is filtered by the attribute after decoding.
  folder  `path/{train,test}/<domain>/` with exactly two domain folders; `data.attribute` names the
          folder of the images WITH the attribute (the other is A). Centre crop `folder_crop_size`.
  digits  the embedded styled digits (`translate.data.digits.styled_digits`, no download):
          `data.attribute` one of Bold, Italic, Serif, Inverted; batches also carry 'label_A' /
          'label_B' (int32 digit classes): the identity that the translation must keep.

train=True: each domain shuffled, repeated, flipped (unless no_flip), full batches; `start_batch`
skips the batches already used (exact resume). train=False: each domain once in order, no flip; the
zip stops at the shorter domain (use `domain_dataset` to read one domain whole).
Images float32 NHWC in [-1, 1] with `data.channels` channels.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from translate.data import input_pipeline, labelled

SOURCES = ("celeba", "folder", "digits")
DOMAINS = ("A", "B")  # A: without the attribute, B: with it


def _get(d, name):
  return labelled._get(d, name)


def attribute_names(data_config) -> tuple[str, ...]:
  """The attributes `data.attribute` may name for this source (folder: its two domain folders)."""
  source = _get(data_config, "source")
  if source == "celeba":
    return labelled.celeba_attribute_names(_get(data_config, "tfds_name"))
  if source == "digits":
    from translate.data import digits
    return digits.STYLE_ATTRIBUTES
  if source == "folder":
    if not _get(data_config, "path"):
      raise ValueError("data.source='folder': set data.path to the root of "
                       "path/{train,test}/<domain>/ images (two domains).")
    domains = labelled.folder_domains(_get(data_config, "path"))
    if len(domains) != 2:
      raise ValueError(f"data.path={_get(data_config, 'path')!r} has {len(domains)} domain folders "
                       f"{list(domains)}; single-attribute transfer needs exactly 2 (without / with).")
    return domains
  raise ValueError(f"Unknown data.source {source!r}; expected one of {SOURCES}.")


def check(data_config) -> str:
  """Checks `data.source` and `data.attribute` (against CelebA's 40 names, the digits' styles or the
  folder's domains); returns the attribute. ValueError naming the valid values."""
  names = attribute_names(data_config)
  attribute = str(_get(data_config, "attribute")).strip()
  if attribute not in names:
    raise ValueError(f"Unknown attribute {attribute!r} in data.attribute for data.source="
                     f"{_get(data_config, 'source')!r}; valid names: {list(names)}.")
  channels = int(_get(data_config, "channels"))
  if channels not in (1, 3):
    raise ValueError(f"data.channels={channels}; the input pipeline reads 3 (RGB) or 1 (grey).")
  return attribute


def _labelled_config(data_config) -> dict:
  """The labelled.py fields for this source, with the attribute as its only label."""
  source, attribute = _get(data_config, "source"), str(_get(data_config, "attribute"))
  out = {k: _get(data_config, k) for k in (
      "tfds_name", "data_dir", "celeba_crop_size", "path", "folder_crop_size", "image_size",
      "channels", "no_flip", "serial_batches", "shuffle_buffer", "max_dataset_size")}
  out.update(sources=(source,), celeba_attrs=(attribute,), digits_attrs=(attribute,),
             folder_domains=())
  if source == "folder":
    other = [d for d in attribute_names(data_config) if d != attribute]
    out["folder_domains"] = (other[0], attribute)  # label index 1 = with the attribute
  return out


def _domain_source(data_config, domain: str, split: str, pi: int, pc: int):
  """labelled's source of one domain: in-memory arrays / files already restricted to it; tfds whole
  (filtered later)."""
  cfg = _labelled_config(data_config)
  layout = labelled.label_layout(cfg)
  want = 1.0 if domain == "B" else 0.0
  source = _get(data_config, "source")
  max_size = int(_get(data_config, "max_dataset_size"))
  if source == "digits":
    from translate.data import digits
    data = digits.load_styled_split(split)
    column = digits.STYLE_ATTRIBUTES.index(str(_get(data_config, "attribute")))
    keep = data["attributes"][:, column] == want
    images, digit = data["image"][keep], data["digit"][keep].astype(np.float32)[:, None]
    if max_size:
      images, digit = images[:max_size], digit[:max_size]
    return labelled._Arrays(np.ascontiguousarray(images[pi::pc]), digit[pi::pc])
  src = labelled._source(cfg, layout, 0, split, 0, 1) if source == "folder" else (
      labelled._source(cfg, layout, 0, split, pi, pc))
  if source == "folder":
    keep = src.labels[:, -1] == want
    paths = [p for p, k in zip(src.paths, keep) if k]
    if not paths:
      raise ValueError(f"The {split} folder of domain {cfg['folder_domains'][int(want)]!r} holds no "
                       f"images.")
    return labelled._Files(paths[pi::pc], src.labels[keep][pi::pc])
  return src


def _unbatched(data_config, domain: str, split: str, train: bool, seed: int, pi: int, pc: int,
               skip: int) -> tf.data.Dataset:
  """One domain's elements {'image'} (+ 'label': the digit) after `skip` elements."""
  cfg = _labelled_config(data_config)
  source = _domain_source(data_config, domain, split, pi, pc)
  k = DOMAINS.index(domain)  # separate shuffle/flip streams for A and B
  if isinstance(source, labelled._Tfds):
    ds = labelled._stream(source, k, cfg, split, train, seed, pi, 0)
    want = domain == "B"
    ds = ds.filter(lambda e: tf.equal(e["label"][-1] > 0.5, want)).skip(skip)
  else:
    ds = labelled._stream(source, k, cfg, split, train, seed, pi, skip)
  digits = _get(data_config, "source") == "digits"

  def finish(e):
    out = {"image": e["image"]}
    if digits:
      out["label"] = tf.cast(e["label"][0], tf.int32)
    return out

  return ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)


def domain_dataset(data_config, domain: str, split: str, batch_size: int, *, seed: int = 0,
                   train: bool = False, process_index: int | None = None,
                   process_count: int | None = None, start_batch: int = 0) -> tf.data.Dataset:
  """Batches of one domain: {'image': (B, H, W, C) in [-1, 1]} (+ 'label' int32 digits)."""
  if domain not in DOMAINS:
    raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}.")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  check(data_config)
  input_pipeline.keep_tf_off_accelerators()
  pi, pc = input_pipeline._process(process_index, process_count)
  ds = _unbatched(data_config, domain, split, train, seed, pi, pc, int(start_batch) * batch_size)
  return ds.batch(batch_size, drop_remainder=train)


def create_dataset(data_config: Any, split: str, batch_size: int, *, seed: int = 0,
                   train: bool = True, process_index: int | None = None,
                   process_count: int | None = None, start_batch: int = 0) -> tf.data.Dataset:
  """Batches {'A', 'B'} (+ 'label_A', 'label_B' for digits); see the module docstring."""
  kwargs = dict(seed=seed, train=train, process_index=process_index, process_count=process_count,
                start_batch=start_batch)
  a = domain_dataset(data_config, "A", split, batch_size, **kwargs)
  b = domain_dataset(data_config, "B", split, batch_size, **kwargs)

  def merge(x, y):
    out = {"A": x["image"], "B": y["image"]}
    if "label" in x:
      out.update(label_A=x["label"], label_B=y["label"])
    return out

  options = tf.data.Options()
  options.deterministic = True
  return tf.data.Dataset.zip((a, b)).map(merge).with_options(options).prefetch(tf.data.AUTOTUNE)


def domain_size(data_config: Any, domain: str, split: str) -> int:
  """Images of one domain in a split (all processes). For tfds this counts the filtered split once."""
  check(data_config)
  input_pipeline.keep_tf_off_accelerators()
  source = _domain_source(data_config, domain, split, 0, 1)
  if isinstance(source, labelled._Tfds):
    # attributes only: count without decoding the images
    import tensorflow_datasets as tfds
    raw = tfds.load(source.name, split=source.split, data_dir=source.data_dir,
                    decoders={"image": tfds.decode.SkipDecoding()})
    attribute = source.attrs[0]
    want = domain == "B"
    return int(raw.reduce(0, lambda n, e: n + tf.cast(
        tf.equal(tf.cast(e["attributes"][attribute], tf.bool), want), tf.int32)).numpy())
  return labelled._length(source)


def dataset_size(data_config: Any, split: str) -> int:
  """An epoch: the images without the attribute (domain A)."""
  return domain_size(data_config, "A", split)


def describe(data_config: Any) -> str:
  source = _get(data_config, "source")
  where = {"celeba": f"tfds {_get(data_config, 'tfds_name')}",
           "folder": f"folder {_get(data_config, 'path')}",
           "digits": "embedded styled digits"}.get(source, source)
  return (f"{where}: A = without {_get(data_config, 'attribute')!r}, B = with it; "
          f"{_get(data_config, 'image_size')} px, {_get(data_config, 'channels')} channel(s)")
