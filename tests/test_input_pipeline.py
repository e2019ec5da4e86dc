"""The tf.data input pipeline on tiny images written by the tests (no downloads).

Images that must be recognised after the pipeline are filled with one grey value per file ("tags"), so
a batch tells which file each example came from; images whose crops/flips are checked carry random
pixels, so a crop offset and a flip are identifiable.
"""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from translate.config_base import data_config
from translate.data import images as image_files
from translate.data import input_pipeline

H, W = 40, 48  # test images are 40 high, 48 wide: neither square nor a multiple of the crop


def make_config(**fields):
  c = data_config()
  c.update(dict(load_size=36, crop_size=32, **fields))
  return c


def save(path, array, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)


def tag_image(value, h=H, w=W):
  return np.full((h, w, 3), value, np.uint8)


def tags(batch_images):
  """The grey value each example of a batch of tag images was made of."""
  values = np.round((batch_images + 1) * 127.5).reshape(len(batch_images), -1)
  assert np.all(values == values[:, :1]), "tag images should stay uniform"
  return values[:, 0].astype(int).tolist()


def to_float(uint8):
  return ((uint8.astype(np.float32) / 255.0 - 0.5) / 0.5).astype(np.float32)


def take(ds, n):
  return list(ds.take(n).as_numpy_iterator())


# Tag values: domain A file i is 10 + 20 i, domain B file j is 15 + 20 j.
def a_tag(i):
  return 10 + 20 * i


def b_tag(j):
  return 15 + 20 * j


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
  """Unpaired folder: trainA 5, trainB 7, testA 3, testB 2 uniform images (PNG and JPEG, sub-folder)."""
  root = str(tmp_path_factory.mktemp("tagged"))
  for split, na, nb in (("train", 5, 7), ("test", 3, 2)):
    for i in range(na):
      save(f"{root}/{split}A/a{i}.png", tag_image(a_tag(i)))
    for j in range(nb):
      # one B file in a sub-folder: folders are read recursively, like the reference's make_dataset
      sub = "sub/" if j == nb - 1 else ""
      save(f"{root}/{split}B/{sub}b{j}.png", tag_image(b_tag(j)))
  return root


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
  """Unpaired folder of random-pixel images (40x48 in A, 44x52 in B) and their arrays."""
  root = str(tmp_path_factory.mktemp("textured"))
  rng = np.random.default_rng(0)
  arrays = {}
  for split in ("train", "test"):
    for name, (h, w) in (("A", (H, W)), ("B", (44, 52))):
      arrays[split + name] = []
      for i in range(3):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        save(f"{root}/{split}{name}/{i}.png", array)
        arrays[split + name].append(array)
  return root, arrays


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
  """Paired folder: A|B images 40 x (2*48) with B = 255 - A (train 4, test 2); returns root, A arrays."""
  root = str(tmp_path_factory.mktemp("paired"))
  rng = np.random.default_rng(1)
  lefts = {}
  for split, n in (("train", 4), ("test", 2)):
    lefts[split] = []
    for i in range(n):
      a = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
      save(f"{root}/{split}/{i}.png", np.concatenate([a, 255 - a], axis=1))
      lefts[split].append(a)
  return root, lefts


def find_crop(image, source, size):
  """(y, x, flipped) such that `image` is that crop of `source` (float arrays), or None."""
  for flipped in (False, True):
    src = source[:, ::-1] if flipped else source
    for y in range(src.shape[0] - size + 1):
      for x in range(src.shape[1] - size + 1):
        if np.array_equal(src[y:y + size, x:x + size], image):
          return y, x, flipped
  return None


# ----------------------------------------------------------------------------------------------------
# Unpaired folders
# ----------------------------------------------------------------------------------------------------
def test_unpaired_folder_train_batches(tagged):
  config = make_config(source="folder", path=tagged, preprocess="resize_and_crop")
  batches = take(input_pipeline.create_dataset(config, "train", 4, seed=0), 6)
  for batch in batches:
    assert set(batch) == {"A", "B"}
    for key in ("A", "B"):
      assert batch[key].shape == (4, 32, 32, 3) and batch[key].dtype == np.float32
  seen_a = sum((tags(b["A"]) for b in batches), [])
  seen_b = sum((tags(b["B"]) for b in batches), [])
  # 24 draws: each epoch of A is a permutation of its 5 files, B of its 7
  assert sorted(seen_a[:5]) == [a_tag(i) for i in range(5)]
  assert sorted(seen_b[:7]) == [b_tag(j) for j in range(7)]
  assert sorted(seen_a[5:10]) == [a_tag(i) for i in range(5)]
  # shuffled, and reshuffled each epoch
  assert seen_a[:5] != sorted(seen_a[:5]) or seen_a[5:10] != sorted(seen_a[5:10])
  assert seen_a[:5] != seen_a[5:10] or seen_a[10:15] != seen_a[5:10]


