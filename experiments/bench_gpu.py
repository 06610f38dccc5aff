"""ftlab's train step against PyTorch on one GPU: images/s, peak device memory, compile time.

  python experiments/bench_gpu.py [--json=FILE] [--markdown=FILE] [--budget_s=420]
      [--models=resnet50,efficientnet_lite0] [--dtypes=bfloat16,float32]
      [--image_size=224] [--batch=128] [--steps=10] [--warmup=3]
      [--torch_variants=eager,compile] [--compile_limit_s=150] [--device_check=gpu]

`experiments/gpu_run.sh` is the one command a session with a GPU runs. A CPU
smoke test: `--device_check=none --models=resnet18 --image_size=32 --batch=4
--steps=2 --warmup=1 --torch_variants=eager`.

For each model and dtype, full_ft, both frameworks train the same
architecture from the same weights (the PyTorch original's random init,
seed 0, converted by `shared_weights`), on one random uint8 NHWC batch
normalised inside the step:

* ftlab: `ftlab.training.steps.make_train_step`, jitted with
  `donate_argnums=(0,)` and compiled ahead of time (`compile_s`); bfloat16 is
  `config.model.dtype=bfloat16` (float32 parameters and loss).
* PyTorch: SGD momentum 0.9, weight decay 1e-4, CrossEntropyLoss,
  channels_last, `cudnn.benchmark`; bfloat16 is
  `torch.autocast(device, dtype=torch.bfloat16)` around forward and loss.
  Variants: `eager`, and `compile` (`torch.compile` of the model; its first
  step, compilation included, is `first_step_s`).

Images/s is batch / the median of `--steps` timed steps after `--warmup`, each
step synchronised (`jax.block_until_ready`, `torch.cuda.synchronize`). Peak
memory is the device allocator's peak in that worker's process (JAX:
`memory_stats()['peak_bytes_in_use']`, which counts XLA's autotuning buffers
too; PyTorch: `torch.cuda.max_memory_allocated()`); each measurement is its
own subprocess. `ratio` = ftlab / the best PyTorch variant of the row.

Work runs in order of importance: a probe (devices, versions, that ftlab's
step imports) and the shared weights; ftlab and PyTorch eager for every row
(bfloat16 first); then torch.compile. `--budget_s` bounds the whole run:
a job that would start with under MIN_JOB_S left is skipped with a note, and
each job's time limit is what is left (a compile variant's at most
`--compile_limit_s`). The JSON and markdown files are rewritten after every
job, so a run cut short still leaves its rows.
"""
import argparse
import dataclasses
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List

import benchlib
from gpu_table import note_of, write_outputs
from gpu_workers import WORKERS
import subprocs


MODELS = ("resnet50", "efficientnet_lite0")
DTYPES = ("bfloat16", "float32")
TORCH_VARIANTS = ("eager", "compile")
DEVICE_CHECKS = ("gpu", "none")
MIN_JOB_S = 20.0  # a job is not started with less of the budget left
JOB_LIMIT_S = 300.0  # at most this long for any one measurement
# The PyTorch step's normalisation when ftlab's model registry does not import on the machine
# (torchvision's ImageNet values; speed-neutral): the torch rows are measured all the same.
FALLBACK_NORM = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


# --- the plan and its budget ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job:
  model: str
  dtype: str
  side: str  # one of gpu_table.SIDES

  @property
  def label(self) -> str:
    return f"{self.side} {self.model} {self.dtype}"


def plan(models, dtypes, variants) -> List[Job]:
  """ftlab and torch eager for every row (dtypes in the given order), torch.compile last."""
  first = [Job(m, d, s) for d in dtypes for m in models
           for s in ("ftlab", "torch_eager") if s == "ftlab" or "eager" in variants]
  compiled = [Job(m, d, "torch_compile") for d in dtypes for m in models] \
      if "compile" in variants else []
  return first + compiled


class Budget:
  """Seconds left of `total_s` since construction, on `clock`."""

  def __init__(self, total_s: float, clock: Callable[[], float] = time.monotonic):
    self.total_s, self.clock, self.start = total_s, clock, clock()

  def left(self) -> float:
    return self.total_s - (self.clock() - self.start)


