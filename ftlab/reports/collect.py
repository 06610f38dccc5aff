"""Collecting a workdir's runs (results.json, failed.json, sweep.json's grid) and looking up their keys."""
import dataclasses
import math
import os
import pathlib
from typing import Any, Iterable, Sequence

from ftlab.reports import stats
from ftlab.sweeps import filters, index, rundir
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.rundir import dig


NO_RUNS = ("no runs found (no sweep.json grid, and no run dir with results.json, failed.json, "
           "log.txt or checkpoints/)")


@dataclasses.dataclass(frozen=True)
class RunRecord:
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


def _failed_record(name: str, files: rundir.RunDir, overrides: dict) -> RunRecord:
  path = files.path / rundir.FAILED_FILE
  if files.failed_error:
    return RunRecord(name, files.path, "failed", overrides=overrides, reason=files.failed_error)
  data = files.failed
  reason = data.get("reason") or f"exit code {data.get('exit_code')}"
  last = [line for line in str(data.get("log_tail") or "").splitlines() if line.strip()]
  if last:
    reason += f" (log: {last[-1].strip()[:200]})"
  return RunRecord(name, files.path, "failed", overrides=data.get("overrides") or overrides,
                   reason=f"{path}: {reason}")


def _running_reason(files: rundir.RunDir, index_status: str | None) -> str:
  """Why a run dir without results.json/failed.json counts as running, or ''.

  sweep.json's status `running` says so; without a status from sweep.json
  (or `pending`), a `checkpoints/` folder or `log.txt` means the run started.
  A terminal status in sweep.json (`interrupted`, ...) means it is not running.
  """
  run_dir = files.path
  if index_status == "running":
    return f"{run_dir}: running (sweep.json status 'running'), no {rundir.RESULTS_FILE} yet"
  if index_status not in (None, "", "pending"):
    return ""
  started = [f"{rundir.CHECKPOINTS_DIR}/" if name == rundir.CHECKPOINTS_DIR else name
             for name in sorted(files.started)]
  if not started:
    return ""
  return (f"{run_dir}: running (has {' and '.join(started)}, no {rundir.RESULTS_FILE} or "
          f"{rundir.FAILED_FILE} yet; or it stopped without writing them)")


def load_record(run_dir: pathlib.Path, name: str, overrides: dict,
                index_status: str | None = None) -> RunRecord:
  """Reads one run dir (through `sweeps.rundir`): finished, failed, running or missing.

  A results.json that does not parse (truncated, corrupt) is failed; one with
  status `running` is running; a dir with neither results.json nor
  failed.json is running per `_running_reason`, else missing.

  Args:
    run_dir: the run's directory (it may not exist).
    name: the run's name relative to the workdir.
    overrides: the run's sweep overrides, when known.
    index_status: the run's status in sweep.json, when known.
  """
  files = rundir.read(run_dir)
  failed = files.failed is not None
  if files.finished:
    return RunRecord(name, run_dir, "finished", files.results, overrides)
  if files.results_error:
    return RunRecord(name, run_dir, "failed", overrides=overrides, reason=files.results_error)
  if files.results is not None and not failed:
    status = "running" if files.results.get("status") == "running" else "missing"
    return RunRecord(name, run_dir, status, overrides=overrides,
                     reason=f"{run_dir / rundir.RESULTS_FILE}: status is "
                            f"{files.results.get('status')!r}, not finished")
  if failed:
    return _failed_record(name, files, overrides)
  running = _running_reason(files, index_status)
  if running:
    return RunRecord(name, run_dir, "running", overrides=overrides, reason=running)
  known = "" if index_status in (None, "", "pending") else f" (sweep.json status {index_status!r})"
  return RunRecord(name, run_dir, "missing", overrides=overrides,
                   reason=f"{run_dir}: no {rundir.RESULTS_FILE} or {rundir.FAILED_FILE}{known}")


def _run_dirs(workdir: pathlib.Path) -> list[pathlib.Path]:
  """Dirs holding results.json, failed.json, log.txt or checkpoints/ (not searched inside)."""
  markers = {rundir.RESULTS_FILE, rundir.FAILED_FILE, rundir.LOG_FILE}
  found = []
  for root, dirs, files in os.walk(workdir):
    if markers & set(files) or rundir.CHECKPOINTS_DIR in dirs:
      found.append(pathlib.Path(root))
    dirs[:] = sorted(d for d in dirs if d != rundir.CHECKPOINTS_DIR)
  return sorted(found)


def _read_index(workdir: pathlib.Path, problems: list) -> dict:
  path = workdir / index.INDEX_FILE
  if not path.exists():
    return {}
  data, error = rundir.read_object(path)
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


def _is_scalar(value: Any) -> bool:
  return isinstance(value, (str, int, float, bool))


def lookup(record: RunRecord, key: str) -> Any:
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


def metric_value(record: RunRecord, metric: str) -> float | None:
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


def selected_on_val(record: RunRecord) -> bool:
  """Whether a finished run chose its checkpoint on `val` (no minival carve-out)."""
  return record.results is not None and record.results.get("selection_split") == "val"


def with_metric(records: Sequence[RunRecord], metric: str, problems: list) -> list[RunRecord]:
  """Finished runs without a numeric `metric` become failed, with a reason."""
  out = []
  for r in records:
    if r.status == "finished" and metric_value(r, metric) is None:
      reason = f"{r.dir / rundir.RESULTS_FILE}: no numeric {metric!r}"
      problems.append(reason)
      r = dataclasses.replace(r, status="failed", reason=reason)
    out.append(r)
  return out


def select(records: Sequence[RunRecord], only: Iterable[str]) -> list[RunRecord]:
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
