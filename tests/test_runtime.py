"""ftlab.training.runtime: the XLA CPU flags every entry point applies before JAX starts."""
import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

from ftlab.training import runtime


FLAG = "xla_cpu_experimental_ynn_fusion_type"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Compiles a 3x3 conv's kernel gradient and prints the ops XLA:CPU chose. Run
# after importing an entry point, so a module that starts JAX's backend at
# import time (which would make the flags too late) fails the test.
PROBE = """
import importlib, sys
importlib.import_module(sys.argv[2])  # the entry point's whole import graph
from ftlab.training import runtime
if sys.argv[1] == "ftlab":
  runtime.configure_xla()
import jax, jax.numpy as jnp
from jax import lax
conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
x, w = jnp.ones((8, 24, 24, 64)), jnp.ones((3, 3, 64, 64))
grad = jax.jit(jax.grad(lambda w: conv(x, w).sum()))
text = grad.lower(w).compile().as_text()
print("ynn_conv" if "__ynn_fusion" in text else "eigen_conv")
"""


def probe(mode: str, entry_point: str = "ftlab.main") -> str:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", PROBE, mode, entry_point], cwd=REPO, env=env, text=True,
                       capture_output=True, timeout=300, check=True)
  return out.stdout.strip()


def test_with_flags_appends_missing_flags_and_keeps_the_users():
  assert runtime.with_flags("") == f"--{FLAG}=individual_dot,reduce"
  users = f"--xla_force_host_platform_device_count=8 --{FLAG}=dot"
  assert runtime.with_flags(users) == users
  once = runtime.with_flags("--xla_force_host_platform_device_count=8")
  assert once.split() == ["--xla_force_host_platform_device_count=8",
                          f"--{FLAG}=individual_dot,reduce"]
  assert runtime.with_flags(once) == once


def test_configure_xla_sets_the_environment_for_the_tested_jaxlib():
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  out = runtime.configure_xla(environ, jaxlib_version=runtime.TESTED_JAXLIB[0])
  assert environ["XLA_FLAGS"] == out and f"--{FLAG}=individual_dot,reduce" in out


def test_configure_xla_keeps_defaults_for_an_untested_jaxlib():
  environ = {}
  assert runtime.configure_xla(environ, jaxlib_version="0.0.1") == ""
  assert environ == runtime.OPENMP_ENV  # no XLA_FLAGS; the OpenMP settings do not depend on jaxlib


def test_configure_threads_keeps_the_users_openmp_settings():
  environ = {"OMP_WAIT_POLICY": "ACTIVE"}
  runtime.configure_threads(environ)
  assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}
  environ = {}
  runtime.configure_threads(environ)
  assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.slow
def test_xla_default_hands_the_convolution_to_ynnpack():
  assert probe("default") == "ynn_conv"


@pytest.mark.slow
@pytest.mark.parametrize("entry_point", ["ftlab.main", "ftlab.evaluate", "ftlab.predict"])
def test_entry_points_apply_the_flags_before_the_backend_starts(entry_point):
  # ftlab's flags keep the convolution on XLA's Eigen kernel (the faster one,
  # see ftlab/training/runtime.py): it only works if importing the entry point did not
  # start the backend.
  assert probe("ftlab", entry_point) == "eigen_conv"


def test_release_free_memory_returns_freed_heap_to_the_os():
  libc = ctypes.CDLL(ctypes.util.find_library("c"))
  libc.malloc.restype = ctypes.c_void_p
  libc.free.argtypes = [ctypes.c_void_p]

  def rss_mb() -> float:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
  # Freed blocks between live ones stay in glibc's heap (as the compiler's do).
  blocks = [libc.malloc(16384) for _ in range(20_000)]
  for block in blocks:
    ctypes.memset(block, 1, 16384)
  for block in blocks[::2]:
    libc.free(block)
  before = rss_mb()
  assert runtime.release_free_memory()
  after = rss_mb()
  for block in blocks[1::2]:
    libc.free(block)
  assert after < before - 100, (before, after)


CACHE_PROBE = """
import sys
import jax, jax.numpy as jnp
from ftlab.training import runtime
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
runtime.use_compilation_cache(sys.argv[1], min_compile_s=0.0)
jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))).block_until_ready()
print(sum("cache_hits" in e for e in events), sum("cache_misses" in e for e in events))
"""


@pytest.mark.slow
def test_compilation_cache_stores_and_reloads_the_program(tmp_path):
  cache = str(tmp_path / "xla")
  runs = [subprocess.run([sys.executable, "-c", CACHE_PROBE, cache], cwd=REPO, text=True,
                         capture_output=True, timeout=300, check=True).stdout.split()
          for _ in range(2)]
  assert runs[0][0] == "0" and int(runs[0][1]) >= 1  # compiled and stored
  assert int(runs[1][0]) >= 1  # loaded from the cache
  assert os.listdir(cache)


def test_compilation_cache_off_and_bad_directory(tmp_path):
  assert runtime.use_compilation_cache("") is None
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(ValueError, match="compilation_cache_dir"):
    runtime.use_compilation_cache(str(blocker / "xla"))
