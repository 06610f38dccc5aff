"""The training loop: prepare a run, train it (resuming if possible), evaluate, write results.

`train_and_evaluate(config, workdir)` is the whole run. Its preparation
(data, setup, devices, checkpoints) lives in `run.py`, its end (held-out
evaluation, results.json) in `results.py`, the pure steps in `steps.py`, the
state layout in `state.py`, data parallelism in `parallel.py`. The loop keeps the device busy by reading each step's
metrics one step late, stops with a clear message on the first non-finite
loss or gradient, evaluates on minival for model selection, checkpoints the
latest and best states, and evaluates the best one once on the held-out
splits at the end.

What it says at the terminal (INFO lines; see writers.py): the strategy table
and a one-line summary at the start, `progress.Progress` lines and one line per
minival evaluation while training, and a block with the held-out scores, the
times and the run's files at the end.
"""
import logging
import os
import time
from typing import Dict, Iterator, Optional

from clu import periodic_actions
import jax
import ml_collections
import numpy as np

from ftlab.evaluation import evaluator
from ftlab.training import feature_cache
from ftlab.training import (boundary_cache, bn_stats, compile_stats, phase_cache, progress, rungs,
                            runtime, strategy)
from ftlab.training import ema as ema_lib
from ftlab.training.meta import RunMeta
from ftlab.training.results import TrainOutcome, finish, selection_split
from ftlab.training.run import Run, prepare, restore_or_init
from ftlab.training.state import TrainState, regroup, stale_bn_warning
from ftlab.training.steps import make_eval_step, make_train_step, make_trunk_step


def train_batches(loader, start_step: int, steps_per_epoch: int) -> Iterator[dict]:
  """The batch stream from `start_step` on: batch b of epoch e is step e*spe + b."""
  epoch, offset = divmod(start_step, steps_per_epoch)
  while True:
    yield from loader.epoch(epoch, start=offset)
    epoch, offset = epoch + 1, 0


def check_finite(step: int, fetched: Dict[str, float], lr: float) -> None:
  bad = {k: v for k, v in fetched.items() if not np.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f"step {step}: {', '.join(f'{k}={v}' for k, v in bad.items())} is not finite "
        f"(learning rate {lr:g}); the last checkpoint in the workdir is intact. "
        f"Lower config.optimizer.lr or set config.optimizer.grad_clip_norm.")


