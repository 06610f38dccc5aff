"""A study's results read back from its workdir: the tuned strategies, the untuned ones, every trial.

`load(workdir)` re-plans the study from study.json and the run dirs (the
same `ftlab.studies.planner` the study ran with, so the report cannot
disagree with the decisions) and gathers, per (size, strategy), the chosen
hyperparameters, the final runs' test top-1 per seed (exact counts), their
mean and 95% CI, the test set's size, and the verdict: per size, the
winner and every other strategy paired with it (`reports.verdict`).
"""
import dataclasses
import json
import pathlib

from ftlab.reports import sizes as sizes_lib
from ftlab.reports import stats
from ftlab.reports import verdict as verdict_lib
from ftlab.studies import cost, planner, space, trials
from ftlab.sweeps.rundir import RunDir


@dataclasses.dataclass
class Row:
  """One (size, strategy) of a table: per-seed test top-1 (fractions) and their summary."""
  size: str
  strategy: str
  chosen: dict | None            # the chosen hyperparameters (None: undecided or all failed)
  values: dict                   # seed -> test top-1 fraction (finished final runs)
  statuses: dict                 # seed -> finished | failed | pending
  summary: stats.Summary | None = None
  decided: bool = True
  run_dirs: dict = dataclasses.field(default_factory=dict)  # seed -> dir of a finished run
  test_count: int | None = None  # test images of its runs

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

  @property
  def test_halfwidth(self) -> float | None:
    """The binomial 95% half-width of one run's test top-1 at the row's mean, in points."""
    if self.summary is None or not self.test_count:
      return None
    return 100 * stats.binomial_halfwidth(self.summary.mean / 100, self.test_count)

  def contender(self) -> verdict_lib.Contender:
    return verdict_lib.Contender(self.strategy, {s: 100 * v for s, v in self.values.items()},
                             self.run_dirs, self.test_count, self.status)


@dataclasses.dataclass
class StudyResults:
  workdir: pathlib.Path
  study: space.Study
  plan: planner.StudyPlan
  tuned: list                    # Rows, sizes x strategies in declared order
  untuned: list                  # Rows (empty unless the study ran them)
  images: dict
  problems: list
  sizes: dict                    # size name -> sizes.Size (what its runs trained on)
  verdict: verdict_lib.Verdict   # of the tuned rows
  untuned_verdict: verdict_lib.Verdict | None
  final_costs: list              # per (size, strategy): a final run's cost by phase (cost.py)


def _test_block(files: RunDir) -> dict | None:
  test = (files.results or {}).get("test")
  return test if isinstance(test, dict) else None


def test_top1(test: dict) -> float | None:
  """A results.json `test` block's top-1 fraction, exact from its counts where it has them."""
  exact = stats.counted_fraction(test, "top1")
  return exact if exact is not None else test.get("top1")


def _row(size: str, strategy: str, chosen, runs: dict, decided: bool, problems: list) -> Row:
  row = Row(size, strategy, chosen, {}, {}, decided=decided)
  for seed, (run_dir, files) in runs.items():
    test = _test_block(files) if trials.held_out_done(files) else None
    value = test_top1(test) if test is not None else None
    row.statuses[seed] = ("finished" if value is not None else
                          "failed" if files.status == "failed" else "pending")
    if value is not None:
      row.values[seed], row.run_dirs[seed] = value, run_dir
      row.test_count = test.get("count") or row.test_count
    if files.status == "failed":
      problems.append(f"{run_dir}: failed ({files.reason})")
  if row.values:
    row.summary = stats.summarize([100 * v for v in row.values.values()])
  return row


def _sizes(study: space.Study, plan: planner.StudyPlan) -> dict:
  """Each size as its runs' results.json tell what they trained on (finals first, then trials)."""
  out = {}
  for name, overrides in study.sizes.items():
    plans = [sp for sp in plan.strategies if sp.size == name]
    runs = [f for sp in plans for _, f in sp.finals.values()]
    runs += [f for sp in plans for f in sp.files.values()]
    out[name] = sizes_lib.from_results(name, overrides, [f.results for f in runs if f.finished])
  return out


def _verdict(rows: list, sizes: dict, untuned: bool) -> verdict_lib.Verdict:
  groups = [(name, size.phrase, [r.contender() for r in rows if r.size == name])
            for name, size in sizes.items()]
  return verdict_lib.build(groups, untuned)


def _problems(workdir: pathlib.Path, plan: planner.StudyPlan) -> list:
  """Failed trials, stale runs not yet moved and those moved aside."""
  problems = []
  for sp in plan.strategies:
    for rung in sp.rungs:
      problems += [f"{trials.trial_dir(workdir, sp.size, sp.strategy, e.trial.name)}: "
                   f"failed ({sp.files[e.trial.name].reason})"
                   for e in rung if e.result.status == "failed"]
    problems += [f"{d}: stale, not averaged ({why}); the study moves it aside and retrains it"
                 for d, why in sp.stale]
  return problems + [f"{d}: moved aside, not averaged ({why})"
                     for d, why in trials.stale_runs(workdir)]


def load(workdir: str | pathlib.Path) -> StudyResults:
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
  problems += _problems(workdir, plan)
  sizes = _sizes(study, plan)
  return StudyResults(workdir, study, plan, tuned, untuned,
                      cost.images(plan, len(study.final_seeds)), list(dict.fromkeys(problems)),
                      sizes, _verdict(tuned, sizes, False),
                      _verdict(untuned, sizes, True) if study.untuned else None,
                      cost.final_phases(plan))
