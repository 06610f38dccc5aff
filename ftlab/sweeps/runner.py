"""Running a sweep's runs as processes: launch, supervise, record how each ended, stop on signals."""
import dataclasses
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

from ftlab.sweeps.index import (FAILED_FILE, LOG_FILE, RESULTS_FILE, SweepIndex, is_finished,
                                log_tail, now, write_json)
from ftlab.sweeps.naming import format_value, unique_names
from ftlab.sweeps.placement import Placement, placement
from ftlab.sweeps.spec import Sweep


DEFAULT_RUNNER = (sys.executable, "-m", "ftlab.main")


def build_command(runner: Sequence[str], config_spec: str, run_dir: str,
                  overrides: dict, fixed: dict | None = None) -> list[str]:
  """The argv that trains one run: grid overrides, then the sweep-wide ones."""
  merged = {**overrides, **(fixed or {})}
  return [*runner, f"--config={config_spec}", f"--workdir={run_dir}",
          *(f"--config.{k}={format_value(v)}" for k, v in merged.items())]


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
  if code == 0 and is_finished(run.dir):
    index.update_run(run.name, status="finished", exit_code=0, elapsed_s=elapsed, pid=None)
    return "finished"
  reason = (f"exit code {code}" if code != 0
            else f"exit code 0 but {run.dir / RESULTS_FILE} is missing or not finished")
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
                         host=socket.gethostname(), started=now())
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