def test_unpaired_b_is_drawn_independently_of_a(tagged):
  config = make_config(source="folder", path=tagged, preprocess="none", no_flip=True)
  batches = take(input_pipeline.create_dataset(config, "train", 5, seed=3), 14)
  partners = {}
  for batch in batches:
    for a, b in zip(tags(batch["A"]), tags(batch["B"])):
      partners.setdefault(a, set()).add(b)
  # 70 pairs: a fixed pairing would give each A one partner; independent streams give several
  assert all(len(p) >= 2 for p in partners.values()), partners
  assert len(set().union(*partners.values())) == 7


def test_serial_batches_reads_both_domains_in_order(tagged):
  config = make_config(source="folder", path=tagged, preprocess="none", serial_batches=True)
  batches = take(input_pipeline.create_dataset(config, "train", 4, seed=0), 3)
  seen_a = sum((tags(b["A"]) for b in batches), [])
  seen_b = sum((tags(b["B"]) for b in batches), [])
  assert seen_a == [a_tag(k % 5) for k in range(12)]
  assert seen_b == [b_tag(k % 7) for k in range(12)]


def test_test_split_is_one_serial_pass_of_max_length(tagged):
  config = make_config(source="folder", path=tagged)
  batches = list(input_pipeline.create_dataset(config, "test", 2, train=False).as_numpy_iterator())
  # testA has 3 images, testB 2: max(3, 2) = 3 pairs (A[k % 3], B[k % 2]), last partial batch kept
  assert [len(b["A"]) for b in batches] == [2, 1]
  assert sum((tags(b["A"]) for b in batches), []) == [a_tag(0), a_tag(1), a_tag(2)]
  assert sum((tags(b["B"]) for b in batches), []) == [b_tag(0), b_tag(1), b_tag(0)]
  assert input_pipeline.dataset_size(config, "test") == 3
  assert input_pipeline.dataset_size(config, "train") == 7
  assert input_pipeline.dataset_size(make_config(source="folder", path=tagged, max_dataset_size=4),
                                     "train") == 4


def test_direction_swaps_domains(tagged):
  forward = make_config(source="folder", path=tagged, preprocess="none")
  backward = make_config(source="folder", path=tagged, preprocess="none", direction="BtoA")
  (f,) = take(input_pipeline.create_dataset(forward, "test", 3, train=False), 1)
  (b,) = take(input_pipeline.create_dataset(backward, "test", 3, train=False), 1)
  np.testing.assert_array_equal(b["A"], f["B"])
  np.testing.assert_array_equal(b["B"], f["A"])
  assert tags(b["A"])[0] == b_tag(0)


def test_test_phase_pixels_are_the_references_pil_pixels(textured):
  """Test phase of resize_and_crop: PIL bicubic resize to crop_size (load_size = crop_size)."""
  root, arrays = textured
  config = make_config(source="folder", path=root, preprocess="resize_and_crop")
  (batch,) = take(input_pipeline.create_dataset(config, "test", 3, train=False), 1)
  for key in ("A", "B"):
    for i, array in enumerate(arrays["test" + key]):
      expected = np.asarray(Image.fromarray(array).convert("RGB").resize((32, 32), Image.BICUBIC))
      np.testing.assert_array_equal(batch[key][i], to_float(expected))


def test_train_crops_and_flips_are_crops_of_the_resized_image(textured):
  root, arrays = textured
  config = make_config(source="folder", path=root, preprocess="resize_and_crop",
                       serial_batches=True)  # in order, so example k is file k % 3
  batches = take(input_pipeline.create_dataset(config, "train", 3, seed=0), 8)
  resized = [to_float(np.asarray(Image.fromarray(a).resize((36, 36), Image.BICUBIC)))
             for a in arrays["trainA"]]
  found = [find_crop(batch["A"][i], resized[i], 32) for batch in batches for i in range(3)]
  assert None not in found
  flips = [f[2] for f in found]
  offsets = {f[:2] for f in found}
  assert 0 < sum(flips) < len(flips)  # p = 0.5 over 24 draws
  assert len(offsets) > 3  # random crop offsets


