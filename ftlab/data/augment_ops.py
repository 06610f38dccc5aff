"""The image operations of AutoAugment, RandAugment and TrivialAugment (PIL, RGB uint8).

The ops and their magnitude -> argument maps follow timm's
`timm/data/auto_augment.py`: a magnitude (level) is on a 0..10 scale
(`LEVEL_DENOM`), signed ops (Rotate, Shear*, Translate*, the *Increasing
enhancements) flip their sign with probability 1/2, and geometric ops fill
uncovered pixels with the ImageNet mean in uint8 (what timm's
`create_transform` passes as `img_mean`). Every random draw (the sign) comes
from the numpy Generator the caller passes, so an image's augmentation is a
pure function of the pipeline's (seed, epoch, index).

One difference from timm: geometric ops resample bilinearly (timm's training
default draws bilinear or bicubic at random per op).
"""
import dataclasses
from typing import Callable, Dict, Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

LEVEL_DENOM = 10.0
FILL = (124, 116, 104)  # round(255 * ImageNet mean)
RESAMPLE = Image.Resampling.BILINEAR


def _affine(img: Image.Image, matrix: tuple) -> Image.Image:
  return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=RESAMPLE,
                       fillcolor=FILL)


def shear_x(img, factor):
  return _affine(img, (1, factor, 0, 0, 1, 0))


def shear_y(img, factor):
  return _affine(img, (1, 0, 0, factor, 1, 0))


def translate_x_rel(img, fraction):
  return _affine(img, (1, 0, fraction * img.size[0], 0, 1, 0))


def translate_y_rel(img, fraction):
  return _affine(img, (1, 0, 0, 0, 1, fraction * img.size[1]))


def rotate(img, degrees):
  return img.rotate(degrees, resample=RESAMPLE, fillcolor=FILL)


def auto_contrast(img):
  return ImageOps.autocontrast(img)


def equalize(img):
  return ImageOps.equalize(img)


def invert(img):
  return ImageOps.invert(img)


def solarize(img, threshold):
  """Inverts the pixels >= `threshold` (256: none)."""
  return ImageOps.solarize(img, threshold)


def solarize_add(img, add, threshold=128):
  """Adds `add` (saturating at 255) to the pixels below `threshold`."""
  lut = [min(255, i + add) if i < threshold else i for i in range(256)]
  return img.point(lut * len(img.getbands()))


def posterize(img, bits):
  """Keeps the `bits` high bits of each channel (8 or more: unchanged)."""
  return img if bits >= 8 else ImageOps.posterize(img, bits)


def color(img, factor):
  return ImageEnhance.Color(img).enhance(factor)


def contrast(img, factor):
  return ImageEnhance.Contrast(img).enhance(factor)


def brightness(img, factor):
  return ImageEnhance.Brightness(img).enhance(factor)


def sharpness(img, factor):
  return ImageEnhance.Sharpness(img).enhance(factor)


# --- magnitude (0..10) -> op arguments ---------------------------------------


def _negate(value: float, rng: np.random.Generator) -> float:
  return -value if rng.uniform() > 0.5 else value


def _signed(scale: float) -> Callable:
  return lambda level, rng: (_negate(level / LEVEL_DENOM * scale, rng),)


def _enhance(level, _):
  return (level / LEVEL_DENOM * 1.8 + 0.1,)


def _enhance_increasing(level, rng):
  return (max(0.1, 1.0 + _negate(level / LEVEL_DENOM * 0.9, rng)),)


def _posterize(level, _):
  return (int(level / LEVEL_DENOM * 4),)


def _posterize_increasing(level, rng):
  return (4 - _posterize(level, rng)[0],)


def _posterize_original(level, rng):
  return (_posterize(level, rng)[0] + 4,)


def _solarize(level, _):
  return (min(256, int(level / LEVEL_DENOM * 256)),)


def _solarize_increasing(level, rng):
  return (256 - _solarize(level, rng)[0],)


def _solarize_add(level, _):
  return (min(128, int(level / LEVEL_DENOM * 110)),)


@dataclasses.dataclass(frozen=True)
class Op:
  """An image function and its magnitude -> arguments map (None: no argument)."""
  fn: Callable
  level_to_args: Optional[Callable] = None


OPS: Dict[str, Op] = {
    "AutoContrast": Op(auto_contrast),
    "Equalize": Op(equalize),
    "Invert": Op(invert),
    "Rotate": Op(rotate, _signed(30.0)),
    "Posterize": Op(posterize, _posterize),
    "PosterizeIncreasing": Op(posterize, _posterize_increasing),
    "PosterizeOriginal": Op(posterize, _posterize_original),
    "Solarize": Op(solarize, _solarize),
    "SolarizeIncreasing": Op(solarize, _solarize_increasing),
    "SolarizeAdd": Op(solarize_add, _solarize_add),
    "Color": Op(color, _enhance),
    "ColorIncreasing": Op(color, _enhance_increasing),
    "Contrast": Op(contrast, _enhance),
    "ContrastIncreasing": Op(contrast, _enhance_increasing),
    "Brightness": Op(brightness, _enhance),
    "BrightnessIncreasing": Op(brightness, _enhance_increasing),
    "Sharpness": Op(sharpness, _enhance),
    "SharpnessIncreasing": Op(sharpness, _enhance_increasing),
    "ShearX": Op(shear_x, _signed(0.3)),
    "ShearY": Op(shear_y, _signed(0.3)),
    "TranslateXRel": Op(translate_x_rel, _signed(0.45)),
    "TranslateYRel": Op(translate_y_rel, _signed(0.45)),
}


def apply(name: str, img: Image.Image, level: float, rng: np.random.Generator) -> Image.Image:
  """Applies op `name` at magnitude `level` (0..10), drawing its sign from `rng`."""
  op = OPS[name]
  args = op.level_to_args(level, rng) if op.level_to_args is not None else ()
  return op.fn(img, *args)
