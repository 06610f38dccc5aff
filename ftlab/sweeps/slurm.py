"""SLURM: a sweep as an array job, one grid entry per array index."""
import os
import shlex
import sys
from typing import Sequence

from ftlab.sweeps.naming import sanitise


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
           f"#SBATCH --job-name={sanitise(os.path.basename(workdir_abs))}",
           f"#SBATCH --array={array}",
           f"#SBATCH --output={workdir_abs}/slurm-%A_%a.out",
           *(f"#SBATCH {opt}" for opt in sbatch_options),
           "set -euo pipefail",
           f"cd {shlex.quote(os.getcwd())}",
           f'exec {shlex.join(cmd)} --task="${{SLURM_ARRAY_TASK_ID}}"', ""]
  return "\n".join(lines)
