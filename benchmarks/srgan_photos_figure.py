"""The SRGAN figure: LR | bicubic | SRResNet | SRGAN | HR on crops of the held-out photos, and the
metrics table (bicubic, SRResNet, SRGAN: PSNR-Y, SSIM-Y, LPIPS on the whole test photos).

    .venv/bin/python -m translate.train --config=configs/srresnet.py:photos --workdir=runs/srresnet
    .venv/bin/python -m translate.train --config=configs/srgan.py:photos --workdir=runs/srgan \
        --config.init_from=runs/srresnet
    .venv/bin/python benchmarks/srgan_photos_figure.py --srresnet=runs/srresnet --srgan=runs/srgan \
        --output=docs/figures/srgan_photos.png

The metrics are the last entries of each run's eval.json (the engine's end-of-run evaluation:
psnr_y / ssim_y / lpips and their `_bicubic` baseline on the same LR images). The crops are 128x128 HR
(32x32 LR) windows of the test photos at fixed positions; every column is upscaled from the same LR
crop (the networks see the whole LR photo, then the crop is cut from their output).
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from translate import inference, visualize
from translate.data import sr
from translate.methods import srresnet

# (photo, HR top-left y, x) of the 128x128 crops shown, one row each.
CROPS = ((("skimage", "chelsea"), 60, 160), (("sklearn", "china.jpg"), 60, 220),
         (("skimage", "coffee"), 150, 250))
SIZE = 128


def last_eval(workdir: str) -> dict:
  with open(os.path.join(workdir, "eval.json")) as f:
    return json.load(f)[-1]


def table(srresnet_dir: str, srgan_dir: str) -> str:
  a, b = last_eval(srresnet_dir), last_eval(srgan_dir)
  rows = [("bicubic", a["psnr_y_bicubic"], a["ssim_y_bicubic"], a["lpips_bicubic"]),
          (f"SRResNet ({a['step']} steps)", a["psnr_y"], a["ssim_y"], a["lpips"]),
          (f"SRGAN (+{b['step']} steps)", b["psnr_y"], b["ssim_y"], b["lpips"])]
  lines = ["| x4, held-out photos | PSNR-Y (dB) | SSIM-Y | LPIPS |", "|---|---|---|---|"]
  lines += [f"| {n} | {p:.2f} | {s:.4f} | {l:.4f} |" for n, p, s, l in rows]
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--srresnet", required=True)
  parser.add_argument("--srgan", required=True)
  parser.add_argument("--output", default="docs/figures/srgan_photos.png")
  args = parser.parse_args(argv)
  models = {"SRResNet": inference.Predictor(args.srresnet), "SRGAN": inference.Predictor(args.srgan)}
  scale = models["SRResNet"].config.model.scaling_factor
  columns = {k: [] for k in ("LR", "bicubic", "SRResNet", "SRGAN", "HR")}
  for photo, y, x in CROPS:
    hr = sr.crop_to_multiple(sr.load_photo(*photo), scale)
    lr = sr.to_float(sr.downsample(hr, scale))
    window = np.s_[y:y + SIZE, x:x + SIZE]
    lr_window = np.s_[y // scale:(y + SIZE) // scale, x // scale:(x + SIZE) // scale]
    columns["LR"].append(np.repeat(np.repeat(lr[lr_window], scale, 0), scale, 1))  # nearest, to size
    up = np.asarray(sr.imresize(lr.astype(np.float32), output_shape=hr.shape[:2]))
    columns["bicubic"].append(np.clip(up, -1, 1)[window])
    for name, p in models.items():
      out = srresnet.upscale(lambda im, p=p: p.translate(im), lr, scale, tile=0)
      columns[name].append(out[window])
    columns["HR"].append(sr.to_float(hr)[window])
  grid = visualize.make_grid({k: np.stack(v) for k, v in columns.items()}, max_rows=len(CROPS))
  visualize.save_png(grid, args.output)
  print(f"Wrote {args.output}: columns {list(columns)}")
  print(table(args.srresnet, args.srgan))


if __name__ == "__main__":
  main()
