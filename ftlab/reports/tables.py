"""The report's tables (values, deltas, the verdict's paired comparisons, cost, reference) as
format-neutral rows of text."""
import dataclasses

from ftlab.reports import stats
from ftlab.reports.cells import (PHASE_NOTE, fixed_digits, format_bytes, format_cell,
                                 format_delta, format_p, format_phase, format_trainable)
from ftlab.reports.pivot import Report, Spec, run_counts
from ftlab.reports.references import REFERENCES, Reference
from ftlab.reports.verdict import Verdict, note, signed


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
  tested = sum(report.cells[r, c].delta is not None and report.cells[r, c].delta.p is not None
               for r in report.rows for c in cols)
  notes = [f"Δ is the mean over shared seeds of (column − {spec.baseline}) ± the 95% t "
           "half-width of that mean.",
           f"Test: {stats.TEST_NAME}; p-values get {stats.HOLM} across the table's {tested} "
           f"tested comparisons (Holm p), and * marks Holm p < {spec.alpha:g}; fewer than 2 "
           "shared seeds, or differences equal up to float32 rounding: no test."]
  return Table(title, [",".join(spec.rows)] + cols, rows, notes=notes)


def _t_test_text(c) -> str:
  d = c.seed
  if d.mean is None:
    return d.note
  if d.p is None:
    spread = f" \u00b1 {d.ci:.2f}" if d.ci is not None else ""
    return f"{signed(d.mean)}{spread} (n={d.n}, {d.note})"
  return f"{signed(d.mean)} \u00b1 {d.ci:.2f} (n={d.n}, {format_p(d.p)})"


def paired_table(verdict: Verdict, group_header: str, labels: dict, unit: str = "points") -> Table:
  """One row per comparison; `labels`: group name -> its first cell."""
  header = [group_header, "strategy", "vs", f"\u0394 ({unit})", "image-level interval (level)",
            "P(strategy > winner)", "seed-level paired t-test", "Holm p", "verdict"]
  rows = []
  for c in verdict.comparisons:
    image = (f"[{signed(c.image.low)}, {signed(c.image.high)}] ({100 * c.confidence:.4g}%)"
             if c.image is not None else "-")
    rows.append([labels.get(c.group, c.group), c.name, c.winner, signed(c.delta), image,
                 f"{c.image.p_greater:.3f}" if c.image is not None else "-", _t_test_text(c),
                 format_p(c.p_holm) if c.p_holm is not None else "-",
                 "beaten" if c.beaten else "tied" if c.p is not None else "not tested"])
  title = (f"{'Untuned, paired' if verdict.untuned else 'Paired'} with each {group_header}'s "
           "winner")
  notes = [note(verdict), "Holm p: of the larger of the two tests' p-values (the t-test's alone "
           "without predictions.csv for every shared seed, '-' in the image-level columns; the "
           "bootstrap's alone when the seeds' differences are all equal)."]
  return Table(title, header, rows, set(), notes)


def cost_table(report: Report) -> Table:
  """Training cost per (row, col), means over the cell's finished seeds."""
  header = [",".join(report.spec.rows), ",".join(report.spec.cols), "n",
            "trainable params", "optimizer state", "fine-tuning", "probe", "images/s",
            "peak RSS"]
  rows = []
  for (row, col), cell in report.cells.items():
    if cell.summary is None:
      rows.append([row, col, "0", *[cell.status] * 6])
      continue
    c = cell.cost
    rows.append([row, col, str(cell.summary.n), format_trainable(c),
                 format_bytes(c.get("optimizer_state_bytes")), format_phase(c, "finetune"),
                 format_phase(c, "probe"), fixed_digits(c.get("train_images_per_s"), 1),
                 "-" if c.get("peak_rss_mb") is None else f"{c['peak_rss_mb']:.0f} MB"])
  notes = ["Means over the finished seeds of each cell.", PHASE_NOTE,
           "images/s: every train image of the run over its train time and caches."]
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
  out = [value_table(report, "std"), value_table(report, "ci"), delta_table(report)]
  if report.verdict is not None:
    out.append(paired_table(report.verdict, ",".join(report.spec.rows), {},
                            "points" if report.spec.is_fraction else report.spec.unit or "units"))
  out.append(cost_table(report))
  if report.spec.reference:
    out.append(reference_table(report, REFERENCES[report.spec.reference]))
  return out
