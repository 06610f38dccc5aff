"""ftlab's jitted train step against an idiomatic PyTorch loop, on the same CPU and threads.

  python experiments/bench_step.py [--quick] [--json=FILE]
      [--models=resnet18,efficientnet_lite0] [--sizes=224,96]
      [--strategies=full_ft,linear_probe] [--torch_variants=...] [--dtype=float32]
      [--repeats=1] [--modern_models=convnext_tiny,vit_s_16]

For ResNet-18 and EfficientNet-Lite0 at batch 32 (224x224 and 96x96;
`--quick`: 96x96 only) and the strategies full_ft and linear_probe, both
frameworks train the same architecture from the same weights (ResNet-18:
torchvision's random init; Lite0: the packaged ImageNet weights with a new
100-class head), each in its own subprocess (so peak RSS is its own).
ConvNeXt-tiny and ViT-S/16 (`--modern_models`; '' = none) add rows at 96x96
for full_ft, linear_probe and lora, against torchvision's ConvNeXt-tiny and
its VisionTransformer class with ViT-S/16 widths built for 96 px (random
init); PyTorch's lora is the same adapters (`ftlab.training.lora.resolve`'s
targets, rank and alpha) as `torch.nn.utils.parametrize` parametrizations
W + (alpha / r) * B @ A of the frozen weights, PEFT's layout and init:

* ftlab: the train step of `ftlab.training.steps` (uint8 NHWC in, normalised inside),
  jitted with `donate_argnums=(0,)`; compile time and the step's FLOPs (XLA
  cost analysis of the compiled program) are reported.
* PyTorch (`torch.set_num_threads` = cores): SGD momentum 0.9 (weight decay
  1e-4, as ftlab's default), CrossEntropyLoss, `model.train()`; linear_probe
  sets `requires_grad=False` on all but the head and puts the trunk in eval
  mode. The uint8 batch is normalised inside the timed step too. Variants:
  eager NCHW, eager channels_last, and `torch.compile` of the model in both
  layouts (skipped with a note when compiling fails or times out). The best
  variant is `torch_images_per_s`; all are printed, with the first step's
  seconds (for torch.compile: compilation, shorter when Inductor's on-disk
  cache in /tmp is warm).

Both report the median step time after warm-up. The machine's peak FLOP/s is
measured in the same run with a 4096x4096 float32 matmul (the best of JAX and
PyTorch); `peak_flops_share` = ftlab's step FLOPs x steps/s / peak.

The input pipeline (`ftlab.data.pipeline.Loader`, train transforms: decode +
random-resized-crop + flip + batch) is timed on 500 JPEGs of 500x375 written
by the script, with the config's default decode threads and with one per
core, and compared with the images/s the ftlab train step consumes
(target: pipeline >= 2x the step's rate). One more row per size adds
`--pipeline_auto_augment` (default rand-m7-mstd0.5, RandAugment as the
Aircraft recipe; '' = none) on one thread per core;
`experiments/bench_pipeline.py` times just these pipeline rows.

The speed of a shared 2-core VM drifts by tens of percent between minutes.
`--repeats=N` adds N-1 rounds in which ftlab and each row's best PyTorch
variant (chosen in the first round) are re-measured back to back; a row then
reports the median images/s of each side and the median of the per-round
ratios (`ratio_min`/`ratio_max` give their range, `rounds` their count). Peak
RSS stays the first round's (ftlab's cold compile).

`--json=FILE` writes one row per (model, image_size, strategy) with the keys
model, image_size, strategy, ftlab_images_per_s, torch_images_per_s, ratio
(ftlab / torch), ftlab_peak_rss_mb, torch_peak_rss_mb, peak_flops_share,
ratio_min, ratio_max, rounds.
The ftlab workers apply `ftlab.training.runtime.configure_xla()` as ftlab's entry
points do (`--xla_defaults`: XLA's own defaults instead); XLA_FLAGS set in
the environment take precedence over it. The
`*_cpu` / `own_cores` columns give the CPU cores a worker kept busy while
timed (PyTorch's OpenMP threads spin, so theirs read ~2.0), `others_cores`
those taken by other processes (a contended worker is re-run, see
`subprocs`). The workers are in `step_workers.py`, the rows and tables in `step_table.py`.
"""
import argparse
import functools
import os
import shutil
import tempfile

