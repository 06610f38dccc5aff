"""Statistics over seeds: mean, spread, t confidence intervals, paired tests, Holm's correction,
a test set's binomial noise and the seeds a comparison would need."""
import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats


CONFIDENCE = 0.95
ALPHA = 0.05
TEST_NAME = "two-sided paired t-test over shared seeds (scipy.stats.ttest_rel)"
HOLM = "Holm's step-down correction"
POWER = 0.8  # of the comparisons "more seeds" is sized for
NO_SHARED_SEEDS = "no shared seeds"
TOO_FEW_SEEDS = "no test"
EQUAL_DIFFERENCES = "no test: equal differences"
# Differences that agree to within this many float32 epsilons of the values'
# magnitude count as equal. results.json metrics are float32 computations: each
# value carries up to eps/2 relative rounding, a difference up to eps, two
# differences then disagree by up to 2 eps from rounding alone; 8 leaves a
# margin for a further float32 step. A one-image disagreement stays testable on
# splits below ~1M images (1/count > 8 eps).
EQUAL_TOLERANCE_EPS = 8
COUNT_KEYS = {"top1": "correct", "top5": "correct_top5"}


@dataclasses.dataclass(frozen=True)
class Summary:
  """Mean and spread of one cell's values over seeds.

  Attributes:
    n: number of values.
    mean: their mean.
    std: sample standard deviation (ddof=1); None for n < 2.
    ci: half-width of the 95% t confidence interval of the mean; None for n < 2.
  """
  n: int
  mean: float
  std: float | None
  ci: float | None


def t_halfwidth(std: float, n: int, confidence: float = CONFIDENCE) -> float:
  """Half-width of the Student-t confidence interval of a mean of n values."""
  return float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n))


def summarize(values: Sequence[float]) -> Summary:
  """Mean, sample std and 95% CI half-width of `values` (at least one)."""
  x = np.asarray(values, dtype=float)
  if x.size == 0:
    raise ValueError("summarize() needs at least one value")
  if x.size == 1:
    return Summary(1, float(x[0]), None, None)
  std = float(x.std(ddof=1))
  return Summary(int(x.size), float(x.mean()), std, t_halfwidth(std, x.size))


@dataclasses.dataclass(frozen=True)
class PairedDelta:
  """`treatment - baseline` over the seeds both have.

  Attributes:
    seeds: the shared seeds.
    n: how many.
    mean: mean difference (None without shared seeds).
    ci: 95% t half-width of the mean difference; None for n < 2.
    p: two-sided paired t-test p-value; None when not testable (n < 2 or
      all differences equal up to float32 rounding: `equal_differences`).
    significant: p < alpha (Holm-adjusted p < alpha once `p_holm` is set), or None when not
      tested.
    note: why there is no test (NO_SHARED_SEEDS, TOO_FEW_SEEDS or
      EQUAL_DIFFERENCES); '' when tested.
    p_holm: p after Holm's correction across the table's comparisons, when applied.
  """
  seeds: tuple
  n: int
  mean: float | None
  ci: float | None
  p: float | None
  significant: bool | None
  note: str = ""
  p_holm: float | None = None


def equal_differences(a: np.ndarray, b: np.ndarray) -> bool:
  """Whether all `a - b` are equal up to float32 rounding of the values.

  A t-test on such differences measures rounding, not the strategies: the
  same one-image gain on two seeds gives differences a few ulps apart.
  """
  diffs = a - b
  scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
  tolerance = EQUAL_TOLERANCE_EPS * float(np.finfo(np.float32).eps) * scale
  return float(np.ptp(diffs)) <= tolerance


def paired_delta(treatment: Mapping, baseline: Mapping, alpha: float = ALPHA) -> PairedDelta:
  """Paired difference of two seed -> value maps on their shared seeds."""
  seeds = tuple(sorted(set(treatment) & set(baseline), key=str))
  if not seeds:
    return PairedDelta((), 0, None, None, None, None, NO_SHARED_SEEDS)
  a = np.array([treatment[s] for s in seeds], dtype=float)
  b = np.array([baseline[s] for s in seeds], dtype=float)
  summary = summarize(a - b)
  if summary.n < 2:
    return PairedDelta(seeds, summary.n, summary.mean, None, None, None, TOO_FEW_SEEDS)
  if equal_differences(a, b):
    return PairedDelta(seeds, summary.n, summary.mean, summary.ci, None, None,
                       EQUAL_DIFFERENCES)
  p = float(scipy_stats.ttest_rel(a, b).pvalue)
  return PairedDelta(seeds, summary.n, summary.mean, summary.ci, p, p < alpha)


