"""The verdict (ftlab.reports.verdict): winner, tied and beaten after Holm's correction across the
table, image-level pairing from predictions.csv, what more seeds would buy; exact paragraphs."""
import numpy as np
import pytest

from ftlab.reports import bootstrap, stats, verdict


def _contender(tmp_path, name, correct):
  """A strategy whose seed s got `correct[s]` (0/1 per image) right; predictions.csv per seed."""
  dirs, values = {}, {}
  for seed, row in enumerate(correct):
    run = tmp_path / name / f"seed={seed}"
    run.mkdir(parents=True)
    lines = ["image,true,predicted,confidence"]
    lines += [f"img/{i}.png,a,{'a' if ok else 'b'},0.9" for i, ok in enumerate(row)]
    (run / "predictions.csv").write_text("\n".join(lines) + "\n")
    dirs[seed], values[seed] = run, 100.0 * float(np.mean(row))
  return verdict.Contender(name, values, dirs, len(correct[0]))


def _shifted(base, extra):
  """`base` with each seed's first `extra[s]` wrong images made right."""
  out = base.copy()
  for s, k in enumerate(extra):
    out[s, np.flatnonzero(out[s] == 0)[:k]] = 1
  return out


def _mean(c: verdict.Contender) -> float:
  return sum(c.values.values()) / len(c.values)


@pytest.fixture
def three(tmp_path):
  """probe, full_ft and deep_lr on the same 1000 images (a shared difficulty, noise per strategy
  and seed): full_ft and deep_lr about 90% and close, probe far below."""
  rng = np.random.default_rng(0)
  difficulty = rng.normal(0, 1.5, 1000)
  correct = lambda offset: (rng.normal(0, 0.8, (3, 1000)) + difficulty + offset > 0).astype(np.int8)  # pylint: disable=unnecessary-lambda-assignment
  return [_contender(tmp_path, n, correct(o))
          for n, o in (("probe", 0.2), ("full_ft", 2.25), ("deep_lr", 2.15))]


def test_the_winner_the_tied_and_the_beaten(three):
  v = verdict.build([("k=20", "At 20 images per class", three)], untuned=False)
  [group] = v.groups
  assert group.winner.name == "full_ft"
  probe, deep = group.comparisons
  assert (probe.name, deep.name) == ("probe", "deep_lr")
  # image-level: every seed and image paired, the mean the exact difference of the means
  assert deep.image.n_seeds == 3 and deep.image.n_images == 1000
  assert deep.delta == pytest.approx(_mean(three[2]) - _mean(three[1]))
  assert probe.delta == pytest.approx(_mean(three[0]) - _mean(three[1]))
  # Holm over the table's two comparisons
  assert [c.p_holm for c in group.comparisons] == pytest.approx(stats.holm([probe.p, deep.p]))
  assert deep.p == max(deep.image.p, deep.seed.p)
  assert probe.beaten and not deep.beaten
  ci = stats.summarize(list(three[1].values.values())).ci
  half = 100 * stats.binomial_halfwidth(_mean(three[1]) / 100, 1000)
  seeds = deep.more_seeds
  assert verdict.paragraph(group, v) == (
      f"At 20 images per class, **full_ft** wins (test top-1 {_mean(three[1]):.2f} ± {ci:.2f} over "
      f"3 seeds; the test set's own 95% half-width ±{half:.2f}). Tied with it after Holm "
      f"correction: deep_lr ({verdict.difference_text(deep)}). Beaten: probe "
      f"({verdict.difference_text(probe)}).{verdict.separation_text(group, [deep], [])}")
  # the interval shown: the wider of the bootstrap's and the t test's, at Holm's level: probe's p
  # is the smaller (tested at 0.05 / 2, significant), deep_lr's then at 0.05 / 1
  assert (probe.confidence, deep.confidence) == pytest.approx((1 - 0.05 / 2, 0.95))
  t_low, t_high = deep.seed.mean - deep.seed.ci, deep.seed.mean + deep.seed.ci
  assert deep.interval == (min(deep.image.low, t_low), max(deep.image.high, t_high))
  assert deep.interval[0] < 0 < deep.interval[1]
  assert probe.interval[1] < 0
  assert seeds is None or seeds == stats.seeds_needed(deep.delta, deep.image.seed_var,
                                                      deep.image.image_var, 3, 0.05 / 2)


def test_holm_counts_every_comparison_of_the_table(three):
  one = verdict.build([("a", "At a", three)], untuned=False)
  two = verdict.build([("a", "At a", three), ("b", "At b", three)], untuned=False)
  deep = next(c for c in one.comparisons if c.name == "deep_lr")
  twice = [c for c in two.comparisons if c.name == "deep_lr"]
  probe = next(c for c in one.comparisons if c.name == "probe")
  assert [c.p_holm for c in twice] == pytest.approx(
      [stats.holm([probe.p, deep.p, probe.p, deep.p])[1]] * 2)
  assert twice[0].p_holm > deep.p_holm


