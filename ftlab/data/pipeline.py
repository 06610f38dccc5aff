"""The input pipeline: deterministic batches decoded by a thread pool.

Why not tf.data: decoding here is PIL (every format the issue lists: WebP,
CMYK JPEG, palette PNG...), and the order and augmentation of every batch are
pure functions of (seed, epoch, batch index), so a resumed run re-creates
exactly the batches an uninterrupted run would have seen by starting at
`start` instead of replaying the stream. PIL releases the GIL while
decoding and resizing, so `num_workers` threads decode in parallel and
`prefetch` batches are kept in flight while the accelerator computes.

Images travel as uint8 (4x less host->device traffic); normalisation with
the model's mean/std happens inside the compiled step.
"""
import collections
import concurrent.futures
import dataclasses
import functools
from typing import Callable, Iterator, Optional

import numpy as np

from ftlab.data import augment_ops, autoaugment, transforms
from ftlab.data.sources import Split


def check_augment_keys(augment: bool, auto_augment: str, color_jitter: float,
                       random_erasing: float) -> None:
  """With augment=False train images get the eval transform: refuses the keys it would drop."""
  dropped = [f"config.data.{k}={v!r}" for k, v in (("auto_augment", auto_augment),
                                                  ("color_jitter", color_jitter),
                                                  ("random_erasing", random_erasing)) if v]
  if not augment and dropped:
    raise ValueError(f"config.data.augment=False gives train images the eval transform, which "
                     f"would drop {', '.join(dropped)}: unset it or set config.data.augment=True")


@dataclasses.dataclass(frozen=True)
class Augment:
  """How one split's images are turned into `size` x `size` arrays.

  Training, in timm's order: random-resized-crop + flip; then the
  `auto_augment` policy (ftlab.data.autoaugment), or color jitter of
  strength `color_jitter` when no policy is given (timm likewise drops color
  jitter under auto-augment); then random erasing with probability
  `random_erasing` on the uint8 image. The policy string is parsed (and
  rejected with a ValueError) once, when the Augment is built.

  `flip_only` (with `train=False`): the eval transform, then a horizontal
  flip with probability 0.5 drawn first from the example's generator, the
  only augmentation; the linear probe's feature cache caches both
  orientations and replays the same draw (ftlab/training/feature_cache.py).
  """
  size: int
  train: bool               # random-resized-crop + flip, else resize + center crop
  min_scale: float = 0.08
  hflip: bool = True
  resize_ratio: float = 256 / 224
  auto_augment: str = ""
  color_jitter: float = 0.0
  random_erasing: float = 0.0
  flip_only: bool = False   # train=False: eval transform + random horizontal flip
  policy: Optional[Callable] = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    object.__setattr__(self, "policy", autoaugment.parse(self.auto_augment))
    if self.color_jitter < 0:
      raise ValueError(f"config.data.color_jitter={self.color_jitter} must be >= 0")
    if not 0 <= self.random_erasing <= 1:
      raise ValueError(f"config.data.random_erasing={self.random_erasing} must be in [0, 1]")
    if self.flip_only and self.train:
      raise ValueError("config.data.flip_only=True needs config.data.augment=False (augment=True "
                       "already flips, with config.data.hflip)")
    check_augment_keys(self.train, self.auto_augment, self.color_jitter, self.random_erasing)

  def __call__(self, path: str, rng: np.random.Generator) -> np.ndarray:
    if not self.train:
      image = transforms.eval_image(path, self.size, self.resize_ratio)
      if self.flip_only and transforms.draw_flip(rng):
        image = np.ascontiguousarray(image[:, ::-1])
      return image
    img = transforms.train_crop(path, self.size, self.min_scale, self.hflip, rng)
    if self.policy is not None:
      img = self.policy(img, rng)
    elif self.color_jitter > 0:
      img = transforms.color_jitter(img, self.color_jitter, rng)
    image = np.asarray(img, np.uint8)
    if self.random_erasing > 0:
      image = transforms.random_erase(image, self.random_erasing, augment_ops.FILL, rng)
    return image


@dataclasses.dataclass
class Loader:
  """Batches of one split.

  Training loaders shuffle with `seed` per epoch and drop the last partial
  batch; evaluation loaders keep order and pad the last batch, marking the
  padding with mask=0 so every image counts exactly once. With several
  processes each one loads its own contiguous slice of every global batch.
  """
  split: Split
  batch_size: int
  augment: Callable[[str, np.random.Generator], np.ndarray]
  train: bool
  seed: int = 0
  num_workers: int = 4
  prefetch: int = 2
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    if self.batch_size % self.process_count:
      raise ValueError(f"batch size {self.batch_size} does not divide over "
                       f"{self.process_count} processes")

  @property
  def num_batches(self) -> int:
    n = len(self.split)
    return n // self.batch_size if self.train else -(-n // self.batch_size)

  def _order(self, epoch: int) -> np.ndarray:
    n = len(self.split)
    if self.train:
      return np.random.default_rng([self.seed, epoch]).permutation(n)
    return np.arange(n)

  def _batch_indices(self, order: np.ndarray, b: int) -> tuple:
    idx = order[b * self.batch_size:(b + 1) * self.batch_size]
    mask = np.ones(self.batch_size, np.float32)
    if len(idx) < self.batch_size:
      mask[len(idx):] = 0.0
      idx = np.concatenate([idx, np.full(self.batch_size - len(idx), order[0])])
    per = self.batch_size // self.process_count
    lo = self.process_index * per
    return idx[lo:lo + per], mask[lo:lo + per]

  def _load(self, epoch: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, epoch, int(index)])
    return self.augment(self.split.paths[index], rng)

  def epoch(self, epoch: int, start: int = 0) -> Iterator[dict]:
    """Yields batches `start`, `start+1`, ... of `epoch` as numpy dicts."""
    order = self._order(epoch)
    pool = concurrent.futures.ThreadPoolExecutor(max(self.num_workers, 1))
    pending = collections.deque()
    load = functools.partial(self._load, epoch)

    def submit(b):
      idx, mask = self._batch_indices(order, b)
      futures = [pool.submit(load, i) for i in idx]
      pending.append((futures, self.split.labels[idx], mask))

    try:
      next_b = start
      while next_b < min(start + self.prefetch + 1, self.num_batches):
        submit(next_b)
        next_b += 1
      while pending:
        futures, labels, mask = pending.popleft()
        if next_b < self.num_batches:
          submit(next_b)
          next_b += 1
        images = np.stack([f.result() for f in futures])
        yield {"image": images, "label": labels.astype(np.int32), "mask": mask}
    finally:
      for futures, _, _ in pending:
        for f in futures:
          f.cancel()
      pool.shutdown(wait=True, cancel_futures=True)
