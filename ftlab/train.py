"""The training loop: setup, the pure jitted train/eval steps, checkpoints, results.

`train_and_evaluate(config, workdir)` is the whole run. The state holds the
trainable parameters and the frozen ones separately (flat dicts keyed by
'/'-joined paths): gradients are taken with respect to the trainable part
only, so frozen layers cost no backward pass and have no optimizer state.
Steps run data-parallel over every device (a 1-D mesh, batch sharded,
state replicated); BatchNorm statistics are global-batch statistics because
the compiled program reduces over the whole sharded batch.
"""
import dataclasses
import json
import logging
import os
import resource
import time
from typing import Any, Dict, Iterator

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import periodic_actions
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ftlab import checkpoint, metrics, optim, strategy, writers
from ftlab.data import datasets
from ftlab.data.pipeline import Augment, Loader
from ftlab.models import ModelSpec, get_spec
from ftlab.models.layers import Mode

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  trainable: Dict[str, jax.Array]
  frozen: Dict[str, jax.Array]
  batch_stats: Any
  opt_state: Any


@dataclasses.dataclass
class Setup:
  spec: ModelSpec
  model: Any
  image_size: int
  plan: strategy.Plan
  tx: optax.GradientTransformation
  num_classes: int

  @property
  def mode(self) -> Mode:
    return Mode(True, self.plan.frozen_bn())


def flatten(tree) -> Dict[str, Any]:
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def unflatten(flat: Dict[str, Any]):
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def variables_of(state: TrainState) -> dict:
  return {"params": unflatten({**state.frozen, **state.trainable}), "batch_stats": state.batch_stats}


def init_variables(model, image_size: int, rng) -> dict:
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  variables = jax.jit(lambda r: model.init(r, x, train=False))(rng)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def build_setup(config, num_classes: int, total_steps: int, warmup_steps: int) -> Setup:
  """Model, strategy plan and optimizer for `config`."""
  if config.model.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={config.model.dtype!r}; use one of {list(DTYPES)}")
  spec = get_spec(config.model.name)
  model = spec.build(num_classes, DTYPES[config.model.dtype])
  image_size = config.data.image_size or spec.input_size
  shapes = jax.eval_shape(lambda: init_variables(model, image_size, jax.random.key(0)))
  shapes = {k: v.shape for k, v in flatten(shapes["params"]).items()}
  plan = strategy.build_plan(spec, config.strategy, shapes)
  tx = optim.make_optimizer(config.optimizer, plan, total_steps, warmup_steps)
  return Setup(spec, model, image_size, plan, tx, num_classes)


def _load_pretrained(setup: Setup, config, variables: dict) -> dict:
  from ftlab.pretrained import load as load_lib  # pylint: disable=import-outside-toplevel
  variables, report = load_lib.load_pretrained(
      variables, config.model.pretrained, setup.spec, strict=config.model.strict)
  logging.info("pretrained weights %s:\n%s", config.model.pretrained, report.summary())
  return variables


def initial_state(setup: Setup, config, rng, load_weights: bool = True) -> TrainState:
  variables = init_variables(setup.model, setup.image_size, rng)
  use_pretrained = config.model.pretrained and strategy.get_preset(config.strategy.name).pretrained
  if load_weights and use_pretrained:
    variables = _load_pretrained(setup, config, variables)
  params = flatten(variables["params"])
  trainable = {k: v for k, v in params.items() if setup.plan.trainable(k)}
  frozen = {k: v for k, v in params.items() if not setup.plan.trainable(k)}
  return TrainState(step=jnp.zeros((), jnp.int32), trainable=trainable, frozen=frozen,
                    batch_stats=variables["batch_stats"], opt_state=setup.tx.init(trainable))


def _normalize(images, spec: ModelSpec):
  mean = jnp.asarray(spec.mean, jnp.float32) * 255.0
  std = jnp.asarray(spec.std, jnp.float32) * 255.0
  return (images.astype(jnp.float32) - mean) / std


