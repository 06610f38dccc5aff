"""experiments/bench_study.py on an image folder (`--data`), for real on tiny_cnn and a generated
folder, and experiments/fashion_mnist_folder.py on generated idx files."""
import gzip
import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.helpers import make_image_folder

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_bench_study_on_a_folder_compares_sweep_study_and_full_grid(tmp_path):
  data = make_image_folder(str(tmp_path / "data"), counts={"train": 24, "test": 6})
  out = subprocess.run(
      [sys.executable, "experiments/bench_study.py", f"--data={data}", "--sizes=4,8",
       "--strategies=full_ft", "--lrs=0.01,0.05", "--model=tiny_cnn", "--pretrained=",
       "--epochs=1", "--image_size=16", "--batch=4", "--seeds=1", "--full_grid",
       f"--workdir={tmp_path / 'work'}", f"--json={tmp_path / 'out.json'}"],
      capture_output=True, text=True, cwd=ROOT, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  result = json.loads((tmp_path / "out.json").read_text())
  assert result["config"].startswith(f"experiments/bench_study_config.py:data={data},sizes=4/8,")
  sizes = ["data.train_per_class=4", "data.train_per_class=8"]
  # the study's runs trained on the sizes asked (one minival for both, carved before them)
  for k in (4, 8):
    runs = list((tmp_path / "work" / "study" / "final" / f"data.train_per_class={k}")
                .rglob("results.json"))
    assert runs and all(json.loads(r.read_text())["data_subset"]["train_images"] == 3 * k
                        for r in runs)
  assert list(result["halving_winner"]) == sizes == list(result["untuned_winner"])
  grid = result["full_grid"]
  assert list(grid["winner"]) == sizes
  # 2 LRs are fewer than eta: halving is the full grid, nothing is left to train
  assert grid["images_trained"] == 0 and grid["images"] == result["rows"]["study"]["images"]
  assert [(r["size"], r["strategy"], r["same"], r["regret"]) for r in grid["per_strategy"]] == [
      (s, "full_ft", True, 0.0) for s in sizes]
  assert result["rows"]["untuned sweep"]["images"] > 0 and "winner at" in out.stdout


def _idx(path: pathlib.Path, array: np.ndarray) -> None:
  header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_folder_writes_a_class_balanced_subset(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (("train", 60), ("t10k", 30)):
    labels = np.arange(n) % 10
    _idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    _idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
  out = subprocess.run([sys.executable, "experiments/fashion_mnist_folder.py",
                        f"--source={tmp_path}", f"--out={tmp_path / 'fm'}",
                        "--train_per_class=4", "--test_per_class=3"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr
  for split, per_class in (("train", 4), ("test", 3)):
    classes = sorted(p.name for p in (tmp_path / "fm" / split).iterdir())
    assert len(classes) == 10 and "ankle_boot" in classes
    assert all(len(list((tmp_path / "fm" / split / c).iterdir())) == per_class for c in classes)
  image = next((tmp_path / "fm" / "test" / "bag").iterdir())
  with Image.open(image) as im:
    assert im.size == (28, 28) and im.mode == "L"
  # the draw is a function of --seed: the same arguments write the same folder, another seed not
  again = subprocess.run([sys.executable, "experiments/fashion_mnist_folder.py",
                          f"--source={tmp_path}", f"--out={tmp_path / 'fm2'}",
                          "--train_per_class=4", "--test_per_class=3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
  other = subprocess.run([sys.executable, "experiments/fashion_mnist_folder.py",
                          f"--source={tmp_path}", f"--out={tmp_path / 'fm3'}",
                          "--train_per_class=4", "--test_per_class=3", "--seed=1"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert again.returncode == 0 and other.returncode == 0, again.stderr + other.stderr
  files = {name: sorted(str(p.relative_to(tmp_path / name)) for p in (tmp_path / name).rglob("*.png"))
           for name in ("fm", "fm2", "fm3")}
  assert files["fm"] == files["fm2"] and files["fm"] != files["fm3"]
