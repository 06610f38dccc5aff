"""Command line entry point: flags, then one call.

  python -m ftlab.main --config=configs/demo.py --workdir=runs/demo
  python -m ftlab.main --config=configs/aircraft.py:model=resnet18,strategy=full_ft --workdir=...
  python -m ftlab.main --config=configs/imagefolder.py --config.data.root=/data/mine --workdir=...

This file is intentionally kept short: the run lives in `ftlab/training/trainer.py`.

At absl's default verbosity the terminal shows the run's own lines without
absl's prefix (`--showprefixforinfo` brings it back) and none of the libraries'
start-up noise: TensorFlow (imported by clu for TensorBoard) writes its oneDNN
banner and absl C++'s "before absl::InitializeLog()" warning to stderr while it
is imported, before any flag could be read, so those lines are filtered out of
the import's stderr here; JAX's backend probing and the libraries' INFO lines
are quietened in `writers.quiet_library_logs`. Giving `--verbosity` (`-v`)
turns all of that off: `-v 0` shows every library's INFO lines, `-v 1` adds
DEBUG (the config, JAX's tracing and caching, orbax, PIL).
"""
import contextlib
import faulthandler
import os
import sys
import tempfile
from typing import Iterator, Sequence

# Lines that importing TensorFlow writes to stderr on every start, whatever TF_CPP_MIN_LOG_LEVEL.
IMPORT_NOISE = ("before absl::InitializeLog() is called", "oneDNN custom operations are on",
                "This TensorFlow binary is optimized", "To enable the following instructions")


def verbosity_given(argv: Sequence[str]) -> bool:
  """Whether the command line sets absl's `--verbosity`/`-v` (read before absl parses it)."""
  return any(arg.partition("=")[0] in ("--verbosity", "-verbosity", "--v", "-v") for arg in argv)


QUIET = not verbosity_given(sys.argv[1:])


@contextlib.contextmanager
def stderr_without(noise: Sequence[str], enabled: bool = True) -> Iterator[None]:
  """Collects what the process writes to file descriptor 2 (C++ included) and
  writes it back on leaving, less the lines containing one of `noise`.

  A crash inside (a segfault in an import) still reaches the terminal through
  faulthandler; what was collected before it is lost: `-v 0` turns this off.
  """
  if not enabled:
    yield
    return
  sys.stderr.flush()
  saved, crash_reports = os.dup(2), faulthandler.is_enabled()
  with tempfile.TemporaryFile() as collected:
    os.dup2(collected.fileno(), 2)
    faulthandler.enable(file=saved)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      if crash_reports:
        faulthandler.enable()
      else:
        faulthandler.disable()
      os.close(saved)
      collected.seek(0)
      text = collected.read().decode(errors="replace")
      sys.stderr.write("".join(line for line in text.splitlines(keepends=True)
                               if not any(n in line for n in noise)))
      sys.stderr.flush()


with stderr_without(IMPORT_NOISE, enabled=QUIET):
  # pylint: disable=wrong-import-position
  from absl import app, flags, logging
  from ml_collections import config_flags

  from ftlab.parallel.devices import initialize as initialize_processes
  from ftlab.training import runtime, trainer, writers


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (optionally `path:arg`).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  FLAGS.set_default("showprefixforinfo", False)  # an explicit --showprefixforinfo stays
  runtime.configure_xla()
  if QUIET:
    writers.quiet_library_logs()
  initialize_processes(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.debug("config:\n%s", FLAGS.config)
  trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
