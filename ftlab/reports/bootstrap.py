"""Image-level paired comparison of two strategies: a hierarchical bootstrap over seeds, then
test images.

Both strategies are scored on the same test images with the same final
seeds, and predictions.csv holds each run's per-image correctness: A and B
are 0/1 arrays (seeds x images). Each resample draws the seeds with
replacement, then the images with replacement (one draw shared by the drawn
seeds: every seed is scored on the same images, so an image's difficulty
is shared too), and takes the mean of A - B over them (a crossed, "pigeonhole"
bootstrap: its variance counts the seed-by-image interaction once more than
the data hold, so the interval errs wide). The 2.5 and 97.5
percentiles of 10,000 resamples give the 95% interval of the difference,
their share above 0 gives P(A > B), and twice the smaller tail the
two-sided p-value. The resampling is seeded (the same files give the same
numbers) and vectorised: only the images the two strategies disagree on
move the mean, so only their counts are drawn (how many of the N draws land
among those K images is binomial, and where, uniform among them).
"""
import dataclasses

import numpy as np


RESAMPLES = 10_000
SEED = 0
CHUNK = 1000  # resamples per vectorised block (memory: CHUNK x disagreeing images)
TEST_NAME = ("hierarchical bootstrap over seeds, then test images (10,000 seeded resamples of "
             "per-image correctness from predictions.csv)")


@dataclasses.dataclass(frozen=True)
class ImageDelta:
  """A - B in percentage points over shared seeds and images.

  Attributes:
    mean: the observed difference.
    low, high: its bootstrap percentile interval (95% unless `compare` was asked otherwise).
    p_greater: P(A > B), the share of resamples above 0 (ties count half).
    p: two-sided bootstrap p-value, 2 x the smaller tail, (count + 1) / (resamples + 1).
    n_seeds, n_images: what was paired.
    seed_var, image_var: the resampled mean's variance (points^2) split into the part more
      seeds shrink (None with one seed) and the test set's own (`variance_parts`), for
      `stats.seeds_needed`.
  """
  mean: float
  low: float
  high: float
  p_greater: float
  p: float
  n_seeds: int
  n_images: int
  seed_var: float | None
  image_var: float


def _image_counts(n_images: int, k: int, b: int, rng: np.random.Generator) -> np.ndarray:
  """(b, k): how often each of the first k of n_images images is drawn in b resamples of n_images
  draws with replacement (how many land among the k is binomial; where, uniform among them)."""
  totals = rng.binomial(n_images, k / n_images, size=b)
  rows = np.repeat(np.arange(b), totals)
  return np.bincount(rows * k + rng.integers(0, k, size=int(totals.sum())),
                     minlength=b * k).reshape(b, k)


def _resampled_means(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
  n_seeds, n_images = d.shape
  moving = d[:, np.any(d != 0, axis=0)].astype(np.float64)
  k = moving.shape[1]
  if not k:
    return np.zeros(resamples)
  out = []
  for start in range(0, resamples, CHUNK):
    b = min(CHUNK, resamples - start)
    seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b)
    out.append(((seeds @ moving) * _image_counts(n_images, k, b, rng)).sum(axis=1))
  return 100.0 * np.concatenate(out) / (n_seeds * n_images)


def compare(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES,
            seed: int = SEED, confidence: float = 0.95) -> ImageDelta:
  """A - B from 0/1 correctness arrays of shape (seeds, images), paired row by row; `low, high`
  the `confidence` percentile interval (the same resamples whatever the confidence)."""
  return with_resamples(a, b, resamples, seed, confidence)[0]


def with_resamples(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                   confidence: float = 0.95) -> tuple:
  """(`compare`'s ImageDelta, the resampled means it came from), for `at_confidence`."""
  if a.shape != b.shape or a.ndim != 2 or not a.size:
    raise ValueError(f"compare() needs two equal (seeds, images) arrays, got {a.shape}, {b.shape}")
  d = a.astype(np.int8) - b.astype(np.int8)
  means = _resampled_means(d, resamples, np.random.default_rng(seed))
  tail = min(int((means <= 0).sum()), int((means >= 0).sum()))
  seed_var, image_var = variance_parts(100.0 * d)
  delta = ImageDelta(float(100.0 * d.mean()), 0.0, 0.0,
                     float((means > 0).mean() + 0.5 * (means == 0).mean()),
                     min(1.0, 2 * (tail + 1) / (resamples + 1)), d.shape[0], d.shape[1],
                     seed_var, image_var)
  return at_confidence(delta, means, confidence), means


def at_confidence(delta: ImageDelta, means: np.ndarray, confidence: float) -> ImageDelta:
  """`delta` with `low, high` the `confidence` percentile interval of its resampled `means`."""
  tail_percent = 50.0 * (1.0 - confidence)
  low, high = np.percentile(means, [tail_percent, 100.0 - tail_percent])
  return dataclasses.replace(delta, low=float(low), high=float(high))


def variance_parts(d: np.ndarray) -> tuple:
  """(the part that shrinks with more seeds or None with one seed, the test set's part) of the
  resampled mean's variance.

  Resampling seeds and images independently gives the mean of d (seeds x
  images) the variance var(seed means) / S + var(image means) / N + mean(e^2)
  / (S N), e the seed-by-image residual. The image means' variance holds one
  residual term, which more seeds shrink too; the rest of it, the images' own
  differences, stays whatever the seeds.
  """
  n_seeds, n_images = d.shape
  seed_means, image_means = d.mean(axis=1), d.mean(axis=0)
  residual = d - seed_means[:, None] - image_means[None, :] + d.mean()
  interaction = float((residual ** 2).mean()) / (n_seeds * n_images)
  image_part = max(float(image_means.var()) / n_images - interaction, 0.0)
  if n_seeds < 2:
    return None, image_part
  return float(seed_means.var()) / n_seeds + 2 * interaction, image_part
