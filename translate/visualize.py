"""Image grids for TensorBoard and PNG files: one row per sample, one column per named image."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
  """[-1, 1] float images (B, H, W, C) -> uint8 RGB (1-channel images are repeated to 3)."""
  x = np.asarray(images, np.float32)
  x = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


def make_grid(columns: dict, max_rows: int = 8, pad: int = 2) -> np.ndarray:
  """uint8 (H, W, 3) grid: column j shows `columns[name_j]` (float [-1, 1], (B, h, w, c)) for the first
  `max_rows` samples. Images of different sizes in one grid are placed top-left in equal cells."""
  arrays = [to_uint8(v)[:max_rows] for v in columns.values()]
  rows = min(len(a) for a in arrays)
  cell_h = max(a.shape[1] for a in arrays)
  cell_w = max(a.shape[2] for a in arrays)
  grid = np.full((rows * (cell_h + pad) + pad, len(arrays) * (cell_w + pad) + pad, 3), 255, np.uint8)
  for j, a in enumerate(arrays):
    for i in range(rows):
      y, x = pad + i * (cell_h + pad), pad + j * (cell_w + pad)
      grid[y:y + a.shape[1], x:x + a.shape[2]] = a[i]
  return grid


def save_png(image: np.ndarray, path: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp.png"
  Image.fromarray(image).save(tmp)
  os.replace(tmp, path)
