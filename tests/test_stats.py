"""Tests for ftlab.reports.stats (paired deltas on float32-rounded values) and evaluator.summarize."""
import numpy as np
import pytest

from ftlab.evaluation import evaluator
from ftlab.reports import stats


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
