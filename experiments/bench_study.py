"""What a tuned study costs against the untuned sweep (and a full grid), measured in one run.

  python experiments/bench_study.py [--config=configs/demo.py] [--workdir=/tmp/bench_study]
      [--parallel=1] [--full_grid] [--json=FILE] [--config.x=v ...]
  python experiments/bench_study.py --full_grid_from=/tmp/bench_study/study [--workdir=...]

Runs, one after the other on this machine, each with its own cold
compilation cache:
  1. the config's untuned sweep (`get_sweep`: every strategy at the config's
     recipe over its seeds), through `ftlab.sweep`;
  2. its study (`get_study`: every strategy's LRs by successive halving on
     minival, then the final seeds), through `ftlab.study`;
  3. with `--full_grid`, the same study without halving (every trial to the
     end: `max_rungs=1`), the grid that halving approximates. It starts from
     a copy of the study's search trials: a trial stopped at a rung resumes
     from its checkpoint, which ends exactly as an uninterrupted run does
     (tested), so only the steps halving skipped are trained. With
     `--full_grid_from=DIR` only this step runs, against a finished study.
and prints the wall time, the train and compile seconds summed over the
runs (from results.json and rungs.json) and the training images (steps x
batch) of each,
the number a full grid needs, and with `--full_grid`, per strategy, whether
halving chose what the full grid chose and the test-accuracy cost
(full grid's choice minus halving's, mean over the final seeds) when not.

Targets (issue #14): the study <= 2x the untuned sweep in images trained and
in wall time; a full grid >= 4x (it is (trials + seeds - 1) / seeds x: 2.5x
for 4 LRs and 2 seeds).
"""
import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ftlab.reports import study_results  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.studies import driver, space  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.sweeps.placement import available_cpus  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.sweeps.runner import DEFAULT_RUNNER  # noqa: E402  # pylint: disable=wrong-import-position


def _timed(cmd: list, log: pathlib.Path) -> float:
  t0 = time.perf_counter()
  with open(log, "w") as f:
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
  return time.perf_counter() - t0


def sweep_images(workdir: pathlib.Path) -> tuple:
  """(images trained, {strategy: [test top-1]}) of a finished sweep."""
  images, tests = 0, {}
  for path in workdir.glob("*/results.json"):
    r = json.loads(path.read_text())
    images += r["num_steps"] * r["config"]["train"]["batch_size"]
    tests.setdefault(r["strategy"], []).append(100 * r["test"]["top1"])
  return images, tests


def run_seconds(workdir: pathlib.Path) -> dict:
  """Train and compile seconds summed over the run dirs below `workdir` (a run's latest record:
  results.json, else its last rung stop in rungs.json)."""
  total = {"train_s": 0.0, "compile_s": 0.0}
  for rung_file in workdir.rglob("rungs.json"):
    if not (rung_file.parent / "results.json").exists():
      last = json.loads(rung_file.read_text())["rungs"][-1]
      total["train_s"] += last.get("train_time_s", 0.0)
      total["compile_s"] += last.get("compile_time_s", 0.0)
  for path in workdir.rglob("results.json"):
    r = json.loads(path.read_text())
    total["train_s"] += r["train_time_s"]
    total["compile_s"] += r["compile_time_s"]
  return total


def run_full_grid(config: str, overrides: list, parallel: int, study_dir: pathlib.Path,
                  workdir: pathlib.Path, cache: str) -> tuple:
  """(wall seconds, the grid's StudyResults, images trained beyond the study's search)."""
  study = space.load_study(config, overrides + [f"train.compilation_cache_dir={cache}"])
  grid = dataclasses.replace(study, max_rungs=1, rungs={s: (1.0,) for s in study.strategies})
  shutil.copytree(study_dir / "search", workdir / "search")
  copied = study_results.load(study_dir).images["search"]
  t0 = time.perf_counter()
  driver.run(grid, workdir, list(DEFAULT_RUNNER), parallel, available_cpus(), [], cache)
  results = study_results.load(workdir)
  return time.perf_counter() - t0, results, results.images["total"] - copied