def make_train_step(setup: Setup, label_smoothing: float):
  """Returns the pure `train_step(state, batch, rng) -> (state, metrics)`."""

  def loss_fn(trainable, state, images, labels, rng):
    variables = {"params": unflatten({**state.frozen, **trainable}), "batch_stats": state.batch_stats}
    logits, updates = setup.model.apply(variables, images, train=setup.mode,
                                        mutable=["batch_stats"], rngs={"dropout": rng})
    loss = metrics.cross_entropy(logits, labels, setup.num_classes, label_smoothing).mean()
    return loss, (logits, updates.get("batch_stats", state.batch_stats))

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    images = _normalize(batch["image"], setup.spec)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.trainable, state, images, batch["label"], rng)
    updates, opt_state = setup.tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    step_metrics = {
        "loss": loss,
        "top1": metrics.topk_correct(logits, batch["label"], 1).mean(),
        "top5": metrics.topk_correct(logits, batch["label"], 5).mean(),
        "grad_norm": optax.tree.norm(grads),
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(trainable),
    }
    new_state = state.replace(step=state.step + 1, trainable=trainable,
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, step_metrics

  return train_step


def make_eval_step(setup: Setup):
  """Returns `eval_step(state, batch) -> per-example outputs` (masked sums on host)."""

  def eval_step(state: TrainState, batch):
    logits = setup.model.apply(variables_of(state), _normalize(batch["image"], setup.spec), train=False)
    probs = jax.nn.softmax(logits)
    return {
        "loss": metrics.cross_entropy(logits, batch["label"], setup.num_classes),
        "top1": metrics.topk_correct(logits, batch["label"], 1),
        "top5": metrics.topk_correct(logits, batch["label"], 5),
        "pred": jnp.argmax(logits, -1),
        "confidence": jnp.max(probs, -1),
    }

  return eval_step


@dataclasses.dataclass
class Devices:
  """The 1-D data-parallel mesh over every device."""
  mesh: Mesh

  @classmethod
  def create(cls) -> "Devices":
    return cls(Mesh(np.asarray(jax.devices()), ("data",)))

  @property
  def count(self) -> int:
    return self.mesh.devices.size

  def check_batch(self, batch_size: int, key: str) -> None:
    if batch_size % self.count:
      raise ValueError(f"{key}={batch_size} does not divide over {self.count} devices; "
                       f"use a multiple of {self.count}")

  def replicate(self, tree):
    return jax.device_put(tree, NamedSharding(self.mesh, P()))

  def shard_batch(self, batch: dict) -> dict:
    sharding = NamedSharding(self.mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def evaluate(eval_fn, state, loader: Loader, devices: Devices) -> Dict[str, Any]:
  """Runs `loader` once; every image counts once (padding is masked out)."""
  outs = {"loss": [], "top1": [], "top5": [], "pred": [], "confidence": [], "label": [], "mask": []}
  for batch in loader.epoch(0):
    out = jax.device_get(eval_fn(state, devices.shard_batch(batch)))
    for k, v in out.items():
      outs[k].append(np.asarray(v))
    outs["label"].append(batch["label"])
    outs["mask"].append(batch["mask"])
  cat = {k: np.concatenate(v) for k, v in outs.items()}
  keep = cat["mask"] > 0
  return {k: v[keep] for k, v in cat.items() if k != "mask"}


def summarize(outputs: Dict[str, np.ndarray], num_classes: int) -> Dict[str, float]:
  cm = metrics.confusion_matrix(outputs["label"], outputs["pred"], num_classes)
  return {"loss": float(outputs["loss"].mean()), "top1": float(outputs["top1"].mean()),
          "top5": float(outputs["top5"].mean()), "count": int(len(outputs["label"])),
          **metrics.macro_prf(cm)}


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
    total = max(int(round(config.train.num_epochs * steps_per_epoch)), 1)
    return cls(steps_per_epoch, total,
               max(int(round(config.train.eval_every_epochs * steps_per_epoch)), 1),
               int(round(config.optimizer.warmup_epochs * steps_per_epoch)))


def train_batches(loader: Loader, start_step: int, steps_per_epoch: int) -> Iterator[dict]:
  """The batch stream from `start_step` on: batch b of epoch e is step e*spe + b."""
  epoch, offset = divmod(start_step, steps_per_epoch)
  while True:
    yield from loader.epoch(epoch, start=offset)
    epoch, offset = epoch + 1, 0


def make_loaders(config, data: datasets.Data, setup: Setup) -> Dict[str, Loader]:
  dcfg = config.data
  common = dict(num_workers=dcfg.num_workers, prefetch=dcfg.prefetch,
                process_index=jax.process_index(), process_count=jax.process_count())
  train_aug = Augment(setup.image_size, train=dcfg.augment, min_scale=dcfg.rrc_min_scale,
                      hflip=dcfg.hflip, resize_ratio=dcfg.eval_resize_ratio)
  eval_aug = Augment(setup.image_size, train=False, resize_ratio=dcfg.eval_resize_ratio)
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


def prepare(config, workdir: str, for_training: bool = True) -> Run:
  """Reads the data and builds the model, optimizer and devices.

  With `for_training`, also writes config.json, label_map.json and opens the
  metric writers (evaluation of a finished run writes none of these).
  """
  os.makedirs(workdir, exist_ok=True)
  data = datasets.load(config.data)
  schedule = Schedule.create(config, len(data.train))
  setup = build_setup(config, data.num_classes, schedule.total_steps, schedule.warmup_steps)
  devices = Devices.create()
  devices.check_batch(config.train.batch_size, "config.train.batch_size")
  devices.check_batch(config.train.eval_batch_size, "config.train.eval_batch_size")
  if for_training and jax.process_index() == 0:
    datasets.write_label_map(data, workdir)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config.to_json_best_effort(indent=1))
  return Run(config, workdir, data, setup, schedule, make_loaders(config, data, setup), devices,
             checkpoint.Checkpoints(workdir), writers.create(workdir) if for_training else None)


def fresh_meta() -> dict:
  return {"history": [], "best_top1": -1.0, "best_step": -1, "train_time_s": 0.0,
          "compile_time_s": 0.0}


def restore_or_init(run: Run):
  """The latest checkpoint in the workdir if any (auto-resume), else a fresh state."""
  resuming = run.ckpts.latest.latest_step() is not None
  key = jax.random.fold_in(jax.random.key(run.config.seed), 0)
  state = run.devices.replicate(initial_state(run.setup, run.config, key, load_weights=not resuming))
  if not resuming:
    return state, fresh_meta()
  state, meta = run.ckpts.restore_latest(state)
  logging.info("resumed from %s/checkpoints/latest at step %d", run.workdir, int(state.step))
  return state, meta


class Trainer:
  """Runs the steps of one run, with logging, evaluation and checkpoints."""

  def __init__(self, run: Run, state: TrainState, meta: dict):
    self.run, self.state, self.meta = run, state, meta
    self.rng = jax.random.fold_in(jax.random.key(run.config.seed), 1)
    self.step_fn = jax.jit(make_train_step(run.setup, run.config.train.label_smoothing),
                           donate_argnums=(0,))
    self.eval_fn = jax.jit(make_eval_step(run.setup))
    self.compiled = None
    self.window = []
    self.pending = None
    self.progress = periodic_actions.ReportProgress(
        num_train_steps=run.schedule.total_steps, writer=run.writer, every_secs=30.0)
    self.lr = optim.base_schedule(run.config.optimizer, run.schedule.total_steps,
                                  run.schedule.warmup_steps)

  def _compile(self, batch) -> None:
    t0 = time.perf_counter()
    self.compiled = self.step_fn.lower(self.state, batch, self.rng).compile()
    self.meta["compile_time_s"] += time.perf_counter() - t0
    logging.info("train step compiled in %.1fs", time.perf_counter() - t0)

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
    self.last_train = avg
    self.window = []

  def _evaluate(self, step: int) -> None:
    out = summarize(evaluate(self.eval_fn, self.state, self.run.loaders["minival"], self.run.devices),
                    self.run.setup.num_classes)
    self.run.writer.write_scalars(step, {f"minival_{k}": v for k, v in out.items()})
    train = getattr(self, "last_train", {})
    self.meta["history"].append({
        "step": step, "minival_top1": out["top1"], "minival_loss": out["loss"],
        "train_loss": train.get("train_loss", float("nan")),
        "train_top1": train.get("train_top1", float("nan")),
        "elapsed_s": self.meta["train_time_s"]})
    if out["top1"] > self.meta["best_top1"]:
      self.meta["best_top1"], self.meta["best_step"] = out["top1"], step
      self.run.ckpts.save_best(step, self.state, self.meta)

  def train(self, stop: int) -> None:
    cfg, sched = self.run.config.train, self.run.schedule
    start = int(self.state.step)
    batches = train_batches(self.run.loaders["train"], start, sched.steps_per_epoch)
    t_mark = time.perf_counter()
    for step in range(start, stop):
      batch = self.run.devices.shard_batch(next(batches))
      if self.compiled is None:
        self._compile(batch)
        t_mark = time.perf_counter()
      self.state, device_metrics = self.compiled(self.state, batch, self.rng)
      self._drain()
      self.pending = (step + 1, device_metrics)
      done = step + 1
      self.progress(done)
      if done % cfg.log_every_steps == 0 or done == stop:
        self._log_train(done)
      evaluate_now = done % sched.eval_every == 0 or done == sched.total_steps
      if evaluate_now or done % cfg.checkpoint_every_steps == 0 or done == stop:
        self._drain()
        jax.block_until_ready(self.state)
        self.meta["train_time_s"] += time.perf_counter() - t_mark
        if evaluate_now:
          self._evaluate(done)
        self.run.ckpts.save_latest(done, self.state, self.meta)
        t_mark = time.perf_counter()
    self.run.ckpts.wait()


def write_predictions(path: str, split, outputs: dict, classes) -> None:
  """CSV of image, true, predicted (class names) and confidence, in split order."""
  import csv  # pylint: disable=import-outside-toplevel
  with open(path, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f)
    out.writerow(["image", "true", "predicted", "confidence"])
    for image, true, pred, conf in zip(split.paths, outputs["label"], outputs["pred"],
                                       outputs["confidence"]):
      out.writerow([image, classes[true], classes[pred], f"{conf:.6f}"])


def write_confusion(path: str, outputs: dict, classes) -> None:
  cm = metrics.confusion_matrix(outputs["label"], outputs["pred"], len(classes))
  with open(path, "w", encoding="utf-8") as f:
    f.write("true\\predicted," + ",".join(json.dumps(c) for c in classes) + "\n")
    for name, row in zip(classes, cm):
      f.write(json.dumps(name) + "," + ",".join(str(int(v)) for v in row) + "\n")


def evaluate_best(run: Run, state: TrainState, eval_fn, split_name: str, out_dir: str) -> dict:
  """Evaluates the best checkpoint on `split_name`; writes predictions and confusion CSVs."""
  best = run.ckpts.restore_best(state)
  if best is None:
    raise FileNotFoundError(f"no best checkpoint in {run.workdir}/checkpoints/best")
  outputs = evaluate(eval_fn, best[0], run.loaders[split_name], run.devices)
  if jax.process_index() == 0:
    suffix = "" if split_name == "test" else f"_{split_name}"
    write_predictions(os.path.join(out_dir, f"predictions{suffix}.csv"),
                      getattr(run.data, split_name), outputs, run.data.classes)
    write_confusion(os.path.join(out_dir, f"confusion{suffix}.csv"), outputs, run.data.classes)
  return summarize(outputs, run.setup.num_classes)


def results(run: Run, trainer: Trainer, held_out: dict) -> dict:
  meta, cfg = trainer.meta, run.config
  history = meta["history"]
  best = next(h for h in history if h["step"] == meta["best_step"])
  images = run.schedule.total_steps * cfg.train.batch_size
  return {
      "status": "finished", "config": cfg.to_dict(), "model": cfg.model.name,
      "strategy": cfg.strategy.name, "seed": cfg.seed, "dataset": run.data.name,
      "num_classes": run.setup.num_classes,
      "num_params": sum(int(v.size) for v in jax.tree_util.tree_leaves(
          {**trainer.state.trainable, **trainer.state.frozen})),
      "num_trainable_params": sum(int(v.size) for v in trainer.state.trainable.values()),
      "optimizer_state_bytes": count_bytes(trainer.state.opt_state),
      "best": {"step": best["step"], "minival_top1": best["minival_top1"],
               "minival_loss": best["minival_loss"]},
      "final": {"step": history[-1]["step"], "minival_top1": history[-1]["minival_top1"],
                "minival_loss": history[-1]["minival_loss"]},
      **held_out,
      "history": history, "num_steps": run.schedule.total_steps,
      "train_time_s": meta["train_time_s"], "compile_time_s": meta["compile_time_s"],
      "train_images_per_s": images / max(meta["train_time_s"], 1e-9),
      "peak_rss_mb": peak_rss_mb(), "skipped_images": len(run.data.skipped),
      "num_devices": run.devices.count,
  }


def write_json_atomic(path: str, obj: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, default=float)
  os.replace(tmp, path)


def finish(run: Run, trainer: Trainer) -> dict:
  """Test (and val) evaluation of the best checkpoint, then results.json."""
  held_out = {}
  if "val" in run.loaders:
    held_out["val"] = evaluate_best(run, trainer.state, trainer.eval_fn, "val", run.workdir)
  if "test" in run.loaders:
    held_out["test"] = evaluate_best(run, trainer.state, trainer.eval_fn, "test", run.workdir)
  out = results(run, trainer, held_out)
  if jax.process_index() == 0:
    write_json_atomic(os.path.join(run.workdir, "results.json"), out)
  return out


def log_start(run: Run, state: TrainState) -> None:
  n_train = sum(int(v.size) for v in state.trainable.values())
  n_all = n_train + sum(int(v.size) for v in state.frozen.values())
  logging.info("dataset %s: %d classes, train %d, minival %d, val %s, test %s", run.data.name,
               run.data.num_classes, len(run.data.train), len(run.data.minival),
               len(run.data.val) if run.data.val else "-", len(run.data.test) if run.data.test else "-")
  logging.info("model %s at %dpx on %d device(s); %s of %s parameters trainable",
               run.config.model.name, run.setup.image_size, run.devices.count,
               f"{n_train:,}", f"{n_all:,}")
  logging.info("strategy %s:\n%s", run.config.strategy.name, run.setup.plan.table())
  logging.info("%d steps (%d per epoch), eval every %d", run.schedule.total_steps,
               run.schedule.steps_per_epoch, run.schedule.eval_every)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains (resuming from `workdir` if it holds a checkpoint), evaluates, writes results.

  Returns the results dict, or None when `config.train.stop_after_steps`
  ended the run early (its checkpoint lets the same command resume).
  """
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
