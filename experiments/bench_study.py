"""What a tuned study costs against the untuned sweep (and a full grid), and whether halving picks
what the full grid picks, measured in one run.

  python experiments/bench_study.py [--config=configs/demo.py] [--workdir=/tmp/bench_study]
      [--parallel=1] [--full_grid] [--json=FILE] [--config.x=v ...]
  python experiments/bench_study.py --data=DIR [--sizes=10,100] [--strategies=a,b]
      [--lrs=0.003,0.01,0.03,0.1] [--head_lrs=...] [--model=efficientnet_lite0]
      [--pretrained=efficientnet_lite0] [--epochs=10] [--eval_every=1] [--image_size=64]
      [--batch=32] [--seeds=3] --full_grid ...
  python experiments/bench_study.py --full_grid_from=/tmp/bench_study/study [--workdir=...]

`--data=DIR` runs experiments/bench_study_config.py on an image folder
(`DIR/train/<class>/`, `DIR/test/<class>/`; experiments/fashion_mnist_folder.py
writes a class-balanced Fashion-MNIST subset), its data sizes, strategies and
LR grid given by the flags above. The validation of issue 23, section 4:

  python experiments/fashion_mnist_folder.py --out=/data/fmnist --train_per_class=200
  python experiments/bench_study.py --data=/data/fmnist --sizes=10,100 --full_grid \
      --workdir=runs/bench_fmnist --json=runs/bench_fmnist.json

Runs, one after the other on this machine, each with its own cold
compilation cache:
  1. the config's untuned sweep (`get_sweep`: every strategy at the config's
     recipe over its seeds), through `ftlab.sweep`;
  2. its study (`get_study`: every strategy's LRs by successive halving on
     minival, then the final seeds), through `ftlab.study`;
  3. with `--full_grid`, the same study without halving (every trial to the
     end: one rung), the grid that halving approximates. It starts from a
     copy of the study's search trials and final runs: a trial stopped at a
     rung resumes from its checkpoint, which ends exactly as an uninterrupted
     run does (tested), and a final run is kept only where the grid chose the
     same point (the planner moves the others aside), so only what halving
     skipped is trained. With `--full_grid_from=DIR` only this step runs.
It prints the wall time, train and compile seconds and training images of
each, per size and strategy halving's choice, the grid's, each one's test
top-1 over the final seeds and the regret (grid's choice minus halving's,
against the test set's binomial 95% half-width), and the winner per size
under the untuned sweep, halving and the grid (report.json's verdicts).

Targets (issue 23): the same winner as the full grid at every size;
per-strategy regret within the test set's half-width; the study <= 2x the
untuned sweep's images and wall time and <= 0.6x the full grid's.
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

from ftlab.reports import study_results, verdict  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.reports.collect import collect  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.reports.pivot import Spec, build  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.studies import driver, space  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.sweeps import naming  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.sweeps.placement import available_cpus  # noqa: E402  # pylint: disable=wrong-import-position
from ftlab.sweeps.runner import DEFAULT_RUNNER  # noqa: E402  # pylint: disable=wrong-import-position

FOLDER_CONFIG = "experiments/bench_study_config.py"
FOLDER_FLAGS = ("sizes", "strategies", "lrs", "head_lrs", "model", "pretrained", "epochs",
                "eval_every", "image_size", "batch", "seeds", "minival_fraction")


def _timed(cmd: list, log: pathlib.Path) -> float:
  t0 = time.perf_counter()
  with open(log, "w") as f:
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
  return time.perf_counter() - t0


def folder_config(args) -> str:
  """bench_study_config.py's config argument from --data and the grid flags ('/'-joined lists)."""
  parts = [f"data={os.path.abspath(args.data)}"]
  parts += [f"{k}={str(getattr(args, k)).replace(',', '/')}" for k in FOLDER_FLAGS
            if getattr(args, k) is not None]
  return f"{FOLDER_CONFIG}:{','.join(parts)}"


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