def report_full_grid(study_dir: pathlib.Path, wall: float, grid, extra: int, base: dict) -> dict:
  """Prints and returns, per strategy, whether halving chose the full grid's point."""
  study = study_results.load(study_dir)
  out = {"wall_s": wall, "images": grid.images["total"], "images_trained": extra, "agree": {}}
  print(f"{'full grid':<16}{'':>28}{grid.images['total']:>12,} (of which trained here "
        f"{extra:,}, in {wall:.0f}s; the rest resumed from the study's rungs)")
  if base:
    print(f"{'':<16}full grid / untuned sweep: {grid.images['total'] / base['images']:.2f}x "
          "images")
  for halved, full in zip(study.tuned, grid.tuned):
    same = halved.chosen == full.chosen
    cost = (full.summary.mean - halved.summary.mean
            if not same and full.summary and halved.summary else 0.0)
    out["agree"][halved.strategy] = {
        "same": same, "halving": halved.chosen, "full_grid": full.chosen, "test_cost": cost,
        "halving_test": halved.summary.mean if halved.summary else None,
        "full_grid_test": full.summary.mean if full.summary else None}
    print(f"  {halved.strategy}: halving chose {halved.chosen}, the full grid {full.chosen}"
          + ("" if same else f" (test top-1 of the grid's choice minus halving's: {cost:+.2f} "
                             "points)"))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--workdir", default="/tmp/bench_study")
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--full_grid", action="store_true")
  parser.add_argument("--full_grid_from", default="",
                      help="a finished study workdir: run only its full grid")
  parser.add_argument("--json", default="")
  args, rest = parser.parse_known_args()
  overrides = [a[len("--config."):] for a in rest if a.startswith("--config.")]
  work = pathlib.Path(args.workdir)
  if args.full_grid_from:
    full_grid_only(args, overrides, pathlib.Path(args.full_grid_from), work)
    return
  shutil.rmtree(work, ignore_errors=True)
  work.mkdir(parents=True)
  flags = [f"--config.{o}" for o in overrides]
  rows = {}
  for name, module in (("untuned sweep", "ftlab.sweep"), ("study", "ftlab.study")):
    key = name.split()[-1]
    cache = str(work / f"cache_{key}")
    cmd = [sys.executable, "-m", module, f"--config={args.config}", f"--workdir={work / key}",
           f"--parallel={args.parallel}", *flags, f"--config.train.compilation_cache_dir={cache}"]
    print(f"running the {name}: {' '.join(cmd)}", flush=True)
    rows[name] = {"wall_s": _timed(cmd, work / f"{key}.log")}
  rows["untuned sweep"]["images"], untuned_tests = sweep_images(work / "sweep")
  for name, key in (("untuned sweep", "sweep"), ("study", "study")):
    rows[name].update(run_seconds(work / key))
  study = study_results.load(work / "study")
  rows["study"]["images"] = study.images["total"]
  full_grid_images = study.images["full_grid"]
  out = {"config": args.config, "overrides": overrides, "cpu": _cpu(), "rows": rows,
         "full_grid_images": full_grid_images,
         "chosen": {r.strategy: r.chosen for r in study.tuned},
         "tuned_test": {r.strategy: r.summary.mean if r.summary else None for r in study.tuned},
         "untuned_test": {s: sum(v) / len(v) for s, v in untuned_tests.items()}}
  base = rows["untuned sweep"]
  print(f"\n{'':<16}{'wall':>10}{'train':>9}{'compile':>9}{'images':>12}"
        f"{'x untuned (wall, images)':>28}")
  for name, r in rows.items():
    print(f"{name:<16}{r['wall_s']:>9.0f}s{r['train_s']:>8.0f}s{r['compile_s']:>8.0f}s"
          f"{r['images']:>12,}{r['wall_s'] / base['wall_s']:>14.2f}x"
          f"{r['images'] / base['images']:>13.2f}x")
  print(f"{'full grid':<16}{'':>28}{full_grid_images:>12,}{'':>14}"
        f"{full_grid_images / base['images']:>13.2f}x")
  if args.full_grid:
    wall, grid, extra = run_full_grid(args.config, overrides, args.parallel, work / "study",
                                      work / "full_grid", str(work / "cache_full_grid"))
    out["full_grid"] = report_full_grid(work / "study", wall, grid, extra, base)
  print("\ntest top-1 %: " + ", ".join(
      f"{s} tuned {out['tuned_test'][s]:.2f} / untuned {out['untuned_test'].get(s, float('nan')):.2f}"
      for s in out["tuned_test"] if out["tuned_test"][s] is not None))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1))


def full_grid_only(args, overrides: list, study_dir: pathlib.Path, work: pathlib.Path) -> None:
  if not (study_dir / space.STUDY_FILE).exists():
    raise SystemExit(f"--full_grid_from={study_dir}: no {space.STUDY_FILE} there")
  if (work / "full_grid").exists():
    raise SystemExit(f"{work / 'full_grid'} exists: use another --workdir")
  work.mkdir(parents=True, exist_ok=True)
  config = json.loads((study_dir / space.STUDY_FILE).read_text())["config_spec"]
  wall, grid, extra = run_full_grid(config, overrides, args.parallel, study_dir,
                                    work / "full_grid", str(work / "cache_full_grid"))
  out = {"config": config, "cpu": _cpu(), "study": str(study_dir),
         "full_grid": report_full_grid(study_dir, wall, grid, extra, {})}
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1))


def _cpu() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      name = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    name = "unknown"
  return f"{name}, {len(os.sched_getaffinity(0))} cores"


if __name__ == "__main__":
  main()
