"""SLURM batch scripts, for sweeps and studies alike: one builder of array (and plain) jobs.

A sweep is one array job, index i running grid entry i through `ftlab.sweep
--task=i`; a study writes each round as an array job and the next planning
step as a plain job (ftlab/studies/slurm.py). Every task goes back through
the entry point, so it keeps a local run's bookkeeping (log.txt,
failed.json, the index).
"""
import os
import shlex
import sys
from typing import Sequence

from ftlab.sweeps.naming import sanitise


TASK_FLAG = '--task="${SLURM_ARRAY_TASK_ID}"'


def entry_command(module: str, config_spec: str, workdir: str, runner: Sequence[str] | None,
                  overrides: Sequence[str]) -> list:
  """`python -m <module> --config --workdir [--runner] --override=k=v ...`."""
  cmd = [sys.executable, "-m", module, f"--config={config_spec}", f"--workdir={workdir}"]
  if runner is not None:
    cmd.append(f"--runner={shlex.join(runner)}")
  return cmd + [f"--override={o}" for o in overrides]


def array_spec(indices: Sequence[int], max_parallel: int = 0) -> str:
  """`0,1,2` (or `0-7` for a contiguous range from 0), `%N` capping how many run at once."""
  indices = list(indices)
  text = (f"0-{len(indices) - 1}" if indices == list(range(len(indices))) and len(indices) > 3
          else ",".join(map(str, indices)))
  return text + (f"%{max_parallel}" if max_parallel > 1 else "")


def batch_script(comment: str, job_name: str, output: str, command: Sequence[str],
                 array: str = "", sbatch_options: Sequence[str] = ()) -> str:
  """A batch script that runs `command` from this directory; with `array`, an array job whose
  task i appends `--task=i`."""
  lines = ["#!/bin/bash", f"# {comment}", f"#SBATCH --job-name={sanitise(job_name)}"]
  if array:
    lines.append(f"#SBATCH --array={array}")
  lines += [f"#SBATCH --output={output}", *(f"#SBATCH {o}" for o in sbatch_options),
            "set -euo pipefail", f"cd {shlex.quote(os.getcwd())}",
            f"exec {shlex.join(command)}" + (f" {TASK_FLAG}" if array else ""), ""]
  return "\n".join(lines)


def slurm_script(config_spec: str, workdir: str, indices: Sequence[int],
                 runner: Sequence[str] | None, max_parallel: int = 0,
                 sbatch_options: Sequence[str] = (), fixed: dict | None = None) -> str:
  """A sweep's array script: array index i runs grid entry i via `ftlab.sweep --task=i`."""
  workdir_abs = os.path.abspath(workdir)
  cmd = entry_command("ftlab.sweep", config_spec, workdir, runner,
                      [f"{k}={v}" for k, v in (fixed or {}).items()])
  return batch_script(f"Written by ftlab.sweep for {config_spec}: one grid entry per array index.",
                      os.path.basename(workdir_abs), f"{workdir_abs}/slurm-%A_%a.out", cmd,
                      array_spec(indices, max_parallel), sbatch_options)
