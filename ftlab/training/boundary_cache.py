"""freeze_shallow on cached activations: the frozen blocks run once, not every epoch.

When a run's leading trunk blocks are frozen (their parameters frozen and
their BatchNorms in inference mode) and its train images are deterministic
(`config.data.augment=False`, or `config.data.flip_only` with both
orientations cached), the activation at the freeze boundary of every train
image is the same at every step. It is computed once (`part=('upto', n)`,
models/parts.py) and each step trains the unfrozen top on it
(`part=('from', n)`), batched in exactly the order and orientations the
image loader would give (`feature_cache.FeatureLoader`): numerically the same
run as on images. Evaluation stays on images.

Served: single-phase strategies (freeze_shallow; a custom strategy that
freezes leading blocks), models whose spec has `boundaries=True` (tiny_cnn,
ResNets), one process. Otherwise, or when the cache would exceed
`config.strategy.cache_max_bytes`, the run trains on images and logs why.
"""
import re
import time

from absl import logging
import jax
import numpy as np

from ftlab.training import feature_cache
from ftlab.training import strategy
from ftlab.training.state import Setup, TrainState, init_variables, variables_of
from ftlab.training.steps import normalize


def frozen_prefix(setup: Setup, phase: int = 0) -> int:
  """How many leading trunk blocks phase `phase` wholly freezes, BatchNorms included (0 = none)."""
  plan = setup.phases[phase].plan
  frozen_bn = setup.phases[phase].frozen_bn
  n = 0
  for block in setup.spec.blocks:
    pattern = re.compile(strategy.under(block))
    paths = [p for p in plan.labels if pattern.fullmatch(p)]
    bn = {p.rsplit("/", 1)[0] for p in paths if p.endswith("/" + strategy.BN_SCALE)}
    if not paths or any(plan.trainable(p) for p in paths) or not bn <= frozen_bn:
      break
    n += 1
  return n


def boundary_block(setup: Setup, config, num_train: int, image_size: int, phase: int = 0) -> int:
  """The block to cache phase `phase`'s train inputs at (0 = train on images; the reason is logged)."""
  if not config.strategy.cache_features or config.data.augment:
    return 0
  n = frozen_prefix(setup, phase)
  if n == 0 or n == len(setup.spec.blocks):
    return 0  # nothing frozen, or the whole trunk: the feature cache's case
  why = ""
  if not setup.spec.boundaries:
    why = f"{config.model.name} does not run from a block boundary (ModelSpec.boundaries)"
  elif jax.process_count() > 1:
    why = "several processes"
  elif setup.mixup is not None and setup.mixup.enabled:
    why = "mixup/CutMix (config.train.mixup_alpha/cutmix_alpha) mixes images"
  else:
    per_image = activation_bytes(setup, n, image_size)
    total = per_image * num_train * (2 if config.data.flip_only else 1)
    if total > config.strategy.cache_max_bytes:
      why = (f"the activations of {num_train} images at block {n} take {total / 2**30:.2f} GiB "
             f"> config.strategy.cache_max_bytes={config.strategy.cache_max_bytes}")
  if why:
    logging.info("boundary cache off: %s; the frozen blocks run on images every step", why)
    return 0
  return n


def activation_bytes(setup: Setup, n: int, image_size: int) -> int:
  """Bytes of one image's activation after the first `n` blocks."""
  variables = jax.eval_shape(lambda: init_variables(setup.model, image_size, jax.random.key(0)))
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32)
  out = jax.eval_shape(lambda v, x: setup.model.apply(v, x, train=False, part=("upto", n)),
                       variables, x)
  return int(np.prod(out.shape)) * out.dtype.itemsize


def make_upto_step(setup: Setup, n: int, phase: int = 0):
  """`upto(state, batch) -> activations after the first n blocks`, as phase `phase`'s train step
  computes them."""
  mode = setup.phases[phase].mode

  def upto(state: TrainState, batch):
    return setup.model.apply(variables_of(state), normalize(batch["image"], setup.spec),
                             train=mode, part=("upto", n))

  return upto


def build(setup: Setup, state: TrainState, loader, devices, n: int,
          eval_batch_size: int, phase: int = 0) -> tuple:
  """(a FeatureLoader of the boundary activations in the train loader's order, seconds)."""
  t0 = time.perf_counter()
  upto = jax.jit(make_upto_step(setup, n, phase))
  acts = feature_cache.train_features(upto, state, loader, devices, eval_batch_size)
  seconds = time.perf_counter() - t0
  flips = acts.loader.augment.flipped is not None
  logging.info("cached the activations after %d frozen block(s) of %d train images%s (%.2f GiB) "
               "in %.1fs", n, len(loader.split), " (both orientations)" if flips else "",
               acts.nbytes / 2**30, seconds)
  return acts, seconds
