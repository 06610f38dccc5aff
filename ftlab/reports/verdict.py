"""The verdict: per data size (a study) or per row (a sweep), which strategy wins, which are tied
with it after Holm's correction, which are beaten, and what more seeds would buy.

In each group the winner is the best mean over final seeds (ties: the first
declared). Every other strategy is compared with it, paired, two ways:
  * at the image level from predictions.csv (`bootstrap.compare`: seeds, then
    test images), when both have predictions for every shared seed: the
    difference, its 95% interval and P(strategy > winner); it counts the test
    set's noise, but two or three seeds that agree make it over-confident
    (resampling 3 seeds cannot show how far a 4th could fall);
  * by the seed-level paired t-test over shared seeds, whose t quantile is
    honest about few seeds but which takes the test set as fixed.
A strategy is beaten when both separate it from the winner (an
intersection-union test: its p-value is the larger of the two), after Holm's
correction over every comparison of the table (all groups together); with
one of them only (no predictions, or differences equal on every seed), that
one decides; with one shared seed nothing is tested. The interval shown is
the wider of the two, at the level Holm's procedure tested the comparison at
(`stats.holm_levels`: 1 - alpha / (m - j + 1) for the j-th smallest p-value),
so a tied strategy's interval holds 0 and a beaten one's does not (up to the
bootstrap's resolution); untested ones show 95%. For the closest tied
strategy the paragraph says how many more seeds would separate it at the
observed variance
(`stats.seeds_needed`, at Holm's first-step level alpha / m and 80% power),
or that the test set's own noise, which more seeds do not shrink, is what
limits the comparison.
"""
import dataclasses

from ftlab.reports import bootstrap, predictions, stats


@dataclasses.dataclass(frozen=True)
class Contender:
  """One strategy of a group, as the table has it.

  Attributes:
    name: the strategy.
    values: seed -> its metric in display units (points for a top-1).
    run_dirs: seed -> its run dir (predictions.csv); {} for no image-level comparison.
    test_count: test images of its runs (the binomial half-width), None when unknown.
    status: what stands for a missing number (running, failed, searching).
  """
  name: str
  values: dict
  run_dirs: dict = dataclasses.field(default_factory=dict)
  test_count: int | None = None
  status: str = ""


@dataclasses.dataclass
class Comparison:
  """`name` against its group's winner: name - winner, in display units."""
  group: str
  name: str
  winner: str
  seed: stats.PairedDelta
  image: bootstrap.ImageDelta | None
  image_note: str = ""
  p_holm: float | None = None    # the decision's p (`p`), Holm-adjusted across the table
  bound: float | None = None     # |difference| can be no larger (100 points for a top-1)
  beaten: bool = False
  more_seeds: int | None = None
  confidence: float = stats.CONFIDENCE  # of `interval`: 1 - Holm's level for this comparison
  resampled: object = dataclasses.field(default=None, repr=False)  # the bootstrap's means

  @property
  def p(self) -> float | None:
    """The decision's p-value: the larger of the image-level and the seed t-test's when both
    exist, else the one there is; None with one shared seed."""
    if self.seed.n < 2:
      return None
    if self.image is None or self.seed.p is None:
      return self.seed.p if self.image is None else self.image.p
    return max(self.image.p, self.seed.p)

  @property
  def delta(self) -> float:
    return self.image.mean if self.image is not None else self.seed.mean

  @property
  def interval(self) -> tuple | None:
    """The wider of the bootstrap's and the t test's intervals at `confidence` (within +-bound),
    or None."""
    parts = []
    if self.image is not None:
      parts.append((self.image.low, self.image.high))
    if self.seed.ci is not None:
      std = self.seed.ci / stats.t_halfwidth(1.0, self.seed.n)  # of the per-seed differences
      half = stats.t_halfwidth(std, self.seed.n, self.confidence)
      parts.append((self.seed.mean - half, self.seed.mean + half))
    if not parts:
      return None
    low, high = min(p[0] for p in parts), max(p[1] for p in parts)
    if self.bound is not None:
      low, high = max(low, -self.bound), min(high, self.bound)
    return low, high


@dataclasses.dataclass
class VerdictGroup:
  """One data size (or sweep row): its winner and every comparison with it."""
  name: str
  phrase: str                    # how its paragraph opens: 'At 4 images per class'
  winner: Contender | None
  summary: stats.Summary | None
  test_halfwidth: float | None   # the winner's test set binomial 95% half-width, display units
  comparisons: list
  waiting: list                  # contenders without a number yet


