"""What a study cost, in training images through the network, against a full grid's.

Images trained = steps x global batch, summed over runs (a rung's stop
counts the steps up to it; a promoted trial's later steps are added once,
as it resumes from its checkpoint; a failed run counts what it trained up to
its last rung stop or checkpoint). The final runs are all retrained, the
search seed being none of them. A full grid without halving trains every
trial to the end, plus the final seeds of each strategy's chosen point.
"""
from ftlab.studies import trials


def _full(per_trial: dict) -> int | None:
  """A full run's images for this strategy (its trials share the step count)."""
  known = [v for v in per_trial.values() if v]
  return max(known) if known else None


def images(plan, n_seeds: int) -> dict:
  """{'search', 'final', 'untuned', 'total', 'full_grid'} image counts (None when unknown),
  of a `planner.StudyPlan`."""
  search = final = untuned = 0
  full_grid, unknown = 0, False
  for sp in plan.strategies:
    search += sum(trials.trained_images(f) for f in sp.files.values())
    final += sum(trials.trained_images(f) for _, f in sp.finals.values())
    untuned += sum(trials.trained_images(f) for _, f in sp.untuned.values())
    one = _full({n: trials.total_images(f) for n, f in sp.files.items()})
    if one is None:
      unknown = True
    else:
      full_grid += one * (len(sp.files) + n_seeds)
  return {"search": search, "final": final, "untuned": untuned,
          "total": search + final, "full_grid": None if unknown else full_grid}
