"""The training loop: prepare a run, train it (resuming if possible), evaluate, write results.

`train_and_evaluate(config, workdir)` is the whole run. Its preparation
(data, setup, devices, checkpoints) lives in `run.py`, its end (held-out
evaluation, results.json) in `results.py`, the pure steps in `steps.py`, the
state layout in `state.py`, data parallelism in `parallel.py`. The loop keeps the device busy by reading each step's
metrics one step late, stops with a clear message on the first non-finite
loss or gradient, evaluates on minival for model selection, checkpoints the
latest and best states, and evaluates the best one once on the held-out
splits at the end.
"""
import dataclasses
import logging
import time
from typing import Dict, Iterator

from clu import periodic_actions
import jax
import ml_collections
import numpy as np

from ftlab.evaluation import evaluator, feature_cache
from ftlab.training import optim, runtime
from ftlab.training.results import finish, selection_split
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

  def __init__(self, run: Run, state: TrainState, meta: dict):
    self.run, self.state, self.meta = run, state, meta
    self.rng = jax.random.fold_in(jax.random.key(run.config.seed), 1)
    self.phase = run.setup.structure_index(int(state.step))
    self.compiled = {}
    self.window, self.pending, self.last_train = [], None, {}
    self.progress = periodic_actions.ReportProgress(
        num_train_steps=run.schedule.total_steps, writer=run.writer, every_secs=30.0)
    self.lr = optim.base_schedule(run.config.optimizer, run.schedule.total_steps,
                                  run.schedule.warmup_steps)
    self.features = self._cache_features() if feature_cache.eligible(run.setup, run.config) else None
    self.image_eval_fn = jax.jit(make_eval_step(run.setup))
    self.eval_fn = (self.image_eval_fn if self.features is None
                    else jax.jit(make_eval_step(run.setup, on_features=True)))

  def _cache_features(self) -> Dict[str, feature_cache.FeatureLoader]:
    t0 = time.perf_counter()
    trunk = jax.jit(make_trunk_step(self.run.setup))
    loaders = self.run.loaders
    ordered_train = dataclasses.replace(loaders["train"], train=False,
                                        batch_size=self.run.config.train.eval_batch_size)
    out = {}
    for name, source in (("train", ordered_train), ("minival", loaders["minival"])):
      like = loaders[name]
      out[name] = feature_cache.FeatureLoader(
          feature_cache.extract(trunk, self.state, source, self.run.devices), like)
    self.meta["feature_cache_s"] = time.perf_counter() - t0
    logging.info("cached trunk features of %d train and %d minival images in %.1fs",
                 len(self.run.data.train), len(self.run.data.minival), self.meta["feature_cache_s"])
    return out

  def _loader(self, name: str):
    return self.features[name] if self.features is not None else self.run.loaders[name]

  def _executable(self, batch):
    """The compiled step of the current phase (compiled once per phase)."""
    if self.phase not in self.compiled:
      t0 = time.perf_counter()
      fn = jax.jit(make_train_step(self.run.setup, self.phase, self.features is not None),
                   donate_argnums=(0,))
      self.compiled[self.phase] = fn.lower(self.state, batch, self.rng).compile()
      seconds = time.perf_counter() - t0
      self.meta["compile_time_s"] += seconds
      logging.info("train step (phase %d) compiled in %.1fs", self.phase, seconds)
      runtime.release_free_memory()  # the compiler's freed heap, before the step allocates
    return self.compiled[self.phase]

  def _enter_phase(self, step: int) -> None:
    index = self.run.setup.phase_index(step)
    if index != self.phase:
      self.state = self.run.devices.replicate(regroup(self.state, self.run.setup.phases[index]))
      self.phase = index
      logging.info("step %d: strategy phase %d:\n%s", step, index,
                   self.run.setup.phases[index].plan.table())

  def _drain(self) -> None:
    """Fetches the previous step's metrics (one step behind, to keep the device busy)."""
    if self.pending is None:
      return
    step, device_metrics = self.pending
    self.pending = None
    fetched = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
    check_finite(step, fetched, float(self.lr(step - 1)))
    self.window.append(fetched)

  def _log_train(self, step: int) -> None:
    self._drain()
    if not self.window:
      return
    avg = {f"train_{k}": float(np.mean([m[k] for m in self.window])) for k in self.window[0]}
    avg["lr"] = float(self.lr(step - 1))
    self.run.writer.write_scalars(step, avg)
    self.last_train, self.window = avg, []

  def _evaluate(self, step: int) -> None:
    out = evaluator.summarize(
        evaluator.evaluate(self.eval_fn, self.state, self._loader("minival"), self.run.devices),
        self.run.setup.num_classes)
    self.run.writer.write_scalars(step, {f"minival_{k}": v for k, v in out.items()})
    self.meta["history"].append({
        "step": step, "minival_top1": out["top1"], "minival_loss": out["loss"],
        "train_loss": self.last_train.get("train_loss", float("nan")),
        "train_top1": self.last_train.get("train_top1", float("nan")),
        "elapsed_s": self.meta["train_time_s"]})
    if out["top1"] > self.meta["best_top1"]:
      self.meta["best_top1"], self.meta["best_step"] = out["top1"], step
      self.run.ckpts.save_best(step, self.state, self.meta)

  def _due(self, done: int, stop: int) -> tuple:
    """(evaluate, checkpoint) after step `done`?"""
    sched, cfg = self.run.schedule, self.run.config.train
    evaluate_now = done % sched.eval_every == 0 or done == sched.total_steps
    periodic = cfg.checkpoint_every_steps and done % cfg.checkpoint_every_steps == 0
    return evaluate_now, bool(evaluate_now or periodic or done == stop)

  def train(self, stop: int) -> None:
    """Runs steps until `stop`; train time excludes compilation, evaluation and checkpoints."""
    start = int(self.state.step)
    batches = train_batches(self._loader("train"), start, self.run.schedule.steps_per_epoch)
    t_mark = time.perf_counter()
    for step in range(start, stop):
      self._enter_phase(step)
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
      evaluate_now, save_now = self._due(step + 1, stop)
      if save_now:
        self._drain()
        jax.block_until_ready(self.state)
        self.meta["train_time_s"] += time.perf_counter() - t_mark
        if evaluate_now:
          self._evaluate(step + 1)
        self.run.ckpts.save_latest(step + 1, self.state, self.meta)
        t_mark = time.perf_counter()
    self.run.ckpts.wait()


