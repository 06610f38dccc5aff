"""ftlab against a plain PyTorch loop with the same recipe, on real data, over seeds.

  python experiments/fashion_mnist_folder.py --out=data/fmnist --train_per_class=300
  python experiments/fidelity.py --data=data/fmnist --workdir=runs/fidelity \
      [--strategies=linear_probe,...] [--seeds=0,1,2] [--sides=ftlab,torch] \
      [--set=model.bn=batch ...] [--tag=NAME] [--config=configs/fashion_mnist.py]

Runs, one after the other, `python -m ftlab.main` and
`experiments/torch_reference.py` for every strategy and seed with the same
config (`--config`, default `configs/fashion_mnist.py`, plus every `--set`
override on both sides), each into `<workdir>/<tag>/<side>/<strategy>/seed=<n>`
(a finished run is not run again), then prints a markdown table: per
strategy, each side's test top-1 mean ± seed std (n), the difference, and
whether |difference| <= 2 x the larger seed std (the practice issue's
fidelity target), and both sides' order of the strategies. `--table_only`
prints the table of what is there. `--tag` keeps variants apart (e.g.
`--tag=bn_batch --set=model.bn=batch`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STRATEGIES = ("linear_probe", "freeze_shallow", "full_ft", "full_ft_head_lr", "full_ft_deep_lr",
              "scratch", "lp_ft")
SIDES = ("ftlab", "torch")


def run_dir(workdir: str, tag: str, side: str, strategy: str, seed: int) -> str:
  return os.path.join(workdir, tag, side, strategy, f"seed={seed}")


def result_file(path: str, side: str) -> str:
  """The JSON a run of `side` in `path` writes when it finishes."""
  return os.path.join(path, "results.json" if side == "ftlab" else "result.json")


def result_of(path: str, side: str):
  """(correct, count) of a finished run, or None."""
  file = result_file(path, side)
  if not os.path.exists(file):
    return None
  with open(file, encoding="utf-8") as f:
    out = json.load(f)
  return out["test"]["correct"], out["test"]["count"]


def command(side: str, config: str, strategy: str, seed: int, data: str, overrides, path: str):
  common = [f"--config={config}:strategy={strategy}", f"--config.seed={seed}",
            f"--config.data.root={data}"] + [f"--config.{o}" for o in overrides]
  if side == "ftlab":
    return [sys.executable, "-m", "ftlab.main", f"--workdir={path}"] + common
  return [sys.executable, os.path.join(HERE, "torch_reference.py"),
          f"--out={os.path.join(path, 'result.json')}"] + common


def run_all(args) -> None:
  for strategy in args.strategies:
    for seed in args.seeds:
      for side in args.sides:
        path = run_dir(args.workdir, args.tag, side, strategy, seed)
        if result_of(path, side) is not None:
          continue
        os.makedirs(path, exist_ok=True)
        cmd = command(side, args.config, strategy, seed, args.data, args.set, path)
        print(" ".join(cmd), flush=True)
        with open(os.path.join(path, "log.txt"), "w", encoding="utf-8") as log:
          code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if code:
          print(f"  failed ({code}): {os.path.join(path, 'log.txt')}", flush=True)


def cell(values) -> str:
  if not values:
    return "-"
  mean = statistics.mean(values)
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return f"{mean:.2f} ± {std:.2f} (n={len(values)})"


def table(args) -> str:
  rows = ["| strategy | " + " | ".join(args.sides) + " | ftlab - torch | within 2 std |",
          "|---|" + "---|" * len(args.sides) + "---|---|"]
  means = {side: {} for side in args.sides}
  for strategy in args.strategies:
    values = {}
    for side in args.sides:
      found = [result_of(run_dir(args.workdir, args.tag, side, strategy, s), side)
               for s in args.seeds]
      values[side] = [100.0 * c / n for c, n in filter(None, found)]
      if values[side]:
        means[side][strategy] = statistics.mean(values[side])
    diff, ok = "-", "-"
    if len(args.sides) == 2 and all(len(values[s]) > 1 for s in args.sides):
      d = statistics.mean(values["ftlab"]) - statistics.mean(values["torch"])
      bound = 2 * max(statistics.stdev(values[s]) for s in args.sides)
      diff, ok = f"{d:+.2f}", f"{'yes' if abs(d) <= bound else 'no'} (2 std = {bound:.2f})"
    rows.append(f"| {strategy} | " + " | ".join(cell(values[s]) for s in args.sides)
                + f" | {diff} | {ok} |")
  for side in args.sides:
    order = sorted(means[side], key=lambda k: -means[side][k])
    rows.append(f"\n{side} order: " + " > ".join(order))
  return "\n".join(rows)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True, help="an image folder with train/ and test/")
  parser.add_argument("--workdir", default="runs/fidelity")
  parser.add_argument("--config", default="configs/fashion_mnist.py")
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--sides", default=",".join(SIDES))
  parser.add_argument("--set", action="append", default=[], help="k=v config override, both sides")
  parser.add_argument("--tag", default="default")
  parser.add_argument("--table_only", action="store_true")
  args = parser.parse_args(argv)
  args.strategies = args.strategies.split(",")
  args.seeds = [int(s) for s in args.seeds.split(",")]
  args.sides = args.sides.split(",")
  if unknown := set(args.sides) - set(SIDES):
    parser.error(f"--sides: unknown {sorted(unknown)}; choose from {SIDES}")
  args.data = os.path.abspath(args.data)
  if not args.table_only:
    run_all(args)
  print(table(args))
  return 0


if __name__ == "__main__":
  sys.exit(main())
