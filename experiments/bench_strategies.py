"""Train-step cost of each fine-tuning strategy on this CPU, and the feature cache's gain.

  python experiments/bench_strategies.py [--quick] [--json=FILE]
      [--models=resnet18,efficientnet_lite0] [--sizes=224,96] [--dtype=float32]
      [--modern_models=convnext_tiny,vit_s_16]

For ResNet-18 and EfficientNet-Lite0 at batch 32 (224x224 and 96x96;
`--quick`: 96x96 only), every strategy's jitted train step (random init,
random uint8 images, `donate_argnums=(0,)`) is compiled once, warmed up and
timed; the table gives the median step time, images/s, the ratio to full_ft
of the same model and size, and the peak RSS of a fresh process that did
only that (each row runs in its own subprocess). freeze_shallow freezes
*half* the model's trunk blocks (`len(spec.blocks) // 2`: ResNet-18's stem
and layer1, EfficientNet-Lite0's stem and `_blocks/0-7`), since the config
default of 7 blocks does not exist on ResNet-18's 5; `--freeze_blocks=N`
overrides it.

ConvNeXt-tiny and ViT-S/16 (`--modern_models`; '' = none) add rows at 96x96
only, for full_ft, linear_probe and lora (`config.strategy.lora_*` defaults:
rank 8 on ViT's attention and MLP kernels, on ConvNeXt's pointwise Linear
layers); ViT-S/16 builds its position embedding for the 6x6 patch grid.

Feature cache: for each model and size, one epoch of `--epoch_batches`
batches of the linear-probe step on images (random batches already decoded,
so the data pipeline's cost is *not* counted: a lower bound on the gain) is
compared with the same epoch of the head-only step
(`make_train_step(setup, 0, on_features=True)`) fed by
`feature_cache.FeatureLoader`, as the training loop feeds it. Extracting the
features (one trunk pass over the epoch's images) is timed apart.

`--json=FILE` writes a list of rows. Strategy rows have exactly the keys
model, image_size, strategy, trainable_params, step_ms, images_per_s,
ratio_to_full_ft, peak_rss_mb. Feature-cache rows have
`kind: "cached_probe_epoch_speedup"` plus model, image_size, speedup
(image epoch / cached epoch, median over epochs), epoch_batches,
image_epoch_s, cached_epoch_s, extraction_s (trunk pass over the epoch's
images), first_epoch_speedup (image epoch / (extraction + cached epoch)),
feature_dim and peak_rss_mb.

`own_cores` / `others_cores`: CPU cores kept busy by the worker / by other
processes while it was timed (a contended worker is re-run, see `benchlib`).

Targets on 2 CPU cores: linear_probe step <= 0.40x full_ft; freeze_shallow
measurably below full_ft (median below 0.95x full_ft's and below its fastest
step); cached linear probe epochs after the first >= 20x faster.
"""
import argparse

import benchlib
import subprocs


MODELS = ("resnet18", "efficientnet_lite0")
STRATEGIES = ("full_ft", "linear_probe", "freeze_shallow", "full_ft_head_lr", "bitfit")
MODERN_MODELS = ("convnext_tiny", "vit_s_16")
MODERN_STRATEGIES = ("full_ft", "linear_probe", "lora")
MODERN_SIZE = 96
ROW_KEYS = ("model", "image_size", "strategy", "trainable_params", "step_ms", "images_per_s",
            "ratio_to_full_ft", "peak_rss_mb")
CACHE_KIND = "cached_probe_epoch_speedup"
TARGET_PROBE_RATIO = 0.40
TARGET_CACHE_SPEEDUP = 20.0
MEASURABLY_BELOW = 0.95


# --- workers (each in its own process) ---------------------------------------