import benchlib
from shared_weights import weights_key
from step_table import MATMUL_N, ROW_KEYS, best_torch, compare_rows, report, timed_steps
from step_workers import WORKERS
import subprocs


MODELS = ("resnet18", "efficientnet_lite0")
STRATEGIES = ("full_ft", "linear_probe")
MODERN_MODELS = ("convnext_tiny", "vit_s_16")
MODERN_STRATEGIES = ("full_ft", "linear_probe", "lora")
MODERN_SIZE = 96
TORCH_VARIANTS = ("eager_nchw", "eager_channels_last", "compile_nchw", "compile_channels_last")


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="96x96 rows only")
  parser.add_argument("--json", default="", help="also write the rows to this JSON file")
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--sizes", default="", help="comma-separated; default 224,96 (quick: 96)")
  parser.add_argument("--strategies", default=",".join(STRATEGIES))
  parser.add_argument("--modern_models", default=",".join(MODERN_MODELS),
                      help=f"models compared at {MODERN_SIZE}px for {','.join(MODERN_STRATEGIES)}")
  parser.add_argument("--torch_variants", default=",".join(TORCH_VARIANTS),
                      help="subset of " + ",".join(TORCH_VARIANTS) + "; empty: ftlab only")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                      help="ftlab compute dtype")
  parser.add_argument("--xla_defaults", action="store_true",
                      help="time ftlab with XLA's default CPU flags instead of ftlab.training.runtime's")
  parser.add_argument("--compilation_cache", default="",
                      help="JAX compilation cache dir for the ftlab workers (default off: every "
                      "row compiles cold; a second run with the same dir measures warm runs)")
  parser.add_argument("--steps", type=int, default=0, help="timed steps (default 10, quick 6)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=1,
                      help="rounds per row: after the first, ftlab and the row's best PyTorch "
                      "variant are re-measured back to back; medians and the median paired "
                      "ratio are reported (the machine's speed drifts between minutes)")
  parser.add_argument("--conv_impls", default="onednn,xla",
                      help="config.model.conv_impl values timed per row (auto | xla | onednn); "
                      "the first is the headline ftlab column, each gets <impl>_img/s and ratio")
  parser.add_argument("--compile_timeout", type=float, default=900.0,
                      help="seconds before a torch.compile variant is given up")
  parser.add_argument("--no_pipeline", action="store_true")
  parser.add_argument("--pipeline_auto_augment", default="rand-m7-mstd0.5",
                      help="config.data.auto_augment of an extra pipeline row per size (one "
                      "decode thread per core); '' = no such row")
  parser.add_argument("--no_peak", action="store_true")
  subprocs.add_worker_flags(parser)
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error(f"--repeats={args.repeats}: needs at least 1 round")
  return args



def measure(spec: dict, label: str, args: argparse.Namespace, timeout_s: float = 1800.0) -> dict:
  """Runs one worker on a quiet machine if possible; logs the outcome."""
  return subprocs.measure_logged(__file__, spec, label, args, timeout_s)


def conv_impls(args) -> list:
  return [impl for impl in args.conv_impls.split(",") if impl]


def run_ftlab(args, prep, run, key, conv_impl: str, label: str) -> dict:
  """One ftlab worker for grid point `key` = (model, image_size, strategy)."""
  model, size, strategy = key
  return run({"kind": "ftlab", "dtype": args.dtype, "xla_defaults": args.xla_defaults,
              "conv_impl": conv_impl,
              "compilation_cache": args.compilation_cache, "model": model, "image_size": size,
              "strategy": strategy, "weights": prep["weights"][weights_key(model, size)],
              "steps": timed_steps(args), "warmup": args.warmup}, label)


def run_torch(args, prep, run, key, variant: str, label: str) -> dict:
  """One PyTorch worker (`variant`) for grid point `key`."""
  from ftlab.models import get_spec  # pylint: disable=import-outside-toplevel
  model, size, strategy = key
  spec = get_spec(model)
  return run({"kind": "torch", "variant": variant, "mean": spec.mean, "std": spec.std,
              "model": model, "image_size": size, "strategy": strategy,
              "weights": prep["weights"][weights_key(model, size)], "steps": timed_steps(args),
              "warmup": args.warmup}, label,
             timeout_s=args.compile_timeout if variant.startswith("compile") else 1800.0)