def sweep_results(workdir: pathlib.Path, rows: tuple) -> tuple:
  """(images trained, {size: winner}) of a finished sweep (rows: its size key, or model)."""
  report = build(collect(workdir), Spec(rows=rows))
  images = sum(r.results["num_steps"] * r.results["config"]["train"]["batch_size"]
               for r in report.records if r.status == "finished")
  return images, {naming.run_name({rows[0]: g.name}): g.winner.name if g.winner else None
                  for g in report.verdict.groups}


def winners(results) -> dict:
  """{size: the verdict's winner} of a study."""
  return {g.name: g.winner.name if g.winner else None for g in results.verdict.groups}


def run_full_grid(config: str, overrides: list, parallel: int, study_dir: pathlib.Path,
                  workdir: pathlib.Path, cache: str) -> tuple:
  """(wall seconds, the grid's StudyResults, images trained here beyond the copied runs)."""
  study = space.load_study(config, overrides + [f"train.compilation_cache_dir={cache}"])
  grid = dataclasses.replace(study, max_rungs=1, rungs={s: (1.0,) for s in study.strategies})
  for stage in ("search", "final"):  # never decisions.json: the grid decides anew
    if (study_dir / stage).exists():
      shutil.copytree(study_dir / stage, workdir / stage)
  driver.write_study_file(grid, workdir)
  copied = study_results.load(workdir).images["total"]
  t0 = time.perf_counter()
  driver.run(grid, workdir, list(DEFAULT_RUNNER), parallel, available_cpus(), [], cache)
  results = study_results.load(workdir)
  return time.perf_counter() - t0, results, results.images["total"] - copied


def compare(halved, grid) -> list:
  """Per (size, strategy): both choices, their test top-1 (mean over final seeds), the regret."""
  out = []
  for h, g in zip(halved.tuned, grid.tuned):
    mean = lambda r: r.summary.mean if r.summary else None  # pylint: disable=unnecessary-lambda-assignment
    regret = mean(g) - mean(h) if mean(g) is not None and mean(h) is not None else None
    out.append({"size": h.size, "strategy": h.strategy, "halving": h.chosen, "full_grid": g.chosen,
                "same": h.chosen == g.chosen, "halving_test": mean(h), "full_grid_test": mean(g),
                "regret": regret, "test_halfwidth": g.test_halfwidth,
                "within": regret is not None and g.test_halfwidth is not None
                          and abs(regret) <= g.test_halfwidth})
  return out


def print_comparison(rows: list, halving_wins: dict, grid_wins: dict, sweep_wins: dict) -> None:
  print(f"\n{'size':<28}{'strategy':<18}{'halving':>12}{'grid':>12}{'test h/g':>16}"
        f"{'regret':>9}{'±test':>8}")
  for r in rows:
    lr = lambda c: "-" if not c else ",".join(f"{v}" for v in c.values())  # pylint: disable=unnecessary-lambda-assignment
    tests = "/".join("-" if t is None else f"{t:.2f}" for t in (r["halving_test"],
                                                                r["full_grid_test"]))
    print(f"{r['size']:<28}{r['strategy']:<18}{lr(r['halving']):>12}{lr(r['full_grid']):>12}"
          f"{tests:>16}{'-' if r['regret'] is None else format(r['regret'], '+.2f'):>9}"
          f"{'-' if r['test_halfwidth'] is None else format(r['test_halfwidth'], '.2f'):>8}")
  for size in grid_wins:
    print(f"winner at {size}: untuned sweep {sweep_wins.get(size)}, halving {halving_wins[size]}, "
          f"full grid {grid_wins[size]}")


