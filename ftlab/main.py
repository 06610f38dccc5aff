"""Command line entry point: flags, then one call.

  python -m ftlab.main --config=configs/demo.py --workdir=runs/demo
  python -m ftlab.main --config=configs/aircraft.py:model=resnet18,strategy=full_ft --workdir=...
  python -m ftlab.main --config=configs/imagefolder.py --config.data.root=/data/mine --workdir=...

This file is intentionally kept short: the run lives in `ftlab/training/trainer.py`.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from ftlab.training import parallel, runtime, trainer, writers


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
  runtime.configure_xla()
  writers.quiet_library_logs()
  parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info("config:\n%s", FLAGS.config)
  trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
