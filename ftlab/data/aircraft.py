"""FGVC-Aircraft, read "online" from its annotation files (no copying).

Layout (the official archive `fgvc-aircraft-2013b.tar.gz`):
  <root>/data/images/<id>.jpg
  <root>/data/images_variant_trainval.txt   lines "<id> <label>", label may
  <root>/data/images_variant_test.txt       contain spaces or '/' ("F/A-18")
  <root>/data/variants.txt                  the 100 class names, in order
(`family`/`manufacturer` annotations have the same form). Splits: train, val,
trainval, test.
"""
import logging
import os

import numpy as np

from ftlab.data.sources import DataError, Source, Split, require_dir
from ftlab.pretrained import download as download_lib

URL = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz"
MD5 = "d4acdd33327262359767eeaa97a4f732"
ARCHIVE_DIR = "fgvc-aircraft-2013b"
CLASS_FILES = {"variant": "variants.txt", "family": "families.txt",
               "manufacturer": "manufacturers.txt"}


def data_dir(root: str) -> str:
  """`root/data`, also accepting the folder the archive was extracted into."""
  for candidate in (os.path.join(root, "data"), os.path.join(root, ARCHIVE_DIR, "data")):
    if os.path.isdir(candidate):
      return candidate
  raise DataError(f"{root} is not an FGVC-Aircraft root: no {root}/data or "
                  f"{root}/{ARCHIVE_DIR}/data folder (set config.data.download=True to fetch it)")


def download(root: str, url: str = URL, md5: str = MD5) -> str:
  """Downloads and extracts the official archive into `root` unless present."""
  if os.path.isdir(os.path.join(root, ARCHIVE_DIR, "data")):
    return os.path.join(root, ARCHIVE_DIR)
  os.makedirs(root, exist_ok=True)
  logging.info("downloading FGVC-Aircraft from %s into %s", url, root)
  download_lib.download(url, root, md5=md5, extract=True)
  return os.path.join(root, ARCHIVE_DIR)


def _read_classes(ddir: str, annotation: str) -> list:
  if annotation not in CLASS_FILES:
    raise DataError(f"config.data.annotation={annotation!r}; use one of {sorted(CLASS_FILES)}")
  path = os.path.join(ddir, CLASS_FILES[annotation])
  if not os.path.isfile(path):
    raise DataError(f"class list {path} not found")
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def _parse_line(line: str, path: str, lineno: int) -> tuple:
  parts = line.strip().split(" ", 1)
  if len(parts) != 2 or not parts[0] or not parts[1].strip():
    raise DataError(f"{path} line {lineno} does not parse as '<id> <label>': {line.rstrip()!r}")
  return parts[0], parts[1].strip()


def _read_split(ddir: str, annotation: str, split: str, index: dict) -> Split:
  path = os.path.join(ddir, f"images_{annotation}_{split}.txt")
  if not os.path.isfile(path):
    raise DataError(f"annotation file {path} not found (split {split!r})")
  paths, labels = [], []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      image_id, label = _parse_line(line, path, lineno)
      if label not in index:
        raise DataError(f"{path} line {lineno}: label {label!r} is not in the class list")
      image = os.path.join(ddir, "images", image_id + ".jpg")
      if not os.path.isfile(image):
        raise DataError(f"{path} line {lineno}: image id {image_id} has no file {image}")
      paths.append(image)
      labels.append(index[label])
  return Split(paths, np.asarray(labels, np.int32))


def load(root: str, splits, annotation: str = "variant") -> Source:
  require_dir(root, "config.data.root")
  ddir = data_dir(root)
  classes = _read_classes(ddir, annotation)
  index = {c: i for i, c in enumerate(classes)}
  read = {s: _read_split(ddir, annotation, s, index) for s in splits}
  return Source(name=f"fgvc_aircraft_{annotation}", classes=classes, splits=read)
