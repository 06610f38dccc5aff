"""Shared fixtures: small generated image datasets and tiny configs."""
import importlib.util
import os
import sys

# torch's triton (which torchvision's import pulls in) segfaults when it is imported after
# TensorFlow (clu's metric writers import it): load it first, whatever order tests import in.
# A subprocess that imported TensorFlow before this module (tests/test_parallel.py's runs)
# must not load it at all: it never imports torch.
if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
  import triton  # noqa: F401  # pylint: disable=unused-import

from PIL import Image
import jax
import numpy as np
import pytest

from configs import default
from ftlab.training import runtime


runtime.configure_xla()  # what every ftlab entry point runs: the tests check those numerics

COLORS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


def write_image(path: str, color, rng: np.random.Generator, size: int = 20) -> None:
  noise = rng.integers(-30, 30, (size, size, 3))
  pixels = np.clip(np.asarray(color)[None, None] + noise, 0, 255).astype(np.uint8)
  Image.fromarray(pixels).save(path)


def make_image_folder(root: str, counts=None, classes=("cat", "dog", "wolf"), seed: int = 0) -> str:
  """root/<split>/<class>/<i>.png with one dominant colour per class (separable)."""
  counts = counts or {"train": 24, "val": 6, "test": 6}
  rng = np.random.default_rng(seed)
  for split, n in counts.items():
    for c, name in enumerate(classes):
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(n):
        write_image(os.path.join(folder, f"{i:03d}.png"), COLORS[c % len(COLORS)], rng)
  return root


@pytest.fixture
def fast_compiles():
  """XLA with most optimisations off, for tests that compile big models once to compare values:
  quicker to compile, and no merging of the computations being compared."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)


@pytest.fixture
def image_folder(tmp_path):
  return make_image_folder(str(tmp_path / "data"))


def tiny_config(root: str, **overrides):
  """A config that trains tiny_cnn on a generated folder in seconds."""
  config = default.get_config()
  config.model.name = "tiny_cnn"
  config.data.kind = "imagefolder"
  config.data.root = root
  config.data.image_size = 16
  config.data.num_workers = 2
  config.data.minival_fraction = 0.125
  config.optimizer.lr = 0.05
  config.optimizer.weight_decay = 0.0
  config.train.batch_size = 8
  config.train.compilation_cache_dir = ""  # tests/test_runtime.py covers the cache
  config.train.eval_batch_size = 8
  config.train.num_epochs = 2.0
  config.train.log_every_steps = 4
  config.train.checkpoint_every_steps = 1000
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config