class Trainer:
  """Runs the steps of one run, with logging, evaluation and checkpoints."""

  def __init__(self, run: Run, state: TrainState, meta: RunMeta,
               compiles: Optional[compile_stats.CompileStats] = None):
    self.run, self.state, self.meta = run, state, meta
    self.rng = jax.random.fold_in(jax.random.key(run.config.seed), 1)
    self.phase = run.setup.structure_index(int(state.step))
    self.compiled = {}
    self.compiles = compiles  # this process's compilations, for results.json
    self.window, self.pending, self.last_train = [], None, {}
    self.progress = periodic_actions.ReportProgress(
        num_train_steps=run.schedule.total_steps, writer=run.writer, every_secs=30.0)
    self.console = progress.Progress(run.schedule.total_steps, run.schedule.steps_per_epoch,
                                    run.config.train.batch_size)
    self.stats = bn_stats.PreciseStats(run.setup, run.loaders.get("bn_stats"),
                                       run.config.model.bn_batches, run.devices, self.meta)
    if int(state.step) == run.setup.phases[self.phase].start:  # before a cache reads the trunk
      self.state = self.stats.at_phase_start(self.state, self.phase, int(state.step))
    self.features = self._cache_features() if feature_cache.eligible(run.setup, run.config) else None
    self.boundary, self.boundary_train = 0, None  # boundary_cache: block cut at, its train batches
    if self.features is None and len(run.setup.phases) == 1:
      self._cache_boundary()
    self.inputs = {}  # several phases: phase -> its PhaseInput (phase_cache), built on entering it
    self.phase_inputs = {}  # phase -> what its steps trained on, for results.json
    self.image_eval_fn = jax.jit(make_eval_step(run.setup))
    self.eval_fn = (self.image_eval_fn if self.features is None
                    else jax.jit(make_eval_step(run.setup, on_features=True)))

  def _cache_features(self) -> Dict[str, feature_cache.FeatureLoader]:
    trunk = jax.jit(make_trunk_step(self.run.setup))
    out, self.meta.feature_cache_s = feature_cache.timed_cache(
        trunk, self.state, self.run.loaders, self.run.devices, self.run.config.train.eval_batch_size)
    return out

  def _cache_boundary(self) -> None:
    run = self.run
    self.boundary = boundary_cache.boundary_block(run.setup, run.config, len(run.data.train),
                                                  run.setup.image_size)
    if self.boundary:
      self.boundary_train, self.meta.feature_cache_s = boundary_cache.build(
          run.setup, self.state, run.loaders["train"], run.devices, self.boundary,
          run.config.train.eval_batch_size)

  def _loader(self, name: str):
    if self.features is not None:
      return self.features[name]
    if self.boundary_train is not None and name == "train":
      return self.boundary_train
    return self.run.loaders[name]

  def _train_input(self) -> phase_cache.PhaseInput:
    """What the current phase's steps read, with its loader (a cache built on first use)."""
    run = self.run
    if len(run.setup.phases) == 1:
      return phase_cache.PhaseInput(self.features is not None, self.boundary, self._loader("train"))
    if self.phase not in self.inputs:
      kind = phase_cache.choose(run.setup, run.config, self.phase, len(run.data.train),
                                run.schedule.total_steps, run.schedule.steps_per_epoch)
      built, seconds = phase_cache.build(run.setup, self.state, kind, run.loaders["train"],
                                         run.devices, run.config.train.eval_batch_size, self.phase)
      self.meta.feature_cache_s += seconds
      self.inputs = {self.phase: built}  # the previous phase's cache is released
      self.phase_inputs[self.phase] = built.describe()
    return self.inputs[self.phase]

  def lr(self, step: int) -> float:
    """The base LR the phase running step `step` applies (before group multipliers)."""
    return self.run.setup.phases[self.run.setup.phase_index(step)].lr_at(step)

  def _executable(self, batch):
    """The compiled step of the current phase (compiled once per phase)."""
    if self.phase not in self.compiled:
      t0 = time.perf_counter()
      source = self._train_input()
      fn = jax.jit(make_train_step(self.run.setup, self.phase, source.on_features,
                                   source.from_block),
                   donate_argnums=(0,))
      self.compiled[self.phase] = fn.lower(self.state, batch, self.rng).compile()
      seconds = time.perf_counter() - t0
      self.meta.compile_time_s += seconds
      logging.info("train step (phase %d) compiled in %.1fs", self.phase, seconds)
      runtime.release_free_memory()  # the compiler's freed heap, before the step allocates
    return self.compiled[self.phase]

  def _enter_phase(self, step: int) -> None:
    """Moves the state into step `step`'s phase (a new one)."""
    setup = self.run.setup
    index, old = setup.phase_index(step), setup.phases[self.phase]
    new = setup.phases[index]
    self.state = self.run.devices.replicate(regroup(self.state, new))
    self.phase = index
    logging.info("step %d: strategy phase %d (%s schedule):\n%s", step, index, new.schedule,
                 new.plan.table())
    switched = old.frozen_bn & new.updated_bn & setup.batch_norms
    if switched and setup.bn_policy == "batch":
      logging.warning("step %d: %d BatchNorm layers move from their running statistics to batch "
                      "statistics, so the features the trained head reads change "
                      "(config.model.bn=reestimate estimates the running statistics on this data "
                      "first)", step, len(switched))
    self.state = self.stats.at_phase_start(self.state, index, step)

  def _add_train_time(self, seconds: float) -> None:
    """Adds to the run's train time, and to the probe's when the current phase is one."""
    self.meta.train_time_s += seconds
    if self.run.setup.phases[self.phase].schedule == strategy.PROBE:
      self.meta.probe_train_time_s += seconds

  def _drain(self) -> None:
    """Fetches the previous step's metrics (one step behind, to keep the device busy)."""
    if self.pending is None:
      return
    step, device_metrics = self.pending
    self.pending = None
    fetched = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    check_finite(step, fetched, self.lr(step - 1))
    self.window.append(fetched)

  def _log_train(self, step: int) -> None:
    self._drain()
    if not self.window:
      return
    avg = {f"train_{k}": float(np.mean([m[k] for m in self.window])) for k in self.window[0]}
    avg["lr"] = self.lr(step - 1)
    self.run.writer.write_scalars(step, avg)
    self.last_train, self.window = avg, []

  def _minival(self, state) -> dict:
    return evaluator.summarize(
        evaluator.evaluate(self.eval_fn, state, self._loader("minival"), self.run.devices),
        self.run.setup.num_classes)

  def evaluate_minival(self) -> dict:
    """Minival of the weights selection uses (the EMA's with config.train.select_ema), with no
    checkpoint and no history entry: a study's rung score."""
    selected = self.run.setup.ema_decay and self.run.config.train.select_ema
    state = self.stats.for_evaluation(self.state, self.phase, int(self.state.step))
    return self._minival(ema_lib.weights(state) if selected else state)

  def _evaluate(self, step: int) -> None:
    """Minival of the raw weights (and the EMA's): selection by config.train.select_ema's."""
    # kept: the checkpoints hold the statistics that were scored
    self.state = self.stats.for_evaluation(self.state, self.phase, step)
    out = self._minival(self.state)
    self.run.writer.write_scalars(step, {f"minival_{k}": v for k, v in out.items()})
    entry, ema_note = {}, ""
    if self.run.setup.ema_decay:
      ema = self._minival(ema_lib.weights(self.state))
      self.run.writer.write_scalars(step, {f"minival_ema_{k}": v for k, v in ema.items()})
      entry = {"minival_raw_top1": out["top1"], "minival_raw_loss": out["loss"],
               "minival_ema_top1": ema["top1"], "minival_ema_loss": ema["loss"]}
      ema_note = f"  EMA top-1 {100 * ema['top1']:.2f}%  loss {ema['loss']:.4f}"
      out = ema if self.run.config.train.select_ema else out
    self.meta.history.append({
        "step": step, "minival_top1": out["top1"], "minival_loss": out["loss"], **entry,
        "train_loss": self.last_train.get("train_loss", float("nan")),
        "train_top1": self.last_train.get("train_top1", float("nan")),
        "elapsed_s": self.meta.train_time_s})
    if out["top1"] > self.meta.best_top1:
      self.meta.best_top1, self.meta.best_step = out["top1"], step
      self.run.ckpts.save_best(step, self.state, self.meta)
    raw = entry.get("minival_raw_top1", out["top1"]), entry.get("minival_raw_loss", out["loss"])
    logging.info("step %d/%d  minival top-1 %.2f%%  loss %.4f%s  (best %.2f%% at step %d)", step,
                 self.run.schedule.total_steps, 100 * raw[0], raw[1], ema_note,
                 100 * self.meta.best_top1, self.meta.best_step)

  def _report_progress(self, step: int, stop: int, t_mark: float) -> None:
    train_s = self.meta.train_time_s + time.perf_counter() - t_mark
    line = self.console.line(step, train_s, self.meta.compile_time_s,
                             self.last_train.get("train_loss"), last=step == stop)
    if line:
      logging.info("%s", line)

  def _due(self, done: int, stop: int) -> tuple:
    """(evaluate, checkpoint) after step `done`?"""
    sched, cfg = self.run.schedule, self.run.config.train
    evaluate_now = done % sched.eval_every == 0 or done == sched.total_steps
    periodic = cfg.checkpoint_every_steps and done % cfg.checkpoint_every_steps == 0
    return evaluate_now, bool(evaluate_now or periodic or done == stop)

  def train(self, stop: int) -> None:
    """Runs steps until `stop`; train time excludes compilation, evaluation and checkpoints."""
    start = int(self.state.step)
    batches, t_mark = None, time.perf_counter()
    self.console.start(start, self.meta.train_time_s, self.meta.compile_time_s)
    for step in range(start, stop):
      new_phase = self.run.setup.phase_index(step) != self.phase
      if new_phase or batches is None:  # its inputs (maybe a cache to build)
        self._add_train_time(time.perf_counter() - t_mark)
        if new_phase:
          self._enter_phase(step)
        if batches is not None:
          batches.close()  # the previous phase's stream: its decode threads stop
        batches = train_batches(self._train_input().loader, step,
                                self.run.schedule.steps_per_epoch)
        t_mark = time.perf_counter()
      batch = self.run.devices.shard_batch(next(batches))
      if self.phase not in self.compiled:
        self._executable(batch)
        t_mark = time.perf_counter()
      self.state, device_metrics = self.compiled[self.phase](self.state, batch, self.rng)
      self._drain()
      self.pending = (step + 1, device_metrics)
      self.progress(step + 1)
      log_every = self.run.config.train.log_every_steps
      if (log_every and (step + 1) % log_every == 0) or step + 1 == stop:
        self._log_train(step + 1)
      self._report_progress(step + 1, stop, t_mark)
      evaluate_now, save_now = self._due(step + 1, stop)
      if save_now:
        self._drain()
        jax.block_until_ready(self.state)
        self._add_train_time(time.perf_counter() - t_mark)
        if evaluate_now:
          self._evaluate(step + 1)
        self.run.ckpts.save_latest(step + 1, self.state, self.meta)
        t_mark = time.perf_counter()
    self.run.ckpts.wait()

  def outcome(self) -> TrainOutcome:
    """What the end of the run (`results.finish`) needs of the loop."""
    cached = None
    if self.features is not None:
      cached = {name: (f.features, f.labels) for name, f in self.features.items()}
    return TrainOutcome(self.state, self.meta, self.image_eval_fn, cached, self.boundary,
                        dict(self.phase_inputs), self.compiles)


