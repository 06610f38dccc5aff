"""A real run's train images/s against its benchmarked step's, side by side in one run (issue #15).

  python experiments/bench_loop.py [--model=efficientnet_lite0] [--image_size=96]
      [--strategy=full_ft] [--images=4500] [--steps=100] [--rounds=3]
      [--variants=default,...] [--json=FILE]

Writes an image folder of `--images` 28x28 PNGs in 10 classes (the
fashion-MNIST shape of the issue's measurement), then alternates, round after
round, two workers in fresh processes:

* step: ftlab's compiled train step for the run's config, timed on one
  random batch as `bench_step.py` times it (median after warm-up);
* loop: the real training loop (`ftlab.training.trainer.train_and_evaluate`)
  on the image folder: decode threads, host-to-device copies, metrics,
  progress lines, with evaluation only at the end. Its images/s is
  results.json's `train_images_per_s` (steps x batch / train seconds, which
  exclude compilation, evaluation and checkpoints), over `--steps` steps.

A variant is the loop with config overrides (`VARIANTS`), to find where the
loop's time goes; each round runs the step and every variant once, and a
variant's ratio is the median over rounds of loop / step images/s of the
same round. Target: the default loop >= 90% of the step.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import benchlib
import subprocs

NUM_CLASSES = 10
IMAGE_WH = 28
TARGET = 0.9
VARIANTS = {
    "default": {},
    "workers=1": {"data.num_workers": 1},
    "workers=2": {"data.num_workers": 2},
    "prefetch=8": {"data.prefetch": 8},
    "no_log": {"train.log_every_steps": 0},
}


def write_folder(root: str, images: int, seed: int = 0) -> str:
  """root/{train,test}/<class>/*.png: `images` train PNGs and a tenth as many test ones."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  for split, n in (("train", images), ("test", max(images // 10, NUM_CLASSES))):
    for i in range(n):
      label = i % NUM_CLASSES
      folder = os.path.join(root, split, f"class_{label}")
      os.makedirs(folder, exist_ok=True)
      pixels = rng.integers(0, 256, (IMAGE_WH, IMAGE_WH), dtype=np.uint8)
      pixels[label::NUM_CLASSES] //= 4  # a class signal, so the run learns something
      Image.fromarray(pixels, mode="L").save(os.path.join(folder, f"{i:05d}.png"))
  return root


def run_config(spec: dict):
  config = benchlib.ftlab_config(spec["model"], spec["image_size"], spec["strategy"])
  config.data.kind = "imagefolder"
  config.data.root = spec["root"]
  config.data.val_split = ""  # minival carved from train
  config.train.num_epochs = spec["steps"] * config.train.batch_size / (0.9 * spec["images"])
  config.train.checkpoint_every_steps = 0
  config.train.compilation_cache_dir = spec["cache"]
  for key, value in spec["overrides"].items():
    group, name = key.split(".")
    config[group][name] = value
  return config


def step_worker(spec: dict) -> dict:
  import jax  # pylint: disable=import-outside-toplevel

  from ftlab.training import runtime  # pylint: disable=import-outside-toplevel
  from ftlab.training import state as state_lib  # pylint: disable=import-outside-toplevel
  from ftlab.training.steps import make_train_step  # pylint: disable=import-outside-toplevel
  runtime.use_compilation_cache(spec["cache"])
  config = run_config(spec)
  setup = state_lib.build_setup(config, NUM_CLASSES, 1000, 0, 100)
  state = state_lib.initial_state(setup, config, jax.random.key(0), load_weights=False)
  batch = jax.device_put(benchlib.random_batch(spec["image_size"]))
  batch["label"] = batch["label"] % NUM_CLASSES
  batch["mask"] = jax.numpy.ones(benchlib.BATCH, jax.numpy.float32)
  rng = jax.random.key(1)
  compiled, _ = benchlib.compile_step(make_train_step(setup, 0), state, batch, rng)
  timing = benchlib.time_steps(benchlib.Stepper(compiled, state, batch, rng), 20, 3, rounds=1)
  return {"images_per_s": benchlib.BATCH / timing.median_s, "own_cores": timing.own_cores,
          "foreign_cores": timing.foreign_cores}


def loop_worker(spec: dict) -> dict:
  from ftlab.training import trainer  # pylint: disable=import-outside-toplevel
  config = run_config(spec)
  workdir = tempfile.mkdtemp(prefix="bench_loop_")
  load = benchlib.ForeignLoad()
  trainer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  return {"images_per_s": results["train_images_per_s"], "steps": results["num_steps"],
          "own_cores": load.own_cores(), "foreign_cores": load.cores()}


WORKERS = {"step": step_worker, "loop": loop_worker}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="efficientnet_lite0")
  parser.add_argument("--image_size", type=int, default=96)
  parser.add_argument("--strategy", default="full_ft")
  parser.add_argument("--images", type=int, default=4500)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--json", default="")
  subprocs.add_worker_flags(parser)
  args = parser.parse_args()
  if args.worker:
    subprocs.serve_worker(WORKERS, args.worker)
    return
  variants = args.variants.split(",")
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
  work = tempfile.mkdtemp(prefix="bench_loop_")
  base = {"model": args.model, "image_size": args.image_size, "strategy": args.strategy,
          "images": args.images, "steps": args.steps, "cache": os.path.join(work, "xla"),
          "root": write_folder(os.path.join(work, "images"), args.images), "overrides": {}}
  benchlib.log(f"{benchlib.cpu_description()}; {args.model} {args.strategy} at "
               f"{args.image_size}px, batch {benchlib.BATCH}, {args.images} PNGs in {work}")
  rounds = []
  for r in range(args.rounds):
    row = {"step": subprocs.run_worker(__file__, dict(base, kind="step"))}
    for v in variants:
      row[v] = subprocs.run_worker(__file__, dict(base, kind="loop", overrides=VARIANTS[v]))
    benchlib.log(f"round {r + 1}: " + ", ".join(
        f"{k} {x.get('images_per_s', float('nan')):.1f}" if "error" not in x else f"{k} {x['error']}"
        for k, x in row.items()))
    rounds.append(row)
  out = summarize(rounds, variants)
  out.update(cpu=benchlib.cpu_description(), model=args.model, image_size=args.image_size,
             strategy=args.strategy, steps=args.steps)
  print(f"\nstep (bench_step's measure): {out['step_images_per_s']:.1f} images/s")
  for v in variants:
    s = out["variants"][v]
    print(f"loop {v:<12} {s['images_per_s']:6.1f} images/s  {100 * s['ratio']:5.1f}% of the step "
          f"(rounds {100 * s['ratio_min']:.0f}-{100 * s['ratio_max']:.0f}%)"
          f"  own cores {s['own_cores']:.2f}")
  default = out["variants"].get("default")
  if default:
    print(f"target: default loop >= {100 * TARGET:.0f}% of the step: "
          f"{'met' if default['ratio'] >= TARGET else 'not met'}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"summary": out, "rounds": rounds}, f, indent=1)


def summarize(rounds: list, variants: list) -> dict:
  ok = [r for r in rounds if "error" not in r["step"]]
  out = {"step_images_per_s": statistics.median(r["step"]["images_per_s"] for r in ok),
         "variants": {}}
  for v in variants:
    good = [r for r in ok if "error" not in r[v]]
    if not good:
      raise SystemExit(f"every {v} loop failed: {rounds[-1][v]['error']}")
    ratios = [r[v]["images_per_s"] / r["step"]["images_per_s"] for r in good]
    out["variants"][v] = {
        "images_per_s": statistics.median(r[v]["images_per_s"] for r in good),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "own_cores": statistics.median(r[v]["own_cores"] for r in good)}
  return out


if __name__ == "__main__":
  sys.exit(main())
