"""TFDS datasets: a builder defined here, prepared offline in array_record, trained on."""
import csv
import io
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ftlab.data import datasets, sources, tfds_source
from ftlab.data.pipeline import Augment, Loader
from ftlab.reports import plots
from ftlab.training import trainer
from tests.helpers import COLORS, tiny_config

CLASSES = ["crimson", "emerald", "navy"]
NAME = "ftlab_test_colors"


class FtlabTestColors(tfds.core.GeneratorBasedBuilder):
  """Three separable colour classes, PNG-encoded: 24 train and 6 test images per class."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=CLASSES)}),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(24, 0), "test": self._generate_examples(6, 1)}

  def _generate_examples(self, per_class, seed):  # pylint: disable=arguments-differ
    rng = np.random.default_rng(seed)
    for i in range(per_class * len(CLASSES)):
      label = i % len(CLASSES)
      noise = rng.integers(-30, 30, (20, 20, 3))
      pixels = np.clip(np.asarray(COLORS[label])[None, None] + noise, 0, 255).astype(np.uint8)
      yield i, {"image": pixels, "label": label}


@pytest.fixture
def tfds_dir(tmp_path):
  data_dir = str(tmp_path / "tfds")
  FtlabTestColors(data_dir=data_dir, file_format="array_record").download_and_prepare()
  return data_dir


def _config(data_dir, **overrides):
  return tiny_config("", **{"data.kind": "tfds", "data.name": NAME, "data.data_dir": data_dir,
                            "data.train_split": "train[:90%]", "data.val_split": "train[90%:]",
                            "data.test_split": "test", **overrides})


@pytest.mark.slow
def test_trains_on_a_tfds_dataset_and_names_its_classes(tfds_dir, tmp_path):
  workdir = tmp_path / "run"
  out = trainer.train_and_evaluate(_config(tfds_dir, **{"train.num_epochs": 4.0}), str(workdir))
  assert out["dataset"] == NAME and out["test"]["count"] == 18
  assert out["test"]["top1"] >= 0.9
  assert json.load(open(workdir / "label_map.json"))["classes"] == CLASSES
  rows = list(csv.DictReader(open(workdir / "predictions.csv")))
  assert [r["image"] for r in rows[:2]] == [f"{NAME}/test[0]", f"{NAME}/test[1]"]
  assert {r["true"] for r in rows} == set(CLASSES)
  assert {r["predicted"] for r in rows} <= set(CLASSES)
  assert len(rows) == 18 and out["val"]["count"] == 7  # train[90%:] of 72
  titles = [ax.get_title() for ax in plots.predictions_figure(workdir).axes if ax.get_title()]
  shown = plots.pick_samples(rows)
  assert titles and all(f"true: {r['true']}" in t for r, t in zip(shown, titles))


def test_splits_are_tfds_slices_with_labels_and_encoded_images(tfds_dir):
  data = datasets.load(_config(tfds_dir).data)
  assert data.classes == CLASSES
  assert len(data.train) + len(data.minival) == 65 and len(data.test) == 18
  record = data.test.paths[4]
  assert isinstance(record, tfds_source.TfdsImage) and data.test.labels[4] == 4 % 3
  with Image.open(io.BytesIO(record.read())) as img:
    pixels = np.asarray(img)
  assert pixels.shape == (20, 20, 3) and np.argmax(pixels.mean((0, 1))) == 4 % 3
  with sources.open_image(record) as img:
    assert img.size == (20, 20)


def test_batches_are_a_pure_function_of_seed_epoch_and_index(tfds_dir):
  data = datasets.load(_config(tfds_dir).data)
  augment = Augment(16, train=True, auto_augment="rand-m7-mstd0.5")
  loader = Loader(data.train, 8, augment, True, seed=3, num_workers=2)
  full = list(loader.epoch(1))
  again = list(loader.epoch(1, start=2))  # a resumed epoch starts at its batch, not the stream
  for a, b in zip(full[2:], again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert full[0]["image"].dtype == np.uint8 and full[0]["image"].shape == (8, 16, 16, 3)
  assert not np.array_equal(full[0]["image"], next(loader.epoch(2))["image"])


def test_an_unprepared_dataset_is_a_one_line_error_naming_the_command(tmp_path):
  data_dir = str(tmp_path / "empty")
  with pytest.raises(sources.DataError) as e:
    datasets.load(_config(data_dir).data)
  message = str(e.value)
  assert "\n" not in message and NAME in message and data_dir in message
  assert f"tfds build {NAME} --data_dir={data_dir} --file_format=array_record" in message
  assert not os.path.exists(os.path.join(data_dir, NAME, "1.0.0", "dataset_info.json"))


def test_download_prepares_through_the_builder(tmp_path):
  data_dir = str(tmp_path / "fresh")
  data = datasets.load(_config(data_dir, **{"data.download": True}).data)
  assert len(data.test) == 18
  assert tfds.builder(NAME, data_dir=data_dir).is_prepared()
  assert any(f.endswith(".array_record-00000-of-00001")
             for f in os.listdir(os.path.join(data_dir, NAME, "1.0.0")))


def test_bad_names_and_splits_are_one_line_errors(tfds_dir):
  with pytest.raises(sources.DataError, match=r"data.name='no_such_dataset_x' is not a TFDS"):
    datasets.load(_config(tfds_dir, **{"data.name": "no_such_dataset_x"}).data)
  with pytest.raises(sources.DataError, match=r"split 'validation'") as e:
    datasets.load(_config(tfds_dir, **{"data.val_split": "validation"}).data)
  assert "\n" not in str(e.value)
  with pytest.raises(sources.DataError, match=r"config.data.kind='tfds' needs config.data.name"):
    datasets.load(_config(tfds_dir, **{"data.name": ""}).data)
