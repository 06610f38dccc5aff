"""From `config.data` to the splits a run uses: train, minival, val, test."""
import dataclasses
import json
import logging
import os
from typing import List, Optional

from ftlab.data import aircraft, digits, imagefolder, subsets, tfds_source
from ftlab.data.pipeline import check_augment_keys
from ftlab.data.sources import (CARVED, DataError, Source, Split, SplitLayout, carve_minival,
                                carve_test, check_nonempty, class_counts, filter_decodable)

KINDS = ("imagefolder", "aircraft", "digits", "tfds")
DIGITS_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "ftlab", "digits")


@dataclasses.dataclass
class Data:
  name: str
  classes: List[str]
  train: Split
  minival: Split            # carved from train: model selection looks only here
  val: Optional[Split]
  test: Optional[Split]     # evaluated once, at the end, on the selected checkpoint
  skipped: List[str]
  subset: Optional[dict] = None  # subsets.describe: the data-size subset trained on (results.json)
  layout: Optional[SplitLayout] = None  # which split plays which role (an image folder's detected)

  @property
  def num_classes(self) -> int:
    return len(self.classes)


def _split_names(cfg) -> list:
  return [s for s in (cfg.train_split, cfg.val_split, cfg.test_split) if s]


def _folder_source(root: str, cfg) -> tuple:
  layout = imagefolder.detect(root, cfg.train_split, cfg.val_split, cfg.test_split,
                              cfg.test_fraction)
  return imagefolder.load(root, layout.found), layout


def _read_source(cfg) -> tuple:
  """(Source, SplitLayout): image folders detect their splits' roles, the other kinds take the
  configured split names as they are."""
  if cfg.kind not in KINDS:
    raise DataError(f"config.data.kind={cfg.kind!r}; use one of {KINDS}")
  if cfg.kind == "imagefolder":
    return _folder_source(cfg.root, cfg)
  if cfg.kind == "digits":
    return _folder_source(digits.materialize(cfg.root or DIGITS_CACHE), cfg)
  layout = SplitLayout(tuple(_split_names(cfg)), cfg.test_split, cfg.val_split)
  if cfg.kind == "aircraft":
    root = aircraft.download(cfg.root) if cfg.download else cfg.root
    return aircraft.load(root, _split_names(cfg), cfg.annotation), layout
  return tfds_source.load(cfg.name, cfg.data_dir, _split_names(cfg), cfg.download), layout


def _clean(source: Source, name: str, cfg) -> Optional[Split]:
  if not name:
    return None
  split, bad = filter_decodable(source.split(name), cfg.on_bad_image, cfg.num_workers)
  source.skipped.extend(bad)
  check_nonempty(split, f"split {name!r} of {cfg.root or source.name}")
  return split


def load(cfg) -> Data:
  """Reads, checks and splits the dataset described by `config.data`.

  An image folder's splits play the roles `imagefolder.detect` gives them
  (`Data.layout`, logged). The carved test split, the minival carve-out and
  the data-size subset are drawn by the data seed `cfg.subset_seed`, never by
  the training seed (`config.seed`); a carved test split comes out of train
  first, so no subset or minival ever holds its images.
  """
  spec = subsets.SubsetSpec.from_config(cfg)
  check_augment_keys(cfg.augment, cfg.auto_augment, cfg.color_jitter, cfg.random_erasing)
  source, layout = _read_source(cfg)
  logging.info("%s: %s", cfg.root or source.name, layout.sentence())
  train = _clean(source, cfg.train_split, cfg)
  val = _clean(source, layout.val, cfg)
  if layout.test == CARVED:
    train, test = carve_test(train, layout.test_fraction, cfg.subset_seed)
  else:
    test = _clean(source, layout.test, cfg)
  if spec.active:
    train, minival = subsets.draw(train, spec, cfg.minival_fraction, source.classes)
  else:
    train, minival = carve_minival(train, cfg.minival_fraction, cfg.subset_seed)
  check_every_class_trains(train, source, cfg)
  if not len(minival) and val is None:
    raise DataError("config.data.minival_fraction=0 and no config.data.val_split: "
                    "nothing to select checkpoints on")
  if source.skipped:
    logging.warning("skipped %d undecodable image(s); first: %s", len(source.skipped), source.skipped[0])
  return Data(source.name, source.classes, train, minival if len(minival) else val, val, test,
              source.skipped, subsets.describe(spec, train, minival, source.classes), layout)


def check_every_class_trains(train: Split, source: Source, cfg) -> None:
  """A class left with no training image is an error naming it (and why), not a warning."""
  empty = [c for c, n in class_counts(train, source.classes).items() if n == 0]
  if empty:
    raise DataError(
        f"class {empty[0]!r} of {cfg.root or source.name} has no training image left "
        f"({len(empty)} such class(es)) after skipping undecodable images "
        f"(config.data.on_bad_image={cfg.on_bad_image!r}) and holding out "
        f"config.data.minival_fraction={cfg.minival_fraction} for minival: add images or lower "
        f"config.data.minival_fraction")


def write_label_map(data: Data, workdir: str) -> None:
  with open(os.path.join(workdir, "label_map.json"), "w", encoding="utf-8") as f:
    json.dump({"dataset": data.name, "classes": data.classes}, f, indent=1)
