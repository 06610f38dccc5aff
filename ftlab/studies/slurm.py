"""A study on SLURM: each round an array job, and a dependent job that plans the next one.

`ftlab.study --slurm=FILE` plans the study from its files, freezes the
round's runs into `<workdir>/slurm/round-<n>.json`, writes FILE (the array
job: task i runs the round's run i through `ftlab.study --round_file --task=i`,
with the bookkeeping of a local run: log.txt, failed.json, runs.json) and
`FILE.next.sh` (the promotion step: the same `ftlab.study --slurm=FILE`,
after the array job has ended, `--dependency=afterany`), and submits both
with sbatch. When the plan has nothing left, the chain ends and writes
decisions.json.
"""
import json
import pathlib
import subprocess
from typing import Sequence

from ftlab.studies import decisions, driver, planner, space
from ftlab.sweeps import index as index_lib
from ftlab.sweeps import slurm as sweep_slurm
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.runner import execute


SLURM_DIR = "slurm"


def _round_number(workdir: pathlib.Path) -> int:
  return len(list((workdir / SLURM_DIR).glob("round-*.json"))) + 1


def write_round(study: space.Study, workdir: pathlib.Path, script: pathlib.Path,
                tasks: Sequence[planner.Task], runner: Sequence[str] | None,
                parallel: int, sbatch: Sequence[str], config_spec: str,
                overrides: Sequence[str]) -> tuple:
  """Writes the round's task file, its array script and the promotion script; returns them."""
  workdir = workdir.resolve()
  number = _round_number(workdir)
  round_file = workdir / SLURM_DIR / f"round-{number:03d}.json"
  round_file.parent.mkdir(parents=True, exist_ok=True)
  index_lib.write_json(round_file, {"tasks": [
      {"dir": str(t.dir.resolve()), "overrides": t.overrides, "stage": t.stage, "what": t.what}
      for t in tasks]})
  base = sweep_slurm.entry_command("ftlab.study", config_spec, str(workdir), runner, overrides)
  array_text = sweep_slurm.batch_script(
      f"ftlab.study round {number}: {len(tasks)} runs", f"{workdir.name}-r{number}",
      f"{workdir}/{SLURM_DIR}/round-{number:03d}-%a.out", base + [f"--round_file={round_file}"],
      sweep_slurm.array_spec(range(len(tasks)), parallel), sbatch)
  next_cmd = base + [f"--slurm={script.resolve()}", f"--parallel={parallel}",
                     *(f"--sbatch={o}" for o in sbatch)]
  next_text = sweep_slurm.batch_script(
      f"ftlab.study after round {number}: plan and submit the next round",
      f"{workdir.name}-plan{number}", f"{workdir}/{SLURM_DIR}/plan-{number:03d}.out", next_cmd)
  next_script = script.with_name(script.name + ".next.sh")
  script.write_text(array_text)
  next_script.write_text(next_text)
  return round_file, script, next_script


def _sbatch(*args: str) -> str:
  out = subprocess.run(["sbatch", "--parsable", *args], check=True, capture_output=True, text=True)
  return out.stdout.strip().split(";")[0]


def step(study: space.Study, workdir: pathlib.Path, script: str, runner: Sequence[str] | None,
         submit: bool, sbatch: Sequence[str], parallel: int, config_spec: str,
         overrides: Sequence[str]) -> int:
  """Plans; writes (and submits) the next round and its promotion job, or ends the chain."""
  driver.write_study_file(study, workdir)
  plan = planner.plan(study, workdir)
  driver.write_decisions(plan, study, workdir)
  driver.move_stale(plan, workdir)
  if plan.done:
    print(f"study done: {workdir / decisions.DECISIONS_FILE}", flush=True)
    return 0
  round_file, array, after = write_round(study, workdir, pathlib.Path(script), plan.tasks,
                                         runner, parallel, sbatch, config_spec, overrides)
  print(f"wrote {array} ({len(plan.tasks)} array tasks, {round_file}) and {after}", flush=True)
  if submit:
    job = _sbatch(str(array))
    follow = _sbatch(f"--dependency=afterany:{job}", str(after))
    print(f"submitted array job {job} and the promotion job {follow} after it", flush=True)
  return 0


def run_task(study: space.Study, workdir: pathlib.Path, round_file: str, task: int,
             runner: Sequence[str]) -> int:
  """One array task: run `task` of the round file, with a local run's bookkeeping."""
  try:
    tasks = json.loads(pathlib.Path(round_file).read_text())["tasks"]
  except (OSError, ValueError, KeyError) as e:
    raise SweepError(f"{round_file}: unreadable round file ({e})") from e
  if not 0 <= task < len(tasks):
    raise SweepError(f"--task={task} is outside the {len(tasks)} runs of {round_file}")
  t = tasks[task]
  chosen = planner.Task(pathlib.Path(t["dir"]), t["overrides"], t["stage"], t["what"])
  runs = driver.to_runs([chosen], workdir.resolve(), study, runner)
  index = index_lib.SweepIndex(workdir, driver.RUNS_FILE)
  driver.register(index, runs, [chosen])
  counts = execute(runs, index, 1)
  return 1 if counts["failed"] else 0
