"""From a study and its files on disk to the decisions taken and the runs still to do.

Everything is recomputed from the run dirs at every call (the files are the
state): a rung is decided once all its trials are finished or failed there,
its best `n // eta` go on, and a strategy's search is decided when its last
rung is. Then its final runs start: the winning trial evaluated on the
held-out splits (it is the search seed's final run), and the chosen
hyperparameters re-trained with each other final seed.
"""
import dataclasses
import pathlib

from ftlab.studies import halving, trials
from ftlab.studies.space import Study, Trial


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
  finals: dict = dataclasses.field(default_factory=dict)  # seed -> (dir, RunFiles)
  untuned: dict = dataclasses.field(default_factory=dict)  # seed -> (dir, RunFiles)
  files: dict = dataclasses.field(default_factory=dict)   # trial name -> RunFiles


@dataclasses.dataclass
class Plan:
  tasks: list
  strategies: list

  @property
  def done(self) -> bool:
    return not self.tasks


def fraction_text(f: float) -> str:
  return "all" if f >= 1 else f"1/{round(1 / f)}" if abs(1 / f - round(1 / f)) < 1e-6 else f"{f:.3g}"


def trial_overrides(study: Study, trial: Trial, fraction: float, held_out: bool) -> dict:
  return {"strategy.name": trial.strategy, **study.sizes[trial.size], **trial.hparams,
          "seed": study.search_seed, "train.stop_at_fraction": fraction if fraction < 1 else 0.0,
          "train.evaluate_held_out": held_out}


def _seed_overrides(study: Study, size: str, strategy: str, hparams: dict, seed: int) -> dict:
  return {"strategy.name": strategy, **study.sizes[size], **hparams, "seed": seed}


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
    if pending:
      what = f"rung {i + 1}/{len(sp.fractions)} ({fraction_text(fraction)} of the steps)"
      tasks += [Task(trials.trial_dir(workdir, sp.size, sp.strategy, e.trial.name),
                     trial_overrides(study, e.trial, fraction, False), trials.SEARCH, what)
                for e in pending]
      return
    scores = [halving.Score(e.trial.order, e.result.top1, e.result.loss) for e in entries]
    last = i + 1 == len(sp.fractions)
    chosen = set(halving.best(scores) if last else halving.promote(scores, study.eta))
    for e in entries:
      e.promoted = e.trial.order in chosen
    members = [e.trial for e in entries if e.promoted]
    if not members:  # every trial failed
      sp.decided = True
      return
  sp.winner, sp.decided = members[0], True


def _finals(study: Study, workdir: pathlib.Path, sp: StrategyPlan, tasks: list) -> None:
  win = sp.winner
  for seed in study.final_seeds:
    if seed == study.search_seed:
      run_dir = trials.trial_dir(workdir, sp.size, sp.strategy, win.name)
      overrides = trial_overrides(study, win, 1.0, True)
      files = trials.read(run_dir)
      needed = not trials.held_out_done(files) and files.status != "failed"
    else:
      run_dir = trials.seed_dir(workdir, trials.FINAL, sp.size, sp.strategy, seed)
      overrides = _seed_overrides(study, sp.size, sp.strategy, win.hparams, seed)
      files = trials.read(run_dir)
      needed = files.status == "pending"
    sp.finals[seed] = (run_dir, files)
    if needed:
      tasks.append(Task(run_dir, overrides, trials.FINAL, f"final seed {seed} ({win.name})"))


def _untuned(study: Study, workdir: pathlib.Path, sp: StrategyPlan, tasks: list) -> None:
  for seed in study.final_seeds:
    run_dir = trials.seed_dir(workdir, trials.UNTUNED, sp.size, sp.strategy, seed)
    files = trials.read(run_dir)
    sp.untuned[seed] = (run_dir, files)
    if files.status == "pending":
      tasks.append(Task(run_dir, _seed_overrides(study, sp.size, sp.strategy, {}, seed),
                        trials.UNTUNED, f"untuned seed {seed}"))


def plan(study: Study, workdir: pathlib.Path) -> Plan:
  """The study's state from its files: every strategy's rungs and winner, the runs to do next."""
  tasks, strategies = [], []
  for size in study.sizes:
    for strategy, grid in study.strategies.items():
      sp = StrategyPlan(size, strategy, halving.rung_fractions(len(grid), study.eta,
                                                               study.max_rungs))
      _search(study, workdir, sp, tasks)
      if sp.winner is not None:
        _finals(study, workdir, sp, tasks)
      if study.untuned:
        _untuned(study, workdir, sp, tasks)
      strategies.append(sp)
  order = {trials.SEARCH: 0, trials.FINAL: 1, trials.UNTUNED: 2}
  tasks.sort(key=lambda t: order[t.stage])
  return Plan(tasks, strategies)
