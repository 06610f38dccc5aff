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
import math
import os
import time
from typing import Optional

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


PROGRESS_EVERY_S = 10.0
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


def duration(seconds: float) -> str:
  """`0.4s`, `42s`, `1m03s`, `2h05m`."""
  if seconds < 9.95:
    return f"{max(seconds, 0.0):.1f}s"
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """The run's progress lines: step, epoch, train loss, images/s over the interval, ETA.

  images/s divides the images of the steps since the previous line by the
  training time between them (`train_s`: no compilation, evaluation or
  checkpoints, as results.json's `train_images_per_s`). The ETA is the
  remaining steps at the mean wall time per step since `start`, compilation
  excluded, evaluations and checkpoints included.
  """

  def __init__(self, total_steps: int, steps_per_epoch: int, batch_size: int,
               every_s: float = PROGRESS_EVERY_S, clock=time.perf_counter):
    self.total, self.steps_per_epoch, self.batch_size = total_steps, steps_per_epoch, batch_size
    self.every_s, self.clock = every_s, clock
    self.origin = self.previous = None
    self.printed = 0

  def start(self, step: int, train_s: float, compile_s: float) -> None:
    now = self.clock()
    self.origin = (step, now, compile_s)
    self.previous = (step, train_s, now)

  def line(self, step: int, train_s: float, compile_s: float, loss: Optional[float],
           last: bool = False) -> Optional[str]:
    """The line after `step` if one is due, else None."""
    now = self.clock()
    p_step, p_train, p_wall = self.previous
    first = not self.printed and loss is not None
    if step == p_step or not (last or first or now - p_wall >= self.every_s):
      return None
    o_step, o_wall, o_compile = self.origin
    per_step = max(now - o_wall - (compile_s - o_compile), 0.0) / (step - o_step)
    rate = (step - p_step) * self.batch_size / max(train_s - p_train, 1e-9)
    self.previous, self.printed = (step, train_s, now), self.printed + 1
    epochs = math.ceil(self.total / self.steps_per_epoch)
    return (f"step {step}/{self.total}  epoch {math.ceil(step / self.steps_per_epoch)}/{epochs}"
            f"  loss {'-' if loss is None else f'{loss:.4f}'}  {rate:,.1f} images/s"
            f"  ETA {duration((self.total - step) * per_step)}")