def run_grid(args, grid, prep, run) -> tuple:
  """({point: ftlab result}, {point: {variant: torch result}}) over the grid."""
  variants = [v for v in args.torch_variants.split(",") if v]
  ftlab_results, torch_results = {}, {}
  for key in grid:
    name = " ".join(map(str, key))
    ftlab_results[key] = {impl: run_ftlab(args, prep, run, key, impl, f"ftlab {impl} {name}")
                          for impl in conv_impls(args)}
    for variant in variants:
      torch_results.setdefault(key, {})[variant] = run_torch(
          args, prep, run, key, variant, f"torch {variant} {name}")
  return ftlab_results, torch_results


def run_repeats(args, grid, prep, run, ftlab_results, torch_results) -> dict:
  """{point: [{impl: img/s, 'torch': img/s}]}: rounds 2..repeats, each back to back."""
  rounds = {}
  for r in range(2, args.repeats + 1):
    for key in grid:
      variant, _ = best_torch(torch_results.get(key, {}))
      impls = [i for i, fl in ftlab_results[key].items() if "error" not in fl]
      if variant is None or not impls:
        continue
      label = f"round {r}: {' '.join(map(str, key))}"
      measured = {impl: run_ftlab(args, prep, run, key, impl, f"{label} ftlab {impl}")
                  .get("images_per_s") for impl in impls}
      tb = run_torch(args, prep, run, key, variant, f"{label} torch {variant}")
      rounds.setdefault(key, []).append({**measured, "torch": tb.get("images_per_s")})
  return rounds


def run_pipelines(sizes, prep, run, auto_augment: str = "") -> dict:
  """{(size, decode threads, auto_augment): result}.

  Plain train transforms with the config's default threads and one per core;
  with `auto_augment`, also that policy on one thread per core.
  """
  from configs.default import get_config  # pylint: disable=import-outside-toplevel
  data = get_config().data
  points = [(size, threads, "") for size in sizes
            for threads in sorted({data.num_workers, benchlib.num_cores()})]
  if auto_augment:
    points += [(size, benchlib.num_cores(), auto_augment) for size in sizes]
  pipes = {}
  for size, threads, policy in points:
    pipes[(size, threads, policy)] = run(
        {"kind": "pipeline", "image_size": size, "threads": threads, "auto_augment": policy,
         "prefetch": data.prefetch, "image_dir": prep["image_dir"]},
        f"pipeline {size}px {threads} threads {policy}".rstrip())
  return pipes


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.worker:
    subprocs.serve_worker(WORKERS, args.worker)
    return
  sizes = [int(s) for s in (args.sizes or ("96" if args.quick else "224,96")).split(",")]
  models = [m for m in args.models.split(",") if m]  # '' = only the --modern_models rows
  grid = [(m, s, st) for m in models for s in sizes for st in args.strategies.split(",")]
  grid += [(m, MODERN_SIZE, st) for m in args.modern_models.split(",") if m
           for st in MODERN_STRATEGIES]
  benchlib.log(f"{benchlib.cpu_description()}, {benchlib.num_cores()} cores, "
               f"batch {benchlib.BATCH}; "
               f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  run = functools.partial(measure, args=args)
  workdir = tempfile.mkdtemp(prefix="bench_step_")
  try:
    points = sorted({(m, s) for m, s, _ in grid})
    prep = run({"kind": "prepare", "points": points, "dir": workdir}, "prepare weights + JPEGs")
    if "error" in prep:
      raise SystemExit(f"prepare failed: {prep['error']}")
    peak = {} if args.no_peak else run({"kind": "peak", "n": MATMUL_N}, "peak matmul")
    ftlab_results, torch_results = run_grid(args, grid, prep, run)
    rounds = run_repeats(args, grid, prep, run, ftlab_results, torch_results)
    pipes = ({} if args.no_pipeline else
             run_pipelines(sizes, prep, run, args.pipeline_auto_augment))
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  rows = compare_rows(grid, ftlab_results, torch_results, peak.get("peak_gflops"), rounds)
  report(args, prep, peak, rows, torch_results, pipes, ftlab_results)
  if args.json:
    benchlib.write_json(args.json, [{k: r.get(k) for k in ROW_KEYS} for r in rows])
    print(f"\nwrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
  main()
