"""The frozen phases of multi-phase strategies (lp_ft, gradual_unfreeze) on cached inputs.

A phase that trains only the head (lp_ft's linear probe, gradual_unfreeze's
first phase) trains it on cached trunk features (`training.feature_cache`);
a phase whose leading blocks are frozen (gradual_unfreeze's later phases)
trains the rest on the activations cached at its boundary
(`training.boundary_cache`). Within a phase the frozen part does not change,
so the cache, built from the state's weights when the phase is entered (a
resumed run too), gives that phase's steps the inputs the images would:
numerically the same run (tests/test_phase_cache.py). Evaluation stays on
images, and the phases that train the whole trunk stay on images.

Building a cache costs one forward pass of the frozen part over the train
images, which it saves on every epoch of the phase after the first; a phase
of one epoch or less is left on images (logged). The conditions of the
single-phase caches apply: deterministic train images (`data.augment=False`,
or `data.flip_only`), `strategy.cache_features`, no mixup, one process, and
for boundaries a model that runs from a block boundary within
`strategy.cache_max_bytes`.
"""
import dataclasses
import time
from typing import Any, Optional

from absl import logging
import jax

from ftlab.training import feature_cache
from ftlab.training import boundary_cache
from ftlab.training.state import Setup, TrainState
from ftlab.training.steps import make_trunk_step


@dataclasses.dataclass(frozen=True)
class PhaseInput:
  """What one phase's train steps read: images, trunk features or boundary activations."""
  on_features: bool = False
  from_block: int = 0
  loader: Optional[Any] = None  # the image Loader or a feature_cache.FeatureLoader (set by `build`)

  def describe(self) -> str:
    if self.on_features:
      return "trunk features"
    return f"activations after block {self.from_block}" if self.from_block else "images"


IMAGES = PhaseInput()


def phase_steps(setup: Setup, phase: int, total_steps: int) -> int:
  end = setup.phases[phase + 1].start if phase + 1 < len(setup.phases) else total_steps
  return end - setup.phases[phase].start


def choose(setup: Setup, config, phase: int, num_train: int, total_steps: int,
           steps_per_epoch: int) -> PhaseInput:
  """The kind of input phase `phase` trains on (without its loader); reasons are logged."""
  if not feature_cache.inputs_fixed(setup, config):
    return IMAGES
  if feature_cache.head_only(setup, phase):
    kind = PhaseInput(on_features=True)
  else:
    n = boundary_cache.boundary_block(setup, config, num_train, setup.image_size, phase)
    kind = PhaseInput(from_block=n) if n else IMAGES
  steps = phase_steps(setup, phase, total_steps)
  if kind != IMAGES and steps <= steps_per_epoch:
    logging.info("phase %d trains on images: its %d steps are at most one epoch (%d steps), so "
                 "caching its %s would cost the forward pass it saves", phase, steps,
                 steps_per_epoch, kind.describe())
    return IMAGES
  return kind


def build(setup: Setup, state: TrainState, kind: PhaseInput, train_loader, devices,
          eval_batch_size: int, phase: int) -> tuple:
  """(`kind` with its loader, seconds): `train_loader` itself for images, else the cache of phase
  `phase`'s train inputs, built now."""
  if kind.on_features:
    trunk = jax.jit(make_trunk_step(setup))
    t0 = time.perf_counter()
    loader = feature_cache.train_features(trunk, state, train_loader, devices, eval_batch_size)
    seconds = time.perf_counter() - t0
    logging.info("phase %d: cached the trunk features of %d train images in %.1fs", phase,
                 len(train_loader.split), seconds)
  elif kind.from_block:
    loader, seconds = boundary_cache.build(setup, state, train_loader, devices, kind.from_block,
                                           eval_batch_size, phase)
  else:
    loader, seconds = train_loader, 0.0
  return dataclasses.replace(kind, loader=loader), seconds