def summary_line(run: Run, state: TrainState) -> str:
  """Model, image size, data, parameters, steps and devices, in one line."""
  n_train = sum(int(v.size) for v in state.trainable.values())
  n_all = n_train + sum(int(v.size) for v in state.frozen.values())
  data, sched, count = run.data, run.schedule, run.devices.count
  sizes = ", ".join(f"{name} {len(getattr(data, name)) if getattr(data, name) else '-'}"
                    for name in ("train", "minival", "val", "test"))
  kind = run.devices.mesh.devices.flat[0].device_kind
  return (f"{run.config.model.name} at {run.setup.image_size}px, {n_train:,} of {n_all:,} "
          f"parameters trainable | {data.name}: {data.num_classes} classes, {sizes} | "
          f"{sched.total_steps} steps ({sched.steps_per_epoch} per epoch, batch "
          f"{run.config.train.batch_size}), minival every {sched.eval_every} | "
          f"{count} {kind} device{'s' if count > 1 else ''}")


def log_start(run: Run, state: TrainState) -> None:
  for i, phase in enumerate(run.setup.phases):
    logging.info("strategy %s, phase %d from step %d:\n%s", run.config.strategy.name, i,
                 phase.start, phase.plan.table())
  logging.info("%s", summary_line(run, state))
  if selection_split(run.data) == "val":
    logging.warning("config.data.minival_fraction=0: checkpoints are selected on val, so the val "
                    "score in results.json is not held out (results.json: selection_split)")
  warning = stale_bn_warning(run.setup, run.schedule.total_steps)
  if warning:
    logging.warning(warning)
  if run.setup.preset.pretrained and not run.config.model.pretrained:
    logging.warning("config.strategy.name=%r adapts pretrained weights, but config.model.pretrained "
                    "is empty: %s starts from random init (name its weights, e.g. "
                    "--config.model.pretrained=%s)", run.config.strategy.name,
                    run.config.model.name, run.config.model.name)


