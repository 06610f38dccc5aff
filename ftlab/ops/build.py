"""Compiles `onednn_conv.cc` against the pip-installed oneDNN, once, into a cache.

The shared library lands in `<cache>/<key>/libftlab_onednn.so`, where
`<cache>` is `$FTLAB_CACHE_DIR/onednn` if set, else
`$XDG_CACHE_HOME/ftlab/onednn` (default `~/.cache/ftlab/onednn`; CI points
FTLAB_CACHE_DIR into its fresh venv, so it builds from scratch) and `<key>` hashes
the C++ source, the compiler command, the jaxlib version (its FFI headers)
and the oneDNN library found, so a changed input builds a new library and a
cached one is reused by every later process. The build writes a temporary
file and renames it into place, so concurrent first uses are safe.

oneDNN comes from PyPI (`onednn-cpu-gomp` for `libdnnl.so.3`,
`onednn-devel-cpu-gomp` for the matching headers, both 2023.2.0 = oneDNN
3.2, pinned in requirements.txt); both install their files under the Python
prefix (`<venv>/lib`, `<venv>/include`).

  python -m ftlab.ops.build   # builds now (or says why it cannot) and prints the path
"""
import dataclasses
import hashlib
import os
import pathlib
import shutil
import site
import subprocess
import sys
import tempfile
from typing import List, Optional

SOURCE = pathlib.Path(__file__).with_name("onednn_conv.cc")
LIBRARY_NAME = "libftlab_onednn.so"
ONEDNN_LIBRARY = "libdnnl.so.3"
ONEDNN_HEADER = pathlib.Path("oneapi", "dnnl", "dnnl.hpp")
ONEDNN_MAJOR = 3  # the C++ source uses oneDNN 3's API
CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden")
BUILD_TIMEOUT_S = 600
INSTALL_HINT = ("pip install -r requirements.txt (onednn-cpu-gomp and onednn-devel-cpu-gomp), "
                "g++ on PATH, then python -m ftlab.ops.build")


class BuildError(RuntimeError):
  """The library cannot be built here; the message says why."""


@dataclasses.dataclass(frozen=True)
class OneDnn:
  include_dir: pathlib.Path
  library: pathlib.Path


def _prefixes() -> List[pathlib.Path]:
  """Where pip puts data files: the environment's prefix, then the user base."""
  return [pathlib.Path(p) for p in dict.fromkeys((sys.prefix, site.getuserbase()))]


def _major_version(include_dir: pathlib.Path) -> Optional[int]:
  header = include_dir / "oneapi" / "dnnl" / "dnnl_version.h"
  for line in header.read_text(encoding="utf-8", errors="replace").splitlines():
    if line.startswith("#define DNNL_VERSION_MAJOR"):
      return int(line.split()[-1])
  return None


def find_onednn() -> OneDnn:
  """oneDNN 3's headers and library under the Python prefix, or a BuildError saying what is missing."""
  for prefix in _prefixes():
    include_dir, library = prefix / "include", prefix / "lib" / ONEDNN_LIBRARY
    if (include_dir / ONEDNN_HEADER).is_file() and library.is_file():
      major = _major_version(include_dir)
      if major != ONEDNN_MAJOR:
        raise BuildError(f"oneDNN headers in {include_dir} are version {major}, "
                         f"need {ONEDNN_MAJOR}.x; {INSTALL_HINT}")
      return OneDnn(include_dir, library)
  searched = ", ".join(str(p) for p in _prefixes())
  raise BuildError(f"no oneDNN ({ONEDNN_HEADER} and lib/{ONEDNN_LIBRARY}) under {searched}; "
                   f"{INSTALL_HINT}")


def compiler() -> str:
  cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if not cxx:
    raise BuildError(f"no C++ compiler (g++, c++ or $CXX) on PATH; {INSTALL_HINT}")
  return cxx


def compile_command(cxx: str, onednn: OneDnn, output: str) -> List[str]:
  import jax  # pylint: disable=import-outside-toplevel
  return [cxx, *CXX_FLAGS, "-isystem", jax.ffi.include_dir(), "-isystem", str(onednn.include_dir),
          str(SOURCE), "-o", output, str(onednn.library),
          f"-Wl,-rpath,{onednn.library.parent}"]


def cache_root() -> pathlib.Path:
  if os.environ.get("FTLAB_CACHE_DIR"):
    return pathlib.Path(os.environ["FTLAB_CACHE_DIR"], "onednn")
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(base, "ftlab", "onednn")


def cache_key(command: List[str]) -> str:
  from jaxlib import version  # pylint: disable=import-outside-toplevel
  digest = hashlib.sha256(SOURCE.read_bytes())
  digest.update(" ".join(command[:-3] + command[-2:]).encode())  # the command without the output path
  digest.update(version.__version__.encode())
  return digest.hexdigest()[:16]


def build(verbose: bool = False) -> pathlib.Path:
  """The cached library's path, compiling it first if needed; BuildError if impossible."""
  onednn = find_onednn()
  cxx = compiler()
  key = cache_key(compile_command(cxx, onednn, LIBRARY_NAME))
  target = cache_root() / key / LIBRARY_NAME
  if target.is_file():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
  os.close(fd)
  command = compile_command(cxx, onednn, tmp)
  if verbose:
    print(" ".join(command), file=sys.stderr)
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                          check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    os.unlink(tmp)
    raise BuildError(f"compiling {SOURCE.name} failed: {e}") from e
  if proc.returncode:
    os.unlink(tmp)
    errors = [l for l in proc.stderr.splitlines() if "error" in l][:3] or proc.stderr.splitlines()[-3:]
    raise BuildError(f"compiling {SOURCE.name} failed ({' '.join(command[:1])} exit "
                     f"{proc.returncode}): {' | '.join(errors)}")
  os.replace(tmp, target)
  return target


def main() -> int:
  try:
    print(build(verbose=True))
  except BuildError as e:
    print(f"ftlab oneDNN convolutions unavailable: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