def test_seeds_that_agree_in_sign_do_not_make_a_difference_certain(tmp_path):
  # 5000 images; b beats a by 1, 3 and 2 points on the three seeds: every resample of the seeds
  # favours b (the bootstrap alone would call it), the t-test over 3 seeds does not
  # (p=0.074), and the test set's noise is small at that size: more seeds would settle it
  rng = np.random.default_rng(1)
  a = (rng.random((3, 5000)) < 0.7).astype(np.int8)
  b = _shifted(a, [50, 150, 100])
  v = verdict.build([("all", "On the whole train split", [
      _contender(tmp_path, "b", b), _contender(tmp_path, "a", a.copy())])], untuned=False)
  [c] = v.comparisons
  assert c.image.p < 0.001 and c.seed.p == pytest.approx(0.0742, abs=1e-4)
  assert not c.beaten and c.p == c.seed.p
  assert c.interval == (c.seed.mean - c.seed.ci, c.seed.mean + c.seed.ci)  # the wider one
  diffs = [100 * (b[s].mean() - a[s].mean()) for s in range(3)]
  std = float(np.std(diffs, ddof=1))
  expected = stats.seeds_needed(c.delta, std ** 2 / 3, c.image.image_var, 3, 0.05)
  assert expected is not None and expected >= 1
  assert verdict.paragraph(v.groups[0], v).endswith(
      f"Separating b from a would need about {expected} more seed{'s' if expected > 1 else ''} "
      "at the observed variance.")


def test_one_seed_without_predictions_is_not_tested_and_needs_a_second_seed():
  v = verdict.build([("model=x", "model=x", [
      verdict.Contender("full_ft", {0: 90.0}), verdict.Contender("probe", {0: 80.0}),
      verdict.Contender("scratch", {}, status="running")])], untuned=True, measure="test.top1")
  assert verdict.paragraph(v.groups[0], v) == (
      "Untuned (every strategy at one shared recipe): model=x, **full_ft** wins (test.top1 90.00, "
      "one seed). Tied with it after Holm correction: none. Beaten: none. Not tested: probe "
      "(−10.00; one shared seed, no predictions.csv). Separating full_ft from probe needs a "
      "second seed. Not compared yet: scratch (running).")


def test_lower_is_better_picks_the_lowest_and_nothing_is_a_winner_without_numbers():
  v = verdict.build([("r", "r", [verdict.Contender("a", {0: 0.5, 1: 0.6}),
                                 verdict.Contender("b", {0: 0.3, 1: 0.4})]),
                     ("s", "At s", [verdict.Contender("a", {}, status="failed")])],
                    untuned=False, measure="test.loss", higher_is_better=False, scale=1.0)
  assert v.groups[0].winner.name == "b" and v.groups[0].test_halfwidth is None
  assert verdict.paragraph(v.groups[1], v) == "At s: no strategy has a number yet (a (failed))."


def test_the_bootstrap_in_the_verdict_is_seeded(three):
  first = verdict.build([("a", "At a", three)], untuned=False)
  second = verdict.build([("a", "At a", three)], untuned=False)
  assert verdict.paragraphs(first) == verdict.paragraphs(second)
  assert first.comparisons[0].image == bootstrap.compare(
      *[np.array([[1 if r["predicted"] == r["true"] else 0 for r in rows] for rows in side])
        for side in ([_rows(three[0].run_dirs[s]) for s in range(3)],
                     [_rows(three[1].run_dirs[s]) for s in range(3)])],
      confidence=first.comparisons[0].confidence)


def _rows(run_dir):
  from ftlab.reports.predictions import read_predictions  # pylint: disable=import-outside-toplevel
  return sorted(read_predictions(run_dir / "predictions.csv"), key=lambda r: r["image"])


def test_an_interval_of_a_top1_difference_stays_within_100_points():
  # two seeds that disagree wildly: the t interval (12.7 x sd / sqrt 2) leaves [-100, 100]
  v = verdict.build([("a", "At a", [verdict.Contender("x", {0: 100.0, 1: 100.0}),
                                    verdict.Contender("y", {0: 100.0, 1: 33.3})])], untuned=False)
  [c] = v.comparisons
  assert c.seed.mean - c.seed.ci < -100 < 100 < c.seed.mean + c.seed.ci
  assert c.interval == (-100.0, 100.0)


def test_a_tied_strategy_never_shows_an_interval_that_excludes_zero(tmp_path):
  # five strategies 1 to 2 points below the winner on 3 seeds: every raw p is below 0.05 but
  # Holm over five keeps them tied; the 95% intervals would exclude 0, the Holm-level ones do not
  rng = np.random.default_rng(3)
  best = (rng.random((3, 4000)) < 0.8).astype(np.int8)
  worse = [best.copy() for _ in range(5)]
  for k, w in enumerate(worse):
    for s in range(3):
      w[s, np.flatnonzero(best[s] == 1)[:(40, 80, 60)[s] + 2 * k]] = 0
  contenders = [_contender(tmp_path, "best", best)] + [
      _contender(tmp_path, f"w{k}", w) for k, w in enumerate(worse)]
  v = verdict.build([("a", "At a", contenders)], untuned=False)
  raw = [c.p for c in v.comparisons]
  assert all(p < 0.05 for p in raw) and not any(c.beaten for c in v.comparisons)
  for c in v.comparisons:
    assert c.confidence > 0.95
    assert c.interval[0] < 0 < c.interval[1]
    t95 = (c.seed.mean - c.seed.ci, c.seed.mean + c.seed.ci)
    assert t95[1] < 0  # what an unadjusted interval would have printed
