"""The report's tables (values, deltas, cost, reference) as format-neutral rows of text."""
import dataclasses

from ftlab.reports import stats
from ftlab.reports.cells import (fixed_digits, format_bytes, format_cell, format_delta,
                                 format_seconds, format_trainable)
from ftlab.reports.pivot import Report, Spec, run_counts
from ftlab.reports.references import REFERENCES, Reference


@dataclasses.dataclass
class Table:
  """A titled grid of strings; `bold` holds (row, col) indices into `rows`."""
  title: str
  header: list
  rows: list
  bold: set = dataclasses.field(default_factory=set)
  notes: list = dataclasses.field(default_factory=list)


def counts_text(report: Report) -> str:
  """`12 finished, 3 failed, 2 missing, 1 running`."""
  return ", ".join(f"{n} {status}" for status, n in run_counts(report).items())


def metric_title(spec: Spec) -> str:
  return f"{spec.metric} ({spec.unit})" if spec.unit else spec.metric


def value_table(report: Report, spread: str) -> Table:
  """The pivot with mean ± std (spread='std') or mean ± 95% CI ('ci')."""
  spec = report.spec
  what = "std over seeds" if spread == "std" else "95% CI"
  bold, rows = set(), []
  for i, row in enumerate(report.rows):
    cells = [report.cells[row, c] for c in report.cols]
    rows.append([row] + [format_cell(c, spread) for c in cells])
    bold |= {(i, j + 1) for j, c in enumerate(cells) if c.best}
  direction = "highest" if spec.higher_is_better else "lowest"
  notes = [f"Bold: the {direction} mean in its row (ties all bold)."]
  if spread == "std":
    notes.append("± is the sample standard deviation over seeds (ddof=1); n counts "
                 "finished seeds; failed/missing/running runs never contribute a number.")
  else:
    notes.append("± is the 95% confidence-interval half-width of the mean, "
                 "t(0.975, n-1)·s/√n (Student t over seeds); n=1 cells have no interval.")
  return Table(f"{metric_title(spec)}: mean ± {what}",
               [",".join(spec.rows)] + report.cols, rows, bold, notes)


def delta_table(report: Report) -> Table:
  """Paired deltas of every column against the baseline column."""
  spec = report.spec
  unit = " (percentage points)" if spec.is_fraction else ""
  title = f"Δ {spec.metric} vs {spec.baseline}{unit}"
  if spec.baseline not in report.cols:
    return Table(title, [], [], notes=[f"No column {spec.baseline!r}; no paired deltas."])
  cols = [c for c in report.cols if c != spec.baseline]
  rows = [[row] + [format_delta(report.cells[row, c], spec.baseline) for c in cols]
          for row in report.rows]
  notes = [f"Δ is the mean over shared seeds of (column − {spec.baseline}) ± the 95% t "
           "half-width of that mean.",
           f"Test: {stats.TEST_NAME}; * marks p < {spec.alpha:g} (no correction for "
           "multiple comparisons); fewer than 2 shared seeds, or differences equal up to "
           "float32 rounding: no test."]
  return Table(title, [",".join(spec.rows)] + cols, rows, notes=notes)


def cost_table(report: Report) -> Table:
  """Training cost per (row, col), means over the cell's finished seeds."""
  header = [",".join(report.spec.rows), ",".join(report.spec.cols), "n",
            "trainable params", "optimizer state", "train time", "images/s", "peak RSS"]
  rows = []
  for (row, col), cell in report.cells.items():
    if cell.summary is None:
      rows.append([row, col, "0", *[cell.status] * 5])
      continue
    c = cell.cost
    rows.append([row, col, str(cell.summary.n), format_trainable(c),
                 format_bytes(c.get("optimizer_state_bytes")),
                 format_seconds(c.get("train_time_s")),
                 fixed_digits(c.get("train_images_per_s"), 1),
                 "-" if c.get("peak_rss_mb") is None else f"{c['peak_rss_mb']:.0f} MB"])
  notes = ["Means over the finished seeds of each cell; train time excludes evaluation "
           "and compilation as measured by the run."]
  return Table("Cost (mean over seeds)", header, rows, notes=notes)


def reference_table(report: Report, ref: Reference) -> Table:
  """Published numbers in our column order, above our means."""
  cols = report.cols + [c for c in ref.values if c not in report.cols]
  rows = [["reference"] + [fixed_digits(ref.values.get(c), 2) for c in cols]]
  for row in report.rows:
    cells = [report.cells.get((row, c)) for c in cols]
    rows.append([row] + ["-" if c is None else (f"{c.summary.mean:.2f}" if c.summary
                                                 else c.status) for c in cells])
  return Table(ref.title, [",".join(report.spec.rows)] + cols, rows,
               notes=[ref.note, f"Our rows: mean {report.spec.metric} over seeds."])


def empty_table(report: Report) -> Table:
  """What stands for the tables when no run is left to tabulate."""
  workdir, found = report.collection.workdir, len(report.collection.records)
  why = (f"none of the {found} runs found below {workdir} is selected (--only)" if found
         else f"no runs found below {workdir}")
  return Table(f"{metric_title(report.spec)}: no runs", [], [],
               notes=[f"No runs to report: {why}; see the problems."])


def tables(report: Report) -> list[Table]:
  """Every table of the report, in order; one `empty_table` when there are no rows."""
  if not report.rows:
    return [empty_table(report)]
  out = [value_table(report, "std"), value_table(report, "ci"), delta_table(report),
         cost_table(report)]
  if report.spec.reference:
    out.append(reference_table(report, REFERENCES[report.spec.reference]))
  return out
