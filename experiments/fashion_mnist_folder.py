"""Writes a class-balanced Fashion-MNIST subset as an image folder (real data, offline).

  apt-get install dataset-fashion-mnist     # Debian: /usr/share/datasets/fashion-mnist
  python experiments/fashion_mnist_folder.py --out=data/fmnist --train_per_class=300 \
      --test_per_class=300

Reads the four idx files Debian's `dataset-fashion-mnist` installs and writes
`OUT/train/<class>/<index>.png` and `OUT/test/<class>/<index>.png` (28x28
grey PNGs; ftlab and PyTorch's loader both read them as RGB), taking the
first `--*_per_class` images of each class in file order after a shuffle by
`--seed`, so the same arguments always write the same folder. The class
names are the dataset's own. Used by `configs/fashion_mnist.py`,
`experiments/fidelity.py` and `experiments/bench_study.py --data`.
"""
import argparse
import gzip
import os
import sys

import numpy as np
from PIL import Image

SOURCE = "/usr/share/datasets/fashion-mnist"
CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "ankle_boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: str) -> np.ndarray:
  """An idx file (MNIST's format: magic, dims, big-endian sizes, uint8 data) as an array."""
  with gzip.open(path, "rb") as f:
    data = f.read()
  ndim = data[3]
  dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def balanced(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Indices of `per_class` examples of every class, drawn by `seed`, in a fixed order."""
  order = np.random.default_rng(seed).permutation(len(labels))
  picked = []
  for c in range(len(CLASSES)):
    of_class = order[labels[order] == c]
    if len(of_class) < per_class:
      raise ValueError(f"class {CLASSES[c]} has {len(of_class)} images, fewer than {per_class}")
    picked.extend(of_class[:per_class])
  return np.sort(np.asarray(picked))


def write(out: str, source: str, per_class: dict, seed: int = 0) -> str:
  """Writes the folder (skipping files that exist) and returns `out`."""
  for split, (images_file, labels_file) in FILES.items():
    if not per_class.get(split):
      continue
    images = read_idx(os.path.join(source, images_file))
    labels = read_idx(os.path.join(source, labels_file))
    for i in balanced(labels, per_class[split], seed):
      folder = os.path.join(out, split, CLASSES[labels[i]])
      os.makedirs(folder, exist_ok=True)
      path = os.path.join(folder, f"{i:05d}.png")
      if not os.path.exists(path):
        Image.fromarray(images[i], mode="L").save(path)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--source", default=SOURCE)
  parser.add_argument("--train_per_class", type=int, default=300)
  parser.add_argument("--test_per_class", type=int, default=300)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if not os.path.isdir(args.source):
    print(f"{args.source} does not exist: apt-get install dataset-fashion-mnist", file=sys.stderr)
    return 2
  write(args.out, args.source, {"train": args.train_per_class, "test": args.test_per_class},
        args.seed)
  print(f"wrote {args.out}: {args.train_per_class} train and {args.test_per_class} test images "
        f"per class, {len(CLASSES)} classes")
  return 0


if __name__ == "__main__":
  sys.exit(main())
