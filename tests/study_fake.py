"""Stands in for `python -m ftlab.main` in study tests: a deterministic 'training' without JAX.

Each run has 90 steps of batch 10. Its minival top-1 at step s is
  base(strategy) - 0.1 * (log10(lr) - log10(best lr))^2 + 0.1 * s / 90 + 0.001 * seed,
so the best LR of each strategy is known. The run keeps its step in
`state.json` (a stand-in for the checkpoint) and appends (dir, from, to) to
`<workdir's study root>/invocations.jsonl`, so tests can check that no step
is trained twice. `--config.fake=fail@<lr>` fails the run of that LR;
`sleep@<lr>` sleeps 60 s the first time that LR trains to the end.
"""
import json
import math
import pathlib
import sys
import time

TOTAL, BATCH = 90, 10
BEST_LR = {"linear_probe": 0.1, "full_ft": 0.01, "freeze_shallow": 0.03}
BASE = {"linear_probe": 0.80, "full_ft": 0.85, "freeze_shallow": 0.83}


def main():
  args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
  workdir = pathlib.Path(args["workdir"])
  cfg = {k[len("config."):]: v for k, v in args.items() if k.startswith("config.")}
  root = next(p for p in workdir.parents if (p / "study.json").exists())
  strategy, lr, seed = cfg["strategy.name"], float(cfg.get("optimizer.lr", 0.01)), int(cfg["seed"])
  fraction = float(cfg.get("train.stop_at_fraction", 0.0))
  held_out = cfg.get("train.evaluate_held_out", "True") == "True"
  mode, _, bad_lr = cfg.get("fake", "ok").partition("@")
  workdir.mkdir(parents=True, exist_ok=True)
  state = workdir / "state.json"
  start = json.loads(state.read_text())["step"] if state.exists() else 0
  stop = min(max(math.ceil(round(fraction * TOTAL, 9)), 1), TOTAL) if fraction else TOTAL
  with open(root / "invocations.jsonl", "a") as f:
    f.write(json.dumps({"dir": str(workdir.relative_to(root)), "from": start, "to": stop,
                        "held_out": held_out}) + "\n")
  if mode == "fail" and float(bad_lr) == lr:
    print("boom: simulated failure", file=sys.stderr)
    sys.exit(3)
  if mode == "sleep" and float(bad_lr) == lr and stop == TOTAL and start < TOTAL:
    marker = root / "slept"
    if not marker.exists():
      marker.write_text("1")
      time.sleep(60)
  score = lambda s: (BASE[strategy] - 0.1 * (math.log10(lr) - math.log10(BEST_LR[strategy])) ** 2
                     + 0.1 * s / TOTAL + 0.001 * seed)
  state.write_text(json.dumps({"step": max(start, stop)}))
  if stop < TOTAL:
    path = workdir / "rungs.json"
    rungs = json.loads(path.read_text())["rungs"] if path.exists() else []
    rungs.append({"fraction": fraction, "step": stop, "total_steps": TOTAL,
                  "train_images": stop * BATCH, "minival_top1": score(stop), "minival_loss": 1.0,
                  "best_minival_top1": score(stop)})
    path.write_text(json.dumps({"rungs": rungs}))
    return
  results = {"status": "finished", "strategy": strategy, "seed": seed, "num_steps": TOTAL,
             "config": {"train": {"batch_size": BATCH}, "optimizer": {"lr": lr}, "seed": seed,
                        "strategy": {"name": strategy}},
             "best": {"step": TOTAL, "minival_top1": score(TOTAL), "minival_loss": 1.0},
             "held_out_evaluated": held_out}
  if held_out:
    correct = round(359 * (score(TOTAL) - 0.02))
    results["test"] = {"top1": correct / 359, "correct": correct, "count": 359}
  (workdir / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
  main()
