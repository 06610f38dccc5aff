"""Collecting a workdir's runs (results.json, failed.json, sweep.json's grid) and looking up their keys."""
import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Iterable, Sequence

from ftlab.reports import stats
from ftlab.sweeps import filters, index
from ftlab.sweeps.grid import SweepError


CHECKPOINTS_DIR = "checkpoints"
NO_RUNS = ("no runs found (no sweep.json grid, and no run dir with results.json, failed.json, "
           "log.txt or checkpoints/)")


@dataclasses.dataclass(frozen=True)
class Record:
  """One run as found on disk (or only in sweep.json's grid).

  Attributes:
    name: the run dir relative to the workdir.
    dir: the run dir.
    status: `finished`, `failed`, `missing` or `running` (see `load_record`).
    results: the parsed results.json of a finished run, else None.
    overrides: the run's sweep overrides, when known.
    reason: why a run is not finished (naming the file or dir), else ''.
  """
  name: str
  dir: pathlib.Path
  status: str
  results: dict | None = None
  overrides: dict = dataclasses.field(default_factory=dict)
  reason: str = ""


@dataclasses.dataclass
class Collection:
  """Everything below a workdir: records in grid order, the index, problems."""
  workdir: pathlib.Path
  records: list
  index: dict
  problems: list


def _read_json_object(path: pathlib.Path) -> tuple[dict | None, str]:
  """Parses a JSON object; returns (data, '') or (None, one-line error)."""
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    return None, f"{path}: does not parse ({e})"
  if not isinstance(data, dict):
    return None, f"{path}: is not a JSON object"
  return data, ""


def _failed_record(name: str, run_dir: pathlib.Path, overrides: dict) -> Record:
  path = run_dir / index.FAILED_FILE
  data, error = _read_json_object(path)
  if data is None:
    return Record(name, run_dir, "failed", overrides=overrides, reason=error)
  reason = data.get("reason") or f"exit code {data.get('exit_code')}"
  last = [line for line in str(data.get("log_tail") or "").splitlines() if line.strip()]
  if last:
    reason += f" (log: {last[-1].strip()[:200]})"
  return Record(name, run_dir, "failed", overrides=data.get("overrides") or overrides,
                reason=f"{path}: {reason}")


def _running_reason(run_dir: pathlib.Path, index_status: str | None) -> str:
  """Why a run dir without results.json/failed.json counts as running, or ''.

  sweep.json's status `running` says so; without a status from sweep.json
  (or `pending`), a `checkpoints/` folder or `log.txt` means the run started.
  A terminal status in sweep.json (`interrupted`, ...) means it is not running.
  """
  if index_status == "running":
    return f"{run_dir}: running (sweep.json status 'running'), no {index.RESULTS_FILE} yet"
  if index_status not in (None, "", "pending"):
    return ""
  started = [f for f in (f"{CHECKPOINTS_DIR}/", index.LOG_FILE)
             if (run_dir / f.rstrip("/")).exists()]
  if not started:
    return ""
  return (f"{run_dir}: running (has {' and '.join(started)}, no {index.RESULTS_FILE} or "
          f"{index.FAILED_FILE} yet; or it stopped without writing them)")


def load_record(run_dir: pathlib.Path, name: str, overrides: dict,
                index_status: str | None = None) -> Record:
  """Reads one run dir: finished, failed, running or missing.

  A results.json that does not parse (truncated, corrupt) is failed; one with
  status `running` is running; a dir with neither results.json nor
  failed.json is running per `_running_reason`, else missing.

  Args:
    run_dir: the run's directory (it may not exist).
    name: the run's name relative to the workdir.
    overrides: the run's sweep overrides, when known.
    index_status: the run's status in sweep.json, when known.
  """
  path = run_dir / index.RESULTS_FILE
  failed = (run_dir / index.FAILED_FILE).exists()
  if path.exists():
    data, error = _read_json_object(path)
    if data is not None and data.get("status") == "finished":
      return Record(name, run_dir, "finished", data, overrides)
    if data is None:
      return Record(name, run_dir, "failed", overrides=overrides, reason=error)
    if not failed:
      status = "running" if data.get("status") == "running" else "missing"
      return Record(name, run_dir, status, overrides=overrides,
                    reason=f"{path}: status is {data.get('status')!r}, not finished")
  if failed:
    return _failed_record(name, run_dir, overrides)
  running = _running_reason(run_dir, index_status)
  if running:
    return Record(name, run_dir, "running", overrides=overrides, reason=running)
  known = "" if index_status in (None, "", "pending") else f" (sweep.json status {index_status!r})"
  return Record(name, run_dir, "missing", overrides=overrides,
                reason=f"{run_dir}: no {index.RESULTS_FILE} or {index.FAILED_FILE}{known}")