def test_no_flip_never_flips(textured):
  root, arrays = textured
  config = make_config(source="folder", path=root, preprocess="none", no_flip=True,
                       serial_batches=True)
  batches = take(input_pipeline.create_dataset(config, "train", 3, seed=0), 6)
  for batch in batches:
    for i in range(3):  # 'none' on 40x48 (multiples of 4) keeps the image as it is
      np.testing.assert_array_equal(batch["A"][i], to_float(arrays["trainA"][i]))
  flipping = make_config(source="folder", path=root, preprocess="none", serial_batches=True)
  batches = take(input_pipeline.create_dataset(flipping, "train", 3, seed=0), 6)
  flipped = [np.array_equal(b["A"][i], to_float(arrays["trainA"][i][:, ::-1]))
             for b in batches for i in range(3)]
  kept = [np.array_equal(b["A"][i], to_float(arrays["trainA"][i])) for b in batches for i in range(3)]
  assert all(f != k for f, k in zip(flipped, kept))
  assert 0 < sum(flipped) < len(flipped)


@pytest.mark.parametrize("preprocess,train,size", [
    ("resize_and_crop", True, (32, 32)), ("resize_and_crop", False, (32, 32)),
    ("crop", True, (32, 32)), ("crop", False, (32, 32)),
    # scale_width: width load_size (36), height int(max(36 * 40 / 48, 32)) = 32; test: load = crop
    ("scale_width", True, (32, 36)), ("scale_width", False, (32, 32)),
    ("scale_width_and_crop", True, (32, 32)),
    ("none", True, (40, 48)),
])
def test_preprocess_output_sizes(textured, preprocess, train, size):
  root, _ = textured
  config = make_config(source="folder", path=root, preprocess=preprocess)
  split = "train" if train else "test"
  ds = input_pipeline.create_dataset(config, split, 1, train=train)
  (batch,) = take(ds, 1)
  assert batch["A"].shape == (1, *size, 3)
  # the engine builds its example batch from the static element_spec: sizes known at start-up
  assert tuple(ds.element_spec["A"].shape[1:]) == (*size, 3)


def test_none_rounds_sides_to_multiples_of_four_half_to_even(tmp_path):
  # 42 / 4 = 10.5 -> 10 -> 40 and 46 / 4 = 11.5 -> 12 -> 48 (Python's round, as the reference)
  for split in ("trainA", "trainB"):
    save(f"{tmp_path}/{split}/0.png", tag_image(50, 42, 46))
  config = make_config(source="folder", path=str(tmp_path), preprocess="none")
  (batch,) = take(input_pipeline.create_dataset(config, "train", 1), 1)
  assert batch["A"].shape == (1, 40, 48, 3)
  assert image_files.resized_size(46, 42, "none", 0, 0) == (48, 40)


def test_different_image_sizes_are_fine_when_preprocessing_unifies_them(tmp_path):
  save(f"{tmp_path}/trainA/0.png", tag_image(10, 40, 48))
  save(f"{tmp_path}/trainA/1.jpg", tag_image(10, 64, 33))
  save(f"{tmp_path}/trainB/0.png", tag_image(10, 37, 50))
  config = make_config(source="folder", path=str(tmp_path))
  (batch,) = take(input_pipeline.create_dataset(config, "train", 2), 1)
  assert batch["A"].shape == (2, 32, 32, 3)
  none = make_config(source="folder", path=str(tmp_path), preprocess="none")
  with pytest.raises(ValueError, match="different sizes.*batch_size=2"):
    input_pipeline.create_dataset(none, "train", 2)
  input_pipeline.create_dataset(none, "train", 1)  # batch 1 can take any size


