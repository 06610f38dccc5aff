"""Data-size subsets: k per class or a fraction, stratified, nested, drawn by the data seed."""
import numpy as np
import pytest

from ftlab.data import datasets
from ftlab.data.sources import DataError
from ftlab.training import run as run_lib
from tests.helpers import make_image_folder, tiny_config

PER_CLASS = 24  # train images per class in the generated folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return make_image_folder(str(tmp_path_factory.mktemp("subsets")),
                           counts={"train": PER_CLASS, "val": 2, "test": 2})


def _load(root, **overrides):
  return datasets.load(tiny_config(root, **overrides).data)


def _per_class(split):
  return np.bincount(split.labels, minlength=3).tolist()


def test_k_per_class_is_stratified_with_minival_from_the_subset(folder):
  data = _load(folder, **{"data.train_per_class": 8})
  # minival_fraction 0.125 of 8 = 1 image per class, carved from the 8
  assert _per_class(data.train) == [7, 7, 7]
  assert _per_class(data.minival) == [1, 1, 1]
  assert not set(data.train.paths) & set(data.minival.paths)
  assert data.subset["train_images_per_class"] == {"cat": 7, "dog": 7, "wolf": 7}
  assert data.subset["train_images"] == 21 and data.subset["minival_images"] == 3
  assert data.subset["train_per_class"] == 8 and data.subset["minival_from"] == "subset"


def test_fraction_is_stratified(folder):
  data = _load(folder, **{"data.train_fraction": 0.5, "data.minival_from": "full"})
  # full: 3 per class held out of 24 first, then half of the 21 left (round(10.5) = 10)
  assert _per_class(data.minival) == [3, 3, 3]
  assert _per_class(data.train) == [10, 10, 10]


@pytest.mark.parametrize("minival_from", ["subset", "full"])
def test_subsets_are_nested_across_sizes(folder, minival_from):
  sizes = (2, 5, 10, 20)
  loaded = [_load(folder, **{"data.train_per_class": k, "data.minival_from": minival_from})
            for k in sizes]
  for small, big in zip(loaded, loaded[1:]):
    assert set(small.train.paths) < set(big.train.paths)
    assert (set(small.train.paths) | set(small.minival.paths)
            <= set(big.train.paths) | set(big.minival.paths))
  fractions = [_load(folder, **{"data.train_fraction": f, "data.minival_from": minival_from})
               for f in (0.25, 0.5)]
  assert set(fractions[0].train.paths) < set(fractions[1].train.paths)


def test_the_data_seed_draws_the_subset(folder):
  a = _load(folder, **{"data.train_per_class": 5})
  b = _load(folder, **{"data.train_per_class": 5, "data.subset_seed": 1})
  assert a.train.paths != b.train.paths
  assert _per_class(b.train) == _per_class(a.train)


def test_subset_is_independent_of_the_training_seed(folder, tmp_path):
  runs = [run_lib.prepare(tiny_config(folder, **{"data.train_per_class": 5, "seed": seed}),
                          str(tmp_path / f"seed{seed}"), for_training=False)
          for seed in (0, 7)]
  assert runs[0].data.train.paths == runs[1].data.train.paths
  assert runs[0].data.minival.paths == runs[1].data.minival.paths
  # the training seed still shuffles the batches
  orders = [r.loaders["train"]._order(0).tolist() for r in runs]  # pylint: disable=protected-access
  assert orders[0] != orders[1]


def test_minival_from_full_is_the_same_at_every_size(folder):
  whole = _load(folder)
  for k in (3, 12):
    data = _load(folder, **{"data.train_per_class": k, "data.minival_from": "full"})
    assert data.minival.paths == whole.minival.paths
    assert _per_class(data.train) == [k, k, k]
    assert set(data.train.paths) <= set(whole.train.paths)


def test_minival_from_subset_lies_inside_the_subset(folder):
  full = _load(folder, **{"data.train_per_class": 16, "data.minival_from": "full"})
  sub = _load(folder, **{"data.train_per_class": 16})
  assert _per_class(sub.train) == [14, 14, 14] and _per_class(sub.minival) == [2, 2, 2]
  assert set(sub.minival.paths) != set(full.minival.paths)


def test_default_split_is_the_seed_0_carve_out(folder):
  """No subset: the minival is drawn by data.subset_seed (0 = the carve-out ftlab always made)."""
  a, b = _load(folder), _load(folder, **{"data.subset_seed": 3})
  assert len(a.train) == len(b.train) == 3 * 21 and a.minival.paths != b.minival.paths
  assert a.subset["train_per_class"] == 0 and a.subset["train_images"] == 63


def test_k_larger_than_a_class_is_an_error_naming_it(tmp_path):
  root = make_image_folder(str(tmp_path), counts={"train": 6, "val": 1, "test": 1})
  with pytest.raises(DataError, match=r"^class 'cat' has 6 train images in the train split, fewer "
                     r"than config.data.train_per_class=7") as err:
    _load(root, **{"data.train_per_class": 7})
  assert "\n" not in str(err.value)
  with pytest.raises(DataError, match=r"class 'cat' has 5 train images left after the minival"):
    _load(root, **{"data.train_per_class": 6, "data.minival_from": "full",
                   "data.minival_fraction": 0.2})


@pytest.mark.parametrize("overrides, message", [
    ({"data.train_per_class": 5, "data.train_fraction": 0.5}, "both set"),
    ({"data.train_per_class": -1}, r"train_per_class=-1 must be >= 0"),
    ({"data.train_fraction": 0.0}, r"train_fraction=0.0 must be in \(0, 1\]"),
    ({"data.minival_from": "val"}, r"minival_from='val'; use one of"),
])
def test_bad_subset_keys(folder, overrides, message):
  with pytest.raises(DataError, match=message):
    _load(folder, **overrides)
