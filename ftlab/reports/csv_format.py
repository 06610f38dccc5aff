"""The CSV report: one row per cell.

A cell's `problems` column names the files of its runs that are not finished
(failed, missing, running), `; `-separated. With no cells at all (an empty
workdir) there is one row of status `no runs` whose `problems` say why.
"""
import csv
import io

from ftlab.reports.pivot import COST_FIELDS, Cell, Report
from ftlab.studies.cost import PHASE_FIELDS


def _csv_number(x: float | None, digits: int) -> str:
  return "" if x is None else f"{x:.{digits}f}"


def _csv_row(report: Report, cell: Cell) -> list:
  s, d, c = cell.summary, cell.delta, cell.cost
  return [cell.row, cell.col, report.spec.metric, cell.status,
          s.n if s else 0, cell.n_failed, cell.n_missing, cell.n_running,
          _csv_number(s and s.mean, 2), _csv_number(s and s.std, 2),
          _csv_number(s and s.ci, 2), int(cell.best),
          _csv_number(d and d.mean, 2), _csv_number(d and d.ci, 2), d.n if d else "",
          "" if d is None or d.p is None else f"{d.p:.4g}",
          "" if d is None or d.p_holm is None else f"{d.p_holm:.4g}",
          "" if d is None or d.significant is None else int(d.significant),
          d.note if d else "", cell.n_selected_on_val,
          _csv_number(c.get("num_trainable_params"), 0),
          _csv_number(c.get("optimizer_state_bytes"), 0),
          _csv_number(c.get("train_time_s"), 1), _csv_number(c.get("train_images_per_s"), 1),
          _csv_number(c.get("peak_rss_mb"), 0),
          *(_csv_number(c.get(k), 1 if k.endswith("_s") else 0) for k in PHASE_FIELDS),
          "; ".join(cell.problems)]


def _no_runs_row(report: Report, width: int) -> list:
  """The one row of a report without cells: status `no runs`, the problems last."""
  row = ["", "", report.spec.metric, "no runs"] + [""] * (width - 5)
  return row + ["; ".join(report.problems)]


def to_csv(report: Report) -> str:
  """One row per cell: summary, best flag (1/0), delta vs baseline (p and its Holm-adjusted p;
`significant` is Holm p < alpha), cost, problems."""
  spec = report.spec
  header = [",".join(spec.rows), ",".join(spec.cols), "metric", "status", "n", "n_failed",
            "n_missing", "n_running", "mean", "std", "ci95", "best", f"delta_vs_{spec.baseline}",
            "delta_ci95", "delta_n", "p_value", "p_holm", "significant", "test_note",
            "n_selected_on_val", *COST_FIELDS, "problems"]
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(header)
  for r in report.rows:
    for c in report.cols:
      writer.writerow(_csv_row(report, report.cells[r, c]))
  if not report.cells:
    writer.writerow(_no_runs_row(report, len(header)))
  return out.getvalue()
