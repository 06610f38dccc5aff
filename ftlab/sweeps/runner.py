"""Running a sweep's runs as processes: launch, supervise, record how each ended, stop on signals.

At the terminal, one line per run as it starts and as it ends:

  [3/12] start model=resnet18,strategy=full_ft
  [3/12] finished model=resnet18,strategy=full_ft  test top-1 95.54%  1m03s  ETA 9m27s for 9 more
  [4/12] failed model=resnet18,strategy=lp_ft  (exit 1; see <run dir>/log.txt)  12s

The ETA is the mean time of the finished runs times the runs still to end,
divided by how many go at once (`parallel`, at most the runs left).
"""
import dataclasses
import os
import pathlib
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from ftlab.sweeps.index import SweepIndex, is_finished, log_tail, now, read_json, write_json
from ftlab.sweeps.naming import format_value, unique_names
from ftlab.sweeps.placement import Placement, placement
from ftlab.sweeps.rundir import FAILED_FILE, LOG_FILE, RESULTS_FILE
from ftlab.sweeps.spec import Sweep
from ftlab.training.progress import duration


DEFAULT_RUNNER = (sys.executable, "-m", "ftlab.main")


def build_command(runner: Sequence[str], config_spec: str, run_dir: str,
                  overrides: dict, fixed: dict | None = None) -> list[str]:
  """The argv that trains one run: grid overrides, then the sweep-wide ones."""
  merged = {**overrides, **(fixed or {})}
  return [*runner, f"--config={config_spec}", f"--workdir={run_dir}",
          *(f"--config.{k}={format_value(v)}" for k, v in merged.items())]


def held_out_top1(run_dir: pathlib.Path) -> str:
  """results.json's `test.top1` as a percentage, or `-`."""
  try:
    return f"{100 * float(read_json(run_dir / RESULTS_FILE)['test']['top1']):.2f}%"
  except (OSError, ValueError, KeyError, TypeError):
    return "-"


def held_out_outcome(run_dir: pathlib.Path) -> str:
  return f"test top-1 {held_out_top1(run_dir)}"


@dataclasses.dataclass
class Job:
  """One run (a grid entry, a study trial), ready to launch as a process.

  `done(dir)` says whether the process achieved what it was launched for
  (default: a finished results.json; a study's rung stop has its own) and
  `outcome(dir)` what the end-of-run line says about it.
  """
  index: int
  name: str
  overrides: dict
  dir: pathlib.Path
  command: list
  done: Callable[[pathlib.Path], bool] = is_finished
  outcome: Callable[[pathlib.Path], str] = held_out_outcome


@dataclasses.dataclass
class _Active:
  run: Job
  proc: subprocess.Popen
  log: Any
  log_offset: int
  started: float
  number: int = 0  # 1-based launch order, as printed


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


def plan(sweep: Sweep, workdir: pathlib.Path, runner: Sequence[str]) -> list[Job]:
  """One `Job` per grid entry."""
  names = unique_names(sweep.grid)
  return [Job(i, name, overrides, workdir / name,
              build_command(runner, sweep.config_spec, str(workdir / name), overrides,
                            sweep.fixed))
          for i, (name, overrides) in enumerate(zip(names, sweep.grid))]


def _launch(run: Job, place: Placement) -> _Active:
  run.dir.mkdir(parents=True, exist_ok=True)
  (run.dir / FAILED_FILE).unlink(missing_ok=True)
  log = open(run.dir / LOG_FILE, "ab")
  offset = log.tell()
  log.write(f"=== {now()} launch: {shlex.join(run.command)}\n".encode())
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
  if code == 0 and run.done(run.dir):
    index.update_run(run.name, status="finished", exit_code=0, elapsed_s=elapsed, pid=None)
    return "finished"
  reason = (f"exit code {code}" if code != 0
            else f"exit code 0 but {run.dir / RESULTS_FILE} is missing or not finished "
                 "(or, for a study trial, rungs.json lacks its rung)")
  write_json(run.dir / FAILED_FILE, {
      "name": run.name, "overrides": run.overrides, "exit_code": code, "reason": reason,
      "command": run.command, "log": str(run.dir / LOG_FILE), "elapsed_s": elapsed,
      "time": now(), "log_tail": log_tail(run.dir / LOG_FILE, active.log_offset)})
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
    if a.proc.returncode == 0 and a.run.done(a.run.dir):
      _conclude(a, index)
    else:
      a.log.close()
      index.update_run(a.run.name, status="interrupted", pid=None)


def execute(runs: Sequence[Job], index: SweepIndex, parallel: int = 1,
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
  total, durations = len(pending), []
  while pending or active:
    if _SIGNALS_RECEIVED:
      _stop(list(active.values()), index)
      raise Interrupted(_SIGNALS_RECEIVED[0], counts)
    for slot in range(parallel):
      if slot not in active and pending:
        run = pending.pop(0)
        active[slot] = _launch(run, placement(slot, parallel, cpus, gpus))
        active[slot].number = total - len(pending)
        index.update_run(run.name, status="running", pid=active[slot].proc.pid,
                         host=socket.gethostname(), started=now())
        print(f"[{active[slot].number}/{total}] start {run.name}", flush=True)
    for slot, a in list(active.items()):
      if a.proc.poll() is not None:
        del active[slot]
        _report_end(a, _conclude(a, index), counts, durations, total, parallel)
    time.sleep(poll_s)
  return counts


def _report_end(a: _Active, status: str, counts: dict, durations: list, total: int,
                parallel: int) -> None:
  """Prints how a run ended and, after a finished one, the sweep's ETA."""
  counts[status] += 1
  elapsed = time.monotonic() - a.started
  if status == "finished":
    durations.append(elapsed)
    what = a.run.outcome(a.run.dir)
  else:
    code = a.proc.returncode
    what = (f"(exit {code}{' without a finished ' + RESULTS_FILE if code == 0 else ''}; "
            f"see {a.run.dir / LOG_FILE})")
  line = f"[{a.number}/{total}] {status} {a.run.name}  {what}  {duration(elapsed)}"
  left = total - counts["finished"] - counts["failed"]
  if status == "finished" and left:
    eta = statistics.mean(durations) * left / min(parallel, left)
    line += f"  ETA {duration(eta)} for {left} more"
  print(line, flush=True)
