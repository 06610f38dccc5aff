"""Datasets, bad-input errors and the input pipeline."""
import hashlib
import os
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from ftlab.data import aircraft, datasets, imagefolder
from ftlab.data.pipeline import Augment, Loader
from ftlab.data.sources import CARVED, DataError, Split, SplitLayout
from tests.helpers import make_image_folder, tiny_config


def _load(root, **overrides):
  return datasets.load(tiny_config(root, **overrides).data)


def test_image_folder_classes_and_minival(image_folder):
  data = _load(image_folder)
  assert data.classes == ["cat", "dog", "wolf"]
  assert len(data.train) + len(data.minival) == 72
  assert np.bincount(data.minival.labels).tolist() == [3, 3, 3]  # stratified
  assert not set(data.train.paths) & set(data.minival.paths)
  again = _load(image_folder)
  assert again.minival.paths == data.minival.paths  # fixed by the split seed


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_every_color_mode_becomes_rgb(tmp_path, mode):
  path = str(tmp_path / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}")
  Image.new(mode, (30, 20)).save(path)
  for train in (True, False):
    out = Augment(16, train=train)(path, np.random.default_rng(0))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_extensions_are_case_insensitive_and_webp_is_read(tmp_path):
  make_image_folder(str(tmp_path), counts={"train": 2})
  Image.new("RGB", (20, 20)).save(str(tmp_path / "train" / "cat" / "UPPER.JPG"))
  Image.new("RGB", (20, 20)).save(str(tmp_path / "train" / "dog" / "x.webp"))
  (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
  source = imagefolder.load(str(tmp_path), ["train"])
  names = [os.path.basename(p) for p in source.split("train").paths]
  assert "UPPER.JPG" in names and "x.webp" in names and "notes.txt" not in names


def test_missing_root(tmp_path):
  with pytest.raises(DataError, match=r"config.data.root=.*nowhere does not exist"):
    _load(str(tmp_path / "nowhere"))


def _folder_of(split: str) -> str:
  return os.path.basename(os.path.dirname(os.path.dirname(split)))


def test_train_val_test_folders_select_on_minival_and_hold_out_test(image_folder, caplog):
  caplog.set_level("INFO")
  data = _load(image_folder)
  assert data.layout == SplitLayout(("train", "val", "test"), "test", "val")
  assert {_folder_of(p) for p in data.test.paths} == {"test"} and len(data.test) == 18
  assert {_folder_of(p) for p in data.val.paths} == {"val"}
  assert {_folder_of(p) for p in data.minival.paths} == {"train"}
  assert "test = test (held out); val = val (for reference)" in caplog.text


def test_train_and_val_folders_hold_out_val_and_say_so(image_folder, caplog):
  shutil.rmtree(os.path.join(image_folder, "test"))
  caplog.set_level("INFO")
  data = _load(image_folder)
  assert data.layout.describe() == {"found": ["train", "val"], "test": "val", "val": "",
                                    "test_fraction": 0.0}
  assert data.val is None and len(data.test) == 18
  assert {_folder_of(p) for p in data.test.paths} == {"val"}
  assert "splits found: train, val; test = val (held out); no val split" in caplog.text


def test_train_folder_alone_carves_a_stratified_test_split_by_the_data_seed(tmp_path, caplog):
  root = make_image_folder(str(tmp_path), counts={"train": 20})
  caplog.set_level("INFO")
  data = _load(root)
  assert data.layout.test == CARVED and data.layout.test_fraction == 0.2 and data.val is None
  assert np.bincount(data.test.labels).tolist() == [4, 4, 4]
  assert not set(data.test.paths) & set(data.train.paths + data.minival.paths)
  assert len(data.test) + len(data.train) + len(data.minival) == 60
  assert "test = 20% of train (stratified, by config.data.subset_seed) (held out)" in caplog.text
  assert _load(root).test.paths == data.test.paths
  other = _load(root, **{"data.subset_seed": 1})
  assert other.test.paths != data.test.paths
  assert len(_load(root, **{"data.test_fraction": 0.5}).test) == 30
  with pytest.raises(DataError, match=r"config.data.test_fraction=1.0 must be in \(0, 1\)"):
    _load(root, **{"data.test_fraction": 1.0})


def test_a_folder_without_train_names_what_it_holds_and_the_layout_expected(tmp_path):
  make_image_folder(str(tmp_path), counts={"images": 2})
  with pytest.raises(DataError, match=r"config.data.root=.* has no train/ folder \(it holds "
                                      r"\['images'\]\); expected .*/train/<class>/<image>"):
    _load(str(tmp_path))


def test_explicitly_empty_split_names_are_not_detected(image_folder):
  data = _load(image_folder, **{"data.val_split": "", "data.test_split": ""})
  assert data.val is None and data.test is None and data.layout.found == ("train",)


def test_class_in_val_missing_from_train(image_folder):
  os.makedirs(os.path.join(image_folder, "val", "fox"))
  Image.new("RGB", (8, 8)).save(os.path.join(image_folder, "val", "fox", "a.png"))
  with pytest.raises(DataError, match=r"class folder .*/val/fox has no counterpart in .*/train"):
    _load(image_folder)


def test_empty_class_folder(image_folder):
  os.makedirs(os.path.join(image_folder, "train", "empty"))
  with pytest.raises(DataError, match=r"class folder .*/train/empty contains no images"):
    _load(image_folder)


def test_no_images_at_all(tmp_path):
  os.makedirs(tmp_path / "train")
  with pytest.raises(DataError, match=r"no class folders in .*/train"):
    _load(str(tmp_path))


def test_undecodable_image_is_skipped_and_counted(image_folder):
  bad = os.path.join(image_folder, "train", "dog", "broken.jpg")
  with open(bad, "wb") as f:
    f.write(b"this is not a jpeg")
  data = _load(image_folder)
  assert data.skipped == [bad]
  assert bad not in data.train.paths + data.minival.paths
  with pytest.raises(DataError, match=r"broken.jpg is not a decodable image"):
    _load(image_folder, **{"data.on_bad_image": "error"})


def test_class_with_one_image_and_a_large_minival_share_is_an_error(tmp_path):
  root = make_image_folder(str(tmp_path), counts={"train": 4})
  for name in os.listdir(os.path.join(root, "train", "wolf"))[1:]:
    os.remove(os.path.join(root, "train", "wolf", name))
  with pytest.raises(DataError, match=r"class 'wolf' of .* has no training image left"):
    _load(root, **{"data.minival_fraction": 0.6, "data.val_split": "", "data.test_split": ""})


def test_class_whose_images_all_fail_to_decode_is_an_error(tmp_path):
  root = make_image_folder(str(tmp_path), counts={"train": 4})
  for name in os.listdir(os.path.join(root, "train", "dog")):
    with open(os.path.join(root, "train", "dog", name), "wb") as f:
      f.write(b"not a png")
  with pytest.raises(DataError, match=r"class 'dog' .* has no training image left .*on_bad_image='skip'"):
    _load(root, **{"data.val_split": "", "data.test_split": ""})


def _split(paths, labels=None):
  return Split(list(paths), np.asarray(labels if labels is not None else range(len(paths)), np.int32))


def test_train_batches_are_a_pure_function_of_seed_epoch_and_index(image_folder):
  data = _load(image_folder)
  aug = Augment(16, train=True)
  loader = Loader(data.train, 8, aug, train=True, seed=3, num_workers=2)
  full = list(loader.epoch(1))
  tail = list(loader.epoch(1, start=2))
  assert len(full) == loader.num_batches == len(data.train) // 8
  for a, b in zip(full[2:], tail):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  other = list(loader.epoch(2))
  assert not all(np.array_equal(a["label"], b["label"]) for a, b in zip(full, other))


def test_eval_batches_pad_and_mask_the_ragged_tail(image_folder):
  data = _load(image_folder)
  loader = Loader(data.test, 8, Augment(16, train=False), train=False)
  batches = list(loader.epoch(0))
  assert len(batches) == 3  # 18 images
  assert sum(b["mask"].sum() for b in batches) == 18
  assert batches[-1]["mask"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


def test_process_slices_partition_the_global_batch(image_folder):
  data = _load(image_folder)
  aug = Augment(16, train=False)
  whole = next(Loader(data.test, 8, aug, train=False).epoch(0))
  parts = [next(Loader(data.test, 8, aug, train=False, process_index=i, process_count=2).epoch(0))
           for i in range(2)]
  np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), whole["image"])


