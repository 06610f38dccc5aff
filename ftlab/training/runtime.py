"""Process-level settings: XLA flags, OpenMP threads, the compilation cache, the C heap.

XLA flags
---------
XLA reads `XLA_FLAGS` once, when its first backend initialises, so
`configure_xla()` must run before the first JAX computation: every entry point
(`ftlab.main`, `ftlab.evaluate`, `ftlab.predict`, the benchmarks, the tests'
conftest) calls it first thing.

Why (measured with `experiments/bench_step.py`, 2 CPU cores, batch 32, 96x96,
jaxlib 0.10.2): XLA:CPU hands convolutions to YNNPACK by default. Its kernel
gradient for large-spatial, few-channel convolutions (ResNet-18's layer1: 36 ms
against Eigen's 8.7 ms) and its forward convolutions are slower than XLA's
Eigen kernels, while its fused reductions (BatchNorm statistics) are much faster
than XLA's own loops. Restricting YNNPACK to single dots and reductions:

  train step, images/s          XLA default   these flags
  ResNet-18 full_ft                    47           71
  ResNet-18 linear_probe              235          301
  EfficientNet-Lite0 full_ft           59           85
  EfficientNet-Lite0 linear_probe     381          610

The flag names exist only in the jaxlib versions listed in `TESTED_JAXLIB`
(an unknown flag makes XLA abort), so other versions keep XLA's defaults. A
flag already present in `XLA_FLAGS` is left as the user set it. GPU and TPU
backends ignore `xla_cpu_*` flags.

OpenMP threads (oneDNN)
-----------------------
ftlab's oneDNN convolutions (`ftlab.ops`) run on GNU OpenMP threads, beside
XLA's own thread pool. libgomp's default wait policy spins a finished
thread for a while before sleeping; on 2 cores shared with XLA's pool (and
other processes) a spinning thread steals the core the next op needs, and an
OpenMP barrier waits for a descheduled thread. `OMP_WAIT_POLICY=PASSIVE`
makes them sleep at once (measured on the 2-core EPYC, 1x1 stride-2 conv of
ResNet-18's layer2, batch 32, 96x96, machine shared: 32 ms active -> 1.2 ms
passive; 3x3 layer1: 48 -> 13 ms; see docs/models.md "Convolutions and precision").
`OMP_NUM_THREADS` is left to libgomp (one thread per core): 1 thread was
no faster. libgomp reads both once, when it loads (with the oneDNN library,
or with torch), so `configure_xla()` sets them first thing, unless the user
already did.

The compilation cache
---------------------
`use_compilation_cache(dir)` turns on JAX's persistent compilation cache
(`config.train.compilation_cache_dir`): a later run of the same program (the
other seeds of a sweep, a resumed run) loads the executable instead of
compiling it. Lite0 full_ft at 96x96: compile 16.8 s -> 3.6 s and peak RSS
2.17 GB -> 1.19 GB. JAX keys entries by the program, the XLA flags and the
jax/jaxlib versions; only compilations over a second are stored.

The C heap
----------
Compiling a train step takes about 1 GB of C heap (EfficientNet-Lite0 full_ft:
RSS 0.66 GB before, 1.66 GB after), which glibc keeps in its arenas after XLA
frees it; the step's buffers then come on top (peak 2.1 GB). `release_free_memory()`
after each compilation hands it back to the OS (steady state 1.06 GB).
"""
import ctypes
import ctypes.util
import functools
import logging
import os
from typing import Mapping, MutableMapping, Optional


CPU_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "individual_dot,reduce"}
OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
TESTED_JAXLIB = ("0.10.2",)


def installed_jaxlib() -> str:
  from jaxlib import version  # pylint: disable=import-outside-toplevel
  return version.__version__


def with_flags(xla_flags: str, flags: Mapping[str, str] = CPU_FLAGS) -> str:
  """`xla_flags` plus every flag of `flags` whose name it does not already set."""
  present = {part.lstrip("-").split("=", 1)[0] for part in xla_flags.split()}
  added = [f"--{name}={value}" for name, value in flags.items() if name not in present]
  return " ".join([xla_flags.strip()] + added).strip()


def configure_threads(environ: Optional[MutableMapping[str, str]] = None) -> None:
  """Sets every variable of `OPENMP_ENV` that `environ` (default: os.environ) does not set."""
  environ = os.environ if environ is None else environ
  for name, value in OPENMP_ENV.items():
    environ.setdefault(name, value)


def configure_xla(environ: Optional[MutableMapping[str, str]] = None,
                  jaxlib_version: Optional[str] = None) -> str:
  """Adds `CPU_FLAGS` to `environ['XLA_FLAGS']` (default: os.environ); returns the result.

  Also `configure_threads(environ)`: the OpenMP settings of ftlab's oneDNN calls.
  """
  environ = os.environ if environ is None else environ
  configure_threads(environ)
  jaxlib_version = jaxlib_version or installed_jaxlib()
  current = environ.get("XLA_FLAGS", "")
  if jaxlib_version not in TESTED_JAXLIB:
    logging.warning("jaxlib %s is not one of %s: keeping XLA's default CPU settings",
                    jaxlib_version, TESTED_JAXLIB)
    return current
  environ["XLA_FLAGS"] = with_flags(current)
  return environ["XLA_FLAGS"]


@functools.lru_cache(maxsize=None)
def _malloc_trim():
  """glibc's malloc_trim, or None on other C libraries."""
  name = ctypes.util.find_library("c")
  try:
    return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
  except (OSError, AttributeError):
    return None


def release_free_memory() -> bool:
  """Returns the C heap's free pages to the OS (glibc); False where unsupported."""
  trim = _malloc_trim()
  if trim is None:
    return False
  trim(0)
  return True


def use_compilation_cache(path: str, min_compile_s: float = 1.0) -> Optional[str]:
  """Stores and reuses compiled programs under `path` ('' = off); returns the directory."""
  if not path:
    return None
  import jax  # pylint: disable=import-outside-toplevel
  path = os.path.abspath(os.path.expanduser(path))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f"train.compilation_cache_dir={path!r} cannot be created: {e}") from e
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_s)
  return path
