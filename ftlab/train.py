"""The training loop: prepare a run, train it (resuming if possible), evaluate, write results.

`train_and_evaluate(config, workdir)` is the whole run. The pure steps live
in `steps.py`, the state layout in `state.py`, data parallelism in
`parallel.py`. The loop keeps the device busy by reading each step's
metrics one step late, stops with a clear message on the first non-finite
loss or gradient, evaluates on minival for model selection, checkpoints the
latest and best states, and evaluates the best one once on the held-out
splits at the end.
"""
import dataclasses
import json
import logging
import os
import resource
import time
from typing import Any, Dict, Iterator

import jax
import ml_collections
import numpy as np
from clu import periodic_actions

from ftlab import checkpoint, evaluation, feature_cache, optim, probe, runtime, writers
from ftlab.data import datasets
from ftlab.data.pipeline import Augment, Loader
from ftlab.parallel import Devices
from ftlab.state import (Setup, TrainState, build_setup, initial_state, regroup,
                         stale_bn_warning)
from ftlab.steps import make_eval_step, make_train_step, make_trunk_step


@dataclasses.dataclass
class Schedule:
  """Step arithmetic of a run, derived once from the config and the data."""
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  warmup_steps: int

  @classmethod
  def create(cls, config, num_train: int) -> "Schedule":
    steps_per_epoch = num_train // config.train.batch_size
    if steps_per_epoch == 0:
      raise ValueError(f"config.train.batch_size={config.train.batch_size} is larger than the "
                       f"{num_train} training images (after the minival carve-out)")
    for key in ("log_every_steps", "checkpoint_every_steps", "stop_after_steps"):
      if config.train[key] < 0:
        raise ValueError(f"config.train.{key}={config.train[key]} must be >= 0 (0 = never)")
    total = max(int(round(config.train.num_epochs * steps_per_epoch)), 1)
    return cls(steps_per_epoch, total,
               max(int(round(config.train.eval_every_epochs * steps_per_epoch)), 1),
               int(round(config.optimizer.warmup_epochs * steps_per_epoch)))


def train_batches(loader, start_step: int, steps_per_epoch: int) -> Iterator[dict]:
  """The batch stream from `start_step` on: batch b of epoch e is step e*spe + b."""
  epoch, offset = divmod(start_step, steps_per_epoch)
  while True:
    yield from loader.epoch(epoch, start=offset)
    epoch, offset = epoch + 1, 0


def make_loaders(config, data: datasets.Data, image_size: int) -> Dict[str, Loader]:
  dcfg = config.data
  common = dict(num_workers=dcfg.num_workers, prefetch=dcfg.prefetch,
                process_index=jax.process_index(), process_count=jax.process_count())
  train_aug = Augment(image_size, train=dcfg.augment, min_scale=dcfg.rrc_min_scale,
                      hflip=dcfg.hflip, resize_ratio=dcfg.eval_resize_ratio)
  eval_aug = Augment(image_size, train=False, resize_ratio=dcfg.eval_resize_ratio)
  loaders = {"train": Loader(data.train, config.train.batch_size, train_aug, True, config.seed, **common)}
  for name in ("minival", "val", "test"):
    split = getattr(data, name)
    if split is not None:
      loaders[name] = Loader(split, config.train.eval_batch_size, eval_aug, False, **common)
  return loaders


def check_finite(step: int, fetched: Dict[str, float], lr: float) -> None:
  bad = {k: v for k, v in fetched.items() if not np.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f"step {step}: {', '.join(f'{k}={v}' for k, v in bad.items())} is not finite "
        f"(learning rate {lr:g}); the last checkpoint in the workdir is intact. "
        f"Lower config.optimizer.lr or set config.optimizer.grad_clip_norm.")


def count_bytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclasses.dataclass
class Run:
  """Everything a run needs, built once."""
  config: ml_collections.ConfigDict
  workdir: str
  data: datasets.Data
  setup: Setup
  schedule: Schedule
  loaders: Dict[str, Loader]
  devices: Devices
  ckpts: checkpoint.Checkpoints
  writer: Any

  def template(self, step: int, load_weights: bool = False) -> TrainState:
    """A replicated state laid out as a checkpoint taken after `step` steps is."""
    key = jax.random.fold_in(jax.random.key(self.config.seed), 0)
    phase = self.setup.structure_index(step)
    return self.devices.replicate(initial_state(self.setup, self.config, key, load_weights, phase))


# Keys that may differ when a run is resumed (they change no result).
RESUMABLE_CHANGES = ("train.stop_after_steps", "train.log_every_steps", "train.checkpoint_every_steps",
                     "train.compilation_cache_dir", "data.num_workers", "data.prefetch", "data.root")


