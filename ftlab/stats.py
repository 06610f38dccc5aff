"""Statistics over seeds: mean, spread, t confidence intervals, paired tests."""
import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05
TEST_NAME = "two-sided paired t-test over shared seeds (scipy.stats.ttest_rel)"


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
      all differences equal).
    significant: p < alpha, or None when not tested.
  """
  seeds: tuple
  n: int
  mean: float | None
  ci: float | None
  p: float | None
  significant: bool | None


def paired_delta(treatment: Mapping, baseline: Mapping, alpha: float = ALPHA) -> PairedDelta:
  """Paired difference of two seed -> value maps on their shared seeds."""
  seeds = tuple(sorted(set(treatment) & set(baseline), key=str))
  if not seeds:
    return PairedDelta((), 0, None, None, None, None)
  diffs = np.array([treatment[s] - baseline[s] for s in seeds], dtype=float)
  summary = summarize(diffs)
  if summary.n < 2 or summary.std == 0:
    return PairedDelta(seeds, summary.n, summary.mean, summary.ci, None, None)
  a = np.array([treatment[s] for s in seeds], dtype=float)
  b = np.array([baseline[s] for s in seeds], dtype=float)
  p = float(scipy_stats.ttest_rel(a, b).pvalue)
  return PairedDelta(seeds, summary.n, summary.mean, summary.ci, p, p < alpha)
