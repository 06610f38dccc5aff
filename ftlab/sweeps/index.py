"""A sweep's on-disk state: the index sweep.json, and each run's status (`sweeps.rundir`)."""
import datetime
import fcntl
import json
import os
import pathlib
import socket
import sys
from typing import Any

from ftlab.sweeps import rundir
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.spec import Sweep


INDEX_FILE = "sweep.json"
LOG_TAIL_LINES = 40


def now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def read_json(path: pathlib.Path) -> Any:
  with open(path) as f:
    return json.load(f)


def write_json(path: pathlib.Path, data: Any) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(json.dumps(data, indent=1) + "\n")
  os.replace(tmp, path)


def is_finished(run_dir: pathlib.Path) -> bool:
  """True if `run_dir/results.json` parses and says status finished (else it is relaunched)."""
  files = rundir.read(run_dir)
  if files.results_error:
    print(f"{files.results_error}; the run will be relaunched", file=sys.stderr)
  return files.finished


class SweepIndex:
  """`<workdir>/sweep.json`, updated under a file lock by every writer."""

  def __init__(self, workdir: pathlib.Path, filename: str = INDEX_FILE):
    self.path = pathlib.Path(workdir) / filename
    self._lock_path = pathlib.Path(workdir) / f".{filename}.lock"

  def _locked(self):
    handle = open(self._lock_path, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle

  def read(self) -> dict:
    """The index, or {} if absent or unreadable (it is rebuilt from the run dirs)."""
    try:
      data = read_json(self.path)
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
          entry.update(fields, updated=now())
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
      files = rundir.read(run_dir)
      entry = {"name": name, "index": i, "dir": str(run_dir), "overrides": overrides,
               "status": files.status}
      if files.status == "failed":
        entry["exit_code"] = (files.failed or {}).get("exit_code")
      runs.append(entry)
    return {"config": sweep.config_path, "arg": sweep.arg,
            "config_spec": sweep.config_spec, "fixed_overrides": sweep.fixed,
            "strategy_order": list(sweep.strategy_order),
            "grid": list(sweep.grid), "runs": runs, "created": old.get("created", now()),
            "updated": now()}
  workdir.mkdir(parents=True, exist_ok=True)
  return index.modify(build)


def log_tail(log_path: pathlib.Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
  """The last `lines` lines of a log written after byte `offset`."""
  try:
    with open(log_path, "rb") as f:
      f.seek(offset)
      text = f.read().decode(errors="replace")
  except OSError:
    return ""
  return "\n".join(text.splitlines()[-lines:])
