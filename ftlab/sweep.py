"""Expand a config's sweep grid and run every entry as its own process.

A sweepable config file defines `get_sweep(arg=None) -> list[dict]`, each
dict one run's overrides with dotted keys, built with `product`, `zip_`,
`cross` and `chain` from `ftlab.sweeps.grid`, and optionally a module-level
`STRATEGY_ORDER`. The pieces live in `ftlab/sweeps/`: `spec` (loading the
grid), `naming`, `filters`, `placement`, `index` (sweep.json and the runs'
files), `runner` (processes and signals) and `slurm`.

Usage:

  python -m ftlab.sweep --config=configs/X.py[:arg] --workdir=runs/X \
      [--parallel=N] [--only=strategy=full_ft] [--dry_run] [--slurm=FILE]
      [--config.data.root=/data/x ...]

Every run gets a readable name derived from its overrides (e.g.
`model=resnet18,strategy=full_ft,seed=0`) and its own workdir
`<workdir>/<name>`, where its stdout/stderr go to `log.txt`. `--config.k=v`
flags given to the sweep are passed to every run and kept out of the names.
Runs whose `results.json` says `finished` are skipped, so re-running a
sweep resumes it; a failing run leaves `failed.json` and the others go on.
The exit status is the number of failed runs (capped at 100), 128+signal
when the sweep itself was interrupted, or 101 when it could not start.
`<workdir>/sweep.json` indexes the grid and every run's status and is
rewritten whenever a status changes.
"""
import pathlib
import shlex
from typing import Sequence

from absl import app, flags

from ftlab.sweeps import cli
from ftlab.sweeps.filters import matches, parse_filters
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.index import SweepIndex, init_index, is_finished
from ftlab.sweeps.runner import (DEFAULT_RUNNER, Interrupted, Job, execute, install_signal_handlers,
                                 plan)
from ftlab.sweeps.slurm import slurm_script
from ftlab.sweeps.spec import Sweep, load_sweep


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The shared sweep/study flags (`sweeps.cli`) and `--only`."""
  cli.define_flags("Sweep config file, `path.py[:arg]`, with get_sweep().",
                   "Write a SLURM array script to this file instead of running.")
  flags.DEFINE_multi_string("only", [], "Run only entries with key=value (short keys such as "
                            "strategy=full_ft allowed); repeat for more; same key = or.")


def _select(runs: list[Job], sweep: Sweep) -> list[Job]:
  if FLAGS.task is not None:
    if not 0 <= FLAGS.task < len(runs):
      raise SweepError(f"--task={FLAGS.task} is outside the grid of {len(runs)} runs")
    runs = [runs[FLAGS.task]]
  keys = [k for o in sweep.grid for k in o]
  filters = parse_filters(FLAGS.only, keys)
  return [r for r in runs if matches(r.overrides, filters)]


def _summary(finished: int, failed: int) -> str:
  return f"{finished} finished, {failed} failed"


def main(argv: Sequence[str]) -> int:
  return cli.guarded(argv, _main)


def _main() -> int:
  runner = shlex.split(FLAGS.runner) if FLAGS.runner else list(DEFAULT_RUNNER)
  sweep = load_sweep(FLAGS.config, FLAGS.override)
  workdir = pathlib.Path(FLAGS.workdir)
  all_runs = plan(sweep, workdir, runner)
  runs = _select(all_runs, sweep)
  todo = [r for r in runs if not is_finished(r.dir)]
  done = len(runs) - len(todo)
  if FLAGS.slurm:
    script = slurm_script(sweep.config_spec, FLAGS.workdir, [r.index for r in todo],
                          runner if FLAGS.runner else None,
                          FLAGS.parallel if FLAGS.parallel > 1 else 0, FLAGS.sbatch,
                          sweep.fixed)
    pathlib.Path(FLAGS.slurm).write_text(script)
    print(f"wrote {FLAGS.slurm}: {len(todo)} array tasks; submit with `sbatch {FLAGS.slurm}`")
    return 0
  if FLAGS.dry_run:
    for r in todo:
      print(shlex.join(r.command))
    print(f"dry run: {len(todo)} to launch, {done} already finished")
    return 0
  index = SweepIndex(workdir)
  init_index(index, sweep, [r.name for r in all_runs], workdir,
             keep_existing=FLAGS.task is not None)
  if done:
    print(f"skipping {done} finished run(s)")
  cpus, gpus = cli.devices()
  install_signal_handlers()
  try:
    counts = execute(todo, index, max(1, FLAGS.parallel), cpus, gpus)
  except Interrupted as e:
    print(f"interrupted by signal {e.signum}; re-run to resume", flush=True)
    print(_summary(done + e.counts["finished"], e.counts["failed"]), flush=True)
    return 128 + e.signum
  print(_summary(done + counts["finished"], counts["failed"]), flush=True)
  return min(counts["failed"], cli.MAX_EXIT_STATUS)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
