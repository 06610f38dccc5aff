"""One reader of a run dir: what `ftlab.main` and the runner left there, and what it says.

  results.json   the run's results (`status` finished, or running while it trains)
  failed.json    the runner's record of a launch that failed (deleted at the next launch)
  rungs.json     a study trial's stops (ftlab/training/rungs.py)
  config.json    the config the run was trained with (written when it starts)
  log.txt, checkpoints/latest/<step>/   a run that started

`read(run_dir)` parses them once; `status` is finished (a results.json with
status finished: a complete run is a fact, whatever came after), failed
(failed.json, or a results.json/rungs.json that does not parse) or pending.
`sweeps.index`, `studies.trials` and `reports.collect` all read run dirs
through it.
"""
import dataclasses
import json
import pathlib
from typing import Any

from ftlab.training import rungs as rungs_lib


RESULTS_FILE = "results.json"
FAILED_FILE = "failed.json"
LOG_FILE = "log.txt"
CONFIG_FILE = "config.json"
CHECKPOINTS_DIR = "checkpoints"


def read_object(path: pathlib.Path) -> tuple[dict | None, str]:
  """A JSON object from `path`: (data, '') or (None, one-line error); (None, '') when absent."""
  try:
    data = json.loads(path.read_text())
  except FileNotFoundError:
    return None, ""
  except (OSError, ValueError) as e:
    return None, f"{path}: does not parse ({e})"
  if not isinstance(data, dict):
    return None, f"{path}: is not a JSON object"
  return data, ""


@dataclasses.dataclass(frozen=True)
class RunDir:
  """A run dir's files, parsed (see the module docstring)."""
  path: pathlib.Path
  results: dict | None = None     # results.json (any status)
  results_error: str = ""
  failed: dict | None = None      # failed.json; {} when it exists but does not parse
  failed_error: str = ""
  rungs: dict = dataclasses.field(default_factory=dict)   # fraction key -> stop record
  rungs_error: str = ""
  config: dict | None = None      # config.json
  started: tuple = ()             # which of log.txt, checkpoints/ exist

  @property
  def finished(self) -> bool:
    return self.results is not None and self.results.get("status") == "finished"

  @property
  def status(self) -> str:
    """`finished`, `failed` or `pending`."""
    if self.finished:
      return "finished"
    if self.failed is not None or self.results_error or self.rungs_error:
      return "failed"
    return "pending"

  @property
  def reason(self) -> str:
    """Why the run is failed (naming the file), else ''."""
    if self.status != "failed":
      return ""
    if self.results_error or self.rungs_error:
      return self.results_error or self.rungs_error
    why = self.failed_error or self.failed.get("reason") or f"exit code {self.failed.get('exit_code')}"
    return f"{self.path / FAILED_FILE}: {why}"

  def recorded_config(self) -> dict | None:
    """The config the run trained with: config.json, else results.json's `config`."""
    if self.config is not None:
      return self.config
    return (self.results or {}).get("config")

  def latest_checkpoint_step(self) -> int:
    """The step of `checkpoints/latest/<step>` (0 without one)."""
    latest = self.path / CHECKPOINTS_DIR / "latest"
    steps = [int(p.name) for p in latest.iterdir() if p.name.isdigit()] if latest.is_dir() else []
    return max(steps, default=0)


def _rungs(run_dir: pathlib.Path) -> tuple[dict, str]:
  try:
    return rungs_lib.read(str(run_dir)), ""
  except ValueError as e:
    return {}, str(e)


def read(run_dir: pathlib.Path) -> RunDir:
  """Parses a run dir's files (an absent dir reads as pending, with nothing in it)."""
  run_dir = pathlib.Path(run_dir)
  results, results_error = read_object(run_dir / RESULTS_FILE)
  failed, failed_error = read_object(run_dir / FAILED_FILE)
  if failed is None and failed_error:
    failed = {}
  stops, rungs_error = _rungs(run_dir)
  config, _ = read_object(run_dir / CONFIG_FILE)
  started = tuple(name for name in (LOG_FILE, CHECKPOINTS_DIR) if (run_dir / name).exists())
  return RunDir(run_dir, results, results_error, failed, failed_error, stops, rungs_error,
                config, started)


def dig(data: Any, dotted: str) -> Any:
  """`data['a']['b']` for 'a.b', or None when any part is absent."""
  for part in dotted.split("."):
    if not isinstance(data, dict) or part not in data:
      return None
    data = data[part]
  return data
