"""The pivot: runs -> cells (rows x columns) with summaries over seeds, paired deltas (Holm-corrected
across the table), costs, and the verdict of each row (`reports.verdict`, labelled untuned: a
sweep runs every strategy at one recipe)."""
import dataclasses
import re
from typing import Iterable, Sequence

from ftlab.reports import stats
from ftlab.reports import verdict as verdict_lib
from ftlab.reports.collect import (Collection, RunRecord, lookup, metric_value, select,
                                   selected_on_val, with_metric)
from ftlab.studies.cost import PHASE_FIELDS, mean_or_none, phases
from ftlab.sweeps import naming
from ftlab.sweeps.rundir import dig


RUN_STATUSES = ("finished", "failed", "missing", "running")


# a cell's cost: results.json's top-level keys, then the run's probe apart from its fine-tuning
COST_FIELDS = ("num_trainable_params", "optimizer_state_bytes", "train_time_s",
               "train_images_per_s", "peak_rss_mb") + PHASE_FIELDS


_FRACTION_RE = re.compile(r"(top\d+|precision|recall|f1|acc|accuracy)$")


_LOWER_IS_BETTER_RE = re.compile(r"(loss|time|bytes|rss|error)")


@dataclasses.dataclass(frozen=True)
class Spec:
  """What to report.

  Attributes:
    metric: dotted results.json key, e.g. `test.top1`.
    rows: keys whose values label the rows.
    cols: keys whose values label the columns.
    baseline: column label the paired deltas compare against.
    alpha: significance threshold of the paired test.
    reference: a key of REFERENCES to tabulate beside ours, or ''.
  """
  metric: str = "test.top1"
  rows: tuple = ("model",)
  cols: tuple = ("strategy",)
  baseline: str = "full_ft"
  alpha: float = stats.ALPHA
  reference: str = ""

  @property
  def is_fraction(self) -> bool:
    return bool(_FRACTION_RE.search(self.metric.rsplit(".", 1)[-1]))

  @property
  def scale(self) -> float:
    return 100.0 if self.is_fraction else 1.0

  @property
  def unit(self) -> str:
    return "%" if self.is_fraction else ""

  @property
  def higher_is_better(self) -> bool:
    return not _LOWER_IS_BETTER_RE.search(self.metric)


@dataclasses.dataclass
class Cell:
  """One (row, col): per-seed values in display units and their summaries."""
  row: str
  col: str
  values: dict = dataclasses.field(default_factory=dict)
  runs: list = dataclasses.field(default_factory=list)
  n_failed: int = 0
  n_missing: int = 0
  n_running: int = 0
  summary: stats.Summary | None = None
  best: bool = False
  delta: stats.PairedDelta | None = None
  cost: dict = dataclasses.field(default_factory=dict)
  n_selected_on_val: int = 0
  problems: list = dataclasses.field(default_factory=list)
  dirs: dict = dataclasses.field(default_factory=dict)    # seed -> run dir of a finished run
  test_count: int | None = None  # images of the metric's split (its binomial half-width)

  @property
  def status(self) -> str:
    """`ok` with a number; else `failed` if any run failed, `running`, then `missing`."""
    if self.summary is not None:
      return "ok"
    if self.n_failed:
      return "failed"
    return "running" if self.n_running else "missing"


@dataclasses.dataclass
class Report:
  """A pivot of cells plus what it was built from."""
  spec: Spec
  collection: Collection
  records: list
  rows: list
  cols: list
  cells: dict
  verdict: verdict_lib.Verdict | None = None

  @property
  def problems(self) -> list:
    return self.collection.problems


def label(record: RunRecord, keys: Sequence[str], fallback: dict) -> str:
  """The row/column label of a run: its values for `keys`, comma-joined."""
  parts = []
  for key in keys:
    value = lookup(record, key)
    parts.append(naming.format_value(value) if value is not None else fallback.get(key, "?"))
  return ",".join(parts)


def _shared_values(records: Sequence[RunRecord], keys: Sequence[str]) -> dict:
  """For runs that lack a key (e.g. failed ones), the value all others share."""
  out = {}
  for key in keys:
    values = {naming.format_value(v) for r in records if (v := lookup(r, key)) is not None}
    if len(values) == 1:
      out[key] = values.pop()
  return out


def _order(labels: Iterable[str], preferred: Sequence[str]) -> list[str]:
  seen = list(dict.fromkeys(labels))
  return [p for p in preferred if p in seen] + [s for s in seen if s not in preferred]


def _strategy_order(collection: Collection, keys: Sequence[str],
                    given: Sequence[str] = ()) -> list:
  """For a strategy axis: the given order, else sweep.json's (the config's STRATEGY_ORDER)."""
  if tuple(keys) in (("strategy",), ("strategy.name",)):
    return list(given or collection.index.get("strategy_order") or [])
  return []


