"""Metric writers: clu's default writer (TensorBoard + logging) plus a JSONL file."""
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


class _DropLibraryInfo(logging.Filter):
  """Drops INFO records logged from orbax's internals (dozens per checkpoint)."""

  def filter(self, record):
    return record.levelno > logging.INFO or "/orbax/" not in record.pathname


def quiet_library_logs() -> None:
  absl_logging.get_absl_handler().addFilter(_DropLibraryInfo())