def _study_args(parser: argparse.ArgumentParser):
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--data", default="", help="an image folder: run bench_study_config.py")
  for name in FOLDER_FLAGS:
    parser.add_argument(f"--{name}", default=None, help="with --data (lists comma-separated)")
  parser.add_argument("--workdir", default="/tmp/bench_study")
  parser.add_argument("--parallel", type=int, default=1)
  parser.add_argument("--full_grid", action="store_true")
  parser.add_argument("--full_grid_from", default="",
                      help="a finished study workdir: run only its full grid")
  parser.add_argument("--json", default="")
  return parser.parse_known_args()


def main() -> None:
  args, rest = _study_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
  overrides = [a[len("--config."):] for a in rest if a.startswith("--config.")]
  config = folder_config(args) if args.data else args.config
  work = pathlib.Path(args.workdir)
  if args.full_grid_from:
    full_grid_only(args, overrides, pathlib.Path(args.full_grid_from), work)
    return
  shutil.rmtree(work, ignore_errors=True)
  work.mkdir(parents=True)
  rows = {}
  for name, module in (("untuned sweep", "ftlab.sweep"), ("study", "ftlab.study")):
    key = name.split()[-1]
    cache = str(work / f"cache_{key}")
    cmd = [sys.executable, "-m", module, f"--config={config}", f"--workdir={work / key}",
           f"--parallel={args.parallel}", *(f"--config.{o}" for o in overrides),
           f"--config.train.compilation_cache_dir={cache}"]
    print(f"running the {name}: {' '.join(cmd)}", flush=True)
    rows[name] = {"wall_s": _timed(cmd, work / f"{key}.log"), **run_seconds(work / key)}
  study = study_results.load(work / "study")
  sized = any(study.study.sizes.values())
  rows["untuned sweep"]["images"], sweep_wins = sweep_results(
      work / "sweep", ("data.train_per_class",) if sized else ("model",))
  rows["study"]["images"] = study.images["total"]
  out = {"config": config, "overrides": overrides, "cpu": _cpu(), "rows": rows,
         "full_grid_images": study.images["full_grid"], "halving_winner": winners(study),
         "untuned_winner": sweep_wins, "verdict": verdict.paragraphs(study.verdict)}
  base = rows["untuned sweep"]
  print(f"\n{'':<16}{'wall':>10}{'train':>9}{'compile':>9}{'images':>12}"
        f"{'x untuned (wall, images)':>28}")
  for name, r in rows.items():
    print(f"{name:<16}{r['wall_s']:>9.0f}s{r['train_s']:>8.0f}s{r['compile_s']:>8.0f}s"
          f"{r['images']:>12,}{r['wall_s'] / base['wall_s']:>14.2f}x"
          f"{r['images'] / base['images']:>13.2f}x")
  if args.full_grid:
    wall, grid, extra = run_full_grid(config, overrides, args.parallel, work / "study",
                                      work / "full_grid", str(work / "cache_full_grid"))
    # the grid holds the study's runs: its wall time is the study's plus what it trained on top
    grid_wall = rows["study"]["wall_s"] + wall
    out["full_grid"] = {"wall_s": grid_wall, "images": grid.images["total"],
                        "images_trained": extra, "winner": winners(grid),
                        "per_strategy": compare(study, grid)}
    print(f"{'full grid':<16}{grid_wall:>9.0f}s{'':>17}{grid.images['total']:>12,} (trained here "
          f"{extra:,} in {wall:.0f}s, the rest copied from the study)")
    print(f"study / full grid: {rows['study']['wall_s'] / grid_wall:.2f}x wall, "
          f"{rows['study']['images'] / grid.images['total']:.2f}x images")
    print_comparison(out["full_grid"]["per_strategy"], winners(study), winners(grid), sweep_wins)
  print("\n" + "\n".join(out["verdict"]))
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
  study = study_results.load(study_dir)
  rows = compare(study, grid)
  print_comparison(rows, winners(study), winners(grid), {})
  out = {"config": config, "cpu": _cpu(), "study": str(study_dir), "full_grid": {
      "wall_s_here": wall, "images": grid.images["total"], "images_trained": extra,
      "winner": winners(grid), "per_strategy": rows}}
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
