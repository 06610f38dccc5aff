"""The run's progress lines on the terminal, its closing block, and durations as people read them.

Standard library only: the sweep CLI formats durations without importing JAX.
"""
import math
import os
import time
from typing import Optional


PROGRESS_EVERY_S = 10.0


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
    # A line waits for the first fetched loss (one step behind) unless it is the last: a
    # compilation longer than `every_s` would otherwise make step 1's line say `loss -`.
    first = not self.printed and loss is not None
    due = now - p_wall >= self.every_s and loss is not None
    if step == p_step or not (last or first or due):
      return None
    o_step, o_wall, o_compile = self.origin
    per_step = max(now - o_wall - (compile_s - o_compile), 0.0) / (step - o_step)
    rate = (step - p_step) * self.batch_size / max(train_s - p_train, 1e-9)
    self.previous, self.printed = (step, train_s, now), self.printed + 1
    epochs = math.ceil(self.total / self.steps_per_epoch)
    return (f"step {step}/{self.total}  epoch {math.ceil(step / self.steps_per_epoch)}/{epochs}"
            f"  loss {'-' if loss is None else f'{loss:.4f}'}  {rate:,.1f} images/s"
            f"  ETA {duration((self.total - step) * per_step)}")


def final_block(workdir: str, out: dict) -> str:
  """The end of a run at the terminal: held-out scores, best step, times, files."""
  lines = ["done"]
  for name in ("test", "val"):
    if name in out:
      r = out[name]
      lines.append(f"  {name:<11} top-1 {100 * r['top1']:.2f}%  ({r['correct']}/{r['count']} "
                   f"correct)")
  if "ridge_probe" in out:
    ridge = out["ridge_probe"]
    test = f"test top-1 {100 * ridge['test_top1']:.2f}%, " if "test_top1" in ridge else ""
    lines.append(f"  {'ridge':<11} {test}minival top-1 {100 * ridge['minival_top1']:.2f}%  "
                 "(closed-form probe on the cached features)")
  best = out["best"]
  lines.append(f"  {'best':<11} {out['selection_split']} top-1 {100 * best['minival_top1']:.2f}%"
               f" at step {best['step']} of {out['num_steps']}")
  lines.append(f"  {'time':<11} train {duration(out['train_time_s'])}, compile "
               f"{duration(out['compile_time_s'])}, "
               f"{out['train_images_per_s']:,.1f} images/s")
  files = [("results", "results.json")]
  if "test" in out or "val" in out:
    files.append(("predictions", "predictions.csv" if "test" in out else "predictions_val.csv"))
  files += [("checkpoints", "checkpoints"), ("metrics", "metrics.jsonl")]
  lines += [f"  {label:<11} {os.path.join(workdir, name)}" for label, name in files]
  lines[-2] += " (best, latest)"
  lines.append(f"  {'tensorboard':<11} tensorboard --logdir {workdir}")
  return "\n".join(lines)