def counted_fraction(block: Mapping, key: str) -> float | None:
  """`block[key]` (`top1`/`top5`) as an exact count fraction, or None.

  ftlab.evaluation.evaluator.summarize writes integer `correct`/`correct_top5` beside
  `count`: the fraction is `correct / count` in float64. Older blocks have only
  `count` and a float32 mean: sums of 0/1 are exact in float32 below 2**24
  images and the division rounds once, so `top1 * count` is within
  count * 2**-24 < 0.5 of the true count below 2**23 images, and
  `round(top1 * count) / count` restores it; it is used only when it agrees
  with the stored value to 1e-6 (else None, and the caller keeps the float).

  Args:
    block: a held-out split's dict from results.json (e.g. `test`).
    key: `top1` or `top5`; any other key gives None.

  Returns:
    The exact fraction, or None when the block has no usable counts.
  """
  count, value = block.get("count"), block.get(key)
  if key not in COUNT_KEYS or not _is_int(count) or count <= 0:
    return None
  correct = block.get(COUNT_KEYS[key])
  if _is_int(correct) and 0 <= correct <= count:
    return correct / count
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
    return None
  rebuilt = round(value * count) / count
  return rebuilt if abs(rebuilt - value) <= 1e-6 else None


def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def holm(pvalues: Sequence[float | None]) -> list:
  """Holm-adjusted p-values (step-down, monotone; None stays None and is not counted).

  The i-th smallest of m p-values becomes max over j <= i of min(1, (m - j + 1) p_(j)): a
  family of m comparisons keeps its family-wise error at alpha when each is called
  significant at adjusted p < alpha.
  """
  tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
  out, running = [None] * len(pvalues), 0.0
  for rank, (p, i) in enumerate(tested):
    running = max(running, min(1.0, (len(tested) - rank) * p))
    out[i] = running
  return out


def holm_levels(pvalues: Sequence[float | None], alpha: float = ALPHA) -> list:
  """The significance level Holm's procedure tests each p-value at (None stays None).

  The j-th smallest of m is tested at alpha / (m - j + 1) while every smaller
  one was significant; once one is not, the procedure stops and it and every
  larger one share that step's level alpha / (m - k), k the significant ones.
  A (1 - level) interval dual to the test then excludes 0 exactly for the
  significant ones (the intervals are not simultaneous).
  """
  tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
  m, out = len(tested), [None] * len(pvalues)
  for rank, (p, i) in enumerate(tested):
    out[i] = alpha / (m - rank)
    if p >= out[i]:
      for _, j in tested[rank:]:
        out[j] = alpha / (m - rank)
      break
  return out


def binomial_halfwidth(fraction: float, count: int, confidence: float = CONFIDENCE) -> float:
  """Half the width of the Wilson score 95% interval of one run's accuracy `fraction` on `count`
  test images: the test set's own noise, whatever the seeds (unlike z sqrt(p(1-p)/N), not 0 at
  0% or 100%)."""
  z = float(scipy_stats.norm.ppf(0.5 + confidence / 2))
  p, n = fraction, count
  return z / (1 + z * z / n) * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))


MAX_SEEDS = 1000  # seeds_needed looks no further


def seeds_needed(delta: float, seed_var: float | None, image_var: float, n_seeds: int,
                 alpha: float) -> int | None:
  """More seeds for a two-sided paired t-test at `alpha` with power POWER to separate a
  difference `delta` whose mean has variance seed_var + image_var now: seed_var shrinks as
  1/seeds, the test set's image_var does not. The smallest n with
  |delta| >= (t(1 - alpha/2, n-1) + t(POWER, n-1)) sqrt(image_var + seed_var n_seeds / n),
  less n_seeds; None when seeds alone cannot (the test set limits, or no difference) or the seed
  variance is unknown (one seed)."""
  if seed_var is None or delta == 0:
    return None
  for n in range(max(n_seeds, 2), MAX_SEEDS + 1):
    z = float(scipy_stats.t.ppf(1 - alpha / 2, n - 1) + scipy_stats.t.ppf(POWER, n - 1))
    if abs(delta) >= z * math.sqrt(image_var + seed_var * n_seeds / n):
      return n - n_seeds
  return None
