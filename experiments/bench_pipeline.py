"""Images/s of ftlab's train input pipeline with and without an auto-augment policy.

  python experiments/bench_pipeline.py [--size=224] [--threads=2]
      [--policies=,rand-m7-mstd0.5] [--max_wait=120] [--retries=2]

The same measurement as bench_step.py's pipeline rows (its `pipeline_worker`:
`ftlab.data.pipeline.Loader` with the train transforms over bench_step's 500
JPEGs of 500x375, batch 32, the median of 3 whole epochs after one warm-up
epoch), without the models and weights bench_step prepares. Each
policy (`config.data.auto_augment`; '' = random-resized-crop + flip only)
runs in its own subprocess. Prints the CPU as benchlib describes it.
"""
import argparse
import functools
import shutil
import tempfile

import benchlib
import step_workers
import subprocs


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--threads", type=int, default=2, help="decode threads")
  parser.add_argument("--policies", default=",rand-m7-mstd0.5",
                      help="comma-separated config.data.auto_augment values ('' = none)")
  subprocs.add_worker_flags(parser)
  args = parser.parse_args(argv)
  if args.worker:
    subprocs.serve_worker({"pipeline": step_workers.pipeline_worker}, args.worker)
    return
  run = functools.partial(subprocs.measure_logged, __file__, args=args)
  workdir = tempfile.mkdtemp(prefix="bench_pipeline_")
  rows = []
  try:
    image_dir = step_workers.write_jpegs(workdir)
    for policy in args.policies.split(","):
      result = run({"kind": "pipeline", "image_size": args.size, "threads": args.threads,
                    "prefetch": 2, "auto_augment": policy, "image_dir": image_dir},
                   f"pipeline {args.size}px {args.threads} threads {policy or '-'}")
      rows.append({"auto_augment": policy or "-", **result})
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  print(f"Input pipeline on {benchlib.cpu_description()} ({benchlib.num_cores()} cores): "
        f"{step_workers.PIPELINE_IMAGES} JPEGs of {step_workers.PIPELINE_WH[0]}x"
        f"{step_workers.PIPELINE_WH[1]} -> {args.size}px, {args.threads} decode threads, "
        f"batch {benchlib.BATCH}")
  print(benchlib.format_table(rows, (
      ("auto_augment", "auto_augment", ""), ("images_per_s", "images/s", ".1f"),
      ("foreign_cores", "others_cores", ".2f"), ("peak_rss_mb", "peak_rss_mb", ".0f"),
      ("error", "note", ""))))


if __name__ == "__main__":
  main()
