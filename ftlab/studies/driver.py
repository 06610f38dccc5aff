"""Running a study on one machine: rounds of runs through `ftlab.sweeps.runner`, until done.

Each round plans from the files (`planner.plan`), moves aside the final
runs that were trained at another point than the chosen one (`stale/`),
launches every run still to do (trials of every strategy's current rung,
final runs, untuned runs) at most `parallel` at once, and plans again once
they have ended. A run that fails leaves failed.json and counts as the
worst score of its rung; it is not relaunched (delete its failed.json to
retry it: a final run, or a trial whose rung is not decided yet; a decided
rung stays decided). Killed anywhere, the same command continues: finished
rungs are read back, a promoted trial resumes from its checkpoint, an
interrupted run resumes from its latest one.
"""
import json
import os
import pathlib
import shlex
from typing import Sequence

from ftlab.studies import cost, decisions, halving, planner, space, trials
from ftlab.sweeps import index as index_lib
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.runner import Job, build_command, execute
from ftlab.training import rungs


RUNS_FILE = "runs.json"


def check_study_file(study: space.Study, workdir: pathlib.Path) -> None:
  """Refuses a workdir that holds another study (nothing there is changed)."""
  path = workdir / space.STUDY_FILE
  if not path.exists():
    return
  try:
    old = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise SweepError(f"{path}: does not parse ({e}); use a new --workdir") from e
  new = json.loads(json.dumps(space.to_json(study)))
  changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  if changed:
    raise SweepError(f"{workdir} holds another study (it differs in {', '.join(changed)}); use a "
                     f"new --workdir (nothing in {workdir} was changed)")


def write_study_file(study: space.Study, workdir: pathlib.Path) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  index_lib.write_json(workdir / space.STUDY_FILE, space.to_json(study))


def _rung_done(task: planner.Task):
  fraction = task.overrides["train.stop_at_fraction"]
  def done(run_dir: pathlib.Path) -> bool:
    files = trials.read(run_dir)
    if fraction:
      return rungs.fraction_key(fraction) in files.rungs or files.status == "finished"
    return files.status == "finished"
  return done


def _rung_outcome(task: planner.Task):
  fraction = task.overrides["train.stop_at_fraction"] or 1.0
  def outcome(run_dir: pathlib.Path) -> str:
    r = trials.at_rung(trials.read(run_dir), fraction)
    return "minival top-1 -" if r.top1 is None else f"minival top-1 {100 * r.top1:.2f}%"
  return outcome


def _held_out_done(run_dir: pathlib.Path) -> bool:
  return trials.held_out_done(trials.read(run_dir))


def to_runs(tasks: Sequence[planner.Task], workdir: pathlib.Path, study: space.Study,
            runner: Sequence[str]) -> list:
  runs = []
  for i, t in enumerate(tasks):
    name = str(t.dir.relative_to(workdir))
    command = build_command(runner, study.config_spec, str(t.dir), t.overrides, study.fixed)
    if t.stage == trials.SEARCH:
      runs.append(Job(i, name, t.overrides, t.dir, command, _rung_done(t), _rung_outcome(t)))
    else:
      runs.append(Job(i, name, t.overrides, t.dir, command, _held_out_done))
  return runs


def register(index: index_lib.SweepIndex, runs: Sequence[Job], tasks) -> None:
  """Adds this round's runs to runs.json (the runner updates their status there)."""
  def add(data):
    entries = {e["name"]: e for e in data.get("runs", [])}
    for run, task in zip(runs, tasks):
      entries[run.name] = {**entries.get(run.name, {}), "name": run.name, "dir": str(run.dir),
                           "overrides": run.overrides, "stage": task.stage, "what": task.what,
                           "status": "pending"}
    return {"runs": list(entries.values()), "updated": index_lib.now()}
  index.modify(add)


