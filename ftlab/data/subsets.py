"""Data-size subsets of the train split: k images per class, or a fraction of each class.

For data-size curves ("at 10 images per class, should I probe or
fine-tune?"): `config.data.train_per_class` or `config.data.train_fraction`
keeps part of every class, drawn by the data seed `config.data.subset_seed`
(never `config.seed`: the training seeds of a study all see the same
images). Each class is shuffled once by a generator seeded with
(subset_seed, class index) and a subset is a prefix of that order, so for
one data seed the subsets are nested: k=5's images are among k=10's.

Where the minival comes from (`config.data.minival_from`):
* 'subset' (default): the minival is carved from the subset's own images
  (a user with k images per class has no more). The carve-out takes the
  *end* of each class's prefix, so the train images stay nested across sizes.
* 'full': the minival is carved from the whole train split first (the same
  minival at every size, for controlled studies), the subset then drawn from
  the rest.
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np

from ftlab.data.sources import DataError, Split, carve_minival, check_minival_fraction, held_out_count

MINIVAL_FROM = ("subset", "full")


@dataclasses.dataclass(frozen=True)
class SubsetSpec:
  """The subset a config asks for (`config.data`'s subset keys, checked)."""
  per_class: int          # 0 = not by count
  fraction: float         # 1.0 = not by fraction
  seed: int
  minival_from: str

  @classmethod
  def from_config(cls, cfg) -> "SubsetSpec":
    if cfg.train_per_class < 0:
      raise DataError(f"config.data.train_per_class={cfg.train_per_class} must be >= 0 (0 = all)")
    if not 0.0 < cfg.train_fraction <= 1.0:
      raise DataError(f"config.data.train_fraction={cfg.train_fraction} must be in (0, 1] "
                      "(1 = all)")
    if cfg.train_per_class and cfg.train_fraction < 1.0:
      raise DataError(f"config.data.train_per_class={cfg.train_per_class} and "
                      f"config.data.train_fraction={cfg.train_fraction} are both set: use one")
    if cfg.minival_from not in MINIVAL_FROM:
      raise DataError(f"config.data.minival_from={cfg.minival_from!r}; use one of {MINIVAL_FROM}")
    return cls(cfg.train_per_class, cfg.train_fraction, cfg.subset_seed, cfg.minival_from)

  @property
  def active(self) -> bool:
    return bool(self.per_class) or self.fraction < 1.0

  def size(self, available: int) -> int:
    """Images kept of a class with `available` images."""
    if self.per_class:
      return self.per_class
    return max(int(round(available * self.fraction)), 1)


def class_order(labels: np.ndarray, label: int, seed: int) -> np.ndarray:
  """The indices of class `label`'s images, shuffled by (seed, label): subsets are prefixes."""
  members = np.flatnonzero(labels == label)
  return np.random.default_rng([seed, int(label)]).permutation(members)


def _check_size(spec: SubsetSpec, classes: Sequence[str], label: int, available: int,
                where: str) -> int:
  n = spec.size(available)
  if n > available:
    raise DataError(f"class {classes[label]!r} has {available} train images {where}, fewer than "
                    f"config.data.train_per_class={spec.per_class}: lower it or drop the class")
  return n


def _kept(split: Split, spec: SubsetSpec, classes: Sequence[str], where: str) -> Dict[int, list]:
  """Per class, the first `size` indices of its order."""
  kept = {}
  for label in range(len(classes)):
    order = class_order(split.labels, label, spec.seed)
    kept[label] = order[:_check_size(spec, classes, label, len(order), where)].tolist()
  return kept


def draw(train: Split, spec: SubsetSpec, minival_fraction: float,
         classes: Sequence[str]) -> tuple:
  """(train, minival) of the subset `spec` of the whole train split `train`."""
  check_minival_fraction(minival_fraction)
  if spec.minival_from == "full":
    rest, minival = carve_minival(train, minival_fraction, spec.seed)
    kept = _kept(rest, spec, classes, "left after the minival carve-out "
                 "(config.data.minival_from='full')")
    return rest.subset(np.array(sorted(i for v in kept.values() for i in v), np.int64)), minival
  kept = _kept(train, spec, classes, "in the train split")
  train_idx, held_idx = [], []
  for prefix in kept.values():
    n_held = held_out_count(len(prefix), minival_fraction)
    train_idx += prefix[:len(prefix) - n_held]
    held_idx += prefix[len(prefix) - n_held:]
  return (train.subset(np.array(sorted(train_idx), np.int64)),
          train.subset(np.array(sorted(held_idx), np.int64)))


def describe(spec: SubsetSpec, train: Split, minival: Split, classes: List[str]) -> dict:
  """What results.json records about the images trained on (the report states it).

  `train_per_class` 0 and `train_fraction` 1.0: the whole train split (less the minival).
  """
  counts = np.bincount(train.labels, minlength=len(classes))
  return {"train_per_class": spec.per_class, "train_fraction": spec.fraction,
          "subset_seed": spec.seed, "minival_from": spec.minival_from,
          "train_images": int(counts.sum()), "minival_images": len(minival),
          "train_images_per_class": {c: int(n) for c, n in zip(classes, counts)}}