def _flat_config(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat_config(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


def check_same_run(config, workdir: str) -> None:
  """Refuses to resume (and overwrite) a workdir that holds a run of another config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return
  with open(path, encoding="utf-8") as f:
    old = _flat_config(json.load(f))
  new = _flat_config(json.loads(config.to_json_best_effort()))
  changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES]
  if changed:
    raise ValueError(f"{workdir} holds a run with a different config ({'; '.join(changed)}); "
                     f"use a new --workdir (nothing in {workdir} was changed)")


def prepare(config, workdir: str, for_training: bool = True) -> Run:
  """Reads the data and builds the model, strategy phases, optimizers and devices.

  With `for_training`, also writes config.json, label_map.json and opens the
  metric writers (evaluation of a finished run writes none of these).
  """
  if for_training:
    check_same_run(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  data = datasets.load(config.data)
  schedule = Schedule.create(config, len(data.train))
  setup = build_setup(config, data.num_classes, schedule.total_steps, schedule.warmup_steps,
                      schedule.steps_per_epoch)
  devices = Devices.create()
  devices.check_batch(config.train.batch_size, "config.train.batch_size")
  devices.check_batch(config.train.eval_batch_size, "config.train.eval_batch_size")
  if for_training and jax.process_index() == 0:
    datasets.write_label_map(data, workdir)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=1))
    write_json_atomic(os.path.join(workdir, "schedule.json"), dataclasses.asdict(schedule))
  return Run(config, workdir, data, setup, schedule, make_loaders(config, data, setup.image_size),
             devices, checkpoint.Checkpoints(workdir),
             writers.create(workdir) if for_training else None)


def fresh_meta() -> dict:
  return {"history": [], "best_top1": -1.0, "best_step": -1, "train_time_s": 0.0,
          "compile_time_s": 0.0, "feature_cache_s": 0.0}


def restore_or_init(run: Run):
  """The latest checkpoint in the workdir if any (auto-resume), else a fresh state."""
  restored = run.ckpts.restore_latest(run.template)
  if restored is None:
    return run.template(0, load_weights=True), fresh_meta()
  state, meta = restored
  logging.info("resumed from %s/checkpoints/latest at step %d", run.workdir, int(state.step))
  return state, meta


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
    out = evaluation.summarize(
        evaluation.evaluate(self.eval_fn, self.state, self._loader("minival"), self.run.devices),
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


def evaluate_best(run: Run, eval_fn, split_name: str) -> dict:
  """Evaluates the best checkpoint on `split_name`; writes its predictions and confusion CSVs."""
  best = run.ckpts.restore_best(run.template)
  if best is None:
    raise FileNotFoundError(f"no best checkpoint in {run.workdir}/checkpoints/best")
  outputs = evaluation.evaluate(eval_fn, best[0], run.loaders[split_name], run.devices)
  if jax.process_index() == 0:
    suffix = "" if split_name == "test" else f"_{split_name}"
    evaluation.write_predictions(os.path.join(run.workdir, f"predictions{suffix}.csv"),
                                 getattr(run.data, split_name).paths, outputs, run.data.classes)
    evaluation.write_confusion(os.path.join(run.workdir, f"confusion{suffix}.csv"), outputs,
                               run.data.classes)
  return evaluation.summarize(outputs, run.setup.num_classes)


def ridge_baseline(run: Run, trainer: Trainer) -> dict:
  """The closed-form probe on the cached features (test features extracted once here)."""
  trunk = jax.jit(make_trunk_step(run.setup))
  split = lambda name: (trainer.features[name].loader.augment.features,  # pylint: disable=unnecessary-lambda-assignment
                        trainer.features[name].loader.split.labels)
  test = None
  if "test" in run.loaders:
    test = (feature_cache.extract(trunk, trainer.state, run.loaders["test"], run.devices),
            run.data.test.labels)
  return probe.ridge_probe(split("train"), split("minival"), test, run.setup.num_classes)


def selection_split(data: datasets.Data) -> str:
  """The split checkpoints were selected on: 'minival', or 'val' when no minival was carved.

  With 'val', the `val` score in results.json is the one the checkpoint was
  chosen on, not a held-out score (the report says so).
  """
  return "val" if data.minival is data.val else "minival"


def results(run: Run, trainer: Trainer, held_out: dict) -> dict:
  meta, cfg, state = trainer.meta, run.config, trainer.state
  history = meta["history"]
  best = next(h for h in history if h["step"] == meta["best_step"])
  images = run.schedule.total_steps * cfg.train.batch_size
  return {
      "status": "finished", "config": cfg.to_dict(), "model": cfg.model.name,
      "strategy": cfg.strategy.name, "seed": cfg.seed, "dataset": run.data.name,
      "selection_split": selection_split(run.data),
      "num_classes": run.setup.num_classes,
      "num_params": sum(int(v.size) for v in {**state.trainable, **state.frozen}.values()),
      "num_trainable_params": sum(int(v.size) for v in state.trainable.values()),
      "optimizer_state_bytes": count_bytes(state.opt_state),
      "best": {"step": best["step"], "minival_top1": best["minival_top1"],
               "minival_loss": best["minival_loss"]},
      "final": {"step": history[-1]["step"], "minival_top1": history[-1]["minival_top1"],
                "minival_loss": history[-1]["minival_loss"]},
      **held_out,
      "history": history, "num_steps": run.schedule.total_steps,
      "num_phases": len(run.setup.phases), "feature_cache": trainer.features is not None,
      "train_time_s": meta["train_time_s"], "compile_time_s": meta["compile_time_s"],
      "feature_cache_s": meta["feature_cache_s"],
      "train_images_per_s": images / max(meta["train_time_s"] + meta["feature_cache_s"], 1e-9),
      "peak_rss_mb": peak_rss_mb(), "skipped_images": len(run.data.skipped),
      "num_devices": run.devices.count,
  }


def write_json_atomic(path: str, obj: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, default=float)
  os.replace(tmp, path)


def finish(run: Run, trainer: Trainer) -> dict:
  """Held-out evaluation of the best checkpoint (and the ridge probe), then results.json."""
  held_out = {name: evaluate_best(run, trainer.image_eval_fn, name)
              for name in ("val", "test") if name in run.loaders}
  if trainer.features is not None:
    held_out["ridge_probe"] = ridge_baseline(run, trainer)
  out = results(run, trainer, held_out)
  if jax.process_index() == 0:
    write_json_atomic(os.path.join(run.workdir, "results.json"), out)
  return out


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