def write_decisions(plan: planner.StudyPlan, study: space.Study, workdir: pathlib.Path) -> dict:
  data = decisions.to_json(plan, study.eta, study.score)
  data["images"] = cost.images(plan, len(study.final_seeds))
  index_lib.write_json(workdir / decisions.DECISIONS_FILE, data)
  return data


def move_stale(plan: planner.StudyPlan, workdir: pathlib.Path) -> None:
  """Moves aside the runs trained at another point than planned (the plan runs them again)."""
  for run_dir, why in plan.stale_dirs:
    target = trials.move_aside(workdir, run_dir, why)
    print(f"moved {run_dir} aside to {target}: {why}", flush=True)


def print_round(number: int, tasks: Sequence[planner.Task]) -> None:
  """`study round 2: 8 runs (6 search rung 2/2 (all of the steps), 2 final)`."""
  whats = {}
  for t in tasks:
    what = f"search {t.what}" if t.stage == trials.SEARCH else t.stage
    whats[what] = whats.get(what, 0) + 1
  parts = ", ".join(f"{n} {w}" for w, n in whats.items())
  print(f"study round {number}: {len(tasks)} runs ({parts})", flush=True)


def dry_run(study: space.Study, workdir: pathlib.Path, runner: Sequence[str]) -> int:
  """Prints the next round's commands and what the whole study will cost."""
  plan = planner.plan(study, workdir)
  for run in to_runs(plan.tasks, workdir, study, runner):
    print(shlex.join(run.command))
  print(budget_text(study))
  return 0


def budget_text(study: space.Study) -> str:
  """The study's cost in full-run equivalents against an untuned sweep and a full grid."""
  seeds, lines, search, grid_total = len(study.final_seeds), [], 0.0, 0.0
  for strategy, g in study.strategies.items():
    fractions = study.rungs[strategy]
    eq = halving.search_equivalents(len(g), fractions, study.eta)
    search += eq + seeds
    grid_total += len(g) + seeds
    lines.append(f"  {strategy}: {len(g)} trials, rungs at "
                 f"{', '.join(halving.fraction_text(f) for f in fractions)} of the steps")
  n = len(study.sizes)
  untuned = len(study.strategies) * seeds
  lines.append(f"per size ({n} size{'s' if n > 1 else ''}), in full runs: search + {seeds} final "
               f"seeds {search:.2f} (an untuned sweep of every strategy over {seeds} seeds: "
               f"{untuned}; a full grid: {grid_total:.0f})")
  return "\n".join(lines)


def run(study: space.Study, workdir: pathlib.Path, runner: Sequence[str], parallel: int,
        cpus: Sequence[int], gpus: Sequence[str], cache_dir: str = "") -> dict:
  """Rounds of runs until the plan has nothing left; returns decisions.json's content.

  Raises:
    Interrupted: from the runner, on SIGINT/SIGTERM (the runs are stopped first).
  """
  check_study_file(study, workdir)
  write_study_file(study, workdir)
  index = index_lib.SweepIndex(workdir, RUNS_FILE)
  programs_before = _cache_entries(cache_dir)
  launched, number = set(), 0
  while True:
    plan = planner.plan(study, workdir)
    write_decisions(plan, study, workdir)
    move_stale(plan, workdir)
    tasks = [t for t in plan.tasks if (t.dir, t.what) not in launched]
    if not tasks:
      break
    number += 1
    launched |= {(t.dir, t.what) for t in tasks}
    runs = to_runs(tasks, workdir, study, runner)
    register(index, runs, tasks)
    print_round(number, tasks)
    execute(runs, index, max(1, parallel), cpus, gpus)
  data = write_decisions(plan, study, workdir)
  if cache_dir:
    data["programs_compiled"] = _cache_entries(cache_dir) - programs_before
  return data


def _cache_entries(cache_dir: str) -> int:
  """Files in the persistent compilation cache: one per program XLA compiled."""
  path = os.path.expanduser(cache_dir) if cache_dir else ""
  if not path or not os.path.isdir(path):
    return 0
  return sum(len(files) for _, _, files in os.walk(path))
