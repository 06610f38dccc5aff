"""Image-folder datasets: `root/<split>/<class>/<image>`.

Class names are the sorted folder names of the first (training) split; every
other split must use a subset of them. Extensions are matched
case-insensitively (see `sources.IMAGE_EXTENSIONS`).
"""
import os
from typing import Sequence

import numpy as np

from ftlab.data.sources import DataError, Source, Split, is_image_file, require_dir


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
    present = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    raise DataError(f"split folder {split_dir} not found; {root} has {present}")
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


def load(root: str, splits: Sequence[str]) -> Source:
  """Reads `root/<split>/<class>/*` for each split; `splits[0]` defines the classes."""
  require_dir(root, "config.data.root")
  train_dir = os.path.join(root, splits[0])
  if not os.path.isdir(train_dir):
    raise DataError(f"split folder {train_dir} not found; {root} has "
                    f"{sorted(os.listdir(root))}")
  classes = _class_dirs(train_dir)
  if not classes:
    raise DataError(f"no class folders in {train_dir}: expected {train_dir}/<class>/<image>")
  read = {s: _read_split(root, s, classes, splits[0]) for s in splits}
  return Source(name=os.path.basename(os.path.normpath(root)), classes=classes, splits=read)
