"""Tune every strategy on minival by successive halving, then re-run the chosen ones over seeds.

A study config defines `get_study(arg=None)` next to `get_config` (see
ftlab/studies/space.py): the strategies, each with its search grid, the
final seeds and optionally data sizes.

Usage:

  python -m ftlab.study --config=configs/demo.py --workdir=runs/demo_study \
      [--parallel=N] [--dry_run] [--slurm=FILE [--submit]] [--config.x=v ...]
  python -m ftlab.report --workdir=runs/demo_study

1. search, on minival only: every (strategy, hyperparameters) trial runs with
   the search seed (the first final seed) to its rung, a fraction of the full
   run's steps with the full run's schedule (`train.stop_at_fraction`); the
   best 1/eta by minival top-1 resume from their checkpoints to the next
   rung, until one is left at the full budget. No test split is evaluated.
2. final: the chosen hyperparameters are retrained from scratch with every
   final seed (0, 1, 2 by default; the search seed, 1000 by default, is none
   of them) and evaluated once on the held-out splits.

At the end it prints the verdict (one paragraph per data size, as
report.md begins), the chosen points and the images trained. The state is
plain files in the workdir: study.json (the study), runs.json
(every run launched and how it ended), decisions.json (every rung, who went
on and why, the images trained), and the run dirs (see
ftlab/studies/trials.py). Re-running the command continues a killed study;
a failed trial is recorded and ranked last. The exit status is the number
of failed runs (capped at 100), 128+signal when interrupted, 101 when the
study could not start (bad config: nothing in the workdir is changed).
"""
import pathlib
import shlex
from typing import Sequence

from absl import app, flags

from ftlab.reports import study_output, study_results
from ftlab.studies import driver, planner, slurm, space
from ftlab.sweeps import cli
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.runner import DEFAULT_RUNNER, Interrupted, install_signal_handlers


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The shared sweep/study flags (`sweeps.cli`), `--submit` and `--round_file`."""
  cli.define_flags("Study config file, `path.py[:arg]`, with get_study().",
                   "Run through SLURM: each round an array job, then a dependent job that plans "
                   "the next (scripts written next to FILE).")
  flags.DEFINE_bool("submit", True, "With --slurm: submit with sbatch (else only write).")
  flags.DEFINE_string("round_file", None, "A SLURM round's task file (array tasks; see --task).")


def summary(data: dict) -> str:
  """The chosen hyperparameters per strategy and the images trained."""
  lines = []
  for s in data["strategies"]:
    chosen = s["chosen"]
    what = ("undecided" if not s["decided"] else "every trial failed" if chosen is None
            else ", ".join(f"{k}={v}" for k, v in chosen["hparams"].items()) or "its only point")
    lines.append(f"  {s['size']} {s['strategy']}: {what}")
  im = data["images"]
  grid = f"{im['full_grid']:,}" if im["full_grid"] is not None else "unknown"
  lines.append(f"images trained: search {im['search']:,} + final {im['final']:,} = "
               f"{im['total']:,} (a full grid: {grid}); untuned {im['untuned']:,}")
  if "programs_compiled" in data:
    lines.append(f"programs compiled (new compilation-cache entries): {data['programs_compiled']}")
  return "\n".join(lines)


def _failed_runs(study: space.Study, workdir: pathlib.Path) -> int:
  plan = planner.plan(study, workdir)
  return sum(f.status == "failed" for sp in plan.strategies
             for f in [*sp.files.values(), *(x for _, x in sp.finals.values()),
                       *(x for _, x in sp.untuned.values())])


def _main() -> int:
  runner = shlex.split(FLAGS.runner) if FLAGS.runner else list(DEFAULT_RUNNER)
  study = space.load_study(FLAGS.config, FLAGS.override)
  workdir = pathlib.Path(FLAGS.workdir)
  driver.check_study_file(study, workdir)
  if FLAGS.dry_run:
    return driver.dry_run(study, workdir, runner)
  if FLAGS.round_file is not None or FLAGS.task is not None:
    if FLAGS.round_file is None or FLAGS.task is None:
      raise SweepError("--round_file and --task go together (a SLURM array task)")
    return slurm.run_task(study, workdir, FLAGS.round_file, FLAGS.task, runner)
  if FLAGS.slurm:
    return slurm.step(study, workdir, FLAGS.slurm, runner if FLAGS.runner else None,
                      FLAGS.submit, FLAGS.sbatch, FLAGS.parallel, FLAGS.config, FLAGS.override)
  cpus, gpus = cli.devices()
  install_signal_handlers()
  try:
    data = driver.run(study, workdir, runner, FLAGS.parallel, cpus, gpus, study.cache_dir)
  except Interrupted as e:
    print(f"interrupted by signal {e.signum}; re-run the same command to continue", flush=True)
    return 128 + e.signum
  for paragraph in study_output.verdict_paragraphs(study_results.load(workdir)):
    print(paragraph, flush=True)
  print(summary(data), flush=True)
  print(f"report: python -m ftlab.report --workdir={workdir}", flush=True)
  return min(_failed_runs(study, workdir), cli.MAX_EXIT_STATUS)


def main(argv: Sequence[str]) -> int:
  return cli.guarded(argv, _main)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
