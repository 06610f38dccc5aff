"""Where a run's numbers go: clu's writers (TensorBoard + logging), a JSONL file, the terminal.

The terminal
------------
A run talks through Python logging at INFO, which `ftlab.main` shows at absl's
default verbosity without absl's `I1201 21:29:53.497 ... file.py:12]` prefix
(warnings keep it, so they stand out). `quiet_library_logs` keeps the
libraries' INFO chatter off the terminal at that verbosity: JAX's backend
probing (`Unable to initialize backend 'tpu'`), orbax's per-checkpoint lines
and clu's scalar dumps, which `Progress` lines and TensorBoard/metrics.jsonl
replace. `ftlab.main` skips it when `--verbosity` is given (`-v 1`: everything).

`Progress` prints one line when the first training losses are in, then one
per `PROGRESS_EVERY_S` seconds of wall time, and one at the last
step: a cadence that reads the same whether a step takes 1 ms or 1 s (a fixed
step interval floods the screen on a GPU and goes quiet on a CPU).
"""
import json
import logging
import os

from absl import logging as absl_logging
from clu import metric_writers
import jax


class JsonlWriter(metric_writers.MetricWriter):
  """Appends one JSON object per `write_scalars` call to `path` (machine-readable log)."""

  def __init__(self, path: str):
    self._path = path

  def write_scalars(self, step, scalars):
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(self._path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")

  def write_hparams(self, hparams):
    with open(self._path, "a", encoding="utf-8") as f:
      f.write(json.dumps({"hparams": hparams}, default=str) + "\n")

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def create(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard + log lines + `workdir/metrics.jsonl`; only process 0 writes files."""
  if jax.process_index() > 0:
    return metric_writers.create_default_writer(just_logging=True)
  return metric_writers.MultiWriter([
      metric_writers.create_default_writer(workdir, asynchronous=False),
      JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
  ])


# INFO records from these source paths stay off the terminal at the default verbosity: orbax's
# internals (dozens per checkpoint) and clu's LoggingWriter / work-unit notes (every scalar).
LIBRARY_PATHS = ("/orbax/", "/clu/")
# Loggers whose INFO lines are probing noise, e.g. "Unable to initialize backend 'tpu'".
QUIET_LOGGERS = ("jax._src.xla_bridge",)


class _DropLibraryInfo(logging.Filter):
  """Drops INFO (and lower) records logged from `LIBRARY_PATHS`."""

  def filter(self, record):
    return record.levelno > logging.INFO or not any(p in record.pathname for p in LIBRARY_PATHS)


def quiet_library_logs() -> None:
  """Keeps the libraries' INFO lines off the terminal; their warnings still show."""
  absl_logging.get_absl_handler().addFilter(_DropLibraryInfo())
  for name in QUIET_LOGGERS:
    logging.getLogger(name).setLevel(logging.WARNING)


