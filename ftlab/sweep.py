"""Expand a config's sweep grid and run every entry as its own process.

A sweepable config file defines `get_sweep(arg=None) -> list[dict]`, each
dict one run's overrides with dotted keys, built with `product`, `zip_` and
`chain` from this module, and optionally a module-level `STRATEGY_ORDER`.

Usage:

  python -m ftlab.sweep --config=configs/X.py[:arg] --workdir=runs/X \
      [--parallel=N] [--only=strategy=full_ft] [--dry_run] [--slurm=FILE]
      [--config.data.root=/data/x ...]

Every run gets a readable name derived from its overrides (e.g.
`model=resnet18,strategy=full_ft,seed=0`) and its own workdir
`<workdir>/<name>`, where its stdout/stderr go to `log.txt`. `--config.k=v`
flags given to the sweep are passed to every run and kept out of the names.
Runs whose `results.json` says `finished` are skipped, so re-running a
sweep resumes it; a failing run leaves `failed.json` and the others go on.
The exit status is the number of failed runs (capped at 100), 128+signal
when the sweep itself was interrupted, or 101 when it could not start.
`<workdir>/sweep.json` indexes the grid and every run's status and is
rewritten whenever a status changes.
"""
import dataclasses
import datetime
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Iterable, Sequence

from absl import app
from absl import flags

DEFAULT_RUNNER = (sys.executable, "-m", "ftlab.main")
INDEX_FILE = "sweep.json"
RESULTS_FILE = "results.json"
FAILED_FILE = "failed.json"
LOG_FILE = "log.txt"
LOG_TAIL_LINES = 40
MAX_EXIT_STATUS = 100
MAX_NAME_LEN = 200
SCALAR_TYPES = (str, int, float, bool)
ERROR_EXIT = 101  # the sweep could not start (bad config, flags or state).


class SweepError(ValueError):
  """A sweep config, filter or index is unusable; the message says where."""


# ---------------------------------------------------------------------------
# Grid helpers, for config files.


def product(**axes: Sequence[Any]) -> list[dict]:
  """Cartesian product of the axes, in declaration order (last varies fastest).

  Example: `product(**{'model.name': ['a', 'b'], 'seed': [0, 1]})`.

  Args:
    **axes: dotted config key -> list of values.

  Returns:
    One overrides dict per combination.
  """
  keys = list(axes)
  return [dict(zip(keys, values))
          for values in itertools.product(*(axes[k] for k in keys))]


def zip_(**axes: Sequence[Any]) -> list[dict]:
  """Element-wise combination of equally long axes.

  Args:
    **axes: dotted config key -> list of values, all of the same length.

  Returns:
    One overrides dict per position.

  Raises:
    SweepError: if the axes differ in length.
  """
  lengths = {k: len(v) for k, v in axes.items()}
  if len(set(lengths.values())) > 1:
    raise SweepError(f"zip_ needs axes of equal length, got {lengths}")
  keys = list(axes)
  return [dict(zip(keys, values)) for values in zip(*(axes[k] for k in keys))]


def chain(*grids: Iterable[dict]) -> list[dict]:
  """Concatenates grids, e.g. two products with different axes."""
  return [dict(overrides) for grid in grids for overrides in grid]


def cross(*grids: Iterable[dict]) -> list[dict]:
  """Product of grids: every combination of one entry of each, merged."""
  out = []
  for parts in itertools.product(*(list(g) for g in grids)):
    merged = {}
    for part in parts:
      merged.update(part)
    out.append(merged)
  return out