@dataclasses.dataclass
class Verdict:
  groups: list
  untuned: bool
  measure: str                   # e.g. 'test top-1'
  alpha: float

  @property
  def comparisons(self) -> list:
    return [c for g in self.groups for c in g.comparisons]

  @property
  def tested(self) -> int:
    """Holm's family size: the comparisons with a p-value."""
    return sum(c.p is not None for c in self.comparisons)


def _pair(c: Contender, winner: Contender, alpha: float) -> Comparison:
  a, b, seeds = predictions.paired_matrices(c.run_dirs, winner.run_dirs)
  image, means = bootstrap.with_resamples(a, b) if a is not None else (None, None)
  note = "" if image is not None else (seeds if c.run_dirs else "no predictions.csv")
  return Comparison("", c.name, winner.name, stats.paired_delta(c.values, winner.values, alpha),
                    image, note, resampled=means)


def _winner(contenders: list, higher_is_better: bool) -> Contender | None:
  sign = 1 if higher_is_better else -1
  scored = [c for c in contenders if c.values]
  return max(scored, key=lambda c: sign * stats.summarize(list(c.values.values())).mean,
             default=None)


def _group(name: str, phrase: str, contenders: list, higher_is_better: bool, alpha: float,
           scale: float) -> VerdictGroup:
  winner = _winner(contenders, higher_is_better)
  waiting = [c for c in contenders if not c.values]
  if winner is None:
    return VerdictGroup(name, phrase, None, None, None, [], waiting)
  summary = stats.summarize(list(winner.values.values()))
  half = None
  if winner.test_count and scale == 100.0 and 0 <= summary.mean <= 100:
    half = 100.0 * stats.binomial_halfwidth(summary.mean / 100.0, winner.test_count)
  bound = 100.0 if scale == 100.0 else None
  comparisons = [dataclasses.replace(_pair(c, winner, alpha), group=name, bound=bound)
                 for c in contenders if c.values and c is not winner]
  return VerdictGroup(name, phrase, winner, summary, half, comparisons, waiting)


def _seeds_for(c: Comparison, alpha: float) -> int | None:
  """More seeds to separate it: the seed t-test's variance of the mean difference, plus the test
  set's own (image-level) part, which more seeds leave as it is."""
  if c.seed.ci is None or c.seed.n < 2:
    return None
  std = c.seed.ci / stats.t_halfwidth(1.0, c.seed.n)  # of the per-seed differences
  image_var = c.image.image_var if c.image is not None else 0.0
  return stats.seeds_needed(c.delta, std ** 2 / c.seed.n, image_var, c.seed.n, alpha)


def build(groups: list, untuned: bool, measure: str = "test top-1",
          higher_is_better: bool = True, alpha: float = stats.ALPHA,
          scale: float = 100.0) -> Verdict:
  """The verdict of a table: `groups` is a list of (name, phrase, [Contender]) in order."""
  out = Verdict([_group(n, p, cs, higher_is_better, alpha, scale) for n, p, cs in groups],
                untuned, measure, alpha)
  comparisons = out.comparisons
  sign = 1 if higher_is_better else -1
  pvalues = [c.p for c in comparisons]
  for c, p, level in zip(comparisons, stats.holm(pvalues), stats.holm_levels(pvalues, alpha)):
    c.p_holm = p
    if level is not None:
      c.confidence = 1.0 - level
      if c.image is not None:
        c.image = bootstrap.at_confidence(c.image, c.resampled, c.confidence)
    c.beaten = p is not None and p < alpha and sign * c.delta < 0
    if p is not None and not c.beaten:
      c.more_seeds = _seeds_for(c, alpha / out.tested)
  return out


def signed(x: float) -> str:
  return f"{x:+.2f}".replace("-", "\u2212")


def difference_text(c: Comparison) -> str:
  """`−0.30 [−1.10, +0.50]`, or `−0.30` without an interval."""
  interval = c.interval
  if interval is None:
    return signed(c.delta)
  return f"{signed(c.delta)} [{signed(interval[0])}, {signed(interval[1])}]"


def _head(group: VerdictGroup, verdict: Verdict) -> str:
  s, w = group.summary, group.winner
  spread = f" \u00b1 {s.ci:.2f} over {s.n} seeds" if s.ci is not None else ", one seed"
  noise = (f"; the test set's own 95% half-width \u00b1{group.test_halfwidth:.2f}"
           if group.test_halfwidth is not None else "")
  return (f"{group.phrase}, **{w.name}** wins ({verdict.measure} {s.mean:.2f}{spread}{noise}).")


