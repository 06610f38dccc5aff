"""bench_step.py's rows and printed tables: ftlab against PyTorch's best variant per row,
paired over rounds, every PyTorch variant, the input pipeline against the step."""
import statistics

import benchlib
from step_workers import PIPELINE_IMAGES, PIPELINE_WH


ROW_KEYS = ("model", "image_size", "strategy", "ftlab_images_per_s", "torch_images_per_s",
            "ratio", "ftlab_peak_rss_mb", "torch_peak_rss_mb", "peak_flops_share",
            "ratio_min", "ratio_max", "rounds", "xla_images_per_s", "xla_ratio",
            "onednn_images_per_s", "onednn_ratio", "onednn_ratio_min", "onednn_ratio_max")
MATMUL_N = 4096
TARGET_PIPELINE_RATIO = 2.0


def timed_steps(args) -> int:
  return args.steps or (6 if args.quick else 10)


def best_torch(variants: dict) -> tuple:
  ok = {k: v for k, v in variants.items() if "images_per_s" in v}
  if not ok:
    return None, {}
  name = max(ok, key=lambda k: ok[k]["images_per_s"])
  return name, ok[name]


def share(flops: float, images_per_s: float, peak_gflops: float):
  if not flops or not images_per_s or not peak_gflops:
    return None
  return flops * images_per_s / benchlib.BATCH / (peak_gflops * 1e9)


def paired(rounds: list) -> dict:
  """Medians of (ftlab, torch) images/s pairs measured back to back, and of their ratios."""
  ok = [(a, b) for a, b in rounds if a and b]
  if not ok:
    return {}
  ratios = [a / b for a, b in ok]
  return {"ftlab": statistics.median(a for a, _ in ok), "torch": statistics.median(b for _, b in ok),
          "ratio": statistics.median(ratios), "ratio_min": min(ratios),
          "ratio_max": max(ratios), "rounds": len(ok)}


def impl_columns(impl: str, fl: dict, tips, key_rounds: list) -> dict:
  """`<impl>_images_per_s` and its paired ratio to PyTorch (`<impl>_ratio[_min|_max]`)."""
  pair = paired([(fl.get("images_per_s"), tips)] + [(r.get(impl), r.get("torch"))
                                                     for r in key_rounds])
  return {f"{impl}_images_per_s": pair.get("ftlab", fl.get("images_per_s")),
          f"{impl}_ratio": pair.get("ratio"), f"{impl}_ratio_min": pair.get("ratio_min"),
          f"{impl}_ratio_max": pair.get("ratio_max")}


def compare_rows(grid, ftlab_results, torch_results, peak_gflops, rounds=None) -> list:
  """One row per grid point, the JSON keys plus display extras.

  `ftlab_results[point]` maps each conv_impl to its result, the first one
  being the headline `ftlab_*` columns. `rounds` ({point: [{impl: img/s,
  'torch': img/s}, ...]}) holds the repeated back-to-back measurements;
  without it a row is its single first round.
  """
  rows = []
  for key in grid:
    (headline, fl), (variant, tb) = next(iter(ftlab_results[key].items())), \
        best_torch(torch_results.get(key, {}))
    row = dict(zip(("model", "image_size", "strategy"), key))
    ips, tips = fl.get("images_per_s"), tb.get("images_per_s")
    key_rounds = (rounds or {}).get(key, [])
    for impl, result in ftlab_results[key].items():
      row.update(impl_columns(impl, result, tips, key_rounds))
    pair = paired([(ips, tips)] + [(r.get(headline), r.get("torch")) for r in key_rounds])
    # XLA's cost analysis does not see inside custom calls: the step's FLOPs come from the
    # implementation that counts the most (the XLA one when it was timed).
    flops = max((r.get("flops") or 0.0) for r in ftlab_results[key].values())
    if pair:
      ips, tips = pair["ftlab"], pair["torch"]
    row.update(ftlab_images_per_s=ips, torch_images_per_s=tips,
               ratio=pair.get("ratio"), ratio_min=pair.get("ratio_min"),
               ratio_max=pair.get("ratio_max"), rounds=pair.get("rounds"),
               ftlab_peak_rss_mb=fl.get("peak_rss_mb"), torch_peak_rss_mb=tb.get("peak_rss_mb"),
               peak_flops_share=share(flops, ips, peak_gflops),
               torch_flops_share=share(flops, tips, peak_gflops),
               torch_variant=variant, compile_s=fl.get("compile_s"),
               ftlab_cores=fl.get("own_cores"), torch_cores=tb.get("own_cores"),
               gflop_per_step=flops / 1e9 or None, error=fl.get("error"))
    rows.append(row)
  return rows