# ---------------------------------------------------------------------------
# Loading a sweep from a config file.


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A config file's expanded grid.

  Attributes:
    config_path: the config file as given on the command line.
    arg: the text after ':' in `--config`, or None.
    grid: one overrides dict per run, in the config's order.
    strategy_order: strategies in the order reports should show them.
    fixed: overrides given on the sweep's command line, applied to every run
      (key -> value text); not part of run names.
  """
  config_path: str
  arg: str | None
  grid: tuple
  strategy_order: tuple
  fixed: dict = dataclasses.field(default_factory=dict)

  @property
  def config_spec(self) -> str:
    return self.config_path if self.arg is None else f"{self.config_path}:{self.arg}"


def parse_config_spec(spec: str) -> tuple[str, str | None]:
  """Splits `path.py[:arg]` into the path and the argument (or None)."""
  path, sep, arg = spec.partition(":")
  return path, (arg if sep else None)


def _import_file(path: str):
  if not os.path.isfile(path):
    raise SweepError(f"{path}: config file not found")
  digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
  spec = importlib.util.spec_from_file_location(f"_ftlab_cfg_{digest}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _validate_grid(grid: Any, path: str) -> tuple:
  if not isinstance(grid, (list, tuple)) or not grid:
    raise SweepError(f"{path}: get_sweep() must return a non-empty list of dicts")
  for i, overrides in enumerate(grid):
    if not isinstance(overrides, dict):
      raise SweepError(f"{path}: get_sweep()[{i}] is {type(overrides).__name__}, not a dict")
    for key, value in overrides.items():
      if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
        raise SweepError(f"{path}: get_sweep()[{i}] has invalid key {key!r}")
      if not isinstance(value, SCALAR_TYPES):
        raise SweepError(f"{path}: get_sweep()[{i}][{key!r}] = {value!r} is not a "
                         "str/int/float/bool")
  return tuple(dict(o) for o in grid)


def _check_keys_exist(config: Any, grid: tuple, path: str) -> None:
  """Fails early when a sweep key does not name a field of get_config()."""
  for key in dict.fromkeys(k for overrides in grid for k in overrides):
    node = config
    for part in key.split("."):
      if not hasattr(node, "keys") or part not in node:
        raise SweepError(f"{path}: sweep key {key!r} is not a field of get_config()")
      node = node[part]


def _strategy_order(module: Any, grid: tuple) -> tuple:
  declared = getattr(module, "STRATEGY_ORDER", None)
  seen = [v for o in grid for k, v in o.items() if short_key(k) == "strategy"]
  order = list(declared or [])
  order += [s for s in dict.fromkeys(seen) if s not in order]
  return tuple(order)


def parse_fixed(items: Iterable[str], grid: Sequence[dict]) -> dict[str, str]:
  """Parses `key=value` overrides for every run; they may not vary in the grid."""
  fixed = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
      raise SweepError(f"override {item!r} is not of the form dotted.key=value")
    if any(key in overrides for overrides in grid):
      raise SweepError(f"override {key!r} is also a sweep axis; filter with --only instead")
    fixed[key] = value
  return fixed


def load_sweep(config_spec: str, fixed: Iterable[str] = ()) -> Sweep:
  """Imports a config file and expands its sweep.

  Args:
    config_spec: `path.py` or `path.py:arg`.
    fixed: `key=value` overrides for every run.

  Returns:
    The expanded `Sweep`.
  """
  path, arg = parse_config_spec(config_spec)
  module = _import_file(path)
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path}: no get_sweep(); not a sweep config")
  grid = _validate_grid(module.get_sweep() if arg is None else module.get_sweep(arg), path)
  fixed = parse_fixed(fixed, grid)
  if hasattr(module, "get_config"):
    config = module.get_config() if arg is None else module.get_config(arg)
    _check_keys_exist(config, grid + (fixed,), path)
  unique_names(grid)
  return Sweep(path, arg, grid, _strategy_order(module, grid), fixed)


# ---------------------------------------------------------------------------
# Run names.


def short_key(key: str) -> str:
  """`model.name` -> `model`; other dotted keys stay as they are."""
  return key[:-len(".name")] if key.endswith(".name") else key


def format_value(value: Any) -> str:
  """How a value is written in names and on the command line."""
  if isinstance(value, float):
    return repr(value)
  return str(value)


def _sanitise(text: str) -> str:
  text = re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)
  return "_" + text[1:] if text.startswith(".") else text


def run_name(overrides: dict) -> str:
  """A stable, file-system-safe name from overrides, in their declared order.

  Args:
    overrides: dotted key -> value.

  Returns:
    e.g. `model=resnet18,strategy=full_ft,seed=0`; names longer than
    MAX_NAME_LEN are cut and end in a hash of the full name.
  """
  raw = ",".join(f"{short_key(k)}={format_value(v)}" for k, v in overrides.items())
  name = _sanitise(raw) or "default"
  if len(name) > MAX_NAME_LEN:
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    name = f"{name[:MAX_NAME_LEN - 11]}-{digest}"
  return name


def unique_names(grid: Sequence[dict]) -> list[str]:
  """Names for every grid entry; raises if two entries share a name."""
  names, first = [], {}
  for i, overrides in enumerate(grid):
    name = run_name(overrides)
    if name in first:
      raise SweepError(f"sweep entries {first[name]} and {i} both get the run name "
                       f"{name!r}; make their overrides differ")
    first[name] = i
    names.append(name)
  return names


# ---------------------------------------------------------------------------
# --only filters.


def resolve_key(key: str, keys: Iterable[str]) -> str:
  """Maps a possibly short key (`strategy`) to the one grid key it names.

  A key matches itself, `key.name`, or any key ending in `.key`.

  Raises:
    SweepError: if no key or several keys match.
  """
  keys = list(dict.fromkeys(keys))
  if key in keys:
    return key
  matches = [k for k in keys if short_key(k) == key or k.endswith("." + key)]
  if len(matches) != 1:
    what = "matches no" if not matches else f"is ambiguous between {matches} among the"
    raise SweepError(f"filter key {key!r} {what} sweep keys {keys}")
  return matches[0]


def parse_filters(items: Iterable[str], keys: Iterable[str]) -> dict[str, set]:
  """Parses `k=v` items; values for the same key are alternatives."""
  keys = list(keys)
  filters: dict[str, set] = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise SweepError(f"filter {item!r} is not of the form key=value")
    filters.setdefault(resolve_key(key.strip(), keys), set()).add(value.strip())
  return filters


def same_value(value: Any, text: str) -> bool:
  """Whether a filter's text names `value` (`1e-3` names 0.001, `true` names True)."""
  if isinstance(value, bool):
    return str(value).lower() == text.lower()
  if format_value(value) == text:
    return True
  if isinstance(value, (int, float)):
    try:
      return float(text) == float(value)
    except ValueError:
      return False
  return False


