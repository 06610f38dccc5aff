"""Tests for ftlab.reports.stats (paired deltas on float32-rounded values) and evaluator.summarize."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from ftlab.evaluation import evaluator
from ftlab.reports import bootstrap, stats


def _f32_percent(correct: int, count: int) -> float:
  """A top-1 as older results.json stored it (float32 mean), in percent."""
  return float(np.float32(correct / count)) * 100


def test_equal_one_image_gains_from_float32_values_are_not_tested():
  # The reviewer's case: +1 image of 359 on both seeds; float32 rounding makes the
  # two differences 0.2785504 and 0.2785563 points, which a t-test calls p<0.001.
  treatment = {0: _f32_percent(301, 359), 1: _f32_percent(341, 359)}
  baseline = {0: _f32_percent(300, 359), 1: _f32_percent(340, 359)}
  assert treatment[0] - baseline[0] != treatment[1] - baseline[1]
  d = stats.paired_delta(treatment, baseline)
  assert (d.n, d.p, d.significant, d.note) == (2, None, None, stats.EQUAL_DIFFERENCES)
  assert d.mean == pytest.approx(100 / 359, abs=1e-5)
  # The same on fractions (no x100): the tolerance follows the values' scale.
  fractions = stats.paired_delta({k: v / 100 for k, v in treatment.items()},
                                 {k: v / 100 for k, v in baseline.items()})
  assert fractions.p is None and fractions.note == stats.EQUAL_DIFFERENCES


def test_one_image_apart_on_a_large_split_is_still_tested():
  # Differences of 1 and 2 images of 50,000 are real, far above float32 rounding.
  treatment = {0: _f32_percent(40001, 50000), 1: _f32_percent(40102, 50000),
               2: _f32_percent(40201, 50000)}
  baseline = {0: _f32_percent(40000, 50000), 1: _f32_percent(40100, 50000),
              2: _f32_percent(40200, 50000)}
  d = stats.paired_delta(treatment, baseline)
  assert d.p is not None and d.note == ""


def test_untested_deltas_say_why():
  assert stats.paired_delta({0: 1.0}, {1: 2.0}).note == stats.NO_SHARED_SEEDS
  assert stats.paired_delta({0: 2.0}, {0: 1.0}).note == stats.TOO_FEW_SEEDS
  assert stats.paired_delta({0: 0.0, 1: 0.0}, {0: 0.0, 1: 0.0}).note == stats.EQUAL_DIFFERENCES


def test_evaluation_summarize_counts_exactly():
  n, correct, correct5 = 359, 301, 350
  label = np.arange(n) % 3
  pred = np.where(np.arange(n) < correct, label, (label + 1) % 3)
  outputs = {"label": label, "pred": pred, "loss": np.ones(n, np.float32),
             "top1": (np.arange(n) < correct).astype(np.float32),
             "top5": (np.arange(n) < correct5).astype(np.float32)}
  out = evaluator.summarize(outputs, 3)
  assert (out["correct"], out["correct_top5"], out["count"]) == (correct, correct5, n)
  assert all(type(out[k]) is int for k in ("correct", "correct_top5", "count"))  # pylint: disable=unidiomatic-typecheck
  assert out["top1"] == correct / n and out["top5"] == correct5 / n
  assert out["top1"] != float(np.float32(correct / n))


# --- Holm, the test set's noise, seeds needed ---------------------------------------------------

def test_holm_adjusts_step_down_and_keeps_untested_out():
  # sorted 0.01, 0.03, 0.04 of m=3: 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
  assert stats.holm([0.04, None, 0.01, 0.03]) == pytest.approx([0.06, None, 0.03, 0.06])
  assert stats.holm([0.5, 0.9]) == [1.0, 1.0] and stats.holm([]) == []
  assert stats.holm([0.2]) == [0.2]


def test_holm_levels_are_the_steps_the_procedure_tested_at():
  # sorted 0.001 (at 0.05/4, significant), 0.01 (at 0.05/3, significant), 0.03 (at 0.05/2: not):
  # the procedure stops there, and 0.04 shares that level
  assert stats.holm_levels([0.04, None, 0.001, 0.03, 0.01]) == pytest.approx(
      [0.025, None, 0.0125, 0.025, 0.05 / 3])
  assert stats.holm_levels([0.5, 0.9]) == [0.025, 0.025] and stats.holm_levels([]) == []
  # significant exactly where the Holm-adjusted p is below alpha
  ps = [0.001, 0.2, 0.011, 0.013, 0.04]
  assert [p < level for p, level in zip(ps, stats.holm_levels(ps))] == [
      q < 0.05 for q in stats.holm(ps)]


def test_binomial_halfwidth_is_the_test_sets_own_noise():
  # Wilson's score interval: z / (1 + z^2/N) * sqrt(p (1 - p) / N + z^2 / 4N^2)
  z = 1.959964
  assert stats.binomial_halfwidth(0.9, 359) == pytest.approx(
      z / (1 + z * z / 359) * (0.09 / 359 + z * z / (4 * 359 ** 2)) ** 0.5)
  assert stats.binomial_halfwidth(0.9, 359) == pytest.approx(z * (0.09 / 359) ** 0.5, rel=0.02)
  # 18 of 18 right: still +-8.8 points, not 0
  assert stats.binomial_halfwidth(1.0, 18) == pytest.approx(0.0880, abs=5e-4)


def test_seeds_needed_counts_what_more_seeds_can_and_cannot_shrink():
  # delta 1 point, mean-difference variance 0.5 from 2 seeds (1/n at n seeds): at 10 seeds
  # (2.262 + 0.883) * sqrt(0.1) = 0.995 <= 1, at 9 (2.306 + 0.889) / 3 = 1.065 > 1: 8 more
  assert stats.seeds_needed(1.0, 0.5, 0.0, 2, 0.05) == 8
  z = lambda n: scipy_stats.t.ppf(0.975, n - 1) + scipy_stats.t.ppf(0.8, n - 1)  # pylint: disable=unnecessary-lambda-assignment
  assert z(10) * 0.1 ** 0.5 <= 1 < z(9) / 3
  # the test set's variance alone exceeds what the difference allows: no number of seeds does
  assert stats.seeds_needed(1.0, 0.5, 0.2, 2, 0.05) is None
  assert stats.seeds_needed(1.0, None, 0.0, 1, 0.05) is None
  assert stats.seeds_needed(0.0, 0.5, 0.0, 2, 0.05) is None


# --- the image-level bootstrap ------------------------------------------------------------------

def _correct(rng, n_seeds, n_images, accuracy, shared):
  """0/1 correctness where images share a difficulty (`shared`) across seeds and strategies."""
  return (rng.normal(0, 0.8, (n_seeds, n_images)) + shared + accuracy > 0).astype(np.int8)


def test_bootstrap_of_identical_strategies_is_a_tie():
  a = np.random.default_rng(0).integers(0, 2, (3, 50), dtype=np.int8)
  d = bootstrap.compare(a, a.copy())
  assert (d.mean, d.low, d.high, d.p_greater, d.p) == (0.0, 0.0, 0.0, 0.5, 1.0)


def test_bootstrap_is_exact_in_its_mean_seeded_and_near_the_normal_interval():
  rng = np.random.default_rng(1)
  shared = rng.normal(0, 1.5, 4000)
  a, b = _correct(rng, 3, 4000, 1.35, shared), _correct(rng, 3, 4000, 1.25, shared)
  d = bootstrap.compare(a, b)
  assert d.mean == pytest.approx(100 * (a.mean() - b.mean()))
  assert d.low < d.mean < d.high and d == bootstrap.compare(a, b)
  # the crossed resampling's variance: var(seed means) / S + var(image means) / N + mean(e^2) / SN
  diff = 100.0 * (a.astype(float) - b)
  residual = diff - diff.mean(1, keepdims=True) - diff.mean(0, keepdims=True) + diff.mean()
  variance = (diff.mean(1).var() / 3 + diff.mean(0).var() / 4000
              + (residual ** 2).mean() / (3 * 4000))
  assert d.seed_var + d.image_var == pytest.approx(variance)
  assert (d.high - d.low) / 2 == pytest.approx(1.959964 * variance ** 0.5, rel=0.05)
  assert d.p_greater > 0.95 and d.p < 0.1


def test_bootstrap_resamples_seeds_as_well_as_images():
  # the same mean difference (+2 points over 3 x 300 images), once the same on every seed, once
  # +10, 0, -4 on the three seeds: the seeds' disagreement widens the interval
  b = np.zeros((3, 300), np.int8)
  same, spread = b.copy(), b.copy()
  same[:, :6] = 1
  for s, k in enumerate((30, 0, 0)):
    spread[s, :k] = 1
  spread[2, 300 - 12:] = -1
  spread = spread.clip(0, 1)
  b_spread = b.copy()
  b_spread[2, 300 - 12:] = 1
  assert bootstrap.compare(same, b).mean == bootstrap.compare(spread, b_spread).mean == 2.0
  narrow, wide = bootstrap.compare(same, b), bootstrap.compare(spread, b_spread)
  assert wide.high - wide.low > 2 * (narrow.high - narrow.low)


def test_a_dominating_strategy_is_separated_as_far_as_the_resamples_tell():
  b = np.zeros((3, 300), np.int8)
  a = b.copy()
  a[:, :30] = 1
  d = bootstrap.compare(a, b)
  assert d.p_greater == 1.0 and d.low > 0 and d.p == pytest.approx(2 / (bootstrap.RESAMPLES + 1))