MAIN_COLUMNS = (
    ("model", "model", ""), ("image_size", "size", "d"), ("strategy", "strategy", ""),
    ("ftlab_images_per_s", "ftlab_img/s", ".1f"), ("torch_images_per_s", "torch_img/s", ".1f"),
    ("torch_variant", "torch_best", ""), ("ratio", "ratio", ".2f"),
    ("xla_images_per_s", "xla_img/s", ".1f"), ("xla_ratio", "xla_ratio", ".2f"),
    ("onednn_images_per_s", "onednn_img/s", ".1f"), ("onednn_ratio", "onednn_ratio", ".2f"),
    ("onednn_ratio_min", "onednn_min", ".2f"), ("onednn_ratio_max", "onednn_max", ".2f"),
    ("ratio_min", "ratio_min", ".2f"), ("ratio_max", "ratio_max", ".2f"), ("rounds", "rounds", "d"),
    ("ftlab_peak_rss_mb", "ftlab_rss_mb", ".0f"), ("torch_peak_rss_mb", "torch_rss_mb", ".0f"),
    ("peak_flops_share", "ftlab_peak_share", ".3f"), ("torch_flops_share", "torch_peak_share", ".3f"),
    ("gflop_per_step", "gflop/step", ".1f"), ("compile_s", "ftlab_compile_s", ".1f"),
    ("ftlab_cores", "ftlab_cpu", ".2f"), ("torch_cores", "torch_cpu", ".2f"),
    ("error", "error", ""))
TORCH_COLUMNS = (
    ("model", "model", ""), ("image_size", "size", "d"), ("strategy", "strategy", ""),
    ("variant", "variant", ""), ("images_per_s", "img/s", ".1f"), ("step_ms", "step_ms", ".0f"),
    ("first_step_s", "first_step_s", ".1f"), ("peak_rss_mb", "rss_mb", ".0f"),
    ("own_cores", "own_cores", ".2f"), ("foreign_cores", "others_cores", ".2f"),
    ("error", "note", ""))
PIPE_COLUMNS = (
    ("image_size", "size", "d"), ("threads", "decode_threads", "d"),
    ("auto_augment", "auto_augment", ""),
    ("images_per_s", "pipeline_img/s", ".1f"), ("model", "model", ""), ("strategy", "strategy", ""),
    ("step_images_per_s", "step_img/s", ".1f"), ("ratio", "pipeline/step", ".2f"),
    ("target", "target>=2x", ""))


def pipeline_rows(pipes: dict, ftlab_results: dict) -> list:
  rows = []
  for (size, threads, policy), p in pipes.items():
    for (model, s, strategy), by_impl in ftlab_results.items():
      fl = next(iter(by_impl.values()))
      if s != size:
        continue
      step_ips, ips = fl.get("images_per_s"), p.get("images_per_s")
      ratio = ips / step_ips if ips and step_ips else None
      rows.append({"image_size": size, "threads": threads, "auto_augment": policy or "-",
                   "images_per_s": ips, "model": model,
                   "strategy": strategy, "step_images_per_s": step_ips, "ratio": ratio,
                   "target": None if ratio is None else
                   ("met" if ratio >= TARGET_PIPELINE_RATIO else "MISSED")})
  return rows


def ftlab_flags(ftlab_results: dict) -> str:
  flags = {r.get("xla_flags", "") for by_impl in ftlab_results.values()
           for r in by_impl.values() if "xla_flags" in r}
  return " | ".join(sorted(flags)) if flags else "(no ftlab rows)"


def report(args, prep, peak, rows, torch_results, pipes, ftlab_results) -> None:
  """Prints the comparison, every torch variant and the pipeline table."""
  from configs.default import get_config  # pylint: disable=import-outside-toplevel
  data = get_config().data
  print(f"ftlab ({args.dtype}) vs PyTorch (best of {args.torch_variants or 'none'}) on "
        f"{benchlib.cpu_description()}: batch {benchlib.BATCH}, {benchlib.num_cores()} "
        f"cores/threads, median of {timed_steps(args)} steps; ratio = ftlab/torch "
        f"(median over {args.repeats} back-to-back round(s)); "
        f"ftlab's XLA_FLAGS={ftlab_flags(ftlab_results)!r}. Weights: "
        + "; ".join(f"{m}: {n}" for m, n in prep["notes"].items()))
  if peak.get("error"):
    print(f"Peak matmul failed: {peak['error']}")
  elif peak:
    print("Peak matmul {0}x{0}: JAX f32 {1:.1f} GFLOP/s, JAX bf16 {2:.1f} GFLOP/s, torch f32 "
          "{3:.1f} GFLOP/s -> peak {4:.1f} GFLOP/s".format(
              MATMUL_N, peak.get("jax_float32_gflops", 0), peak.get("jax_bfloat16_gflops", 0),
              peak.get("torch_float32_gflops", 0), peak.get("peak_gflops", 0)))
  print(benchlib.format_table(rows, MAIN_COLUMNS))
  if torch_results:
    print("\nEvery PyTorch variant:")
    flat = [{"model": k[0], "image_size": k[1], "strategy": k[2], "variant": v, **r}
            for k, vs in torch_results.items() for v, r in vs.items()]
    print(benchlib.format_table(flat, TORCH_COLUMNS))
  if pipes:
    print(f"\nInput pipeline (Loader, train transforms, {PIPELINE_IMAGES} JPEGs of "
          f"{PIPELINE_WH[0]}x{PIPELINE_WH[1]}, prefetch {data.prefetch}; config default "
          f"{data.num_workers} decode threads) vs the images/s the ftlab step consumes:")
    print(benchlib.format_table(pipeline_rows(pipes, ftlab_results), PIPE_COLUMNS))