def log_start(run: Run, state: TrainState) -> None:
  n_train = sum(int(v.size) for v in state.trainable.values())
  n_all = n_train + sum(int(v.size) for v in state.frozen.values())
  data = run.data
  logging.info("dataset %s: %d classes, train %d, minival %d, val %s, test %s", data.name,
               data.num_classes, len(data.train), len(data.minival),
               len(data.val) if data.val else "-", len(data.test) if data.test else "-")
  logging.info("model %s at %dpx on %d device(s); %s of %s parameters trainable",
               run.config.model.name, run.setup.image_size, run.devices.count,
               f"{n_train:,}", f"{n_all:,}")
  for i, phase in enumerate(run.setup.phases):
    logging.info("strategy %s, phase %d from step %d:\n%s", run.config.strategy.name, i,
                 phase.start, phase.plan.table())
  logging.info("%d steps (%d per epoch), eval every %d", run.schedule.total_steps,
               run.schedule.steps_per_epoch, run.schedule.eval_every)
  if selection_split(data) == "val":
    logging.warning("config.data.minival_fraction=0: checkpoints are selected on val, so the val "
                    "score in results.json is not held out (results.json: selection_split)")
  warning = stale_bn_warning(run.setup, run.schedule.total_steps)
  if warning:
    logging.warning(warning)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, writes results.

  Returns the results dict, or None when `config.train.stop_after_steps`
  ended the run early (its checkpoint lets the same command resume).
  """
  runtime.use_compilation_cache(config.train.compilation_cache_dir)
  run = prepare(config, workdir)
  state, meta = restore_or_init(run)
  log_start(run, state)
  trainer = Trainer(run, state, meta)
  stop = run.schedule.total_steps
  if config.train.stop_after_steps:
    stop = min(stop, int(state.step) + config.train.stop_after_steps)
  trainer.train(stop)
  if int(trainer.state.step) < run.schedule.total_steps:
    run.ckpts.close()
    return None
  out = finish(run, trainer)
  run.ckpts.close()
  run.writer.flush()
  logging.info("done: best minival top-1 %.4f at step %d; %s", out["best"]["minival_top1"],
               out["best"]["step"], {k: round(v["top1"], 4) for k, v in out.items()
                                     if k in ("val", "test")})
  return out
