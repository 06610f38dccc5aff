"""From a study and its files on disk to the decisions taken and the runs still to do.

Everything is recomputed from the run dirs at every call (the files are the
state), except the rung decisions already taken, which decisions.json keeps
(`decisions.taken`): a rung is decided once all its trials are finished or
failed there, its best `n // eta` go on, and a strategy's search is decided
when its last rung is. Then its final runs start: the chosen point retrained
with every final seed (never the search seed). A final or untuned run whose
recorded config contradicts its planned point is stale: never averaged,
moved aside by the driver (`stale_dirs`) and trained again.
"""
import dataclasses
import pathlib

from ftlab.studies import decisions, halving, trials
from ftlab.studies.halving import fraction_text
from ftlab.studies.space import Study, Trial
from ftlab.sweeps.rundir import RunDir


@dataclasses.dataclass(frozen=True)
class Task:
  """One run to launch: its dir, the overrides of `ftlab.main`, why it runs."""
  dir: pathlib.Path
  overrides: dict
  stage: str           # search | final | untuned
  what: str            # e.g. 'rung 1/2 (1/3 of the steps)'


@dataclasses.dataclass
class RungEntry:
  trial: Trial
  result: trials.RungResult
  promoted: bool = False


@dataclasses.dataclass
class StrategyPlan:
  """One (size, strategy): its rungs so far, the winner once decided, its final runs."""
  size: str
  strategy: str
  fractions: tuple
  rungs: list = dataclasses.field(default_factory=list)   # list of lists of RungEntry
  winner: Trial | None = None
  decided: bool = False
  kept: list = dataclasses.field(default_factory=list)    # decisions read back: promoted names
  decided_rungs: int = 0
  finals: dict = dataclasses.field(default_factory=dict)  # seed -> (dir, RunDir)
  untuned: dict = dataclasses.field(default_factory=dict)  # seed -> (dir, RunDir)
  stale: list = dataclasses.field(default_factory=list)   # (dir, why): not averaged, to move
  files: dict = dataclasses.field(default_factory=dict)   # trial name -> RunDir


@dataclasses.dataclass
class StudyPlan:
  tasks: list
  strategies: list

  @property
  def done(self) -> bool:
    return not self.tasks

  @property
  def stale_dirs(self) -> list:
    """(dir, why) of the runs to move aside before the next round."""
    return [s for sp in self.strategies for s in sp.stale]


def trial_overrides(study: Study, trial: Trial, fraction: float) -> dict:
  """A search trial: the search seed, to its rung, never evaluated on the held-out splits."""
  return {"strategy.name": trial.strategy, **study.sizes[trial.size], **trial.hparams,
          "seed": study.search_seed, "train.stop_at_fraction": fraction if fraction < 1 else 0.0,
          "train.evaluate_held_out": False}


def seed_overrides(study: Study, size: str, strategy: str, hparams: dict, seed: int) -> dict:
  """A final (or untuned) run: the whole run, evaluated on the held-out splits."""
  return {"strategy.name": strategy, **study.sizes[size], **hparams, "seed": seed,
          "train.stop_at_fraction": 0.0, "train.evaluate_held_out": True}


def _decide(study: Study, sp: StrategyPlan, i: int, entries: list) -> set:
  """The orders that go on from rung i: kept from decisions.json, else ranked now."""
  if i < len(sp.kept) and sp.kept[i][0] == sp.fractions[i]:
    names = set(sp.kept[i][1])
    return {e.trial.order for e in entries if e.trial.name in names}
  scores = [halving.Score(e.trial.order, e.result.top1, e.result.loss) for e in entries]
  last = i + 1 == len(sp.fractions)
  return set(halving.best(scores, study.score) if last
             else halving.promote(scores, study.eta, study.score))


def _search(study: Study, workdir: pathlib.Path, sp: StrategyPlan, tasks: list) -> None:
  members = study.trials(sp.size, sp.strategy)
  for i, fraction in enumerate(sp.fractions):
    entries = []
    for t in members:
      files = sp.files.setdefault(t.name, trials.read(
          trials.trial_dir(workdir, sp.size, sp.strategy, t.name)))
      entries.append(RungEntry(t, trials.at_rung(files, fraction)))
    sp.rungs.append(entries)
    pending = [e for e in entries if e.result.status == "pending"]
    if pending and i >= len(sp.kept):
      what = f"rung {i + 1}/{len(sp.fractions)} ({fraction_text(fraction)} of the steps)"
      tasks += [Task(trials.trial_dir(workdir, sp.size, sp.strategy, e.trial.name),
                     trial_overrides(study, e.trial, fraction), trials.SEARCH, what)
                for e in pending]
      return
    chosen = _decide(study, sp, i, entries)
    for e in entries:
      e.promoted = e.trial.order in chosen
    members = [e.trial for e in entries if e.promoted]
    if not members:  # every trial failed
      sp.decided = True
      return
    sp.decided_rungs = i + 1
  sp.winner, sp.decided = members[0], True


def _seed_runs(study: Study, workdir: pathlib.Path, sp: StrategyPlan, stage: str,
               hparams: dict, tasks: list, label: str) -> dict:
  """seed -> (dir, RunDir) of a stage's runs; stale ones listed, the missing ones tasks."""
  runs = {}
  for seed in study.final_seeds:
    run_dir = trials.seed_dir(workdir, stage, sp.size, sp.strategy, seed)
    overrides = seed_overrides(study, sp.size, sp.strategy, hparams, seed)
    files = trials.read(run_dir)
    wrong = trials.mismatches(files, overrides)
    if wrong:
      sp.stale.append((run_dir, f"trained at {'; '.join(wrong)}"))
      files = RunDir(run_dir)  # the run still to do, once the stale one is moved aside
    runs[seed] = (run_dir, files)
    if files.status == "pending":
      tasks.append(Task(run_dir, overrides, stage, f"{stage} seed {seed}{label}"))
  return runs


def plan(study: Study, workdir: pathlib.Path) -> StudyPlan:
  """The study's state from its files: every strategy's rungs and winner, the runs to do next."""
  tasks, strategies = [], []
  kept = decisions.taken(workdir)
  for size in study.sizes:
    for strategy in study.strategies:
      sp = StrategyPlan(size, strategy, study.rungs[strategy],
                        kept=kept.get((size, strategy), []))
      _search(study, workdir, sp, tasks)
      if sp.winner is not None:
        sp.finals = _seed_runs(study, workdir, sp, trials.FINAL, sp.winner.hparams, tasks,
                               f" ({sp.winner.name})")
      if study.untuned:
        sp.untuned = _seed_runs(study, workdir, sp, trials.UNTUNED, {}, tasks, "")
      strategies.append(sp)
  order = {trials.SEARCH: 0, trials.FINAL: 1, trials.UNTUNED: 2}
  tasks.sort(key=lambda t: order[t.stage])
  return StudyPlan(tasks, strategies)
