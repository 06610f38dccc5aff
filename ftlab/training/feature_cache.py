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

With `config.data.flip_only` the one augmentation is a horizontal flip: the
features of both orientations are cached, and each example of each step
takes the orientation the image pipeline would have drawn for that
(seed, epoch, index) (`transforms.draw_flip` on the same generator).
Subsets of any size (`config.data.train_per_class`) are just smaller splits.
"""
import dataclasses
import re
import time
from typing import Dict, Optional

from absl import logging
import jax
import numpy as np

from ftlab.data import transforms
from ftlab.data.pipeline import Augment, Loader
from ftlab.data.sources import Split
from ftlab.training import strategy
from ftlab.parallel.devices import Devices
from ftlab.training.state import Setup


def eligible(setup: Setup, config) -> bool:
  """True when the features of every train image are fixed for the whole run."""
  if len(setup.phases) != 1 or not inputs_fixed(setup, config):
    return False
  return head_only(setup, 0)


def inputs_fixed(setup: Setup, config) -> bool:
  """True when caching is on and each train image reaches the network the same at every step
  (no random augmentation, no mixup, one process): the precondition of every train cache."""
  if not config.strategy.cache_features or config.data.augment:
    return False
  if setup.mixup is not None and setup.mixup.enabled:
    logging.info("mixup/CutMix is on (config.train.mixup_alpha/cutmix_alpha): nothing is cached, "
                 "training runs on mixed images")
    return False
  return jax.process_count() == 1


def head_only(setup: Setup, phase: int) -> bool:
  """True when phase `phase` trains only the head, with the trunk's BatchNorms frozen."""
  plan = setup.phases[phase].plan
  head = re.compile(strategy.under(setup.spec.head))
  if any(plan.trainable(p) and not head.fullmatch(p) for p in plan.labels):
    return False
  bn_modules = {p.rsplit("/", 1)[0] for p in plan.labels
                if p.endswith("/scale") and not head.fullmatch(p)}
  return bn_modules <= setup.phases[phase].frozen_bn


def train_features(trunk_fn, state, train: Loader, devices: Devices,
                   eval_batch_size: int) -> "FeatureLoader":
  """A FeatureLoader of the train split's features (both orientations under flip_only)."""
  fixed = dataclasses.replace(train.augment, flip_only=False)
  ordered = dataclasses.replace(train, train=False, batch_size=eval_batch_size, augment=fixed)
  features = extract(trunk_fn, state, ordered, devices)
  flipped = None
  if train.augment.flip_only:
    flipped = extract(trunk_fn, state, dataclasses.replace(ordered, augment=Mirrored(fixed)),
                      devices)
  return FeatureLoader(features, train, flipped)


def extract(trunk_fn, state, loader: Loader, devices: Devices) -> np.ndarray:
  """Trunk features of every image of `loader`'s split, in split order."""
  feats = []
  for batch in loader.epoch(0):
    out = np.asarray(jax.device_get(trunk_fn(state, devices.shard_batch(batch))))
    feats.append(out[batch["mask"] > 0])
  return np.concatenate(feats)


@dataclasses.dataclass(frozen=True)
class Mirrored:
  """An 'augment': `augment`'s image mirrored left-right (the flipped orientation)."""
  augment: Augment

  def __call__(self, path: str, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(self.augment(path, rng)[:, ::-1])


class _Lookup:
  """A picklable 'augment' that returns the cached feature row of an index.

  With `flipped` (the mirrored images' features), the row of the orientation
  the image pipeline draws from the example's generator.
  """

  def __init__(self, features: np.ndarray, flipped: Optional[np.ndarray] = None):
    self.features, self.flipped = features, flipped

  def __call__(self, index, rng):
    if self.flipped is not None and transforms.draw_flip(rng):
      return self.flipped[index]
    return self.features[index]


def cache_splits(trunk_fn, state, loaders: Dict[str, Loader], devices: Devices,
                 eval_batch_size: int) -> Dict[str, "FeatureLoader"]:
  """FeatureLoaders for 'train' (both orientations under flip_only) and 'minival'."""
  return {"train": train_features(trunk_fn, state, loaders["train"], devices, eval_batch_size),
          "minival": FeatureLoader(extract(trunk_fn, state, loaders["minival"], devices),
                                   loaders["minival"])}


def timed_cache(trunk_fn, state, loaders: Dict[str, Loader], devices: Devices,
                eval_batch_size: int) -> tuple:
  """(`cache_splits`, its seconds), logged."""
  t0 = time.perf_counter()
  out = cache_splits(trunk_fn, state, loaders, devices, eval_batch_size)
  seconds = time.perf_counter() - t0
  flips = " (both orientations)" if out["train"].loader.augment.flipped is not None else ""
  logging.info("cached trunk features of %d train%s and %d minival images in %.1fs",
               len(loaders["train"].split), flips, len(loaders["minival"].split), seconds)
  return out, seconds


class FeatureLoader:
  """Batches {'features', 'label', 'mask'} in exactly the order `like` would batch images."""

  def __init__(self, features: np.ndarray, like: Loader, flipped: Optional[np.ndarray] = None):
    split = Split(list(range(len(features))), like.split.labels)
    self.loader = Loader(split, like.batch_size, _Lookup(features, flipped), like.train, like.seed,
                         num_workers=1, prefetch=like.prefetch, process_index=like.process_index,
                         process_count=like.process_count)

  @property
  def num_batches(self) -> int:
    return self.loader.num_batches

  @property
  def features(self) -> np.ndarray:
    """The cached features in split order (the unmirrored ones under flip_only)."""
    return self.loader.augment.features

  @property
  def labels(self) -> np.ndarray:
    return self.loader.split.labels

  @property
  def nbytes(self) -> int:
    lookup = self.loader.augment
    return lookup.features.nbytes + (0 if lookup.flipped is None else lookup.flipped.nbytes)

  def epoch(self, epoch: int, start: int = 0):
    for batch in self.loader.epoch(epoch, start):
      yield {"features": batch.pop("image"), **batch}
