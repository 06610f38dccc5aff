"""Each measurement in a fresh subprocess: `script --worker=<spec json>` prints one
`RESULT {json}` line that the parent parses (`run_worker`), after waiting for a quiet machine
and re-running a contended measurement (`measure_quietly`, `benchlib.wait_for_quiet`).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
from typing import Dict, Optional

import benchlib


RESULT_PREFIX = "RESULT "


def serve_worker(workers: Dict, spec_json: str) -> None:
  """The `--worker=<spec>` side of `run_worker`: ftlab's XLA settings, then the worker.

  `spec['xla_defaults']` keeps XLA's own defaults (to measure what
  `ftlab.training.runtime` changes); the settings reach only this worker process.
  """
  spec = json.loads(spec_json)
  if not spec.get("xla_defaults", False):
    from ftlab.training import runtime  # pylint: disable=import-outside-toplevel
    runtime.configure_xla()
  emit(workers[spec["kind"]](spec))


def emit(result: Dict) -> None:
  """Prints a worker's result line for `run_worker`."""
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def _end_group(proc: subprocess.Popen) -> None:
  """Kills what is left of the worker's process group (torch.compile's compile workers too)."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass


def run_worker(script: str, spec: Dict, timeout_s: float = 1800.0,
               env: Optional[Dict[str, str]] = None) -> Dict:
  """Runs `script --worker=<spec>` in a fresh Python; returns its result (or {'error': ...}).

  The worker leads its own process group, which is killed when it ends, times
  out or the parent is interrupted, so no grandchild outlives its measurement.
  """
  cmd = [sys.executable, script, "--worker=" + json.dumps(spec)]
  with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        env={**os.environ, **(env or {})}, process_group=0) as proc:
    try:
      stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      _end_group(proc)
      proc.communicate()
      return {"error": f"timed out after {timeout_s:.0f} s"}
    except BaseException:
      _end_group(proc)
      raise
    _end_group(proc)
  for line in reversed(stdout.splitlines()):
    if line.startswith(RESULT_PREFIX):
      return json.loads(line[len(RESULT_PREFIX):])
  tail = (stderr or stdout).strip().splitlines()[-5:]
  return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def measure_quietly(script: str, spec: Dict, max_wait_s: float, retries: int,
                    timeout_s: float = 1800.0) -> Dict:
  """`run_worker` after waiting for a quiet machine, re-run while the timing was contended.

  Returns the least contended result, with `loadavg` and `quiet_cores` (other
  processes' CPU use just before it started) added.
  """
  best = None
  for _ in range(retries + 1):
    quiet = benchlib.wait_for_quiet(max_wait_s)
    load = benchlib.loadavg()
    result = run_worker(script, spec, timeout_s)
    result.update(loadavg=load, quiet_cores=quiet)
    if "error" in result:
      return result
    if best is None or result.get("foreign_cores", 0.0) < best.get("foreign_cores", 0.0):
      best = result
    if best.get("foreign_cores", 0.0) < benchlib.QUIET_CORES:
      break
  return best


def add_worker_flags(parser: argparse.ArgumentParser) -> None:
  """The flags every benchmark script shares: quiet-machine waiting and `--worker`."""
  parser.add_argument("--max_wait", type=float, default=120.0,
                      help="seconds to wait for other processes to go quiet before each worker")
  parser.add_argument("--retries", type=int, default=2,
                      help="re-runs of a worker whose timing other processes contended")
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)


def measure_logged(script: str, spec: Dict, label: str, args: argparse.Namespace,
                   timeout_s: float = 1800.0) -> Dict:
  """`measure_quietly` with the script's `add_worker_flags` values; logs the outcome."""
  result = measure_quietly(os.path.abspath(script), spec, args.max_wait, args.retries, timeout_s)
  benchlib.log(f"  {label}: {result.get('error') or 'ok'} (loadavg {result['loadavg']:.2f}, others "
      f"{result['quiet_cores']:.2f} cores before, "
      f"{result.get('foreign_cores', float('nan')):.2f} during)")
  return result
