"""Per-process resources: the CPUs and GPUs each concurrent run of a sweep gets."""
import dataclasses
import os
import shutil
import subprocess
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class Placement:
  """The share of the machine one concurrent run gets.

  Attributes:
    env: environment variables to add for the run.
    cpus: CPU ids the run's process is pinned to (empty: no pinning).
  """
  env: dict
  cpus: tuple


def placement(slot: int, num_slots: int, cpus: Sequence[int],
              gpus: Sequence[str] = ()) -> Placement:
  """Splits CPUs and GPUs evenly between `num_slots` concurrent runs.

  CPUs: slot `slot` gets a contiguous block of len(cpus) // num_slots CPUs
  (at least one; blocks wrap around when there are more slots than CPUs).
  The process is pinned to that block (`Placement.cpus`, applied with
  sched_setaffinity), which is what confines XLA's CPU thread pool: it is
  sized from the affinity mask. The thread pools that read environment
  variables are capped at the block size too: OpenMP/MKL/OpenBLAS and
  TensorFlow (tf.data). A one-CPU slot also gets the usual single-thread
  XLA recipe, `--xla_cpu_multi_thread_eigen=false
  intra_op_parallelism_threads=1`, appended to any inherited XLA_FLAGS.

  GPUs are dealt round-robin (`CUDA_VISIBLE_DEVICES`); with fewer GPUs than
  slots, slots share them and each gets an equal memory fraction.

  Args:
    slot: index of the run's slot, 0 <= slot < num_slots.
    num_slots: how many runs go at once.
    cpus: the CPU ids the sweep may use.
    gpus: the GPU ids the sweep may use.

  Returns:
    The slot's `Placement`.
  """
  per = max(1, len(cpus) // num_slots)
  start = (slot * per) % max(1, len(cpus))
  mine = tuple(cpus[(start + i) % len(cpus)] for i in range(per)) if cpus else ()
  env = {name: str(per) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")}
  env["TF_NUM_INTEROP_THREADS"] = "1"
  if per == 1:
    inherited = os.environ.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = (f"{inherited} --xla_cpu_multi_thread_eigen=false "
                        "intra_op_parallelism_threads=1").strip()
  if gpus:
    if len(gpus) >= num_slots:
      env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[slot::num_slots])
    else:
      env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
      sharing = -(-num_slots // len(gpus))
      env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / sharing:.2f}"
  return Placement(env, mine)


def available_cpus() -> list[int]:
  """CPU ids this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def detect_gpus() -> list[str]:
  """GPU ids from CUDA_VISIBLE_DEVICES if set, else from `nvidia-smi -L`."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
  if not shutil.which("nvidia-smi"):
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                         timeout=20, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