def test_grayscale_channels(textured):
  root, arrays = textured
  config = make_config(source="folder", path=root, input_nc=1, output_nc=3)
  (batch,) = take(input_pipeline.create_dataset(config, "test", 3, train=False), 1)
  assert batch["A"].shape == (3, 32, 32, 1) and batch["B"].shape == (3, 32, 32, 3)
  expected = np.asarray(Image.fromarray(arrays["testA"][0]).convert("L")
                        .resize((32, 32), Image.BICUBIC))
  np.testing.assert_array_equal(batch["A"][0, :, :, 0], to_float(expected))
  # BtoA: the grey side is now domain B's images, still delivered as 'A'
  swapped = make_config(source="folder", path=root, input_nc=1, direction="BtoA")
  (batch,) = take(input_pipeline.create_dataset(swapped, "test", 3, train=False), 1)
  expected = np.asarray(Image.fromarray(arrays["testB"][0]).convert("L")
                        .resize((32, 32), Image.BICUBIC))
  np.testing.assert_array_equal(batch["A"][0, :, :, 0], to_float(expected))


@pytest.mark.parametrize("in_hw,out_hw", [
    ((40, 48), (36, 36)), ((32, 32), (36, 36)), ((17, 50), (23, 9)), ((40, 48), (40, 36)),
    ((44, 52), (32, 32)), ((40, 48), (32, 36)),
])
def test_pil_bicubic_resize_is_pil_bit_for_bit(in_hw, out_hw):
  # noise overshoots: Pillow's clipping between its two passes must be reproduced too
  rng = np.random.default_rng(sum(in_hw + out_hw))
  for array in (rng.integers(0, 256, (*in_hw, 3), dtype=np.uint8),
                rng.integers(0, 256, in_hw, dtype=np.uint8)):
    expected = np.asarray(Image.fromarray(array).resize(out_hw[::-1], Image.BICUBIC))
    got = input_pipeline.pil_bicubic_resize(array.reshape(*in_hw, -1), *out_hw).numpy()
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_each_resampling_pass_is_pils():
  """Pillow 13 resamples rows first for some shape pairs (classic Pillow: always columns first);
  whichever order it took, our two passes in that order give its result exactly."""
  rng = np.random.default_rng(4)
  for in_hw, out_hw in (((64, 31), (13, 64)), ((59, 13), (46, 10)), ((51, 21), (69, 33))):
    array = rng.integers(0, 256, (*in_hw, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(array).resize(out_hw[::-1], Image.BICUBIC))
    x = tf.cast(array, tf.int32)
    cols_first = input_pipeline._pil_resample_axis(
        input_pipeline._pil_resample_axis(x, out_hw[1], 1), out_hw[0], 0).numpy()
    rows_first = input_pipeline._pil_resample_axis(
        input_pipeline._pil_resample_axis(x, out_hw[0], 0), out_hw[1], 1).numpy()
    assert np.array_equal(cols_first, expected) or np.array_equal(rows_first, expected), in_hw


def test_decoding_and_size_rules_match_pil_and_python(tmp_path):
  rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
  for name, kwargs in (("q.jpg", dict(quality=80)), ("grey.jpg", {}), ("p.png", {}), ("b.bmp", {}),
                       ("pal.png", {})):
    image = Image.fromarray(rgb)
    image = image.convert("L") if name.startswith("grey") else image
    image = image.convert("P") if name.startswith("pal") else image
    image.save(tmp_path / name, **kwargs)
    expected = np.asarray(Image.open(tmp_path / name).convert("RGB"))
    got = input_pipeline.decode_image(tf.io.read_file(str(tmp_path / name))).numpy()
    np.testing.assert_array_equal(got, expected, err_msg=name)
  opts = input_pipeline.options_from_config(make_config())
  for preprocess in image_files.PREPROCESS_MODES:
    o = dataclasses.replace(opts, preprocess=preprocess)
    for h, w in ((40, 48), (42, 46), (100, 7), (7, 100), (30, 36), (50, 36), (1, 1)):
      ew, eh = image_files.resized_size(w, h, preprocess, 36, 32)
      got = [int(v) for v in input_pipeline.resized_size(tf.constant(h), tf.constant(w), o)]
      assert got == [eh, ew], (preprocess, h, w)


def test_grey_uint8_matches_pil():
  rgb = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  expected = np.asarray(Image.fromarray(rgb).convert("L"))
  np.testing.assert_array_equal(image_files.grey_uint8(rgb)[..., 0], expected)
  np.testing.assert_array_equal(input_pipeline.rgb_to_grey(rgb).numpy()[..., 0], expected)


# ----------------------------------------------------------------------------------------------------
# Paired folders
# ----------------------------------------------------------------------------------------------------
def test_paired_halves_are_cropped_and_flipped_together(paired):
  root, lefts = paired
  config = make_config(source="paired_folder", path=root, preprocess="crop", serial_batches=True)
  batches = take(input_pipeline.create_dataset(config, "train", 4, seed=0), 5)
  flips = []
  for batch in batches:
    assert set(batch) == {"A", "B"} and batch["A"].shape == (4, 32, 32, 3)
    # B = 255 - A pixel by pixel, so B = -A after scaling, only if both got one crop and one flip
    np.testing.assert_allclose(batch["B"], -batch["A"], atol=1e-6)
    for i in range(4):
      found = find_crop(batch["A"][i], to_float(lefts["train"][i]), 32)
      assert found is not None
      flips.append(found[2])
  assert 0 < sum(flips) < len(flips)


def test_paired_resize_and_direction(paired):
  root, lefts = paired
  config = make_config(source="paired_folder", path=root, preprocess="resize_and_crop")
  (batch,) = take(input_pipeline.create_dataset(config, "train", 4, seed=1), 1)
  # each half is resized on its own (PIL bicubic rounds per pass): B = -A to within one grey level
  np.testing.assert_allclose(batch["B"], -batch["A"], atol=2.5 / 255)
  (test,) = take(input_pipeline.create_dataset(config, "test", 2, train=False), 1)
  expected = np.asarray(Image.fromarray(lefts["test"][0]).resize((32, 32), Image.BICUBIC))
  np.testing.assert_array_equal(test["A"][0], to_float(expected))
  backward = make_config(source="paired_folder", path=root, direction="BtoA")
  (swapped,) = take(input_pipeline.create_dataset(backward, "test", 2, train=False), 1)
  np.testing.assert_array_equal(swapped["A"], test["B"])
  np.testing.assert_array_equal(swapped["B"], test["A"])
  assert input_pipeline.dataset_size(config, "train") == 4
  assert "paired" in input_pipeline.describe(config)


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------
def make_unpaired(root, bad_name=None, bad_bytes=None, bad_array=None):
  save(f"{root}/trainA/0.png", tag_image(10))
  save(f"{root}/trainB/0.png", tag_image(20))
  if bad_bytes is not None:
    with open(f"{root}/trainA/{bad_name}", "wb") as f:
      f.write(bad_bytes)
  if bad_array is not None:
    save(f"{root}/trainA/{bad_name}", bad_array)
  return make_config(source="folder", path=str(root))


def test_missing_and_empty_folders(tmp_path):
  config = make_config(source="folder", path=str(tmp_path / "nowhere"))
  with pytest.raises(input_pipeline.ImageFileError, match="nowhere.*does not exist"):
    input_pipeline.create_dataset(config, "train", 1)
  os.makedirs(tmp_path / "trainA")
  save(f"{tmp_path}/trainB/0.png", tag_image(5))
  config = make_config(source="folder", path=str(tmp_path))
  with pytest.raises(input_pipeline.ImageFileError, match="trainA.*holds no images"):
    input_pipeline.create_dataset(config, "train", 1)
  with pytest.raises(input_pipeline.ImageFileError, match="trainA.*holds no images"):
    input_pipeline.dataset_size(config, "train")


@pytest.mark.parametrize("name,content,message", [
    ("bad.png", b"this is not a png", "bad.png.*corrupt"),
    ("notes.txt", b"labels", "not images.*notes.txt"),
    ("empty.jpg", b"", "empty.jpg.*empty"),
])
def test_bad_files_name_the_file(tmp_path, name, content, message):
  config = make_unpaired(tmp_path, name, bad_bytes=content)
  with pytest.raises(input_pipeline.ImageFileError, match=message):
    input_pipeline.create_dataset(config, "train", 1)


def test_truncated_png_fails_validation(tmp_path):
  path = tmp_path / "whole.png"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8)).save(path)
  data = path.read_bytes()
  config = make_unpaired(tmp_path, "cut.png", bad_bytes=data[:len(data) * 2 // 3])
  with pytest.raises(input_pipeline.ImageFileError, match="cut.png.*corrupt"):
    input_pipeline.create_dataset(config, "train", 1)


def test_truncated_jpeg_and_tiff_are_refused(tmp_path):
  path = tmp_path / "whole.jpg"
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8)).save(path)
  data = path.read_bytes()
  config = make_unpaired(tmp_path / "cut", "cut.jpg", bad_bytes=data[:len(data) // 2])
  with pytest.raises(input_pipeline.ImageFileError, match="cut.jpg.*truncated"):
    input_pipeline.create_dataset(config, "train", 1)
  config = make_unpaired(tmp_path / "tiff", "scan.tif", bad_array=tag_image(9))
  with pytest.raises(input_pipeline.ImageFileError, match="scan.tif.*Convert them to PNG"):
    input_pipeline.create_dataset(config, "train", 1)


def test_rgba_and_16_bit_images_are_refused(tmp_path):
  rgba = np.zeros((H, W, 4), np.uint8)
  config = make_unpaired(tmp_path / "rgba", "alpha.png", bad_array=rgba)
  with pytest.raises(input_pipeline.ImageFileError, match="alpha.png.*4 channels.*convert"):
    input_pipeline.create_dataset(config, "train", 1)
  deep = np.full((H, W), 40000, np.uint16)  # saved as a 16-bit grey PNG
  config = make_unpaired(tmp_path / "deep", "deep.png", bad_array=deep)
  with pytest.raises(input_pipeline.ImageFileError, match="deep.png.*16-bit"):
    input_pipeline.create_dataset(config, "train", 1)


def test_config_errors(tmp_path):
  config = make_unpaired(tmp_path)
  config.crop_size, config.load_size = 300, 286
  with pytest.raises(ValueError, match=r"crop_size \(300\).*load_size \(286\)"):
    input_pipeline.create_dataset(config, "train", 1)
  # crop without resize: the crop must fit each image (40x48 here)
  config = make_unpaired(tmp_path)
  config.preprocess, config.crop_size = "crop", 44
  with pytest.raises(input_pipeline.ImageFileError, match="0.png.*smaller than crop_size=44"):
    input_pipeline.create_dataset(config, "train", 1)
  for field, value in (("source", "web"), ("direction", "AtoC"), ("preprocess", "zoom"),
                       ("input_nc", 4)):
    config = make_unpaired(tmp_path)
    config[field] = value
    with pytest.raises(ValueError, match=field):
      input_pipeline.create_dataset(config, "train", 1)


# ----------------------------------------------------------------------------------------------------
# Determinism, resuming and processes
# ----------------------------------------------------------------------------------------------------
def test_seeded_streams_are_reproducible_and_start_batch_skips(textured):
  root, _ = textured
  config = make_config(source="folder", path=root)
  first = take(input_pipeline.create_dataset(config, "train", 2, seed=7), 4)
  again = take(input_pipeline.create_dataset(config, "train", 2, seed=7), 4)
  other = take(input_pipeline.create_dataset(config, "train", 2, seed=8), 4)
  for x, y in zip(first, again):
    np.testing.assert_array_equal(x["A"], y["A"])
    np.testing.assert_array_equal(x["B"], y["B"])
  assert any(not np.array_equal(x["A"], z["A"]) for x, z in zip(first, other))
  resumed = take(input_pipeline.create_dataset(config, "train", 2, seed=7, start_batch=3), 1)
  np.testing.assert_array_equal(resumed[0]["A"], first[3]["A"])
  np.testing.assert_array_equal(resumed[0]["B"], first[3]["B"])


def test_processes_read_disjoint_files(tagged, paired):
  config = make_config(source="folder", path=tagged, preprocess="none")
  seen = []
  for index in range(2):
    ds = input_pipeline.create_dataset(config, "train", 1, train=False, process_index=index,
                                       process_count=2)
    batches = list(ds.as_numpy_iterator())
    seen.append((set(sum((tags(b["A"]) for b in batches), [])),
                 set(sum((tags(b["B"]) for b in batches), []))))
  assert not seen[0][0] & seen[1][0] and not seen[0][1] & seen[1][1]
  assert seen[0][0] | seen[1][0] == {a_tag(i) for i in range(5)}
  assert seen[0][1] | seen[1][1] == {b_tag(j) for j in range(7)}
  root, _ = paired
  pconfig = make_config(source="paired_folder", path=root)
  shards = [np.concatenate([b["A"] for b in input_pipeline.create_dataset(
      pconfig, "train", 1, train=False, process_index=i, process_count=2).as_numpy_iterator()])
      for i in range(2)]
  assert len(shards[0]) == len(shards[1]) == 2
  assert not any(np.array_equal(x, y) for x in shards[0] for y in shards[1])
  with pytest.raises(ValueError, match="process_index"):
    input_pipeline.create_dataset(config, "train", 1, process_index=2, process_count=2)


# ----------------------------------------------------------------------------------------------------
# digits and tfds sources
# ----------------------------------------------------------------------------------------------------
def fake_digits(split):
  """Tag images whose grey value encodes the label: A 10 * label + 3, B 10 * label + 7."""
  n_a, n_b = (30, 20) if split == "train" else (6, 4)
  label_a = np.arange(n_a, dtype=np.int32) % 10
  label_b = (np.arange(n_b, dtype=np.int32) * 3) % 10
  image = lambda v: np.full((32, 32, 3), v, np.uint8)  # noqa: E731
  return dict(A=np.stack([image(10 * l + 3) for l in label_a]), label_A=label_a,
              B=np.stack([image(10 * l + 7) for l in label_b]), label_B=label_b)


@pytest.fixture
def digits(monkeypatch):
  from translate.data import digits as digits_module
  monkeypatch.setattr(digits_module, "load_split", fake_digits)


def test_digits_source_keeps_labels_with_images(digits):
  config = make_config(source="digits", preprocess="none", no_flip=True)
  batches = take(input_pipeline.create_dataset(config, "train", 8, seed=0), 4)
  for batch in batches:
    assert batch["A"].shape == (8, 32, 32, 3) and batch["label_A"].dtype == np.int32
    assert tags(batch["A"]) == [10 * l + 3 for l in batch["label_A"]]
    assert tags(batch["B"]) == [10 * l + 7 for l in batch["label_B"]]
  assert input_pipeline.dataset_size(config, "train") == 30
  test = list(input_pipeline.create_dataset(config, "test", 4, train=False).as_numpy_iterator())
  assert np.concatenate([b["label_A"] for b in test]).tolist() == fake_digits("test")["label_A"].tolist()
  swapped = make_config(source="digits", preprocess="none", direction="BtoA", input_nc=1)
  (batch,) = take(input_pipeline.create_dataset(swapped, "test", 4, train=False), 1)
  assert batch["A"].shape == (4, 32, 32, 1)
  assert batch["label_A"].tolist() == fake_digits("test")["label_B"].tolist()
  assert tags(batch["A"]) == [10 * l + 7 for l in batch["label_A"]]


def test_digits_with_resize_and_shards(digits):
  config = make_config(source="digits", preprocess="resize_and_crop")  # 32 -> 36 -> crop 32
  (batch,) = take(input_pipeline.create_dataset(config, "train", 4, seed=0, process_index=1,
                                                process_count=2), 1)
  assert batch["A"].shape == (4, 32, 32, 3)
  # process 1 of 2 holds rows 4..7 of the global batch of 8 that one process reads (same crops)
  (whole,) = take(input_pipeline.create_dataset(config, "train", 8, seed=0), 1)
  for key in ("A", "B", "label_A", "label_B"):
    np.testing.assert_array_equal(batch[key], whole[key][4:])


def test_tfds_source_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = make_config(source="tfds", tfds_name="cycle_gan/horse2zebra", data_dir=str(tmp_path))
  with tfds.testing.mock_data(num_examples=5):
    (batch,) = take(input_pipeline.create_dataset(config, "train", 3, seed=0), 1)
    assert set(batch) == {"A", "B"}  # the cycle_gan 'label' is the domain: not passed on
    assert batch["A"].shape == (3, 32, 32, 3) and batch["B"].shape == (3, 32, 32, 3)
    assert -1 <= batch["A"].min() < batch["A"].max() <= 1
    test = list(input_pipeline.create_dataset(config, "test", 2, train=False).as_numpy_iterator())
    assert [len(b["A"]) for b in test] == [2, 2, 1]
    assert input_pipeline.dataset_size(config, "train") == 5
    sharded = input_pipeline.create_dataset(config, "train", 2, process_index=1, process_count=2)
    assert take(sharded, 1)[0]["A"].shape == (2, 32, 32, 3)
  assert "tfds cycle_gan/horse2zebra" in input_pipeline.describe(config)
  assert input_pipeline._tfds_split(input_pipeline.options_from_config(config), "trainA", 1, 2) \
      == tfds.split_for_jax_process("trainA", process_index=1, process_count=2)


def test_tf_is_kept_off_accelerators():
  input_pipeline.keep_tf_off_accelerators()
  assert tf.config.get_visible_devices("GPU") == []
