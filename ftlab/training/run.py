"""A run prepared from its config: step arithmetic, data loaders, model and strategy setup, devices, checkpoints; resumed or fresh state."""
import dataclasses
import logging
import os
from typing import Any, Dict, Tuple

import jax
import ml_collections

from ftlab.configuration.files import check_same_run, write_json_atomic
from ftlab.data import datasets
from ftlab.data.pipeline import Augment, Loader
from ftlab.training import bn_stats, checkpoint, strategy, writers
from ftlab.parallel.devices import Devices
from ftlab.training.meta import RunMeta
from ftlab.training.state import Setup, TrainState, build_setup, initial_state


@dataclasses.dataclass
class Schedule:
  """Step arithmetic of a run, derived once from the config and the data.

  `total_steps` counts every step: a phased strategy's linear probe
  (`probe_steps`, `strategy.lp_epochs`) comes before the `train.num_epochs`
  of fine-tuning, whose warm-up (`warmup_steps`) starts after it.
  """
  steps_per_epoch: int
  total_steps: int
  eval_every: int
  warmup_steps: int
  probe_steps: int = 0

  @classmethod
  def create(cls, config, num_train: int) -> "Schedule":
    steps_per_epoch = num_train // config.train.batch_size
    if steps_per_epoch == 0:
      raise ValueError(f"config.train.batch_size={config.train.batch_size} is larger than the "
                       f"{num_train} training images (after the minival carve-out)")
    for key in ("log_every_steps", "checkpoint_every_steps", "stop_after_steps"):
      if config.train[key] < 0:
        raise ValueError(f"config.train.{key}={config.train[key]} must be >= 0 (0 = never)")
    probe = strategy.probe_steps(config.strategy, steps_per_epoch)
    total = probe + max(int(round(config.train.num_epochs * steps_per_epoch)), 1)
    return cls(steps_per_epoch, total,
               max(int(round(config.train.eval_every_epochs * steps_per_epoch)), 1),
               int(round(config.optimizer.warmup_epochs * steps_per_epoch)), probe)


def make_loaders(config, data: datasets.Data, image_size: int) -> Dict[str, Loader]:
  dcfg = config.data
  common = dict(num_workers=dcfg.num_workers, prefetch=dcfg.prefetch,
                process_index=jax.process_index(), process_count=jax.process_count())
  train_aug = Augment(image_size, train=dcfg.augment, min_scale=dcfg.rrc_min_scale,
                      hflip=dcfg.hflip, resize_ratio=dcfg.eval_resize_ratio,
                      auto_augment=dcfg.auto_augment, color_jitter=dcfg.color_jitter,
                      random_erasing=dcfg.random_erasing, flip_only=dcfg.flip_only)
  eval_aug = Augment(image_size, train=False, resize_ratio=dcfg.eval_resize_ratio)
  loaders = {"train": Loader(data.train, config.train.batch_size, train_aug, True, config.seed, **common)}
  for name in ("minival", "val", "test"):
    split = getattr(data, name)
    if split is not None:
      loaders[name] = Loader(split, config.train.eval_batch_size, eval_aug, False, **common)
  if config.model.bn == "reestimate":  # training/bn_stats.py: the batches statistics come from
    loaders["bn_stats"] = bn_stats.stats_loader(loaders["train"], eval_aug)
  return loaders


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


def restore_or_init(run: Run) -> Tuple[TrainState, RunMeta]:
  """The latest checkpoint in the workdir if any (auto-resume), else a fresh state."""
  restored = run.ckpts.restore_latest(run.template)
  if restored is None:
    return run.template(0, load_weights=True), RunMeta()
  state, meta = restored
  logging.info("resumed from %s/checkpoints/latest at step %d", run.workdir, int(state.step))
  return state, meta
