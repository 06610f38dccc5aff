"""The embedded demo dataset: scikit-learn's handwritten digits as an image folder.

scikit-learn ships the 1,797 8x8 UCI digits; they are written once as 32x32
PNGs to `root/{train,test}/<digit>/` (a fixed 80/20 stratified split), so the
demo exercises exactly the image-folder path a user's own data takes.
"""
import os
import shutil

import numpy as np
from PIL import Image

TEST_FRACTION = 0.2
SPLIT_SEED = 0
SIDE = 32


def _write(root: str, split: str, images: np.ndarray, labels: np.ndarray, offset: int) -> None:
  for i, (img, label) in enumerate(zip(images, labels)):
    folder = os.path.join(root, split, str(label))
    os.makedirs(folder, exist_ok=True)
    pixels = (img * (255.0 / 16.0)).astype(np.uint8)
    Image.fromarray(pixels, "L").resize((SIDE, SIDE), Image.BILINEAR).save(
        os.path.join(folder, f"{offset + i:04d}.png"))


def materialize(root: str) -> str:
  """Writes the digits image folder under `root` (once) and returns `root`.

  The folder is written beside `root` and renamed into place, so concurrent
  runs (a parallel sweep) never see a half-written dataset.
  """
  if os.path.isdir(root):
    return root
  tmp = f"{root.rstrip(os.sep)}.tmp{os.getpid()}"
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  digits = datasets.load_digits()
  rng = np.random.default_rng(SPLIT_SEED)
  order = rng.permutation(len(digits.target))
  n_test = int(len(order) * TEST_FRACTION)
  test, train = order[:n_test], order[n_test:]
  _write(tmp, "train", digits.images[train], digits.target[train], 0)
  _write(tmp, "test", digits.images[test], digits.target[test], len(train))
  try:
    os.rename(tmp, root)
  except OSError:  # another process won the race: its copy is identical
    shutil.rmtree(tmp, ignore_errors=True)
  return root