def _run_dirs(workdir: pathlib.Path) -> list[pathlib.Path]:
  """Dirs holding results.json, failed.json, log.txt or checkpoints/ (not searched inside)."""
  markers = {index.RESULTS_FILE, index.FAILED_FILE, index.LOG_FILE}
  found = []
  for root, dirs, files in os.walk(workdir):
    if markers & set(files) or CHECKPOINTS_DIR in dirs:
      found.append(pathlib.Path(root))
    dirs[:] = sorted(d for d in dirs if d != CHECKPOINTS_DIR)
  return sorted(found)


def _read_index(workdir: pathlib.Path, problems: list) -> dict:
  path = workdir / index.INDEX_FILE
  if not path.exists():
    return {}
  data, error = _read_json_object(path)
  if data is None:
    problems.append(error + "; the grid is unknown, so missing runs are not shown")
    return {}
  return data


def collect(workdir: str | pathlib.Path) -> Collection:
  """All runs below `workdir`: sweep.json's grid first (in order), then others."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"{workdir}: workdir not found")
  problems = []
  index = _read_index(workdir, problems)
  entries = {e["name"]: e for e in index.get("runs", []) if isinstance(e, dict) and "name" in e}
  on_disk = {d.relative_to(workdir).as_posix(): d for d in _run_dirs(workdir)}
  names = list(entries) + sorted(n for n in on_disk if n not in entries)
  records = [load_record(on_disk.get(n, workdir / n), n,
                         entries.get(n, {}).get("overrides") or {},
                         entries.get(n, {}).get("status")) for n in names]
  problems += [r.reason for r in records if r.status != "finished"]
  if not records:
    problems.append(f"{workdir}: {NO_RUNS}")
  return Collection(workdir, records, index, problems)


def dig(data: Any, dotted: str) -> Any:
  """`data['a']['b']` for 'a.b', or None when any part is absent."""
  for part in dotted.split("."):
    if not isinstance(data, dict) or part not in data:
      return None
    data = data[part]
  return data


def _is_scalar(value: Any) -> bool:
  return isinstance(value, (str, int, float, bool))


def lookup(record: Record, key: str) -> Any:
  """A key's value for a run: results.json, then its config, then overrides."""
  if record.results is not None:
    for source in (record.results, record.results.get("config")):
      for candidate in (key, key + ".name"):
        value = dig(source, candidate)
        if _is_scalar(value):
          return value
  if record.overrides:
    try:
      return record.overrides[filters.resolve_key(key, record.overrides)]
    except SweepError:
      return None
  return None


def metric_value(record: Record, metric: str) -> float | None:
  """The metric of a finished run as a float, or None if absent/non-numeric.

  `<split>.top1`/`top5` is the exact count fraction where the split has counts
  (stats.counted_fraction), so equal counts give equal values.
  """
  value = dig(record.results, metric)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    return None
  parent, _, key = metric.rpartition(".")
  block = dig(record.results, parent) if parent else None
  exact = stats.counted_fraction(block, key) if isinstance(block, dict) else None
  return float(value) if exact is None else exact


def selected_on_val(record: Record) -> bool:
  """Whether a finished run chose its checkpoint on `val` (no minival carve-out)."""
  return record.results is not None and record.results.get("selection_split") == "val"


def with_metric(records: Sequence[Record], metric: str, problems: list) -> list[Record]:
  """Finished runs without a numeric `metric` become failed, with a reason."""
  out = []
  for r in records:
    if r.status == "finished" and metric_value(r, metric) is None:
      reason = f"{r.dir / index.RESULTS_FILE}: no numeric {metric!r}"
      problems.append(reason)
      r = dataclasses.replace(r, status="failed", reason=reason)
    out.append(r)
  return out


def select(records: Sequence[Record], only: Iterable[str]) -> list[Record]:
  """Records whose keys match every `key=value` in `only`."""
  wanted = []
  for item in only:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--only={item!r} is not of the form key=value")
    wanted.append((key.strip(), value.strip()))
  return [r for r in records
          if all(lookup(r, k) is not None and filters.same_value(lookup(r, k), v)
                 for k, v in wanted)]
