"""Images read upright everywhere (EXIF orientation), one extension list, inference never overwrites."""
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from translate import inference
from translate.data import images as image_files
from translate.data import input_pipeline


def _save_with_orientation(path, array, orientation):
  image = Image.fromarray(array)
  exif = image.getexif()
  exif[image_files.EXIF_ORIENTATION] = orientation
  image.save(path, exif=exif.tobytes(), **({"quality": 95} if path.endswith(".jpg") else {}))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_pipeline_and_inference_apply_exif_orientation_as_pil(tmp_path, orientation):
  # Stored 48 wide x 32 high, non-square and asymmetric so every one of the 8 transforms differs.
  stored = np.random.default_rng(orientation).integers(0, 256, (32, 48, 3), dtype=np.uint8)
  path = str(tmp_path / "photo.png")  # PNG: lossless, so the comparison is exact
  _save_with_orientation(path, stored, orientation)
  with Image.open(path) as img:
    upright = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
  assert image_files.exif_orientations([path]) == [orientation]
  decoded = input_pipeline.decode_image(open(path, "rb").read())
  np.testing.assert_array_equal(input_pipeline.apply_orientation(decoded, orientation).numpy(), upright)
  read = inference.read_image(path, 3)
  np.testing.assert_allclose(read, upright / 127.5 - 1.0, atol=1e-6)
  if orientation >= 5:
    assert read.shape[:2] == (48, 32)  # sideways photos come out upright


def test_one_list_of_extensions():
  assert inference.IMAGE_EXTENSIONS == image_files.IMAGE_EXTENSIONS
  assert ".gif" in inference.IMAGE_EXTENSIONS


def test_output_names_give_each_input_its_own_file_and_refuse_overwriting(tmp_path):
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in ("cat.png", "cat.jpg", "dog.png"):
    Image.new("RGB", (8, 8)).save(folder / name)
  inputs = inference.list_inputs(str(folder))
  names = inference.output_names(inputs, str(tmp_path / "out"))
  assert len(set(names.values())) == len(inputs) == 3
  assert sorted(os.path.basename(n) for n in names.values()) == ["cat_jpg.png", "cat_png.png",
                                                                  "dog.png"]
  with pytest.raises(ValueError, match="would replace an input image"):
    inference.output_names(inputs, str(folder))  # dog.png would be overwritten
  # a single input whose output name is itself (an input PNG translated into its own folder)
  with pytest.raises(ValueError, match="would replace an input image"):
    inference.output_names([str(folder / "dog.png")], str(folder))
