"""Image-folder datasets: `root/<split>/<class>/<image>`.

Class names are the sorted folder names of the first (training) split; every
other split must use a subset of them. Extensions are matched
case-insensitively (see `sources.IMAGE_EXTENSIONS`).

`detect` decides the splits' roles from the folders present (with the
configured names `config.data.train_split`, `val_split`, `test_split`):

* train/ val/ test/: select on a minival carved from train, val for reference, test held out;
* train/ val/: val is the held-out split (evaluated once at the end, as `test`);
* train/ test/: test held out, no reference split;
* train/ alone: a test split carved from train (`config.data.test_fraction`).
"""
import os
from typing import Sequence

import numpy as np

from ftlab.data.sources import (CARVED, DataError, Source, Split, SplitLayout, is_image_file,
                                require_dir)


def _class_dirs(split_dir: str) -> list:
  return sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))


def _list_images(class_dir: str) -> list:
  files = sorted(f for f in os.listdir(class_dir) if is_image_file(f))
  if not files:
    raise DataError(f"class folder {class_dir} contains no images")
  return [os.path.join(class_dir, f) for f in files]


def _read_split(root: str, split: str, classes: Sequence[str], train_split: str) -> Split:
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise DataError(f"split folder {split_dir} not found; {root} has {_folders(root)}")
  paths, labels = [], []
  index = {c: i for i, c in enumerate(classes)}
  for name in _class_dirs(split_dir):
    if name not in index:
      raise DataError(
          f"class folder {os.path.join(split_dir, name)} has no counterpart in "
          f"{os.path.join(root, train_split)}; known classes: {list(classes)}")
    files = _list_images(os.path.join(split_dir, name))
    paths += files
    labels += [index[name]] * len(files)
  return Split(paths, np.asarray(labels, np.int32))


def _folders(root: str) -> list:
  return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def detect(root: str, train: str, val: str, test: str, test_fraction: float) -> SplitLayout:
  """The roles of `root`'s split folders (module docstring); `val`/`test` '' = not wanted.

  A root without the train folder is a DataError naming what it holds and the
  layout expected.
  """
  require_dir(root, "config.data.root")
  present = _folders(root)
  if train not in present:
    raise DataError(
        f"config.data.root={root} has no {train}/ folder (it holds {present or 'no folders'}); "
        f"expected {root}/{train}/<class>/<image>, optionally with val/ and test/ beside it "
        f"in the same layout (config.data.train_split, val_split, test_split name them)")
  has_val, has_test = bool(val) and val in present, bool(test) and test in present
  found = tuple(s for s, there in ((train, True), (val, has_val), (test, has_test)) if there)
  if has_test or not test:
    return SplitLayout(found, test if has_test else "", val if has_val else "")
  if has_val:
    return SplitLayout(found, val, "")
  return SplitLayout(found, CARVED, "", test_fraction)


def load(root: str, splits: Sequence[str]) -> Source:
  """Reads `root/<split>/<class>/*` for each split; `splits[0]` defines the classes."""
  require_dir(root, "config.data.root")
  train_dir = os.path.join(root, splits[0])
  if not os.path.isdir(train_dir):
    raise DataError(f"split folder {train_dir} not found; {root} has {_folders(root)}")
  classes = _class_dirs(train_dir)
  if not classes:
    raise DataError(f"no class folders in {train_dir}: expected {train_dir}/<class>/<image>")
  read = {s: _read_split(root, s, classes, splits[0]) for s in splits}
  return Source(name=os.path.basename(os.path.normpath(root)), classes=classes, splits=read)
