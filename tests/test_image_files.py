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


def test_each_image_is_translated_alone_whatever_its_batch():
  # pix2pix normalises with the batch's own statistics at test time (batch norm in train mode, as the
  # reference test script); a batch of 4 used to change every image's output (PSNR 9.1249 / 9.1262 /
  # 9.1267 at evaluation batch 1 / 2 / 4). Predict.per_image computes each image alone.
  import jax
  from tests.helpers import make_batch, tiny_config
  from translate import loop, methods, parallel
  config = tiny_config("pix2pix", batch_size=4)
  assert config.model.norm == "batch" and not config.eval_mode
  method = methods.get("pix2pix")
  mesh = parallel.make_mesh(1)
  batch = make_batch("pix2pix", config, np.random.default_rng(0))
  state = loop.create_train_state(config, method, mesh, method.optimizers(config, 1, 1),
                                  {k: v[:1] for k, v in batch.items()}, {})
  spec = method.predicts["AtoB"]
  name = spec.image_inputs[0].name
  run = jax.jit(lambda x: spec.per_image(config, state, {}, **{name: x})["image"])
  together = np.asarray(run(batch["A"]))
  alone = np.concatenate([np.asarray(run(batch["A"][i:i + 1])) for i in range(4)])
  np.testing.assert_allclose(together, alone, atol=1e-5)
  plain = np.asarray(jax.jit(lambda x: spec.fn(config, state, {}, **{name: x})["image"])(batch["A"]))
  assert np.abs(plain - alone).max() > 1e-3  # the batch statistics did couple the images