def _aircraft_root(tmp_path, lines_trainval=None):
  root = tmp_path / "fgvc-aircraft-2013b"
  ddir = root / "data"
  os.makedirs(ddir / "images")
  classes = ["Boeing 707-320", "F/A-18", "A300B4"]
  (ddir / "variants.txt").write_text("\n".join(classes) + "\n")
  rng = np.random.default_rng(0)
  rows = {"trainval": [], "test": []}
  for i in range(18):
    image_id = f"{1000000 + i:07d}"
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(ddir / "images" / f"{image_id}.jpg")
    rows["trainval" if i < 12 else "test"].append(f"{image_id} {classes[i % 3]}")
  (ddir / "images_variant_trainval.txt").write_text("\n".join(lines_trainval or rows["trainval"]) + "\n")
  (ddir / "images_variant_test.txt").write_text("\n".join(rows["test"]) + "\n")
  return root


def test_aircraft_reads_annotation_files_with_spaces_and_slashes(tmp_path):
  root = _aircraft_root(tmp_path)
  source = aircraft.load(str(root), ["trainval", "test"])
  assert source.classes == ["Boeing 707-320", "F/A-18", "A300B4"]
  trainval = source.split("trainval")
  assert len(trainval) == 12 and trainval.labels.tolist()[:3] == [0, 1, 2]
  assert trainval.paths[1].endswith("data/images/1000001.jpg")


def test_aircraft_bad_annotation_line(tmp_path):
  root = _aircraft_root(tmp_path, lines_trainval=["1000000 Boeing 707-320", "garbage"])
  with pytest.raises(DataError, match=r"images_variant_trainval.txt line 2 does not parse"):
    aircraft.load(str(root), ["trainval"])


def test_aircraft_missing_image(tmp_path):
  root = _aircraft_root(tmp_path, lines_trainval=["9999999 F/A-18"])
  with pytest.raises(DataError, match=r"line 1: image id 9999999 has no file .*9999999.jpg"):
    aircraft.load(str(root), ["trainval"])


def test_aircraft_download_verifies_and_extracts_the_archive(tmp_path):
  src = _aircraft_root(tmp_path / "build")
  archive = tmp_path / "fgvc-aircraft-2013b.tar.gz"
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(src, arcname="fgvc-aircraft-2013b")
  md5 = hashlib.md5(archive.read_bytes()).hexdigest()
  with pytest.raises(Exception, match=r"md5"):
    aircraft.download(str(tmp_path / "bad"), url=archive.as_uri(), md5="0" * 32)
  root = aircraft.download(str(tmp_path / "dl"), url=archive.as_uri(), md5=md5)
  source = aircraft.load(root, ["trainval", "test"])
  assert len(source.split("test")) == 6
