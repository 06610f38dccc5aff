"""Per-image decoding and augmentation with PIL (deterministic given an rng).

train: random-resized-crop (torchvision's sampling: area in [min_scale, 1],
log-uniform aspect ratio in [3/4, 4/3], 10 tries then a center crop) to
`size`, then a horizontal flip with probability 1/2; then (`Augment` in
pipeline.py) color jitter or an auto-augment policy, then random erasing.
eval (`eval_crop`): torchvision's Resize + CenterCrop, the one evaluation
transform of training, `ftlab.evaluate` and `ftlab.predict`.
Train crops decode JPEGs at reduced resolution (`Image.draft`) when the
target is much smaller, which is what keeps decoding cheap on CPU; the eval
transform decodes at full resolution, as torchvision does.
"""
import math

import numpy as np
from PIL import Image, ImageEnhance

from ftlab.data.sources import DataError, open_image

RATIO = (3 / 4, 4 / 3)


def open_header(path) -> Image.Image:
  """`path` opened once, only its header read (size, mode); `decode_rgb` decodes it."""
  try:
    return open_image(path)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot read image {path}: {e}") from e


def decode_rgb(img: Image.Image, path, min_size: tuple) -> tuple:
  """`open_header`'s image decoded as RGB, drafted to at least `min_size` (w, h) (JPEG decodes
  at a reduced scale when that is enough); returns (image, scale of the decoded to the full size)."""
  try:
    full = img.size
    img.draft("RGB", (max(1, int(min_size[0])), max(1, int(min_size[1]))))
    scale = img.size[0] / full[0]
    img = img.convert("RGB")
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot decode image {path}: {e}") from e
  return img, scale


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


def draw_flip(rng: np.random.Generator) -> bool:
  """Whether to mirror an image (p = 0.5); the feature caches replay this draw."""
  return rng.uniform() < 0.5


def train_crop(path: str, size: int, min_scale: float, hflip: bool,
               rng: np.random.Generator) -> Image.Image:
  """The random-resized-crop (and flip) of `path` as a PIL RGB image."""
  img = open_header(path)
  width, height = img.size
  left, top, w, h = sample_crop(width, height, min_scale, rng)
  flip = hflip and draw_flip(rng)
  img, scale = decode_rgb(img, path, (width * size / w, height * size / h))
  box = (left * scale, top * scale, (left + w) * scale, (top + h) * scale)
  img = img.resize((size, size), Image.BILINEAR, box=box)
  if flip:
    img = img.transpose(Image.FLIP_LEFT_RIGHT)
  return img


def train_image(path: str, size: int, min_scale: float, hflip: bool,
                rng: np.random.Generator) -> np.ndarray:
  return np.asarray(train_crop(path, size, min_scale, hflip, rng), np.uint8)


def color_jitter(img: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
  """torchvision's ColorJitter(strength, strength, strength) without hue.

  Brightness, contrast and saturation factors are each uniform in
  [max(0, 1 - strength), 1 + strength], applied in a random order.
  """
  enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
  factors = rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength, 3)
  for i in rng.permutation(3):
    img = enhancers[i](img).enhance(factors[i])
  return img


def random_erase(image: np.ndarray, prob: float, fill: tuple,
                 rng: np.random.Generator) -> np.ndarray:
  """timm's RandomErasing (one box, area 2%..1/3, aspect 0.3..3.3, 10 tries), mode 'const'.

  The box is filled with `fill` (the uint8 ImageNet mean, which normalises to
  ~0: what timm's 'const' mode writes into the normalised tensor).
  """
  if rng.uniform() >= prob:
    return image
  height, width = image.shape[:2]
  for _ in range(10):
    area = height * width * rng.uniform(0.02, 1 / 3)
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
    h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
    if w < width and h < height:
      top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
      image = image.copy()
      image[top:top + h, left:left + w] = np.asarray(fill, np.uint8)
      return image
  return image


def eval_crop(img: Image.Image, size: int, resize_ratio: float) -> np.ndarray:
  """The evaluation transform: torchvision's `Resize(round(size * resize_ratio))`, then
  `CenterCrop(size)`, on the image as RGB; uint8 (size, size, 3).

  The shorter side becomes round(size * resize_ratio) and the longer one
  `int(short * long / shorter)`, bilinear (torchvision's arithmetic on PIL
  images); the crop's corner is rounded as torchvision's CenterCrop rounds it.
  Evaluation, `ftlab.evaluate` and `ftlab.predict` all go through here.
  """
  img = img.convert("RGB")
  short = int(round(size * resize_ratio))
  width, height = img.size
  if width <= height:
    new_w, new_h = short, int(short * height / width)
  else:
    new_w, new_h = int(short * width / height), short
  img = img.resize((new_w, new_h), Image.BILINEAR)
  left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
  return np.asarray(img.crop((left, top, left + size, top + size)), np.uint8)


def eval_image(path, size: int, resize_ratio: float) -> np.ndarray:
  """`eval_crop` of the image at `path`, decoded at full resolution (no JPEG draft: the
  result equals torchvision's on the same file)."""
  img = open_header(path)
  try:
    img.load()
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"cannot decode image {path}: {e}") from e
  return eval_crop(img, size, resize_ratio)
