"""Precise BatchNorm statistics: running statistics recomputed on training images.

Under `config.model.bn=reestimate` the running statistics are not the
moving average the train steps leave behind, which lags a fast-moving trunk
(and, with TF's momentum 0.01, barely leaves ImageNet): they are recomputed,
as fvcore's `update_bn_stats` and `torch.optim.swa_utils.update_bn` do
(precise-BN, Wu & Johnson 2021; AdaBN when the weights are frozen), as the
average over `config.model.bn_batches` train batches of each layer's batch
mean and unbiased batch variance, every layer seeing its inputs as a train
step does.

When (`PreciseStats`, which the trainer calls):
* at the start of a phase that freezes BatchNorms which a later phase will
  train in batch mode (LP-FT's and gradual unfreezing's probe): those
  layers, all in batch mode for the measurement (AdaBN), so the head is fit
  on features normalised with the target data's statistics, which the
  fine-tuning phase's batch statistics match in expectation: the switch
  keeps what the probe learned. BatchNorms frozen for the rest of the run (a
  linear probe's trunk, freeze_shallow's blocks) keep their pretrained
  statistics, as timm's `freeze` does;
* before every evaluation: the layers the phase trains (the others keep
  their statistics, so the train caches stay valid).

The batches are the train split through the eval transform (no random
augmentation), shuffled by (`config.seed`, step): a pure function of the
seed and the step, so a resumed run recomputes exactly what an uninterrupted
one did. Dropout and drop-path are off in these forward passes.
"""
import dataclasses
import time
from typing import Optional

import jax
import jax.numpy as jnp

from absl import logging

from ftlab.data.pipeline import Augment, Loader
from ftlab.models.layers import Mode
from ftlab.training import ema as ema_lib
from ftlab.training.meta import RunMeta
from ftlab.training.state import Setup, TrainState, flatten, unflatten, variables_of
from ftlab.training.steps import normalize


def stats_loader(train: Loader, eval_augment: Augment) -> Loader:
  """The train split through the eval transform, shuffled per (seed, epoch = step), full batches."""
  return dataclasses.replace(train, augment=eval_augment, train=True)


def make_stats_step(setup: Setup, estimate: frozenset):
  """`stats_step(state, batch) -> {'<module>/mean' | '/var': this batch's statistic}` for the
  BatchNorms in `estimate`, which normalise with the batch; every other one with its running
  statistics."""
  others = setup.batch_norms - estimate
  mode = Mode(True, frozen_bn=frozenset(others), bn_momentum=1.0, stochastic=False)

  def stats_step(state: TrainState, batch):
    _, updates = setup.model.apply(variables_of(state), normalize(batch["image"], setup.spec),
                                   train=mode, mutable=["batch_stats"])
    return {k: v for k, v in flatten(updates["batch_stats"]).items()
            if k.rsplit("/", 1)[0] in estimate}

  return stats_step


def average_stats(stats_fn, state: TrainState, loader: Loader, step: int, num_batches: int,
                  devices) -> dict:
  """The mean over `num_batches` batches of epoch `step` of `stats_fn`'s statistics."""
  total, n = None, 0
  for batch in loader.epoch(step):
    out = stats_fn(state, devices.shard_batch(batch))
    total = out if total is None else jax.tree.map(jnp.add, total, out)
    n += 1
    if n == num_batches:
      break
  if total is None:
    raise ValueError(f"no full batch of {loader.batch_size} train images to re-estimate "
                     "BatchNorm statistics on (config.model.bn=reestimate)")
  return {k: v / n for k, v in total.items()}


def replace_stats(batch_stats, estimated: dict):
  """`batch_stats` (a tree) with the '/'-joined entries of `estimated` in place."""
  return unflatten({**flatten(batch_stats), **estimated})


class PreciseStats:
  """A run's re-estimations under `config.model.bn=reestimate` (a no-op under other policies):
  at a phase's start and before every evaluation, for the raw and the EMA weights."""

  def __init__(self, setup: Setup, loader: Optional[Loader], num_batches: int, devices,
               meta: RunMeta):
    self.setup, self.loader, self.num_batches, self.devices = setup, loader, num_batches, devices
    self.on = setup.bn_policy == "reestimate"
    self.fns = {}  # frozenset of BatchNorm modules -> their jitted stats step
    self.meta = meta  # its bn_stats_s counts the seconds re-estimating takes

  def _estimate(self, state: TrainState, modules: frozenset, step: int) -> TrainState:
    t0 = time.perf_counter()
    state = self._measured(state, modules, step)
    jax.block_until_ready(state.batch_stats)
    self.meta.bn_stats_s += time.perf_counter() - t0
    return state

  def _measured(self, state: TrainState, modules: frozenset, step: int) -> TrainState:
    if modules not in self.fns:
      self.fns[modules] = jax.jit(make_stats_step(self.setup, modules))
    measure = lambda s: average_stats(  # pylint: disable=unnecessary-lambda-assignment
        self.fns[modules], s, self.loader, step, self.num_batches, self.devices)
    state = state.replace(batch_stats=replace_stats(state.batch_stats, measure(state)))
    if self.setup.ema_decay:
      ema_stats = measure(ema_lib.weights(state))
      state = state.replace(ema={**state.ema, "batch_stats": {
          k: ema_stats.get(k, v) for k, v in state.ema["batch_stats"].items()}})
    return state

  def at_phase_start(self, state: TrainState, index: int, step: int) -> TrainState:
    """`state` with the BatchNorms that phase `index` newly freezes while a later phase trains
    them re-estimated (AdaBN before LP-FT's probe); the ones frozen for the rest of the run keep
    their pretrained statistics."""
    phases = self.setup.phases
    before = phases[index - 1].frozen_bn if index else frozenset()
    later = frozenset().union(*(p.updated_bn for p in phases[index + 1:]))
    modules = frozenset((phases[index].frozen_bn - before) & later & self.setup.batch_norms)
    if not self.on or not modules:
      return state
    logging.info("step %d: re-estimating the running statistics of %d frozen BatchNorm layers, "
                 "which a later phase trains, on %d train batches (config.model.bn=reestimate)",
                 step, len(modules), self.num_batches)
    return self._estimate(state, modules, step)

  def for_evaluation(self, state: TrainState, index: int, step: int) -> TrainState:
    """`state` ready for evaluation: the statistics of the BatchNorms phase `index` trains
    recomputed (the frozen ones keep theirs, so the train caches stay valid)."""
    modules = frozenset(self.setup.phases[index].updated_bn & self.setup.batch_norms)
    if not self.on or not modules:
      return state
    return self._estimate(state, modules, step)
