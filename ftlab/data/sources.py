"""Labelled image lists: the common form every dataset is read into.

A `Source` holds, per split, the image paths and integer labels, plus the
ordered class names. Builders for the supported layouts live in their own
modules (`imagefolder.py`, `aircraft.py`, `digits.py`); this module owns the
shared pieces: the error type, the bad-image check and the minival carve-out.
"""
import concurrent.futures
import dataclasses
import io
import logging
import os
from typing import Any, Dict, List, Sequence

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
  """Bad input data; the message names the file, folder or key at fault."""


@dataclasses.dataclass
class Split:
  paths: List[Any]    # image file paths, or records with `.read() -> bytes` (tfds_source.TfdsImage)
  labels: np.ndarray  # int32, one per path

  def __len__(self):
    return len(self.paths)

  def subset(self, index: np.ndarray) -> "Split":
    return Split([self.paths[i] for i in index], self.labels[index])


CARVED = "carved from train"  # SplitLayout.test of a dataset whose test split is carved out


@dataclasses.dataclass(frozen=True)
class SplitLayout:
  """Which split plays which role in a run (results.json records it; the log states it).

  `found`: the splits the dataset has, of those configured; `test`: the
  held-out split evaluated once at the end ('' = none; `CARVED` = carved from
  train by `carve_test`); `val`: the one evaluated beside it for reference
  ('' = none). Selection is on the minival carved from train (or on `val`
  with `config.data.minival_fraction=0`).
  """
  found: tuple
  test: str
  val: str
  test_fraction: float = 0.0  # the share of train carved as test when test == CARVED

  def describe(self) -> dict:
    return {"found": list(self.found), "test": self.test, "val": self.val,
            "test_fraction": self.test_fraction}

  def sentence(self) -> str:
    test = (f"test = {self.test_fraction:.0%} of {self.found[0]} (stratified, by "
            f"config.data.subset_seed)" if self.test == CARVED else
            f"test = {self.test}" if self.test else "no test split")
    val = f"val = {self.val} (for reference)" if self.val else "no val split"
    return f"splits found: {', '.join(self.found)}; {test} (held out); {val}"


@dataclasses.dataclass
class Source:
  name: str
  classes: List[str]
  splits: Dict[str, Split]
  skipped: List[str] = dataclasses.field(default_factory=list)

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise DataError(f"dataset {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
    return self.splits[name]


def open_image(path) -> Image.Image:
  """`Image.open` of a file path, or of a record's encoded bytes (`path.read()`)."""
  return Image.open(path if isinstance(path, str) else io.BytesIO(path.read()))


def is_image_file(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def _decodable(path: str) -> bool:
  try:
    with open_image(path) as img:
      img.verify()
    return True
  except Exception:  # pylint: disable=broad-except  # any PIL failure means "not an image"
    return False


def filter_decodable(split: Split, on_bad_image: str, num_workers: int) -> tuple:
  """Drops files PIL cannot open; returns (split, skipped paths).

  Args:
    split: the candidate images.
    on_bad_image: 'skip' (warn, count, drop) or 'error' (raise on the first).
    num_workers: threads used for the header check.
  """
  if on_bad_image not in ("skip", "error"):
    raise DataError(f"config.data.on_bad_image={on_bad_image!r}; use 'skip' or 'error'")
  with concurrent.futures.ThreadPoolExecutor(max(num_workers, 1)) as pool:
    ok = list(pool.map(_decodable, split.paths))
  bad = [p for p, good in zip(split.paths, ok) if not good]
  if bad and on_bad_image == "error":
    raise DataError(f"{bad[0]} is not a decodable image (config.data.on_bad_image='error')")
  for path in bad:
    logging.warning("skipping %s: not a decodable image", path)
  keep = np.array([i for i, good in enumerate(ok) if good], dtype=np.int64)
  return split.subset(keep), bad


# Where a split carved from train comes from: the minival (`carve_minival`) draws from
# default_rng(seed), a carved test split (`carve_test`) from default_rng([seed, TEST_STREAM]).
TEST_STREAM = 1


def carve_minival(split: Split, fraction: float, seed: int) -> tuple:
  """Splits `split` into (train, minival), stratified by class, fixed by `seed`."""
  check_minival_fraction(fraction)
  return _carve(split, fraction, np.random.default_rng(seed))


def carve_test(split: Split, fraction: float, seed: int) -> tuple:
  """Splits `split` into (train, test), stratified by class, fixed by `seed` (the data seed) on a
  stream of its own, for a dataset without a held-out split (`config.data.test_fraction`)."""
  if not 0.0 < fraction < 1.0:
    raise DataError(f"config.data.test_fraction={fraction} must be in (0, 1): the dataset has "
                    "no held-out split, so one is carved from train")
  return _carve(split, fraction, np.random.default_rng([seed, TEST_STREAM]))


def _carve(split: Split, fraction: float, rng: np.random.Generator) -> tuple:
  held = []
  for label in np.unique(split.labels):
    members = np.flatnonzero(split.labels == label)
    held.extend(rng.permutation(members)[:held_out_count(len(members), fraction)].tolist())
  held_mask = np.zeros(len(split), bool)
  held_mask[held] = True
  return split.subset(np.flatnonzero(~held_mask)), split.subset(np.flatnonzero(held_mask))


def check_minival_fraction(fraction: float) -> None:
  if not 0.0 <= fraction < 1.0:
    raise DataError(f"config.data.minival_fraction={fraction} must be in [0, 1)")


def held_out_count(members: int, fraction: float) -> int:
  """Images of a class of `members` held out (minival, a carved test): at least one, never all."""
  n = int(round(members * fraction))
  if fraction > 0 and members > 1:
    n = min(max(n, 1), members - 1)
  return n


def check_nonempty(split: Split, where: str) -> None:
  if len(split) == 0:
    raise DataError(f"no images found in {where} (extensions {', '.join(IMAGE_EXTENSIONS)})")


def class_counts(split: Split, classes: Sequence[str]) -> Dict[str, int]:
  counts = np.bincount(split.labels, minlength=len(classes))
  return {c: int(n) for c, n in zip(classes, counts)}


def require_dir(path: str, what: str) -> None:
  if not path:
    raise DataError(f"{what} is empty: set it to the dataset directory")
  if not os.path.isdir(path):
    raise DataError(f"{what}={path} does not exist or is not a directory")
