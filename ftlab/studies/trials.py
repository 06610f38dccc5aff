"""A study's runs on disk: where each lives, and what its files say about the study.

  <workdir>/search/<size>/<strategy>/<point>/    a search trial: the search seed, minival only
  <workdir>/final/<size>/<strategy>/seed=<n>/    the chosen point retrained with final seed n
  <workdir>/untuned/<size>/<strategy>/seed=<n>/  the config's own recipe (untuned=True)
  <workdir>/stale/<the path above>.<k>/          a final or untuned run moved aside: it was
                                                 trained at another point than the planned one

The search seed is never a final seed: the trial that won the selection is
not the run reported on test. Run dirs are read by `ftlab.sweeps.rundir`.
"""
import dataclasses
import pathlib

from ftlab.configuration.files import RESUMABLE_CHANGES
from ftlab.sweeps import rundir
from ftlab.sweeps.index import write_json
from ftlab.sweeps.rundir import RunDir
from ftlab.training import rungs


SEARCH, FINAL, UNTUNED, STALE = "search", "final", "untuned", "stale"
STALE_NOTE = "stale.json"


def trial_dir(workdir: pathlib.Path, size: str, strategy: str, name: str) -> pathlib.Path:
  return workdir / SEARCH / size / strategy / name


def seed_dir(workdir: pathlib.Path, stage: str, size: str, strategy: str, seed: int) -> pathlib.Path:
  return workdir / stage / size / strategy / f"seed={seed}"


def read(run_dir: pathlib.Path) -> RunDir:
  return rundir.read(run_dir)


@dataclasses.dataclass(frozen=True)
class RungResult:
  """A trial at one rung: status finished (scored), failed or pending (still to train)."""
  status: str
  top1: float | None = None
  loss: float | None = None
  step: int | None = None
  total_steps: int | None = None
  train_images: int | None = None


def at_rung(files: RunDir, fraction: float) -> RungResult:
  """A trial's score at the rung of budget `fraction`: the minival the trainer's
  `evaluate_minival()` gave at the stop (the weights the trial goes on from), or at the end (1)
  the best checkpoint's, the one a final run would report.

  A recorded stop (rungs.json) or a finished run is a fact that later
  failures do not undo: a trial that failed after its rung keeps its score
  there, so the decisions taken on it stand.
  """
  stop = files.rungs.get(rungs.fraction_key(fraction)) if fraction < 1 else None
  if stop is not None:
    return RungResult("finished", stop["minival_top1"], stop["minival_loss"], stop["step"],
                      stop["total_steps"], stop["train_images"])
  if files.finished:
    r = files.results
    steps = r["num_steps"]
    return RungResult("finished", r["best"]["minival_top1"], r["best"]["minival_loss"], steps,
                      steps, steps * r["config"]["train"]["batch_size"])
  return RungResult("failed" if files.status == "failed" else "pending")


def held_out_done(files: RunDir) -> bool:
  """A finished run whose held-out splits were evaluated (a final run)."""
  return files.finished and files.results.get("held_out_evaluated", True)


def trained_images(files: RunDir) -> int:
  """Training images this run has been through (steps x batch).

  A finished run: all its steps. Otherwise (pending or failed) at least its
  last recorded rung stop or latest checkpoint: a failed trial's training
  counts too.
  """
  if files.finished:
    return files.results["num_steps"] * files.results["config"]["train"]["batch_size"]
  stops = max((r["train_images"] for r in files.rungs.values()), default=0)
  batch = rundir.dig(files.recorded_config(), "train.batch_size")
  checkpointed = files.latest_checkpoint_step() * batch if isinstance(batch, int) else 0
  return max(stops, checkpointed)


def total_images(files: RunDir) -> int | None:
  """A full run's training images, when the files tell (for the full-grid estimate)."""
  if files.finished:
    return trained_images(files)
  for r in files.rungs.values():
    return r["total_steps"] * r["train_images"] // max(r["step"], 1)
  return None


def mismatches(files: RunDir, planned: dict) -> list:
  """`key=recorded, planned value` for each planned key the run's recorded config contradicts.

  Keys a resumed run may change (stop_at_fraction, evaluate_held_out, ...) are
  not compared; a run that recorded no config yet (never started) has none.
  """
  config = files.recorded_config()
  if config is None:
    return []
  return [f"{key}={rundir.dig(config, key)!r}, planned {value!r}"
          for key, value in planned.items()
          if key not in RESUMABLE_CHANGES and rundir.dig(config, key) != value]


def move_aside(workdir: pathlib.Path, run_dir: pathlib.Path, why: str) -> pathlib.Path:
  """Moves a stale run to `<workdir>/stale/<its path>.<k>` with a note saying why; returns it."""
  relative = run_dir.relative_to(workdir)
  k = 0
  while (target := workdir / STALE / relative.parent / f"{relative.name}.{k}").exists():
    k += 1
  target.parent.mkdir(parents=True, exist_ok=True)
  run_dir.rename(target)
  write_json(target / STALE_NOTE, {"was": str(relative), "why": why})
  return target


def stale_runs(workdir: pathlib.Path) -> list:
  """(moved dir, its note's `why`) of every run moved aside so far."""
  out = []
  for note in sorted((workdir / STALE).rglob(STALE_NOTE)):
    data, error = rundir.read_object(note)
    out.append((note.parent, (data or {}).get("why", error)))
  return out
