"""Successive halving (Jamieson & Talwalkar 2016; Li et al.'s Hyperband bracket), pure.

A strategy's n trials all start; at each rung (a fraction of the full run's
steps) they are ranked by minival top-1 and the best `n // eta` (at least
one) go on to the next rung, from their checkpoints. Rungs are at fractions
eta^-(R-1), ..., eta^-1, 1 of the full step budget, with R the largest
number of rungs (at most `max_rungs`) such that every rung keeps at least
one trial: 4 trials at eta=3 give rungs 1/3 and 1 (4 trials, then 1); 9 give
1/9, 1/3, 1 (9, 3, 1); fewer than eta trials give one rung, the full run.

Rungs at the run's scheduled evaluations (`at_evaluations`): each rung before
the end moves to the nearest (in log) of the fractions at which the run
evaluates minival anyway, so a trial is scored where the full run would
score it too (rungs that land together merge; without any scheduled
evaluation before the end a rung keeps its fraction).

The search ends at the first rung that keeps one trial (`until_one`, unless a
study asks `finish_winner=True`): that trial is the choice whatever it scores
later, and the final runs retrain it with every final seed from scratch, so
training the search seed on to the end decides nothing (4 trials at eta=3:
one rung, 1/3, costing 4/3 full runs instead of 4/3 + 2/3).

Ranking by minival top-1 (`score='top1'`): higher first; a failed trial
(score None) is last; ties go to the lower minival loss, then to the trial
declared first in the grid. By minival loss (`score='loss'`): lower first,
ties to the higher top-1, then grid order.
"""
import dataclasses
import math
from typing import Sequence


def num_rungs(n_trials: int, eta: int, max_rungs: int) -> int:
  rungs = 1
  while rungs < max_rungs and eta ** rungs <= n_trials:
    rungs += 1
  return rungs


def rung_fractions(n_trials: int, eta: int, max_rungs: int) -> tuple:
  """The budget fraction of each rung, the last being 1."""
  r = num_rungs(n_trials, eta, max_rungs)
  return tuple(float(eta) ** (i - (r - 1)) for i in range(r))


def at_evaluations(fractions: Sequence[float], evaluations: Sequence[float]) -> tuple:
  """Each rung before the end moved to the nearest (in log) scheduled evaluation before the end
  (ties to the earlier); rungs that land together merge."""
  inside = sorted(e for e in evaluations if 0 < e < 1)
  moved = []
  for f in fractions:
    to = min(inside, key=lambda e: (abs(math.log(e / f)), e)) if inside and f < 1 else f
    if not moved or to > moved[-1]:
      moved.append(to)
  return tuple(moved)


def until_one(fractions: Sequence[float], n_trials: int, eta: int) -> tuple:
  """The rungs up to the first one that keeps a single trial (that trial is the choice)."""
  alive = n_trials
  for i, _ in enumerate(fractions):
    alive = keep(alive, eta)
    if alive == 1:
      return tuple(fractions[:i + 1])
  return tuple(fractions)


def evaluation_fractions(num_epochs: float, eval_every_epochs: float) -> tuple:
  """The fractions of a run at which it evaluates minival (`k * every / epochs`, before the end)."""
  if num_epochs <= 0 or eval_every_epochs <= 0:
    return ()
  count = math.ceil(num_epochs / eval_every_epochs - 1e-9)
  return tuple(k * eval_every_epochs / num_epochs for k in range(1, count))


def fraction_text(f: float) -> str:
  """`1/3`, `all`, or the fraction to 3 digits."""
  return "all" if f >= 1 else f"1/{round(1 / f)}" if abs(1 / f - round(1 / f)) < 1e-6 else f"{f:.3g}"


def keep(n: int, eta: int) -> int:
  """How many of n trials go on to the next rung."""
  return max(1, n // eta)


SCORES = ("top1", "loss")


@dataclasses.dataclass(frozen=True)
class Score:
  """A trial at a rung: `top1` None when it failed."""
  order: int
  top1: float | None
  loss: float | None = None


def rank(scores: Sequence[Score], by: str = "top1") -> list:
  """Best first (see the module docstring for ties and failures)."""
  def finite(x):
    return x if x is not None and math.isfinite(x) else math.inf
  def key(s: Score):
    failed = s.top1 is None
    if by == "loss":
      return (failed, finite(s.loss), -(s.top1 or 0.0), s.order)
    return (failed, -(s.top1 or 0.0), finite(s.loss), s.order)
  return sorted(scores, key=key)


def promote(scores: Sequence[Score], eta: int, by: str = "top1") -> list:
  """The orders of the trials that go on: the best `keep(n, eta)`, failed ones never."""
  ranked = [s for s in rank(scores, by)[:keep(len(scores), eta)] if s.top1 is not None]
  return [s.order for s in ranked]


def best(scores: Sequence[Score], by: str = "top1") -> list:
  """The order of the best trial (as a one-element list), or [] when every one failed."""
  ranked = rank(scores, by)
  return [ranked[0].order] if ranked and ranked[0].top1 is not None else []


def search_equivalents(n_trials: int, fractions: Sequence[float], eta: int) -> float:
  """Full runs' worth of training successive halving costs over `n_trials` (search only)."""
  total, previous, alive = 0.0, 0.0, n_trials
  for f in fractions:
    total += alive * (f - previous)
    previous, alive = f, keep(alive, eta)
  return total
