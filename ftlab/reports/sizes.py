"""A data size labelled by what its runs trained on (results.json's `data_subset`), not by the key
that asked for it: `data.train_per_class=5` with `data.minival_from='subset'` trains on 4 images
per class (the fifth is minival), and the whole train split has as many as it has."""
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Size:
  """One data size: its name in the study, and the train images per class of its runs."""
  name: str
  overrides: dict
  per_class: tuple = ()       # train images of each class (empty: no finished run tells)
  minival_images: int | None = None
  whole: bool = False         # no subset: the whole train split (less the minival)

  @property
  def mean_per_class(self) -> float | None:
    return float(np.mean(self.per_class)) if self.per_class else None

  @property
  def trained(self) -> str:
    """`4`, `38-41` (classes differ), or '?' when unknown."""
    if not self.per_class:
      return "?"
    low, high = min(self.per_class), max(self.per_class)
    return f"{low}" if low == high else f"{low}-{high}"

  @property
  def label(self) -> str:
    """`4 images per class (data.train_per_class=5)`; the size's name alone when unknown."""
    if not self.per_class:
      return self.name
    asked = "the whole train split" if self.whole else self.name
    return f"{self.trained} images per class ({asked})"

  @property
  def phrase(self) -> str:
    """How a verdict opens: `At 4 images per class` / `On the whole train split (...)`."""
    if not self.per_class:
      return "On the whole train split" if self.name == "all" else f"At size {self.name}"
    if self.whole:
      return f"On the whole train split ({self.trained} images per class)"
    return f"At {self.trained} images per class"


def from_results(name: str, overrides: dict, results: list) -> Size:
  """The size as the first results.json with a `data_subset` block tells it."""
  for r in results:
    subset = (r or {}).get("data_subset") or {}
    counts = subset.get("train_images_per_class")
    if isinstance(counts, dict) and counts:
      whole = subset.get("train_per_class") == 0 and subset.get("train_fraction") == 1.0
      return Size(name, dict(overrides), tuple(int(n) for n in counts.values()),
                  subset.get("minival_images"), whole)
  return Size(name, dict(overrides))
