"""Per-image decoding and augmentation with PIL (deterministic given an rng).

train: random-resized-crop (torchvision's sampling: area in [min_scale, 1],
log-uniform aspect ratio in [3/4, 4/3], 10 tries then a center crop) to
`size`, then a horizontal flip with probability 1/2.
eval: resize the shorter side to round(size * resize_ratio), center crop.
JPEGs are decoded at reduced resolution (`Image.draft`) when the target is
much smaller, which is what keeps decoding cheap on CPU.
"""
import math

import numpy as np
from PIL import Image

from ftlab.data.sources import DataError

RATIO = (3 / 4, 4 / 3)


def open_rgb(path: str, min_size: tuple) -> tuple:
  """Opens `path`, drafted to at least `min_size` (w, h); returns (image, scale)."""
  try:
    img = Image.open(path)
    full = img.size
    img.draft("RGB", (max(1, int(min_size[0])), max(1, int(min_size[1]))))
    scale = img.size[0] / full[0]
    img = img.convert("RGB")
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot decode image {path}: {e}") from e
  return img, scale


def image_size(path: str) -> tuple:
  try:
    with Image.open(path) as img:
      return img.size
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot read image {path}: {e}") from e


def sample_crop(width: int, height: int, min_scale: float, rng: np.random.Generator) -> tuple:
  """Returns a crop box (left, top, w, h) as torchvision's RandomResizedCrop."""
  area = width * height
  log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
  for _ in range(10):
    target = area * rng.uniform(min_scale, 1.0)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
  in_ratio = width / height
  if in_ratio < RATIO[0]:
    w, h = width, int(round(width / RATIO[0]))
  elif in_ratio > RATIO[1]:
    w, h = int(round(height * RATIO[1])), height
  else:
    w, h = width, height
  return (width - w) // 2, (height - h) // 2, w, h


def train_image(path: str, size: int, min_scale: float, hflip: bool,
                rng: np.random.Generator) -> np.ndarray:
  width, height = image_size(path)
  left, top, w, h = sample_crop(width, height, min_scale, rng)
  flip = hflip and rng.uniform() < 0.5
  img, scale = open_rgb(path, (width * size / w, height * size / h))
  box = (left * scale, top * scale, (left + w) * scale, (top + h) * scale)
  img = img.resize((size, size), Image.BILINEAR, box=box)
  if flip:
    img = img.transpose(Image.FLIP_LEFT_RIGHT)
  return np.asarray(img, np.uint8)


def eval_image(path: str, size: int, resize_ratio: float) -> np.ndarray:
  width, height = image_size(path)
  short = int(round(size * resize_ratio))
  factor = short / min(width, height)
  new_w, new_h = max(short, round(width * factor)), max(short, round(height * factor))
  img, _ = open_rgb(path, (new_w, new_h))
  img = img.resize((new_w, new_h), Image.BILINEAR)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return np.asarray(img.crop((left, top, left + size, top + size)), np.uint8)