def _add_record(cell: Cell, record: RunRecord, spec: Spec, problems: list) -> None:
  cell.runs.append(record.name)
  if record.status != "finished":
    cell.n_failed += record.status == "failed"
    cell.n_missing += record.status == "missing"
    cell.n_running += record.status == "running"
    cell.problems.append(record.reason)
    return
  seed = lookup(record, "seed")
  seed = record.name if seed is None else seed
  if seed in cell.values:
    problems.append(f"{record.dir}: cell ({cell.row}, {cell.col}) already has seed {seed}; "
                    "runs differing in another key are mixed: add it to --rows/--cols or "
                    "use --only; this run is left out")
    return
  cell.values[seed] = metric_value(record, spec.metric) * spec.scale
  cell.dirs[seed] = record.dir
  count = dig(record.results, spec.metric.rpartition(".")[0] + ".count")
  cell.test_count = count if isinstance(count, int) else cell.test_count
  cell.n_selected_on_val += selected_on_val(record)
  costs = {**{k: record.results.get(k) for k in COST_FIELDS if k not in PHASE_FIELDS},
           "num_params": record.results.get("num_params"), **phases(record.results)}
  for field, value in costs.items():
    cell.cost.setdefault(field, []).append(value)


def _finalize(cell: Cell) -> None:
  if cell.values:
    cell.summary = stats.summarize(list(cell.values.values()))
  cell.cost = {k: mean_or_none(v) for k, v in cell.cost.items()}


def _mark_best(report: Report) -> None:
  """Marks the best cell(s) of every row, comparing means as displayed."""
  sign = 1 if report.spec.higher_is_better else -1
  for row in report.rows:
    cells = [report.cells[row, c] for c in report.cols if report.cells[row, c].summary]
    if not cells:
      continue
    best = max(sign * round(c.summary.mean, 2) for c in cells)
    for c in cells:
      c.best = sign * round(c.summary.mean, 2) == best


def _add_deltas(report: Report) -> None:
  """Paired deltas against the baseline column, Holm-corrected across the whole table."""
  base = report.spec.baseline
  if base not in report.cols:
    return
  cells = [report.cells[row, col] for row in report.rows for col in report.cols
           if col != base and report.cells[row, col].values and report.cells[row, base].values]
  deltas = [stats.paired_delta(c.values, report.cells[c.row, base].values, report.spec.alpha)
            for c in cells]
  for cell, d, p in zip(cells, deltas, stats.holm([d.p for d in deltas])):
    cell.delta = dataclasses.replace(d, p_holm=p,
                                     significant=None if p is None else p < report.spec.alpha)


def _verdict(report: Report) -> verdict_lib.Verdict:
  """Each row's winner among its columns, every other column paired with it; image-level from
  predictions.csv only for `test.top1` (predictions.csv holds the test split)."""
  spec = report.spec
  image_level = spec.metric == "test.top1"
  groups = []
  for row in report.rows:
    cells = [report.cells[row, c] for c in report.cols]
    groups.append((row, f"{','.join(spec.rows)}={row}", [
        verdict_lib.Contender(c.col, c.values, c.dirs if image_level else {}, c.test_count, c.status)
        for c in cells]))
  return verdict_lib.build(groups, untuned=True, measure=spec.metric,
                       higher_is_better=spec.higher_is_better, alpha=spec.alpha,
                       scale=spec.scale)


def build(collection: Collection, spec: Spec, only: Iterable[str] = (),
          strategy_order: Sequence[str] = ()) -> Report:
  """Pivots the collection's runs into cells with summaries, best marks, deltas.

  Args:
    collection: the runs found by `collect`.
    spec: metric, row/column keys, baseline and alpha.
    only: `key=value` filters on the runs.
    strategy_order: overrides sweep.json's strategy order.

  Returns:
    The `Report`.
  """
  problems = collection.problems
  records = select(with_metric(collection.records, spec.metric, problems), only)
  fallback = _shared_values(records, spec.rows + spec.cols)
  labelled = [(label(r, spec.rows, fallback), label(r, spec.cols, fallback), r)
              for r in records]
  rows = _order((r for r, _, _ in labelled),
                _strategy_order(collection, spec.rows, strategy_order))
  cols = _order((c for _, c, _ in labelled),
                _strategy_order(collection, spec.cols, strategy_order))
  cells = {(r, c): Cell(r, c) for r in rows for c in cols}
  for row, col, record in labelled:
    _add_record(cells[row, col], record, spec, problems)
  for cell in cells.values():
    _finalize(cell)
  report = Report(spec, collection, records, rows, cols, cells)
  _mark_best(report)
  _add_deltas(report)
  report.verdict = _verdict(report)
  return report


def run_counts(report: Report) -> dict:
  """How many runs are finished, failed, missing and running."""
  counts = dict.fromkeys(RUN_STATUSES, 0)
  for r in report.records:
    counts[r.status] += 1
  return counts


def val_selected(report: Report) -> list[str]:
  return [r.name for r in report.records if r.status == "finished" and selected_on_val(r)]


def selection_notes(report: Report) -> list[str]:
  """Notes naming how many runs chose their checkpoint on `val`; [] when none did."""
  names = val_selected(report)
  if not names:
    return []
  notes = [f"Note: {len(names)} of {run_counts(report)['finished']} finished runs selected their "
           "checkpoint on `val` (config.data.minival_fraction=0): their `val` numbers were "
           "used for checkpoint selection and are not held out."]
  if report.spec.metric.startswith("val."):
    notes.append(f"This report's metric `{report.spec.metric}` is a `val` number: for those "
                 "runs it is the score their checkpoint was chosen on, not a held-out score.")
  return notes