def step_worker(spec: dict) -> dict:
  """Compiles and times one strategy's train step; returns its row and diagnostics."""
  import jax  # pylint: disable=import-outside-toplevel

  from ftlab.training.steps import make_train_step  # pylint: disable=import-outside-toplevel
  config = benchlib.ftlab_config(spec["model"], spec["image_size"], spec["strategy"],
                                 spec["dtype"], spec["freeze_blocks"])
  setup, state = benchlib.build_state(config)
  batch = jax.device_put(benchlib.random_batch(spec["image_size"]))
  rng = jax.random.key(1)
  n_trainable = benchlib.trainable_params(state)
  compiled, compile_s = benchlib.compile_step(make_train_step(setup, 0), state, batch, rng)
  timing = benchlib.time_steps(benchlib.Stepper(compiled, state, batch, rng),
                               spec["steps"], spec["warmup"])
  return {
      "model": spec["model"], "image_size": spec["image_size"], "strategy": spec["strategy"],
      "trainable_params": n_trainable, "step_ms": timing.median_s * 1e3,
      "images_per_s": benchlib.BATCH / timing.median_s, "peak_rss_mb": benchlib.peak_rss_mb(),
      "compile_s": compile_s, "times_ms": [t * 1e3 for t in timing.times_s],
      "foreign_cores": timing.foreign_cores, "rounds": timing.rounds,
      "own_cores": timing.own_cores,
      "freeze_blocks": config.strategy.freeze_blocks,
  }


def _epoch_runner(compiled, state, rng):
  """`run(batches)`: one pass of `compiled` over host batches, carrying the donated state."""
  import jax  # pylint: disable=import-outside-toplevel
  holder = {"state": state}

  def run(batches):
    out = None
    for batch in batches:
      holder["state"], out = compiled(holder["state"], jax.device_put(batch), rng)
    jax.block_until_ready((holder["state"], out))

  return run


