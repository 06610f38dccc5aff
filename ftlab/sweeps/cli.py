"""What the sweep and study command lines share: exit codes, `--config.k=v` flags, errors, devices."""
import sys
from typing import Callable, List, Sequence, Tuple

from absl import app, flags

from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.placement import available_cpus, detect_gpus

MAX_EXIT_STATUS = 100  # exit status = failed runs, capped here
ERROR_EXIT = 101  # the sweep or study could not start (bad config, flags or state)

FLAGS = flags.FLAGS


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
