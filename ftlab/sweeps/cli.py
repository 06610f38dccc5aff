"""What the sweep and study command lines share: their flags, exit codes, `--config.k=v` flags,
errors, devices."""
import sys
from typing import Callable, List, Sequence, Tuple

from absl import app, flags

from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.placement import available_cpus, detect_gpus

MAX_EXIT_STATUS = 100  # exit status = failed runs, capped here
ERROR_EXIT = 101  # the sweep or study could not start (bad config, flags or state)

FLAGS = flags.FLAGS


def define_flags(config_help: str, slurm_help: str) -> None:
  """The flags `ftlab.sweep` and `ftlab.study` share (defined only under `__main__`: tests import
  the entry points beside ftlab.main, whose `--config` flag would clash)."""
  flags.DEFINE_string("config", None, config_help)
  flags.DEFINE_string("workdir", None, "Directory holding the runs (one subdirectory each) and "
                      "the index files.")
  flags.DEFINE_integer("parallel", 1, "How many runs go at once, each on its share of CPUs/GPUs.")
  flags.DEFINE_bool("dry_run", False, "Print the commands of the runs that would be launched.")
  flags.DEFINE_string("slurm", None, slurm_help)
  flags.DEFINE_multi_string("sbatch", [], "Extra `#SBATCH` option lines for --slurm, e.g. "
                            "--sbatch=--time=4:00:00.")
  flags.DEFINE_integer("task", None, "Run only task N (SLURM array tasks).")
  flags.DEFINE_string("runner", None, "Command that trains one run (default: "
                      "`python -m ftlab.main`); tests inject a fake one.")
  flags.DEFINE_string("gpus", None, "Comma-separated GPU ids to split (default: "
                      "CUDA_VISIBLE_DEVICES or nvidia-smi).")
  flags.DEFINE_integer("cpus", None, "How many CPUs to split between parallel runs "
                       "(default: all this process may use).")
  flags.DEFINE_multi_string("override", [], "key=value passed to every run as "
                            "--config.key=value; `--config.key=value` is accepted too.")


def parse_flags(argv: List[str]) -> List[str]:
  """absl parsing, with `--config.key=value` taken as `--override=key=value`."""
  prefix = "--config."
  return FLAGS([f"--override={a[len(prefix):]}" if a.startswith(prefix) else a for a in argv])


def guarded(argv: Sequence[str], body: Callable[[], int]) -> int:
  """`body()` once --config and --workdir are given; a SweepError is one line and ERROR_EXIT."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}", exitcode=ERROR_EXIT)
  if not FLAGS.config or not FLAGS.workdir:
    raise app.UsageError("--config and --workdir are required", exitcode=ERROR_EXIT)
  try:
    return body()
  except SweepError as e:
    print(f"error: {e}", file=sys.stderr)
    return ERROR_EXIT


def devices() -> Tuple[list, list]:
  """(CPUs, GPU ids) to split between parallel runs, from --cpus and --gpus (else detected)."""
  cpus = available_cpus()[:FLAGS.cpus] if FLAGS.cpus else available_cpus()
  gpus = FLAGS.gpus.split(",") if FLAGS.gpus else detect_gpus()
  return cpus, gpus