def cache_worker(spec: dict) -> dict:
  """Times a linear-probe epoch on images, feature extraction, and a cached-feature epoch."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from ftlab.data.pipeline import Loader  # pylint: disable=import-outside-toplevel
  from ftlab.data.sources import Split  # pylint: disable=import-outside-toplevel
  from ftlab.training import feature_cache  # pylint: disable=import-outside-toplevel
  from ftlab.training.steps import (make_train_step,  # pylint: disable=import-outside-toplevel
                                    make_trunk_step)
  config = benchlib.ftlab_config(spec["model"], spec["image_size"], "linear_probe", spec["dtype"])
  setup, state = benchlib.build_state(config)
  n = spec["epoch_batches"]
  mask = np.ones(benchlib.BATCH, np.float32)
  images = [{**benchlib.random_batch(spec["image_size"], seed=i), "mask": mask} for i in range(n)]
  rng = jax.random.key(1)

  trunk = jax.jit(make_trunk_step(setup)).lower(state, jax.device_put(images[0])).compile()
  extract = lambda: [np.asarray(trunk(state, jax.device_put(b))) for b in images]  # pylint: disable=unnecessary-lambda-assignment
  features = np.concatenate(extract())
  extraction = benchlib.time_steps(extract, steps=2, warmup=0)

  like = Loader(Split([str(i) for i in range(len(features))],
                      np.concatenate([b["label"] for b in images])),
                benchlib.BATCH, augment=None, train=True, seed=0)
  loader = feature_cache.FeatureLoader(features, like)
  first = next(loader.epoch(0))
  head_step, _ = benchlib.compile_step(make_train_step(setup, 0, on_features=True),
                                       state, jax.device_put(first), rng)
  run_cached = _epoch_runner(head_step, jax.tree.map(jax.numpy.copy, state), rng)
  epochs = iter(range(1, 10**6))
  cached = benchlib.time_steps(lambda: run_cached(loader.epoch(next(epochs))), steps=5, warmup=1)

  image_step, _ = benchlib.compile_step(make_train_step(setup, 0), state,
                                        jax.device_put(images[0]), rng)
  run_images = _epoch_runner(image_step, state, rng)
  run_images(images[:2])  # warm-up steps
  image = benchlib.time_steps(lambda: run_images(images), steps=spec["image_epochs"], warmup=0)
  return {
      "kind": CACHE_KIND, "model": spec["model"], "image_size": spec["image_size"],
      "speedup": image.median_s / cached.median_s, "epoch_batches": n,
      "image_epoch_s": image.median_s, "cached_epoch_s": cached.median_s,
      "extraction_s": extraction.median_s,
      "first_epoch_speedup": image.median_s / (extraction.median_s + cached.median_s),
      "feature_dim": int(features.shape[1]), "peak_rss_mb": benchlib.peak_rss_mb(),
      "foreign_cores": max(image.foreign_cores, cached.foreign_cores),
  }


WORKERS = {"step": step_worker, "cache": cache_worker}


# --- parent ------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="96x96 only, fewer timed steps")
  parser.add_argument("--json", default="", help="also write the rows to this JSON file")
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--sizes", default="", help="comma-separated; default 224,96 (quick: 96)")
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--modern_models", default=",".join(MODERN_MODELS),
                      help=f"models timed at {MODERN_SIZE}px for {','.join(MODERN_STRATEGIES)}")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--freeze_blocks", type=int, default=0,
                      help="freeze_shallow's frozen blocks; 0 = half the model's blocks")
  parser.add_argument("--steps", type=int, default=0, help="timed steps (default 10, quick 6)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--epoch_batches", type=int, default=20)
  parser.add_argument("--no_cache", action="store_true", help="skip the feature-cache rows")
  subprocs.add_worker_flags(parser)
  return parser.parse_args(argv)



def measure(spec: dict, args: argparse.Namespace) -> dict:
  """Runs one worker on a quiet machine if possible; logs the outcome."""
  label = f"{spec['kind']:5s} {spec['model']} {spec['image_size']} {spec.get('strategy', '')}"
  result = subprocs.measure_logged(__file__, spec, label, args)
  result.setdefault("model", spec["model"])
  result.setdefault("image_size", spec["image_size"])
  return result


def add_ratios(rows: list) -> None:
  full = {(r["model"], r["image_size"]): r.get("step_ms") for r in rows
          if r.get("strategy") == "full_ft"}
  for r in rows:
    base = full.get((r["model"], r["image_size"]))
    r["ratio_to_full_ft"] = r["step_ms"] / base if base and r.get("step_ms") else None


def check_targets(rows: list, cache_rows: list) -> list:
  """Lines stating each target as met or missed, with the figures."""
  lines = []
  by = {(r["model"], r["image_size"], r["strategy"]): r for r in rows if "step_ms" in r}
  for (model, size, strategy), r in by.items():
    full = by.get((model, size, "full_ft"))
    if full is None or strategy not in ("linear_probe", "freeze_shallow"):
      continue
    ratio = r["ratio_to_full_ft"]
    if strategy == "linear_probe":
      ok = ratio <= TARGET_PROBE_RATIO
      lines.append(f"{model} {size}px linear_probe/full_ft = {ratio:.3f} "
                   f"(target <= {TARGET_PROBE_RATIO:.2f}): {'met' if ok else 'MISSED'}")
    else:
      ok = ratio < MEASURABLY_BELOW and r["step_ms"] < min(full["times_ms"])
      lines.append(f"{model} {size}px freeze_shallow/full_ft = {ratio:.3f}, median "
                   f"{r['step_ms']:.0f} ms vs full_ft fastest {min(full['times_ms']):.0f} ms "
                   f"(target: measurably below): {'met' if ok else 'MISSED'}")
  for c in cache_rows:
    if "speedup" in c:
      ok = c["speedup"] >= TARGET_CACHE_SPEEDUP
      lines.append(f"{c['model']} {c['image_size']}px cached linear probe epoch speedup "
                   f"{c['speedup']:.1f}x (target >= {TARGET_CACHE_SPEEDUP:.0f}x): "
                   f"{'met' if ok else 'MISSED'}")
  return lines


STEP_COLUMNS = (
    ("model", "model", ""), ("image_size", "image_size", "d"), ("strategy", "strategy", ""),
    ("trainable_params", "trainable_params", ","), ("step_ms", "step_ms", ".1f"),
    ("images_per_s", "images_per_s", ".1f"), ("ratio_to_full_ft", "ratio_to_full_ft", ".3f"),
    ("peak_rss_mb", "peak_rss_mb", ".0f"), ("compile_s", "compile_s", ".1f"),
    ("own_cores", "own_cores", ".2f"), ("foreign_cores", "others_cores", ".2f"),
    ("error", "error", ""))
CACHE_COLUMNS = (
    ("model", "model", ""), ("image_size", "image_size", "d"),
    ("image_epoch_s", "image_epoch_s", ".2f"), ("cached_epoch_s", "cached_epoch_s", ".4f"),
    ("speedup", "speedup", ".1f"), ("extraction_s", "extraction_s", ".2f"),
    ("first_epoch_speedup", "first_epoch_speedup", ".2f"), ("feature_dim", "feature_dim", "d"),
    ("peak_rss_mb", "peak_rss_mb", ".0f"), ("foreign_cores", "others_cores", ".2f"),
    ("error", "error", ""))


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.worker:
    subprocs.serve_worker(WORKERS, args.worker)
    return
  sizes = [int(s) for s in (args.sizes or ("96" if args.quick else "224,96")).split(",")]
  models = [m for m in args.models.split(",") if m]  # '' = only the --modern_models rows
  strategies = args.strategies.split(",")
  steps = args.steps or (6 if args.quick else 10)
  common = {"dtype": args.dtype}
  benchlib.log(f"{benchlib.cpu_description()}, {benchlib.num_cores()} cores, "
               f"batch {benchlib.BATCH}, {benchlib.NUM_CLASSES} classes, dtype {args.dtype}, "
               f"median of {steps} steps after {args.warmup} warm-up")
  points = [(m, s, st) for m in models for s in sizes for st in strategies]
  points += [(m, MODERN_SIZE, st) for m in args.modern_models.split(",") if m
             for st in MODERN_STRATEGIES]
  rows = [measure({"kind": "step", "model": m, "image_size": s, "strategy": st,
                   "freeze_blocks": args.freeze_blocks, "steps": steps, "warmup": args.warmup,
                   **common}, args)
          for m, s, st in points]
  add_ratios(rows)
  cache_rows = [] if args.no_cache else [
      measure({"kind": "cache", "model": m, "image_size": s, "epoch_batches": args.epoch_batches,
               "image_epochs": 2 if args.quick else 3, **common}, args)
      for m in models for s in sizes]
  print(f"Train step per strategy on {benchlib.cpu_description()}: batch {benchlib.BATCH}, "
        f"{benchlib.num_cores()} CPU cores, "
        f"{args.dtype}, median of {steps} steps"
        + ("; freeze_shallow freezes " if models else "")
        + ", ".join(f"{m}: {args.freeze_blocks or benchlib.half_blocks(m)} blocks" for m in models))
  print(benchlib.format_table(rows, STEP_COLUMNS))
  if cache_rows:
    print(f"\nLinear probe epoch ({args.epoch_batches} batches): images vs cached features")
    print(benchlib.format_table(cache_rows, CACHE_COLUMNS))
  print("\nTargets:")
  print("\n".join(check_targets(rows, cache_rows)))
  if args.json:
    out = [{k: r.get(k) for k in ROW_KEYS} for r in rows if "error" not in r]
    out += [{k: v for k, v in c.items() if k not in ("foreign_cores", "loadavg", "quiet_cores")}
            for c in cache_rows if "error" not in c]
    benchlib.write_json(args.json, out)
    print(f"\nwrote {len(out)} rows to {args.json}")


if __name__ == "__main__":
  main()
