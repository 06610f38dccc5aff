"""A study's runs on disk: where each lives, and what its files say.

  <workdir>/search/<size>/<strategy>/<hyperparameters>/   a search trial (the search seed)
  <workdir>/final/<size>/<strategy>/seed=<n>/             a final run of the chosen ones
  <workdir>/untuned/<size>/<strategy>/seed=<n>/           the config's own recipe (untuned=True)

The final run of the search seed is the winning search trial itself (its
dir), evaluated on the held-out splits once its search is decided.
"""
import dataclasses
import json
import pathlib

from ftlab.sweeps.index import FAILED_FILE, RESULTS_FILE
from ftlab.training import rungs


SEARCH, FINAL, UNTUNED = "search", "final", "untuned"


def trial_dir(workdir: pathlib.Path, size: str, strategy: str, name: str) -> pathlib.Path:
  return workdir / SEARCH / size / strategy / name


def seed_dir(workdir: pathlib.Path, stage: str, size: str, strategy: str, seed: int) -> pathlib.Path:
  return workdir / stage / size / strategy / f"seed={seed}"


@dataclasses.dataclass(frozen=True)
class RunFiles:
  """What a run dir holds: `status` finished | failed | pending."""
  status: str
  results: dict | None = None
  rungs: dict = dataclasses.field(default_factory=dict)
  reason: str = ""


def read(run_dir: pathlib.Path) -> RunFiles:
  """A run's files; an unreadable results.json or rungs.json counts as failed, naming it."""
  failed = run_dir / FAILED_FILE
  if failed.exists():
    try:
      reason = json.loads(failed.read_text()).get("reason", "")
    except (OSError, ValueError):
      reason = "failed.json does not parse"
    return RunFiles("failed", reason=f"{failed}: {reason}")
  try:
    stops = rungs.read(str(run_dir))
  except ValueError as e:
    return RunFiles("failed", reason=str(e))
  path = run_dir / RESULTS_FILE
  if not path.exists():
    return RunFiles("pending", rungs=stops)
  try:
    results = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    return RunFiles("failed", reason=f"{path}: does not parse ({e})")
  if results.get("status") != "finished":
    return RunFiles("pending", rungs=stops)
  return RunFiles("finished", results, stops)


@dataclasses.dataclass(frozen=True)
class RungResult:
  """A trial at one rung: status finished (scored), failed or pending (still to train)."""
  status: str
  top1: float | None = None
  loss: float | None = None
  step: int | None = None
  total_steps: int | None = None
  train_images: int | None = None


def at_rung(files: RunFiles, fraction: float) -> RungResult:
  """A trial's score at the rung of budget `fraction` (the full run's best at 1)."""
  if files.status == "failed":
    return RungResult("failed")
  stop = files.rungs.get(rungs.fraction_key(fraction)) if fraction < 1 else None
  if stop is not None:
    return RungResult("finished", stop["best_minival_top1"], stop["minival_loss"], stop["step"],
                      stop["total_steps"], stop["train_images"])
  if files.status == "finished":
    r = files.results
    steps = r["num_steps"]
    return RungResult("finished", r["best"]["minival_top1"], r["best"]["minival_loss"], steps,
                      steps, steps * r["config"]["train"]["batch_size"])
  return RungResult("pending")


def held_out_done(files: RunFiles) -> bool:
  """A finished run whose held-out splits were evaluated (a final run)."""
  return files.status == "finished" and files.results.get("held_out_evaluated", True)


def trained_images(files: RunFiles) -> int:
  """Training images this run has been through so far (steps x batch)."""
  if files.status == "finished":
    return files.results["num_steps"] * files.results["config"]["train"]["batch_size"]
  return max((r["train_images"] for r in files.rungs.values()), default=0)


def total_images(files: RunFiles) -> int | None:
  """A full run's training images, when the files tell (for the full-grid estimate)."""
  if files.status == "finished":
    return trained_images(files)
  for r in files.rungs.values():
    return r["total_steps"] * r["train_images"] // max(r["step"], 1)
  return None
