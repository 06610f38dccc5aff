"""Fixtures (the helpers they build on, and that test files import, are in tests/helpers.py)."""
import importlib.util
import sys

# torch's triton (which torchvision's import pulls in) segfaults when it is imported after
# TensorFlow (clu's metric writers import it): load it first, whatever order tests import in.
# A subprocess that imported TensorFlow before this module (tests/test_parallel.py's runs)
# must not load it at all: it never imports torch.
if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
  import triton  # noqa: F401  # pylint: disable=unused-import

import jax
import pytest

from ftlab.training import runtime
from tests.helpers import make_image_folder


runtime.configure_xla()  # what every ftlab entry point runs: the tests check those numerics


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
