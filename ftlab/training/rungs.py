"""A run stopped at a fraction of its steps (`train.stop_at_fraction`): what it scored there.

ftlab.study's successive halving stops each trial at a rung, a fraction of
the full run's steps, and compares the trials there. The run's schedule is
the full run's, so stopping changes nothing of its trajectory: the same
command with a later rung continues from the checkpoint exactly. At each stop
the trainer evaluates minival on the current weights (outside the run's own
evaluation schedule, so the best checkpoint is unaffected) and records it in
`<workdir>/rungs.json`:

  {"rungs": [{"fraction": 0.333333, "step": 27, "total_steps": 80,
              "train_images": 864, "minival_top1": 0.81, "minival_loss": 0.62,
              "best_minival_top1": 0.81, "train_time_s": 30.1,
              "compile_time_s": 41.0}, ...]}

`best_minival_top1` is the best of the run's scheduled minival evaluations up
to the stop and this one: the score the run would select on if it ended here.
"""
import json
import math
import os

from ftlab.configuration.files import write_json_atomic
from ftlab.training.meta import RunMeta


RUNGS_FILE = "rungs.json"


def rung_step(fraction: float, total_steps: int) -> int:
  """The step a run stops at for `fraction` of `total_steps` (at least 1, at most all)."""
  # round first: 1/3 * 81 is 27.000000000000004 in floating point, and 27 is meant
  return min(max(math.ceil(round(fraction * total_steps, 9)), 1), total_steps)


def fraction_key(fraction: float) -> str:
  return f"{fraction:.6g}"


def read(workdir: str) -> dict:
  """fraction key -> that stop's record; {} when the run never stopped early."""
  path = os.path.join(workdir, RUNGS_FILE)
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: does not parse ({e})") from e
  return {fraction_key(r["fraction"]): r for r in data.get("rungs", [])}


def record(workdir: str, fraction: float, step: int, total_steps: int, batch_size: int,
           summary: dict, meta: RunMeta) -> dict:
  """Adds (or replaces) this stop's record in rungs.json; returns it.

  `meta` is the trainer's (history, and the run's train and compile seconds
  so far, summed over its invocations).
  """
  scheduled = [h["minival_top1"] for h in meta.history if h["step"] <= step]
  entry = {"fraction": fraction, "step": step, "total_steps": total_steps,
           "train_images": step * batch_size, "minival_top1": summary["top1"],
           "minival_loss": summary["loss"],
           "best_minival_top1": max(scheduled + [summary["top1"]]),
           "train_time_s": meta.train_time_s, "compile_time_s": meta.compile_time_s}
  rungs = read(workdir)
  rungs[fraction_key(fraction)] = entry
  ordered = sorted(rungs.values(), key=lambda r: r["fraction"])
  write_json_atomic(os.path.join(workdir, RUNGS_FILE), {"rungs": ordered})
  return entry
