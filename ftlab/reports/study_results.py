"""A study's results read back from its workdir: the tuned strategies, the untuned ones, every trial.

`load(workdir)` re-plans the study from study.json and the run dirs (the
same `ftlab.studies.planner` the study ran with, so the report cannot
disagree with the decisions) and gathers, per (size, strategy), the chosen
hyperparameters, the final runs' test top-1 per seed (exact counts), their
mean and 95% CI, and the paired difference against the baseline strategy
over shared seeds.
"""
import dataclasses
import json
import pathlib

from ftlab.reports import sizes as sizes_lib
from ftlab.reports import stats
from ftlab.studies import cost, planner, space, trials
from ftlab.sweeps.rundir import RunDir


@dataclasses.dataclass
class Row:
  """One (size, strategy) of a table: per-seed test top-1 (fractions), summary, delta."""
  size: str
  strategy: str
  chosen: dict | None            # the chosen hyperparameters (None: undecided or all failed)
  values: dict                   # seed -> test top-1 fraction (finished final runs)
  statuses: dict                 # seed -> finished | failed | pending
  summary: stats.Summary | None = None
  delta: stats.PairedDelta | None = None
  decided: bool = True

  @property
  def status(self) -> str:
    """What a cell without a number says."""
    if not self.decided:
      return "searching"
    if self.chosen is None and not self.values:
      return "failed"
    if "pending" in self.statuses.values():
      return "running"
    return "failed" if not self.values else "finished"


@dataclasses.dataclass
class StudyResults:
  workdir: pathlib.Path
  study: space.Study
  plan: planner.StudyPlan
  tuned: list                    # Rows, sizes x strategies in declared order
  untuned: list                  # Rows (empty unless the study ran them)
  images: dict
  baseline: str
  problems: list
  sizes: dict                    # size name -> sizes.Size (what its runs trained on)


def _test_value(files: RunDir) -> float | None:
  test = (files.results or {}).get("test")
  if not isinstance(test, dict):
    return None
  exact = stats.counted_fraction(test, "top1")
  return exact if exact is not None else test.get("top1")


def _row(size: str, strategy: str, chosen, runs: dict, decided: bool, problems: list) -> Row:
  values, statuses = {}, {}
  for seed, (run_dir, files) in runs.items():
    value = _test_value(files) if trials.held_out_done(files) else None
    statuses[seed] = ("finished" if value is not None else "failed" if files.status == "failed"
                      else "pending")
    if value is not None:
      values[seed] = value
    if files.status == "failed":
      problems.append(f"{run_dir}: failed ({files.reason})")
  row = Row(size, strategy, chosen, values, statuses, decided=decided)
  if values:
    row.summary = stats.summarize([100 * v for v in values.values()])
  return row


def _add_deltas(rows: list, baseline: str) -> None:
  base = {r.size: r for r in rows if r.strategy == baseline}
  for r in rows:
    if r.size in base and r.strategy != baseline and r.values and base[r.size].values:
      r.delta = stats.paired_delta({s: 100 * v for s, v in r.values.items()},
                                   {s: 100 * v for s, v in base[r.size].values.items()})


def load(workdir: str | pathlib.Path, baseline: str = "full_ft") -> StudyResults:
  workdir = pathlib.Path(workdir)
  path = workdir / space.STUDY_FILE
  try:
    study = space.from_json(json.loads(path.read_text()))
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"{path}: not a readable study file ({e})") from e
  plan = planner.plan(study, workdir)
  problems, tuned, untuned = [], [], []
  for sp in plan.strategies:
    chosen = sp.winner.hparams if sp.winner is not None else None
    tuned.append(_row(sp.size, sp.strategy, chosen, sp.finals, sp.decided, problems))
    if study.untuned:
      untuned.append(_row(sp.size, sp.strategy, {}, sp.untuned, True, problems))
    for rung in sp.rungs:
      for e in rung:
        if e.result.status == "failed":
          problems.append(f"{trials.trial_dir(workdir, sp.size, sp.strategy, e.trial.name)}: "
                          f"failed ({sp.files[e.trial.name].reason})")
    problems += [f"{d}: stale, not averaged ({why}); the study moves it aside and retrains it"
                 for d, why in sp.stale]
  problems += [f"{d}: moved aside, not averaged ({why})" for d, why in trials.stale_runs(workdir)]
  _add_deltas(tuned, baseline)
  _add_deltas(untuned, baseline)
  return StudyResults(workdir, study, plan, tuned, untuned,
                      cost.images(plan, len(study.final_seeds)), baseline,
                      list(dict.fromkeys(problems)), _sizes(study, plan))


def _sizes(study: space.Study, plan: planner.StudyPlan) -> dict:
  """Each size as its runs' results.json tell what they trained on (finals first, then trials)."""
  out = {}
  for name, overrides in study.sizes.items():
    plans = [sp for sp in plan.strategies if sp.size == name]
    runs = [f for sp in plans for _, f in sp.finals.values()]
    runs += [f for sp in plans for f in sp.files.values()]
    out[name] = sizes_lib.from_results(name, overrides, [f.results for f in runs if f.finished])
  return out