def matches(overrides: dict, filters: dict[str, set]) -> bool:
  """True if the overrides satisfy every filter."""
  return all(k in overrides and any(same_value(overrides[k], v) for v in values)
             for k, values in filters.items())


# ---------------------------------------------------------------------------
# Commands and per-process resources.


def build_command(runner: Sequence[str], config_spec: str, run_dir: str,
                  overrides: dict, fixed: dict | None = None) -> list[str]:
  """The argv that trains one run: grid overrides, then the sweep-wide ones."""
  merged = {**overrides, **(fixed or {})}
  return [*runner, f"--config={config_spec}", f"--workdir={run_dir}",
          *(f"--config.{k}={format_value(v)}" for k, v in merged.items())]


@dataclasses.dataclass(frozen=True)
class Placement:
  """The share of the machine one concurrent run gets.

  Attributes:
    env: environment variables to add for the run.
    cpus: CPU ids the run's process is pinned to (empty: no pinning).
  """
  env: dict
  cpus: tuple


def placement(slot: int, num_slots: int, cpus: Sequence[int],
              gpus: Sequence[str] = ()) -> Placement:
  """Splits CPUs and GPUs evenly between `num_slots` concurrent runs.

  CPUs: slot `slot` gets a contiguous block of len(cpus) // num_slots CPUs
  (at least one; blocks wrap around when there are more slots than CPUs).
  The process is pinned to that block (`Placement.cpus`, applied with
  sched_setaffinity), which is what confines XLA's CPU thread pool: it is
  sized from the affinity mask. The thread pools that read environment
  variables are capped at the block size too: OpenMP/MKL/OpenBLAS and
  TensorFlow (tf.data). A one-CPU slot also gets the usual single-thread
  XLA recipe, `--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1`, appended to any inherited XLA_FLAGS.

  GPUs are dealt round-robin (`CUDA_VISIBLE_DEVICES`); with fewer GPUs than
  slots, slots share them and each gets an equal memory fraction.

  Args:
    slot: index of the run's slot, 0 <= slot < num_slots.
    num_slots: how many runs go at once.
    cpus: the CPU ids the sweep may use.
    gpus: the GPU ids the sweep may use.

  Returns:
    The slot's `Placement`.
  """
  per = max(1, len(cpus) // num_slots)
  start = (slot * per) % max(1, len(cpus))
  mine = tuple(cpus[(start + i) % len(cpus)] for i in range(per)) if cpus else ()
  env = {name: str(per) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")}
  env["TF_NUM_INTEROP_THREADS"] = "1"
  if per == 1:
    inherited = os.environ.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = (f"{inherited} --xla_cpu_multi_thread_eigen=false "
                        "intra_op_parallelism_threads=1").strip()
  if gpus:
    if len(gpus) >= num_slots:
      env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[slot::num_slots])
    else:
      env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
      sharing = -(-num_slots // len(gpus))
      env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / sharing:.2f}"
  return Placement(env, mine)


def available_cpus() -> list[int]:
  """CPU ids this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def detect_gpus() -> list[str]:
  """GPU ids from CUDA_VISIBLE_DEVICES if set, else from `nvidia-smi -L`."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
  if not shutil.which("nvidia-smi"):
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                         timeout=20, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


# ---------------------------------------------------------------------------
# On-disk state: results.json, failed.json, sweep.json.


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def _read_json(path: pathlib.Path) -> Any:
  with open(path) as f:
    return json.load(f)


def write_json(path: pathlib.Path, data: Any) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(json.dumps(data, indent=1) + "\n")
  os.replace(tmp, path)


def is_finished(run_dir: pathlib.Path) -> bool:
  """True if `run_dir/results.json` parses and says status finished."""
  path = pathlib.Path(run_dir) / RESULTS_FILE
  try:
    return _read_json(path).get("status") == "finished"
  except FileNotFoundError:
    return False
  except (OSError, ValueError, AttributeError) as e:
    print(f"{path}: unreadable ({e}); the run will be relaunched", file=sys.stderr)
    return False


def disk_status(run_dir: pathlib.Path) -> str:
  """`finished`, `failed` or `pending`, from the files in the run dir."""
  if is_finished(run_dir):
    return "finished"
  if (pathlib.Path(run_dir) / FAILED_FILE).exists():
    return "failed"
  return "pending"


class SweepIndex:
  """`<workdir>/sweep.json`, updated under a file lock by every writer."""

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / INDEX_FILE
    self._lock_path = pathlib.Path(workdir) / ".sweep.lock"

  def _locked(self):
    handle = open(self._lock_path, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle

  def read(self) -> dict:
    """The index, or {} if absent or unreadable (it is rebuilt from the run dirs)."""
    try:
      data = _read_json(self.path)
    except FileNotFoundError:
      return {}
    except (OSError, ValueError) as e:
      print(f"{self.path}: unreadable ({e}); rebuilding it from the run dirs", file=sys.stderr)
      return {}
    return data if isinstance(data, dict) else {}

  def modify(self, fn) -> dict:
    """Applies `fn(index_dict) -> index_dict` atomically and returns it."""
    with self._locked():
      data = fn(self.read())
      write_json(self.path, data)
    return data

  def update_run(self, name: str, **fields: Any) -> None:
    """Sets fields of one run's entry."""
    def apply(data):
      for entry in data.get("runs", []):
        if entry["name"] == name:
          entry.update(fields, updated=_now())
      return data
    self.modify(apply)


def _pid_alive_here(entry: dict) -> bool:
  pid = entry.get("pid")
  if entry.get("status") != "running" or not pid or entry.get("host") != socket.gethostname():
    return False
  try:
    os.kill(pid, 0)
  except (ProcessLookupError, PermissionError):
    return False
  cmdline = pathlib.Path(f"/proc/{pid}/cmdline")
  return not cmdline.exists() or entry["dir"].encode() in cmdline.read_bytes()


def init_index(index: SweepIndex, sweep: Sweep, names: list[str],
               workdir: pathlib.Path, keep_existing: bool = False) -> dict:
  """Writes sweep.json for the grid with every run's status read from disk.

  Args:
    index: the sweep's index file.
    sweep: the expanded sweep.
    names: run names, parallel to sweep.grid.
    workdir: the sweep's workdir.
    keep_existing: leave an existing index alone (for SLURM array tasks,
      which only update their own entry).

  Raises:
    SweepError: if a run recorded as running on this host still runs.
  """
  def build(old):
    if keep_existing and old.get("runs"):
      return old
    old_runs = {e["name"]: e for e in old.get("runs", [])}
    busy = [e["name"] for e in old_runs.values() if _pid_alive_here(e)]
    if busy:
      raise SweepError(f"{index.path}: runs still running from an earlier sweep "
                       f"(pids {[old_runs[n]['pid'] for n in busy]}): {busy}")
    runs = []
    for i, (name, overrides) in enumerate(zip(names, sweep.grid)):
      run_dir = workdir / name
      entry = {"name": name, "index": i, "dir": str(run_dir), "overrides": overrides,
               "status": disk_status(run_dir)}
      if entry["status"] == "failed":
        entry["exit_code"] = _failed_exit_code(run_dir)
      runs.append(entry)
    return {"config": sweep.config_path, "arg": sweep.arg,
            "config_spec": sweep.config_spec, "fixed_overrides": sweep.fixed,
            "strategy_order": list(sweep.strategy_order),
            "grid": list(sweep.grid), "runs": runs, "created": old.get("created", _now()),
            "updated": _now()}
  workdir.mkdir(parents=True, exist_ok=True)
  return index.modify(build)


def _failed_exit_code(run_dir: pathlib.Path) -> Any:
  try:
    return _read_json(run_dir / FAILED_FILE).get("exit_code")
  except (OSError, ValueError, AttributeError):
    return None


def log_tail(log_path: pathlib.Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
  """The last `lines` lines of a log written after byte `offset`."""
  try:
    with open(log_path, "rb") as f:
      f.seek(offset)
      text = f.read().decode(errors="replace")
  except OSError:
    return ""
  return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------------------
# Running.


@dataclasses.dataclass
class Run:
  """One grid entry, ready to launch."""
  index: int
  name: str
  overrides: dict
  dir: pathlib.Path
  command: list


@dataclasses.dataclass
class _Active:
  run: Run
  proc: subprocess.Popen
  log: Any
  log_offset: int
  started: float


class Interrupted(Exception):
  """The sweep got SIGINT or SIGTERM; `counts` says how far it got."""

  def __init__(self, signum: int, counts: dict):
    super().__init__(f"interrupted by signal {signum}")
    self.signum = signum
    self.counts = counts


_SIGNALS_RECEIVED = []


def _remember_signal(signum, frame):
  del frame
  _SIGNALS_RECEIVED.append(signum)


def install_signal_handlers() -> None:
  """SIGINT/SIGTERM make `execute` stop its runs and raise `Interrupted`."""
  signal.signal(signal.SIGTERM, _remember_signal)
  signal.signal(signal.SIGINT, _remember_signal)


def plan(sweep: Sweep, workdir: pathlib.Path, runner: Sequence[str]) -> list[Run]:
  """One `Run` per grid entry."""
  names = unique_names(sweep.grid)
  return [Run(i, name, overrides, workdir / name,
              build_command(runner, sweep.config_spec, str(workdir / name), overrides,
                            sweep.fixed))
          for i, (name, overrides) in enumerate(zip(names, sweep.grid))]


def _launch(run: Run, place: Placement) -> _Active:
  run.dir.mkdir(parents=True, exist_ok=True)
  (run.dir / FAILED_FILE).unlink(missing_ok=True)
  log = open(run.dir / LOG_FILE, "ab")
  offset = log.tell()
  log.write(f"=== {_now()} launch: {shlex.join(run.command)}\n".encode())
  log.flush()
  cpus = place.cpus
  preexec = None
  if cpus and hasattr(os, "sched_setaffinity"):
    preexec = lambda: os.sched_setaffinity(0, cpus)  # pylint: disable=unnecessary-lambda-assignment
  proc = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, env={**os.environ, **place.env},
                          preexec_fn=preexec, start_new_session=True)
  return _Active(run, proc, log, offset, time.monotonic())


def _conclude(active: _Active, index: SweepIndex) -> str:
  """Records how a run ended; returns `finished` or `failed`."""
  active.log.close()
  run, code = active.run, active.proc.returncode
  elapsed = round(time.monotonic() - active.started, 3)
  if code == 0 and is_finished(run.dir):
    index.update_run(run.name, status="finished", exit_code=0, elapsed_s=elapsed, pid=None)
    return "finished"
  reason = (f"exit code {code}" if code != 0
            else f"exit code 0 but {run.dir / RESULTS_FILE} is missing or not finished")
  write_json(run.dir / FAILED_FILE, {
      "name": run.name, "overrides": run.overrides, "exit_code": code, "reason": reason,
      "command": run.command, "log": str(run.dir / LOG_FILE), "elapsed_s": elapsed,
      "time": _now(), "log_tail": log_tail(run.dir / LOG_FILE, active.log_offset)})
  index.update_run(run.name, status="failed", exit_code=code, elapsed_s=elapsed, pid=None)
  return "failed"


def _stop(active: list[_Active], index: SweepIndex, grace_s: float = 10.0) -> None:
  """Terminates running runs (their process groups) and records how they ended.

  A run that finished on its own meanwhile is recorded as finished; the
  others are marked `interrupted` (not failed: they resume on the next
  sweep).
  """
  for a in active:
    try:
      os.killpg(a.proc.pid, signal.SIGTERM)
    except ProcessLookupError:
      pass
  deadline = time.monotonic() + grace_s
  for a in active:
    try:
      a.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      os.killpg(a.proc.pid, signal.SIGKILL)
      a.proc.wait()
    if a.proc.returncode == 0 and is_finished(a.run.dir):
      _conclude(a, index)
    else:
      a.log.close()
      index.update_run(a.run.name, status="interrupted", pid=None)


def execute(runs: Sequence[Run], index: SweepIndex, parallel: int = 1,
            cpus: Sequence[int] = (), gpus: Sequence[str] = (),
            poll_s: float = 0.05) -> dict[str, int]:
  """Runs `runs`, at most `parallel` at once, each pinned to its slot.

  Args:
    runs: the runs to launch (already-finished ones filtered out).
    index: sweep.json, updated as runs start and end.
    parallel: how many runs go at once.
    cpus: CPU ids to split between slots.
    gpus: GPU ids to split between slots.
    poll_s: seconds between checks on the running processes.

  Returns:
    Counts of `finished` and `failed` runs.

  Raises:
    Interrupted: on SIGINT/SIGTERM, after stopping the running runs.
  """
  pending, active = list(runs), {}
  counts = {"finished": 0, "failed": 0}
  total = len(pending)
  while pending or active:
    if _SIGNALS_RECEIVED:
      _stop(list(active.values()), index)
      raise Interrupted(_SIGNALS_RECEIVED[0], counts)
    for slot in range(parallel):
      if slot not in active and pending:
        run = pending.pop(0)
        active[slot] = _launch(run, placement(slot, parallel, cpus, gpus))
        index.update_run(run.name, status="running", pid=active[slot].proc.pid,
                         host=socket.gethostname(), started=_now())
        print(f"[{total - len(pending)}/{total}] start {run.name}", flush=True)
    for slot, a in list(active.items()):
      if a.proc.poll() is not None:
        del active[slot]
        _report_end(a, _conclude(a, index), counts)
    time.sleep(poll_s)
  return counts


def _report_end(a: _Active, status: str, counts: dict) -> None:
  counts[status] += 1
  where = "" if status == "finished" else f" (exit {a.proc.returncode}; see {a.run.dir / LOG_FILE})"
  print(f"{status} {a.run.name}{where}", flush=True)


# ---------------------------------------------------------------------------
# SLURM.


def slurm_script(config_spec: str, workdir: str, indices: Sequence[int],
                 runner: Sequence[str] | None, max_parallel: int = 0,
                 sbatch_options: Sequence[str] = (), fixed: dict | None = None) -> str:
  """A SLURM array script: array index i runs grid entry i via `--task=i`.

  Each task goes through `ftlab.sweep --task`, so it keeps the bookkeeping
  (log.txt, failed.json, sweep.json) of a local sweep.
  """
  workdir_abs = os.path.abspath(workdir)
  array = ",".join(str(i) for i in indices) + (f"%{max_parallel}" if max_parallel else "")
  cmd = [sys.executable, "-m", "ftlab.sweep", f"--config={config_spec}",
         f"--workdir={workdir}"]
  if runner is not None:
    cmd.append(f"--runner={shlex.join(runner)}")
  cmd += [f"--override={k}={v}" for k, v in (fixed or {}).items()]
  lines = ["#!/bin/bash",
           f"# Written by ftlab.sweep for {config_spec}: one grid entry per array index.",
           f"#SBATCH --job-name={_sanitise(os.path.basename(workdir_abs))}",
           f"#SBATCH --array={array}",
           f"#SBATCH --output={workdir_abs}/slurm-%A_%a.out",
           *(f"#SBATCH {opt}" for opt in sbatch_options),
           "set -euo pipefail",
           f"cd {shlex.quote(os.getcwd())}",
           f'exec {shlex.join(cmd)} --task="${{SLURM_ARRAY_TASK_ID}}"', ""]
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# CLI.

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the CLI flags (only under `__main__`).

  Configs import this module for `product`; defining flags at import time
  would clash with ftlab.main's own `--config`.
  """
  flags.DEFINE_string("config", None, "Sweep config file, `path.py[:arg]`.")
  flags.DEFINE_string("workdir", None, "Directory holding one subdirectory per run.")
  flags.DEFINE_integer("parallel", 1, "How many runs go at once, each on its share of CPUs/GPUs.")
  flags.DEFINE_multi_string("only", [], "Run only entries with key=value (short keys such as "
                            "strategy=full_ft allowed); repeat for more; same key = or.")
  flags.DEFINE_bool("dry_run", False, "Print the commands of runs that would be launched.")
  flags.DEFINE_string("slurm", None, "Write a SLURM array script to this file instead of running.")
  flags.DEFINE_multi_string("sbatch", [], "Extra `#SBATCH` option lines for --slurm, "
                            "e.g. --sbatch=--time=4:00:00.")
  flags.DEFINE_integer("task", None, "Run only grid entry N (used by SLURM array tasks).")
  flags.DEFINE_string("runner", None, "Command that trains one run (default: "
                      "`python -m ftlab.main`); tests inject a fake one.")
  flags.DEFINE_string("gpus", None, "Comma-separated GPU ids to split (default: "
                      "CUDA_VISIBLE_DEVICES or nvidia-smi).")
  flags.DEFINE_integer("cpus", None, "How many CPUs to split between parallel runs "
                       "(default: all this process may use).")
  flags.DEFINE_multi_string("override", [], "key=value passed to every run as "
                            "--config.key=value; `--config.key=value` is accepted too.")


def parse_flags(argv: list[str]) -> list[str]:
  """absl parsing, with `--config.key=value` taken as `--override=key=value`."""
  prefix = "--config."
  argv = [f"--override={a[len(prefix):]}" if a.startswith(prefix) else a for a in argv]
  return FLAGS(argv)


def _select(runs: list[Run], sweep: Sweep) -> list[Run]:
  if FLAGS.task is not None:
    if not 0 <= FLAGS.task < len(runs):
      raise SweepError(f"--task={FLAGS.task} is outside the grid of {len(runs)} runs")
    runs = [runs[FLAGS.task]]
  keys = [k for o in sweep.grid for k in o]
  filters = parse_filters(FLAGS.only, keys)
  return [r for r in runs if matches(r.overrides, filters)]


def _summary(finished: int, failed: int) -> str:
  return f"{finished} finished, {failed} failed"


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}", exitcode=ERROR_EXIT)
  if not FLAGS.config or not FLAGS.workdir:
    raise app.UsageError("--config and --workdir are required", exitcode=ERROR_EXIT)
  try:
    return _main()
  except SweepError as e:
    print(f"error: {e}", file=sys.stderr)
    return ERROR_EXIT


def _main() -> int:
  runner = shlex.split(FLAGS.runner) if FLAGS.runner else list(DEFAULT_RUNNER)
  sweep = load_sweep(FLAGS.config, FLAGS.override)
  workdir = pathlib.Path(FLAGS.workdir)
  all_runs = plan(sweep, workdir, runner)
  runs = _select(all_runs, sweep)
  todo = [r for r in runs if not is_finished(r.dir)]
  done = len(runs) - len(todo)
  if FLAGS.slurm:
    script = slurm_script(sweep.config_spec, FLAGS.workdir, [r.index for r in todo],
                          runner if FLAGS.runner else None,
                          FLAGS.parallel if FLAGS.parallel > 1 else 0, FLAGS.sbatch,
                          sweep.fixed)
    pathlib.Path(FLAGS.slurm).write_text(script)
    print(f"wrote {FLAGS.slurm}: {len(todo)} array tasks; submit with `sbatch {FLAGS.slurm}`")
    return 0
  if FLAGS.dry_run:
    for r in todo:
      print(shlex.join(r.command))
    print(f"dry run: {len(todo)} to launch, {done} already finished")
    return 0
  index = SweepIndex(workdir)
  init_index(index, sweep, [r.name for r in all_runs], workdir,
             keep_existing=FLAGS.task is not None)
  if done:
    print(f"skipping {done} finished run(s)")
  cpus = available_cpus()[:FLAGS.cpus] if FLAGS.cpus else available_cpus()
  gpus = FLAGS.gpus.split(",") if FLAGS.gpus else detect_gpus()
  install_signal_handlers()
  try:
    counts = execute(todo, index, max(1, FLAGS.parallel), cpus, gpus)
  except Interrupted as e:
    print(f"interrupted by signal {e.signum}; re-run to resume", flush=True)
    print(_summary(done + e.counts["finished"], e.counts["failed"]), flush=True)
    return 128 + e.signum
  print(_summary(done + counts["finished"], counts["failed"]), flush=True)
  return min(counts["failed"], MAX_EXIT_STATUS)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
