"""What a study cost, in training images through the network, against a full grid's; what a
run cost, its linear probe apart from its fine-tuning.

Images trained = steps x global batch, summed over runs (a rung's stop
counts the steps up to it; a promoted trial's later steps are added once,
as it resumes from its checkpoint; a failed run counts what it trained up to
its last rung stop or checkpoint). The final runs are all retrained, the
search seed being none of them. A full grid without halving trains every
trial to the end, plus the final seeds of each strategy's chosen point.

A run of a strategy with a probe phase (lp_ft, gradual_unfreeze: results.json
`probe`) spent part of its steps, images and train time on the probe; `phases`
splits them, and sweep and study reports show both parts.
"""
from ftlab.studies import trials
from ftlab.sweeps.rundir import dig

# A run's cost by phase: fine-tuning (every step after the probe) and the probe (None for a
# strategy without one); the sweep report's CSV and JSON cells and the study report's JSON.
PHASE_FIELDS = ("finetune_steps", "finetune_images", "finetune_train_time_s",
                "probe_steps", "probe_images", "probe_train_time_s")


def _number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


def mean_or_none(values: list) -> float | None:
  """The mean of the numbers among `values`; None when there are none."""
  numbers = [v for v in values if _number(v)]
  return sum(numbers) / len(numbers) if numbers else None


def phases(results: dict) -> dict:
  """`PHASE_FIELDS` of a finished run's results.json (None where it does not tell).

  A results.json written before the probe was recorded (no `probe` block)
  counts every step as fine-tuning, as that version scheduled any probe
  within `train.num_epochs`.
  """
  steps, seconds = results.get("num_steps"), results.get("train_time_s")
  batch = dig(results, "config.train.batch_size")
  probe = results.get("probe")
  if not isinstance(probe, dict):  # before results.json had it
    probe = {"steps": 0, "images": 0, "train_time_s": 0.0}
  tuned = steps - probe["steps"] if _number(steps) else None
  has_probe = probe["steps"] > 0
  return {"finetune_steps": tuned,
          "finetune_images": tuned * batch if tuned is not None and _number(batch) else None,
          "finetune_train_time_s": seconds - probe["train_time_s"] if _number(seconds) else None,
          "probe_steps": probe["steps"] if has_probe else None,
          "probe_images": probe["images"] if has_probe else None,
          "probe_train_time_s": probe["train_time_s"] if has_probe else None}


def final_phases(plan) -> list:
  """Per (size, strategy) of a `planner.StudyPlan`: {'size', 'strategy', 'n'} and the means of
  `PHASE_FIELDS` over its finished final runs (n of them)."""
  out = []
  for sp in plan.strategies:
    runs = [phases(f.results) for _, f in sp.finals.values() if trials.held_out_done(f)]
    out.append({"size": sp.size, "strategy": sp.strategy, "n": len(runs),
                **{k: mean_or_none([r[k] for r in runs]) for k in PHASE_FIELDS}})
  return out


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
