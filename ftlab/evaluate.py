"""Evaluate a run's best checkpoint on a held-out split.

  python -m ftlab.evaluate --workdir=runs/demo [--split=test]

Writes `predictions.csv` (image, true, predicted, confidence) and
`confusion.csv` (for a split other than test: `predictions_<split>.csv`,
`confusion_<split>.csv`) and `eval_<split>.json` to the workdir, and prints
the metrics.
"""
import json
import os

from absl import app, flags
import jax

from ftlab.configuration import files
from ftlab.training import results
from ftlab.training import run as run_lib
from ftlab.training import runtime, steps, writers


FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A finished or partial ftlab run directory.")
flags.DEFINE_enum("split", "test", ["test", "val", "minival"], "Which split to evaluate.")
flags.mark_flag_as_required("workdir")


def evaluate_run(workdir: str, split: str) -> dict:
  config = files.read_config(workdir)
  run = run_lib.prepare(config, workdir, for_training=False)
  if split not in run.loaders:
    raise ValueError(f"{workdir} has no {split!r} split ({run.data.layout.sentence()})")
  out = results.evaluate_best(run, jax.jit(steps.make_eval_step(run.setup)), split)
  files.write_json_atomic(os.path.join(workdir, f"eval_{split}.json"), out)
  run.ckpts.close()
  return out


def main(argv):
  del argv
  runtime.configure_xla()
  writers.quiet_library_logs()
  print(json.dumps(evaluate_run(FLAGS.workdir, FLAGS.split), indent=1))


if __name__ == "__main__":
  app.run(main)
