"""Linear probing on cached trunk features.

When only the head trains, the trunk runs in inference mode and the train
images are not randomly augmented (`config.data.augment=False`), every image
always yields the same trunk features. They are computed once (one forward
pass over each split) and kept in memory; every epoch then trains the head
on them, which is orders of magnitude cheaper than re-running the trunk. The
batches come from the same `Loader` logic (same order per seed and epoch,
same per-process slices), so the head trained on cached features equals the
head trained on images, up to float rounding. Mixup/CutMix mixes images, so
with it on nothing is cached (a log line says so) and the head trains on images.
"""
import logging
import re

import jax
import numpy as np

from ftlab.data.pipeline import Loader
from ftlab.data.sources import Split
from ftlab.training import strategy
from ftlab.training.parallel import Devices
from ftlab.training.state import Setup


def eligible(setup: Setup, config) -> bool:
  """True when the features of every train image are fixed for the whole run."""
  if not config.strategy.cache_features or config.data.augment or len(setup.phases) != 1:
    return False
  if setup.mixup is not None and setup.mixup.enabled:
    logging.info("mixup/CutMix is on (config.train.mixup_alpha/cutmix_alpha): trunk features are "
                 "not cached, the head trains on mixed images")
    return False
  if jax.process_count() > 1:
    return False
  plan = setup.phases[0].plan
  head = re.compile(strategy.under(setup.spec.head))
  if any(plan.trainable(p) and not head.fullmatch(p) for p in plan.labels):
    return False
  bn_modules = {p.rsplit("/", 1)[0] for p in plan.labels
                if p.endswith("/scale") and not head.fullmatch(p)}
  return bn_modules <= plan.frozen_bn()


def extract(trunk_fn, state, loader: Loader, devices: Devices) -> np.ndarray:
  """Trunk features of every image of `loader`'s split, in split order."""
  feats = []
  for batch in loader.epoch(0):
    out = np.asarray(jax.device_get(trunk_fn(state, devices.shard_batch(batch))))
    feats.append(out[batch["mask"] > 0])
  return np.concatenate(feats)


class _Lookup:
  """A picklable 'augment' that returns the cached feature row of an index."""

  def __init__(self, features: np.ndarray):
    self.features = features

  def __call__(self, index, rng):
    del rng
    return self.features[index]


class FeatureLoader:
  """Batches {'features', 'label', 'mask'} in exactly the order `like` would batch images."""

  def __init__(self, features: np.ndarray, like: Loader):
    split = Split(list(range(len(features))), like.split.labels)
    self.loader = Loader(split, like.batch_size, _Lookup(features), like.train, like.seed,
                         num_workers=1, prefetch=like.prefetch, process_index=like.process_index,
                         process_count=like.process_count)

  @property
  def num_batches(self) -> int:
    return self.loader.num_batches

  def epoch(self, epoch: int, start: int = 0):
    for batch in self.loader.epoch(epoch, start):
      yield {"features": batch.pop("image"), **batch}
