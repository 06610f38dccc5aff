"""The HTML report's figures, drawn in memory and kept as base64 PNG `data:` URLs.

Per column (strategy) the confusion matrix and the predictions grid come from
the column's best finished run that has the file (confusion.csv,
predictions.csv), best by the report's metric over all of the column's rows
(on ties, the first found: rows in order, then grid order). A figure that
cannot be drawn (an unreadable file) is left out with a problem line naming
the file.
"""
import base64
import dataclasses
import io
import pathlib
import struct

from matplotlib.figure import Figure

from ftlab.reports import confusion, plots
from ftlab.reports.collect import RunRecord, metric_value
from ftlab.reports.pivot import Report


INLINE_DPI = 100


@dataclasses.dataclass(frozen=True)
class InlineFigure:
  """A figure ready for an <img>: its title, a caption, the PNG as a data: URL and its size."""
  title: str
  caption: str
  src: str
  width: int
  height: int

  @classmethod
  def draw(cls, title: str, caption: str, fig: Figure, dpi: int = INLINE_DPI) -> "InlineFigure":
    """Renders `fig` to PNG in memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    png = buffer.getvalue()
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return cls(title, caption, src, width, height)


@dataclasses.dataclass
class Figures:
  """The report's figures by section, and why any were left out."""
  plots: list = dataclasses.field(default_factory=list)
  confusions: list = dataclasses.field(default_factory=list)
  predictions: list = dataclasses.field(default_factory=list)
  problems: list = dataclasses.field(default_factory=list)


def best_runs(report: Report, filename: str) -> dict:
  """Per column, its best finished run whose dir has `filename` (columns without one left out)."""
  sign = 1 if report.spec.higher_is_better else -1
  best = {}
  for (_, col), records in plots.records_by_cell(report).items():
    for r in records:
      if not (r.dir / filename).is_file():
        continue
      if col not in best or (sign * metric_value(r, report.spec.metric)
                             > sign * metric_value(best[col], report.spec.metric)):
        best[col] = r
  return {c: best[c] for c in report.cols if c in best}


def _score(report: Report, record: RunRecord) -> str:
  spec = report.spec
  return f"{spec.metric} {metric_value(record, spec.metric) * spec.scale:.2f}{spec.unit}"


def _confusions(report: Report, out: Figures) -> None:
  for col, record in best_runs(report, confusion.CONFUSION_FILE).items():
    path = record.dir / confusion.CONFUSION_FILE
    try:
      matrix = confusion.read_confusion(path)
    except (OSError, ValueError) as e:
      out.problems.append(f"{path}: skipped its confusion matrix ({e})")
      continue
    accuracy = "" if matrix.accuracy is None else f", top-1 {100 * matrix.accuracy:.2f}%"
    out.confusions.append(InlineFigure.draw(
        col, f"{record.name}: the best finished run of {col} ({_score(report, record)}); "
        f"test split, {int(matrix.counts.sum())} images{accuracy}.",
        confusion.confusion_figure(matrix, record.name)))


def _prediction_grid(report: Report, run_dir: pathlib.Path, title: str, why: str,
                     out: Figures) -> None:
  try:
    fig = plots.predictions_figure(run_dir)
  except (OSError, ValueError, KeyError) as e:
    out.problems.append(f"{run_dir / plots.PREDICTIONS_FILE}: skipped its predictions grid ({e})")
    return
  out.predictions.append(InlineFigure.draw(title, why, fig))


def _predictions(report: Report, out: Figures, named_run: str | None) -> None:
  if named_run:
    _prediction_grid(report, report.collection.workdir / named_run, named_run,
                     f"{named_run} (--predictions_run).", out)
  for col, record in best_runs(report, plots.PREDICTIONS_FILE).items():
    if record.name != named_run:
      _prediction_grid(report, record.dir, col, f"{record.name}: the best finished run of "
                       f"{col} ({_score(report, record)}).", out)


def report_figures(report: Report, predictions_run: str | None = None) -> Figures:
  """Curves, bars, accuracy vs time, then per column the confusion matrix and predictions.

  Args:
    report: the pivoted report.
    predictions_run: a run (dir name) whose predictions grid is shown first, or None.

  Returns:
    The Figures; all empty when the report has no rows.
  """
  out = Figures()
  if not report.rows:
    return out
  for title, make, caption in (
      ("Learning curves", plots.curves_figure,
       "Minival top-1 vs step, per row; line: mean over seeds, band: min to max."),
      ("Final metric", plots.bars_figure,
       "Means over seeds with ±1 std error bars; a gap is labelled failed, missing or running."),
      ("Accuracy vs time", plots.frontier_figure,
       "Metric vs mean train time per cell (seeds faint); dashed: the Pareto front.")):
    out.plots.append(InlineFigure.draw(title, caption, make(report)))
  _confusions(report, out)
  _predictions(report, out, predictions_run)
  return out
