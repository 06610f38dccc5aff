"""Augmentation policies from timm-style strings (`config.data.auto_augment`).

* RandAugment: `rand-m7-mstd0.5` (MindCV spells it `randaug-...`, same
  meaning). Sections, in any order: `m<M>` magnitude 0..10 (default 10),
  `n<N>` ops per image (default 2), `p<P>` probability of applying each
  chosen op (default 0.5), `mstd<S>` std of a Gaussian noise on the
  magnitude per op (> 100: uniform in [0, M]), `mmax<X>` upper clip of the
  noisy magnitude (default 10), `inc1` the increasing-severity op set. The N
  ops are drawn uniformly with replacement from the 15 ops (`RAND_OPS` or
  `RAND_INCREASING_OPS`), as timm's RandAugment does.
* AutoAugment: `original` and `v0` (the ImageNet policies, timm's tables:
  one of 25 sub-policies uniformly, each op with its own probability and
  magnitude), optionally `-mstd<S>`.
* TrivialAugment: `trivialaugment` = one op from `RAND_INCREASING_OPS`,
  always applied, magnitude uniform in [0, 10] (timm's ops and ranges, i.e.
  `rand-n1-p1-m10-mstd101-inc1`; torchvision's TrivialAugmentWide has other
  ranges and an identity op).

Unlike timm, a magnitude above `mmax` (10 by default) is an error rather
than silently clipped. Every random draw comes from the Generator passed in.
"""
import dataclasses
import math
import re
from typing import Callable, Optional, Tuple

import numpy as np
from PIL import Image

from ftlab.data import augment_ops

KEY = "config.data.auto_augment"

RAND_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
            "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
            "TranslateXRel", "TranslateYRel")
RAND_INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing",
                       "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
                       "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

# (op, probability, magnitude) pairs of the AutoAugment ImageNet policies.
AUTO_POLICIES = {
    "original": (
        (("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
        (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
        (("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)),
        (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
        (("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
        (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
        (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
        (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
        (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
        (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    ),
    "v0": (
        (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
        (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
        (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
        (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
        (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
        (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
        (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
        (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
        (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
        (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
        (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
        (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
        (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
        (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
        (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
        (("Rotate", 1.0, 7), ("TranslateYRel", 0.8, 9)),
        (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
        (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
        (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
        (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
        (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
        (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
        (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
        (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
        (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
    ),
}


@dataclasses.dataclass(frozen=True)
class Noise:
  """Per-op magnitude noise: Gaussian with `std` (inf: uniform in [0, m]), clipped to [0, `max`]."""
  std: float = 0.0
  max: float = augment_ops.LEVEL_DENOM

  def draw(self, magnitude: float, rng: np.random.Generator) -> float:
    if math.isinf(self.std):
      magnitude = rng.uniform(0.0, magnitude)
    elif self.std > 0:
      magnitude = rng.normal(magnitude, self.std)
    return min(max(magnitude, 0.0), self.max)


def _apply(img, name: str, prob: float, magnitude: float, noise: Noise, rng):
  if prob < 1.0 and rng.uniform() > prob:
    return img
  return augment_ops.apply(name, img, noise.draw(magnitude, rng), rng)


@dataclasses.dataclass(frozen=True)
class RandAugment:
  """`num_ops` ops drawn uniformly with replacement from `ops`, each applied with `prob`."""
  ops: Tuple[str, ...]
  magnitude: float = 10.0
  num_ops: int = 2
  prob: float = 0.5
  noise: Noise = Noise()

  def choose(self, rng: np.random.Generator) -> list:
    return [self.ops[i] for i in rng.integers(0, len(self.ops), self.num_ops)]

  def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
    for name in self.choose(rng):
      img = _apply(img, name, self.prob, self.magnitude, self.noise, rng)
    return img


@dataclasses.dataclass(frozen=True)
class AutoAugment:
  """One sub-policy drawn uniformly, its (op, probability, magnitude) applied in order."""
  policy: tuple
  noise: Noise = Noise()

  def choose(self, rng: np.random.Generator) -> tuple:
    return self.policy[int(rng.integers(0, len(self.policy)))]

  def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
    for name, prob, magnitude in self.choose(rng):
      img = _apply(img, name, prob, magnitude, self.noise, rng)
    return img


class _Bad(Exception):
  """What is wrong with a policy string (becomes the ValueError's tail)."""


def _sections(parts, allowed) -> dict:
  """{key: float value} of `-key<value>` sections; `allowed` maps key -> meaning."""
  out = {}
  for part in parts:
    match = re.fullmatch(r"([a-z]+)(.*)", part)
    if not match or match.group(1) not in allowed:
      raise _Bad(f"unknown section {part!r} (known: {', '.join(allowed)})")
    key, text = match.groups()
    try:
      out[key] = float(text)
    except ValueError:
      raise _Bad(f"{allowed[key]} {text!r} in {part!r} is not a number") from None
  return out


RAND_SECTIONS = {"m": "magnitude", "n": "number of ops", "p": "op probability",
                 "mstd": "magnitude std", "mmax": "maximum magnitude", "inc": "increasing (0/1)"}


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise _Bad(message)


def _rand(parts) -> RandAugment:
  s = _sections(parts, RAND_SECTIONS)
  magnitude, num_ops = s.get("m", 10.0), s.get("n", 2.0)
  prob, std, top = s.get("p", 0.5), s.get("mstd", 0.0), s.get("mmax", augment_ops.LEVEL_DENOM)
  _check(top > 0, f"maximum magnitude {top:g} must be > 0")
  _check(0 <= magnitude <= top, f"magnitude {magnitude:g} is outside [0, {top:g}] "
         "(raise the bound with -mmax)")
  _check(num_ops >= 1 and num_ops.is_integer(),
         f"number of ops {num_ops:g} must be an integer >= 1")
  _check(0 <= prob <= 1, f"op probability {prob:g} is outside [0, 1]")
  _check(std >= 0, f"magnitude std {std:g} must be >= 0")
  _check(s.get("inc", 0.0) in (0.0, 1.0), f"inc{s.get('inc', 0.0):g} must be inc0 or inc1")
  ops = RAND_INCREASING_OPS if s.get("inc", 0.0) else RAND_OPS
  return RandAugment(ops, magnitude, int(num_ops), prob,
                     Noise(math.inf if std > 100 else std, top))


def parse(spec: str) -> Optional[Callable]:
  """The policy of `spec` (a callable (PIL image, rng) -> PIL image); None for "".

  Raises:
    ValueError: one line naming `config.data.auto_augment`, `spec` and what is wrong.
  """
  if not spec:
    return None
  head, *parts = spec.split("-")
  try:
    if head in ("rand", "randaug"):
      return _rand(parts)
    if head in AUTO_POLICIES:
      std = _sections(parts, {"mstd": "magnitude std"}).get("mstd", 0.0)
      _check(std >= 0, f"magnitude std {std:g} must be >= 0")
      return AutoAugment(AUTO_POLICIES[head], Noise(math.inf if std > 100 else std))
    if head == "trivialaugment":
      _check(not parts, f"trivialaugment takes no sections, got {'-'.join(parts)!r}")
      return RandAugment(RAND_INCREASING_OPS, 10.0, 1, 1.0, Noise(math.inf))
  except _Bad as e:
    raise ValueError(f"{KEY}={spec!r}: {e}") from None
  raise ValueError(f"{KEY}={spec!r}: unknown policy {head!r} (known: rand-..., randaug-..., "
                   f"{', '.join(AUTO_POLICIES)}, trivialaugment)")
