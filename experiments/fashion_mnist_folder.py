"""A class-balanced Fashion-MNIST subset as an image folder, for experiments/bench_study.py --data.

  python experiments/fashion_mnist_folder.py --out=/data/fmnist [--train_per_class=200]
      [--test_per_class=1000] [--seed=0] [--source=/usr/share/datasets/fashion-mnist]

Reads Debian's `dataset-fashion-mnist` (apt; the four idx files in
/usr/share/datasets/fashion-mnist) and writes OUT/train/<class>/<index>.png,
`train_per_class` images of each class drawn by `seed` (enough for the
largest data size plus its share of the minival), and
OUT/test/<class>/<index>.png, the first `test_per_class` of each class (all
1,000 by default: a 10,000-image test set), as 28x28 grayscale PNGs.
"""
import argparse
import gzip
import pathlib

import numpy as np
from PIL import Image

CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle_boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: pathlib.Path) -> np.ndarray:
  """An idx file (the MNIST format: magic, dims, uint8 data) as an array."""
  with gzip.open(path, "rb") as f:
    data = f.read()
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_split(images: np.ndarray, labels: np.ndarray, out: pathlib.Path, per_class: int,
                rng: np.random.Generator | None) -> int:
  """`per_class` images of each class (drawn by rng, else the first ones) as PNGs; returns how
  many were written."""
  written = 0
  for label, name in enumerate(CLASSES):
    members = np.flatnonzero(labels == label)
    if len(members) < per_class:
      raise SystemExit(f"class {name!r} has {len(members)} images, fewer than {per_class}")
    chosen = rng.permutation(members)[:per_class] if rng is not None else members[:per_class]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in sorted(chosen):
      Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
      written += 1
  return written


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
  parser.add_argument("--train_per_class", type=int, default=200)
  parser.add_argument("--test_per_class", type=int, default=1000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  source, out = pathlib.Path(args.source), pathlib.Path(args.out)
  for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
    images, labels = (read_idx(source / name) for name in FILES[split])
    rng = np.random.default_rng(args.seed) if split == "train" else None
    n = write_split(images, labels, out / split, per_class, rng)
    print(f"wrote {n} {split} images to {out / split}")


if __name__ == "__main__":
  main()