def stop_step(config, step: int, total_steps: int) -> int:
  """Where this invocation stops: the end, or earlier by `stop_after_steps`/`stop_at_fraction`."""
  stop = total_steps
  if config.train.stop_after_steps:
    stop = min(stop, step + config.train.stop_after_steps)
  fraction = config.train.stop_at_fraction
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"config.train.stop_at_fraction={fraction} must be in [0, 1] (0 = the end)")
  if fraction:
    stop = min(stop, rungs.rung_step(fraction, total_steps))
  return stop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, writes results.

  Returns the results dict, or None when `config.train.stop_after_steps`
  ended the run early (its checkpoint lets the same command resume).
  """
  runtime.use_compilation_cache(config.train.compilation_cache_dir)
  compiles = compile_stats.CompileStats().start()
  try:
    return _train_and_evaluate(config, workdir, compiles)
  finally:
    compiles.stop()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        compiles: compile_stats.CompileStats):
  run = prepare(config, workdir)
  state, meta = restore_or_init(run)
  log_start(run, state)
  trainer = Trainer(run, state, meta, compiles)
  stop = stop_step(config, int(state.step), run.schedule.total_steps)
  trainer.train(stop)
  if int(trainer.state.step) < run.schedule.total_steps:
    if config.train.stop_at_fraction:
      rungs.record(workdir, config.train.stop_at_fraction, int(trainer.state.step),
                   run.schedule.total_steps, config.train.batch_size,
                   trainer.evaluate_minival(), trainer.meta)
    run.ckpts.close()
    key = "stop_at_fraction" if config.train.stop_at_fraction else "stop_after_steps"
    logging.info("stopped at step %d of %d (config.train.%s); the same command resumes from %s",
                 int(trainer.state.step), run.schedule.total_steps, key,
                 os.path.join(workdir, "checkpoints", "latest"))
    return None
  held_out = [name for name in ("val", "test")
              if name in run.loaders and config.train.evaluate_held_out]
  if held_out:
    logging.info("evaluating the best checkpoint (step %d) on %s", trainer.meta.best_step,
                 " and ".join(held_out))
  out = finish(run, trainer.outcome())
  run.ckpts.close()
  run.writer.flush()
  logging.info("%s", progress.final_block(workdir, out))
  return out