def run_jobs(jobs: List[Job], run: Callable[[Job, float], dict], budget: Budget,
             compile_limit_s: float, skip: Callable[[Job], str] = lambda job: "",
             after_each: Callable[[Dict[Job, dict]], None] = lambda results: None) -> Dict:
  """{job: result}; `run(job, timeout_s)` measures one. Skipped jobs get {'skipped': why}.

  `skip(job)` says why a job cannot run ('' = it can).
  """
  results = {}
  for job in jobs:
    left = budget.left()
    if skip(job):
      results[job] = {"skipped": skip(job)}
    elif left < MIN_JOB_S:
      results[job] = {"skipped": f"budget: {max(left, 0):.0f} s of {budget.total_s:.0f} s left"}
    else:
      limit = compile_limit_s if job.side == "torch_compile" else JOB_LIMIT_S
      results[job] = run(job, min(limit, left))
    benchlib.log(f"  {job.label}: {note_of(results[job]) or 'ok'} ({budget.left():.0f} s left)")
    after_each(results)
  return results


def skip_reason(prep: dict, device_check: str) -> Callable[[Job], str]:
  """Why a job cannot run, from the probe: its model's weights, ftlab's import, the device."""
  def why(job: Job) -> str:
    if job.model in prep["weight_errors"]:
      return f"no shared weights: {prep['weight_errors'][job.model]}"
    backend = "jax_backend" if job.side == "ftlab" else "torch_backend"
    if job.side == "ftlab" and prep.get("ftlab_import_error"):
      return f"ftlab does not import: {prep['ftlab_import_error']}"
    if device_check == "gpu" and prep[backend] != "gpu":
      return f"--device_check=gpu: {backend} is {prep[backend]!r}"
    return ""
  return why


# --- parent -----------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--dtypes", default=",".join(DTYPES), help="in the order they run")
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=10, help="timed steps")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--torch_variants", default=",".join(TORCH_VARIANTS),
                      help="subset of " + ",".join(TORCH_VARIANTS) + "; empty: ftlab only")
  parser.add_argument("--budget_s", type=float, default=420.0,
                      help="seconds for the whole run; jobs that do not fit are skipped")
  parser.add_argument("--compile_limit_s", type=float, default=150.0,
                      help="seconds before a torch.compile variant is given up")
  parser.add_argument("--device_check", default="gpu", choices=DEVICE_CHECKS,
                      help="gpu: each framework must run on a GPU; none: its default device")
  parser.add_argument("--json", default="", help="also write meta, rows and results here")
  parser.add_argument("--markdown", default="", help="also write the README table here")
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  for key, allowed in (("dtypes", DTYPES), ("torch_variants", TORCH_VARIANTS)):
    bad = [v for v in split(getattr(args, key)) if v not in allowed]
    if bad:
      parser.error(f"--{key}={getattr(args, key)}: {bad[0]!r} is not one of {allowed}")
  return args


def split(csv: str) -> List[str]:
  return [v for v in csv.split(",") if v]


def job_spec(job: Job, args, prep: dict) -> dict:
  """A worker's spec; the parent imports neither framework nor ftlab."""
  common = {"model": job.model, "dtype": job.dtype, "image_size": args.image_size,
            "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
            "device_check": args.device_check, "weights": prep["weights"][job.model]}
  if job.side == "ftlab":
    return {"kind": "ftlab", **common}
  return {"kind": "torch", "variant": job.side.split("_", 1)[1],
          **(prep["norms"][job.model] or FALLBACK_NORM), **common}


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.worker:
    subprocs.serve_worker(WORKERS, args.worker)
    return
  budget = Budget(args.budget_s)
  script = os.path.abspath(__file__)
  models = split(args.models)
  workdir = tempfile.mkdtemp(prefix="bench_gpu_")
  try:
    prep = subprocs.run_worker(script, {"kind": "prepare", "models": models, "dir": workdir,
                                        "image_size": args.image_size},
                               timeout_s=max(budget.left(), 1.0))
    if "error" in prep:
      raise SystemExit(f"bench_gpu: the probe failed: {prep['error']}")
    meta = {**{k: v for k, v in prep.items() if k not in ("weights", "weight_errors")},
            "device": prep["torch_device"] if prep["torch_backend"] == "gpu"
            else prep["jax_device"], "argv": sys.argv[1:],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            **{k: getattr(args, k) for k in ("image_size", "batch", "steps", "warmup")}}
    benchlib.log(f"probe: {json.dumps(meta)}")
    jobs = plan(models, split(args.dtypes), split(args.torch_variants))
    results = run_jobs(
        jobs, lambda job, t: subprocs.run_worker(script, job_spec(job, args, prep), t), budget,
        args.compile_limit_s, skip_reason(prep, args.device_check),
        after_each=lambda results: write_outputs(args.json, args.markdown, meta, results))
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  print(write_outputs(args.json, args.markdown, meta, results))


if __name__ == "__main__":
  main()