def separation_text(group: VerdictGroup, tied: list, untested: list) -> str:
  """What more seeds would buy: for the closest tied strategy, or a second seed when only one."""
  pair = lambda c: f"{group.winner.name} from {c.name}"  # pylint: disable=unnecessary-lambda-assignment
  if tied:
    closest = max(tied, key=lambda c: c.delta)
    if closest.more_seeds is not None:
      n = max(closest.more_seeds, 1)
      return (f" Separating {pair(closest)} would need about {n} more seed{'s' if n > 1 else ''} "
              "at the observed variance.")
    if closest.image is not None and closest.image.seed_var is not None:
      return (f" More seeds alone would not separate {pair(closest)}: at the observed variance "
              "the test set's own noise is larger than their difference.")
  single = [c for c in untested if c.seed.n == 1]
  if single:
    return f" Separating {pair(max(single, key=lambda c: c.delta))} needs a second seed."
  return ""


def _untested_text(c: Comparison) -> str:
  """`linear_probe (−39.34; one shared seed, no predictions.csv)`."""
  seeds = {0: "no shared seed", 1: "one shared seed"}.get(
      c.seed.n, "the same difference on every seed" if c.seed.note == stats.EQUAL_DIFFERENCES
      else c.seed.note)
  return f"{c.name} ({signed(c.delta)}; {seeds}, {c.image_note or 'no image-level pairing'})"


def paragraph(group: VerdictGroup, verdict: Verdict) -> str:
  """The group's verdict in one paragraph (see the module docstring)."""
  label = "Untuned (every strategy at one shared recipe): " if verdict.untuned else ""
  if group.winner is None:
    names = ", ".join(f"{c.name} ({c.status})" for c in group.waiting) or "none"
    return f"{label}{group.phrase}: no strategy has a number yet ({names})."
  tied = [c for c in group.comparisons if not c.beaten and c.p is not None]
  beaten = [c for c in group.comparisons if c.beaten]
  untested = [c for c in group.comparisons if c.p is None]
  parts = [label + _head(group, verdict)]
  listed = lambda cs: ", ".join(f"{c.name} ({difference_text(c)})" for c in cs) or "none"  # pylint: disable=unnecessary-lambda-assignment
  parts.append(f"Tied with it after Holm correction: {listed(tied)}.")
  parts.append(f"Beaten: {listed(beaten)}.")
  if untested:
    parts.append(f"Not tested: {', '.join(_untested_text(c) for c in untested)}.")
  text = " ".join(parts) + separation_text(group, tied, untested)
  if group.waiting:
    text += " Not compared yet: " + ", ".join(f"{c.name} ({c.status})" for c in group.waiting) + "."
  return text


def paragraphs(verdict: Verdict) -> list:
  return [paragraph(g, verdict) for g in verdict.groups]


def note(verdict: Verdict) -> str:
  """What the paragraphs' numbers are, for the report."""
  m = verdict.tested
  return (f"Differences are strategy − winner in points, with the wider of two intervals: "
          f"image-level ({bootstrap.TEST_NAME}) where every shared seed has predictions.csv, and "
          "the seed-level paired t-test's, each at the level Holm's procedure tested it at "
          "(the j-th smallest of m p-values at 1 − alpha/(m − j + 1); those after the first not "
          "significant at that one's level): a tied strategy's interval holds 0, a beaten one's "
          "does not; they are not simultaneous intervals, and untested ones are 95%. Beaten: "
          "both tests separate it (the larger p-value "
          f"decides) after {stats.HOLM} across the table's {m} tested comparison{'s' if m != 1 else ''} "
          f"at alpha={verdict.alpha:g}; else tied (one shared seed: not tested). Seeds needed: "
          f"two-sided test at alpha/{max(m, 1)} with {stats.POWER:.0%} power, the seed variance "
          "shrinking with more seeds and the test set's not.")


def to_json(verdict: Verdict) -> list:
  out = []
  for g, text in zip(verdict.groups, paragraphs(verdict)):
    out.append({
        "group": g.name, "text": text, "untuned": verdict.untuned,
        "winner": g.winner.name if g.winner else None,
        "mean": g.summary.mean if g.summary else None,
        "ci95": g.summary.ci if g.summary else None,
        "n_seeds": g.summary.n if g.summary else 0, "test_halfwidth": g.test_halfwidth,
        "comparisons": [comparison_json(c) for c in g.comparisons]})
  return out


def comparison_json(c: Comparison) -> dict:
  image = dataclasses.asdict(c.image) if c.image is not None else None
  return {"strategy": c.name, "winner": c.winner, "delta": c.delta, "interval": c.interval,
          "image_level": image, "image_note": c.image_note,
          "interval_confidence": c.confidence,
          "seed_t_test": dataclasses.asdict(c.seed), "p": c.p, "p_holm": c.p_holm,
          "beaten": c.beaten, "more_seeds": c.more_seeds}

