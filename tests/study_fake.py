"""Stands in for `python -m ftlab.main` in study tests: a deterministic 'training' without JAX.

Each run has 90 steps of batch 10. Its minival top-1 at step s is
  base(strategy) - 0.1 * (log10(lr) - log10(best lr))^2 + 0.1 * s / 90 + 0.001 * (seed % 10),
so the best LR of each strategy is known. The run writes config.json (its
overrides, typed) when it starts, as ftlab.main does, keeps its step in
`state.json` (a stand-in for the checkpoint) and appends (dir, from, to) to
`<workdir's study root>/invocations.jsonl`, so tests can check that no step
is trained twice. A finished run evaluated on the held-out splits writes
results.json's `test` and predictions.csv: 359 test images, the easiest
ones correct (a difficulty shared by every run, jittered per seed).
`--config.fake=MODE@<lr>` acts on the runs of that LR: `fail` fails it,
`fail_held_out` fails its held-out evaluation, `fail_resumed` fails it the
first time it resumes from a rung, `sleep` sleeps 60 s the first time it
trains to the end.
"""
import json
import math
import pathlib
import sys
import time

import numpy as np

TOTAL, BATCH, TEST_IMAGES, CLASSES = 90, 10, 359, ("a", "b", "c")
BEST_LR = {"linear_probe": 0.1, "full_ft": 0.01, "freeze_shallow": 0.03}
BASE = {"linear_probe": 0.80, "full_ft": 0.85, "freeze_shallow": 0.83}


def _typed(text: str):
  if text in ("True", "False"):
    return text == "True"
  try:
    return json.loads(text)
  except ValueError:
    return text


def _nested(flat: dict) -> dict:
  out = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


def _predictions(workdir: pathlib.Path, correct: int, seed: int) -> None:
  difficulty = np.random.default_rng(0).permutation(TEST_IMAGES)
  jitter = np.random.default_rng(seed).normal(0, 20, TEST_IMAGES)
  right = np.zeros(TEST_IMAGES, bool)
  right[np.argsort(difficulty + jitter)[:correct]] = True
  lines = ["image,true,predicted,confidence"]
  for i in range(TEST_IMAGES):
    true = CLASSES[i % 3]
    lines.append(f"img/{i:03d}.png,{true},{true if right[i] else CLASSES[(i + 1) % 3]},0.9")
  (workdir / "predictions.csv").write_text("\n".join(lines) + "\n")


def _data_subset(cfg: dict) -> dict:
  k = cfg.get("data.train_per_class", 0)
  per_class = k - max(1, round(0.1 * k)) if k else 100
  return {"train_per_class": k, "train_fraction": 1.0, "train_images": 3 * per_class,
          "minival_images": 3 * (k - per_class) if k else 30,
          "train_images_per_class": {c: per_class for c in CLASSES}}


def main():
  args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
  workdir = pathlib.Path(args["workdir"])
  cfg = {k[len("config."):]: _typed(v) for k, v in args.items() if k.startswith("config.")}
  cfg.setdefault("train.batch_size", BATCH)
  root = next(p for p in workdir.parents if (p / "study.json").exists())
  strategy, lr, seed = cfg["strategy.name"], float(cfg.get("optimizer.lr", 0.01)), int(cfg["seed"])
  fraction = float(cfg.get("train.stop_at_fraction", 0.0))
  held_out = cfg.get("train.evaluate_held_out", True)
  mode, _, bad_lr = str(cfg.get("fake", "ok")).partition("@")
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(json.dumps(_nested(cfg)))
  state = workdir / "state.json"
  start = json.loads(state.read_text())["step"] if state.exists() else 0
  stop = min(max(math.ceil(round(fraction * TOTAL, 9)), 1), TOTAL) if fraction else TOTAL
  with open(root / "invocations.jsonl", "a") as f:
    f.write(json.dumps({"dir": str(workdir.relative_to(root)), "from": start, "to": stop,
                        "held_out": held_out, "seed": seed}) + "\n")
  this_lr = bad_lr and float(bad_lr) == lr
  if this_lr and mode == "fail_resumed" and start > 0 and not (root / "failed_resumed").exists():
    (root / "failed_resumed").write_text("1")
    mode = "fail"
  if this_lr and mode == "fail":
    print("boom: simulated failure", file=sys.stderr)
    sys.exit(3)
  if mode == "sleep" and this_lr and stop == TOTAL and start < TOTAL:
    marker = root / "slept"
    if not marker.exists():
      marker.write_text("1")
      time.sleep(60)
  score = lambda s: (BASE[strategy] - 0.1 * (math.log10(lr) - math.log10(BEST_LR[strategy])) ** 2
                     + 0.1 * s / TOTAL + 0.001 * (seed % 10))
  state.write_text(json.dumps({"step": max(start, stop)}))
  if stop < TOTAL:
    path = workdir / "rungs.json"
    rungs = json.loads(path.read_text())["rungs"] if path.exists() else []
    rungs.append({"fraction": fraction, "step": stop, "total_steps": TOTAL,
                  "train_images": stop * BATCH, "minival_top1": score(stop), "minival_loss": 1.0,
                  "best_minival_top1": score(stop)})
    path.write_text(json.dumps({"rungs": rungs}))
    return
  if held_out and this_lr and mode == "fail_held_out":
    print("boom: held-out evaluation failed", file=sys.stderr)
    sys.exit(4)
  results = {"status": "finished", "strategy": strategy, "seed": seed, "num_steps": TOTAL,
             "config": _nested(cfg), "data_subset": _data_subset(cfg),
             "best": {"step": TOTAL, "minival_top1": score(TOTAL), "minival_loss": 1.0},
             "held_out_evaluated": held_out}
  if held_out:
    correct = round(TEST_IMAGES * (score(TOTAL) - 0.02))
    results["test"] = {"top1": correct / TEST_IMAGES, "correct": correct, "count": TEST_IMAGES}
    _predictions(workdir, correct, seed)
  (workdir / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
  main()
