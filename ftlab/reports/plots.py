"""Figures for a strategy-comparison report, as PNG and PDF in `<workdir>/plots/`.

Usage (the report writes them too, unless --noplots):

  python -m ftlab.reports.plots --workdir=runs/X [--metric=test.top1] [--rows=model]
      [--cols=strategy] [--predictions_run=NAME]

Figures are drawn on `matplotlib.figure.Figure` objects, which render with
the Agg backend without touching pyplot's global state.
"""
import pathlib
import sys
from typing import Sequence

from PIL import Image
from matplotlib.figure import Figure
import numpy as np

from ftlab.reports.collect import RunRecord, metric_value
from ftlab.reports.pivot import Report
from ftlab.reports.predictions import PREDICTIONS_FILE, read_predictions
from ftlab.reports.tables import metric_title


PLOTS_DIR = "plots"
GRID_IMAGES = 16
MARKERS = "osD^vP*Xh<>"


def _color(index: int) -> str:
  return f"C{index % 10}"


def save(fig: Figure, outdir: pathlib.Path, stem: str) -> list[pathlib.Path]:
  """Saves `fig` as `<stem>.png` and `<stem>.pdf`; returns both paths."""
  outdir.mkdir(parents=True, exist_ok=True)
  paths = [outdir / f"{stem}.png", outdir / f"{stem}.pdf"]
  fig.savefig(paths[0], dpi=120, bbox_inches="tight")
  fig.savefig(paths[1], bbox_inches="tight")
  return paths


# ---------------------------------------------------------------------------
# Learning curves.


def _history_series(records: Sequence[RunRecord]) -> list[dict]:
  """Per finished run, step -> minival top-1 in %."""
  series = []
  for r in records:
    history = r.results.get("history") if r.results else None
    points = {h["step"]: 100 * h["minival_top1"] for h in history or []
              if isinstance(h, dict) and isinstance(h.get("step"), (int, float))
              and isinstance(h.get("minival_top1"), (int, float))}
    if points:
      series.append(points)
  return series


def band(series: list[dict]) -> tuple[np.ndarray, ...]:
  """Steps, mean, min and max over the runs that logged each step."""
  steps = np.array(sorted({s for points in series for s in points}))
  per_step = [[p[s] for p in series if s in p] for s in steps]
  return (steps, np.array([np.mean(v) for v in per_step]),
          np.array([np.min(v) for v in per_step]), np.array([np.max(v) for v in per_step]))


def records_by_cell(report: Report) -> dict:
  """Finished records grouped by their (row, col) cell."""
  names = {name: (cell.row, cell.col) for cell in report.cells.values() for name in cell.runs}
  out = {}
  for r in report.records:
    if r.status == "finished" and r.name in names:
      out.setdefault(names[r.name], []).append(r)
  return out


def curves_figure(report: Report) -> Figure:
  """Minival top-1 vs step: one panel per row, a mean line and min-max band per column."""
  by_cell = records_by_cell(report)
  fig = Figure(figsize=(5.5 * len(report.rows), 4), layout="constrained")
  axes = fig.subplots(1, len(report.rows), squeeze=False)[0]
  for ax, row in zip(axes, report.rows):
    for j, col in enumerate(report.cols):
      series = _history_series(by_cell.get((row, col), []))
      if not series:
        continue
      steps, mean, lo, hi = band(series)
      ax.plot(steps, mean, color=_color(j), marker="o", markersize=3,
              label=f"{col} (n={len(series)})")
      ax.fill_between(steps, lo, hi, color=_color(j), alpha=0.2, linewidth=0)
    ax.set(title=row, xlabel="step", ylabel="minival top-1 (%)")
    ax.grid(alpha=0.3)
    if ax.has_data():
      ax.legend(fontsize="small")
  fig.suptitle("Minival top-1: mean over seeds, band = min-max")
  return fig


# ---------------------------------------------------------------------------
# The final table as bars.


def bars_figure(report: Report) -> Figure:
  """Grouped bars of the pivot's means with ±1 std error bars; gaps say why."""
  spec = report.spec
  fig = Figure(figsize=(max(5.0, 1.2 * len(report.rows) * len(report.cols)), 4),
               layout="constrained")
  ax = fig.subplots()
  width = 0.8 / max(1, len(report.cols))
  x = np.arange(len(report.rows))
  for j, col in enumerate(report.cols):
    pos = x - 0.4 + width * (j + 0.5)
    cells = [report.cells[row, col] for row in report.rows]
    means = [c.summary.mean if c.summary else 0.0 for c in cells]
    errs = [(c.summary.std or 0.0) if c.summary else 0.0 for c in cells]
    ax.bar(pos, means, width, yerr=errs, capsize=3, color=_color(j), label=col)
    for p, c in zip(pos, cells):
      if c.summary is None:
        ax.text(p, 0, c.status, rotation=90, ha="center", va="bottom", fontsize="small")
  ax.set_xticks(x, report.rows)
  ax.set_ylabel(metric_title(spec))
  ax.set_title(f"{spec.metric}: mean over seeds, error bars ±1 std")
  ax.legend(fontsize="small")
  ax.grid(axis="y", alpha=0.3)
  return fig


# ---------------------------------------------------------------------------
# Accuracy vs cost.


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list:
  """Points not beaten by any point that is both cheaper (x) and better (y)."""
  sign = 1 if higher_is_better else -1
  front, best = [], -np.inf
  for x, y in sorted(points, key=lambda p: (p[0], -sign * p[1])):
    if sign * y > best:
      front.append((x, y))
      best = sign * y
  return front


def frontier_figure(report: Report) -> Figure:
  """Metric vs mean train time per cell (large marks), seeds faint, and the Pareto front."""
  spec = report.spec
  by_cell = records_by_cell(report)
  fig = Figure(figsize=(6.5, 4.5), layout="constrained")
  ax = fig.subplots()
  points = []
  for i, row in enumerate(report.rows):
    for j, col in enumerate(report.cols):
      cell = report.cells[row, col]
      t = cell.cost.get("train_time_s")
      if cell.summary is None or t is None:
        continue
      style = {"color": _color(j), "marker": MARKERS[i % len(MARKERS)]}
      runs = by_cell.get((row, col), [])
      xs = [r.results.get("train_time_s") for r in runs]
      ys = [metric_value(r, spec.metric) * spec.scale for r in runs]
      ax.scatter([x for x in xs if x is not None], [y for x, y in zip(xs, ys) if x is not None],
                 alpha=0.3, s=15, **style)
      ax.scatter([t], [cell.summary.mean], s=60, label=f"{row} / {col}", **style)
      points.append((t, cell.summary.mean))
  if points:
    front = pareto_front(points, spec.higher_is_better)
    ax.plot(*zip(*front), "k--", linewidth=1, label="Pareto front")
    ax.legend(fontsize="x-small", ncol=2)
  ax.set(xlabel="train time (s)", ylabel=metric_title(spec),
         title="Accuracy vs training cost (means over seeds, seeds faint)")
  ax.grid(alpha=0.3)
  return fig


# ---------------------------------------------------------------------------
# Sample predictions.


def _spread(rows: list, k: int) -> list:
  """k rows evenly spaced over `rows` (all of them if k >= len(rows))."""
  if k >= len(rows):
    return list(rows)
  return [rows[i] for i in np.linspace(0, len(rows) - 1, k).round().astype(int)]


def pick_samples(rows: list[dict], n: int = GRID_IMAGES) -> list[dict]:
  """Up to n rows spread over the file, half of them wrong where there are enough.

  predictions.csv is often sorted by class, so rows are taken evenly spaced
  rather than from the top; the result keeps file order.
  """
  wrong = [r for r in rows if r["true"] != r["predicted"]]
  right = [r for r in rows if r["true"] == r["predicted"]]
  n_wrong = min(len(wrong), max(n // 2, n - len(right)))
  chosen = {id(r) for r in _spread(wrong, n_wrong) + _spread(right, n - n_wrong)}
  return [r for r in rows if id(r) in chosen]


def _resolve_image(image: str, run_dir: pathlib.Path) -> pathlib.Path | None:
  for candidate in (pathlib.Path(image), run_dir / image):
    if candidate.is_file():
      return candidate
  return None


def _load_image(path: pathlib.Path | None) -> np.ndarray | None:
  if path is None:
    return None
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except OSError:
    return None


def _caption(row: dict) -> str:
  conf = row.get("confidence")
  try:
    conf = f" ({100 * float(conf):.0f}%)"
  except (TypeError, ValueError):
    conf = ""
  return f"pred: {row['predicted']}{conf}\ntrue: {row['true']}"


def predictions_figure(run_dir: pathlib.Path, n: int = GRID_IMAGES) -> Figure:
  """A grid of test images titled with predicted vs true labels, wrong ones in red.

  Images that are missing or unreadable are drawn as a grey tile.
  """
  samples = pick_samples(read_predictions(run_dir / PREDICTIONS_FILE), n)
  cols = min(4, max(1, len(samples)))
  nrows = max(1, -(-len(samples) // cols))
  fig = Figure(figsize=(2.6 * cols, 2.9 * nrows), layout="constrained")
  axes = fig.subplots(nrows, cols, squeeze=False).ravel()
  for ax, row in zip(axes, samples):
    pixels = _load_image(_resolve_image(row["image"], run_dir))
    if pixels is None:
      ax.imshow(np.full((8, 8, 3), 0.8))
      ax.text(3.5, 3.5, "image\nmissing", ha="center", va="center", fontsize="small")
    else:
      ax.imshow(pixels)
    wrong = row["true"] != row["predicted"]
    ax.set_title(_caption(row), fontsize="small", color="red" if wrong else "green")
  for ax in axes:
    ax.axis("off")
  fig.suptitle(f"{run_dir.name}: sample test predictions (wrong in red)", fontsize="small")
  return fig


def predictions_run(report: Report, name: str | None = None) -> pathlib.Path | None:
  """The named run's dir, else the best finished run that has predictions.csv."""
  workdir = report.collection.workdir
  if name:
    return workdir / name
  finished = [r for r in report.records if r.status == "finished"
              and (r.dir / PREDICTIONS_FILE).is_file()]
  sign = 1 if report.spec.higher_is_better else -1
  finished.sort(key=lambda r: -sign * metric_value(r, report.spec.metric))
  return finished[0].dir if finished else None


# ---------------------------------------------------------------------------
# All of them.


def write_all(report: Report, run_name: str | None = None) -> list[pathlib.Path]:
  """Writes every figure into `<workdir>/plots/`; returns the files written."""
  outdir = report.collection.workdir / PLOTS_DIR
  if not report.rows:
    print(f"{report.collection.workdir}: no runs to plot", file=sys.stderr)
    return []
  paths = []
  for stem, make in (("curves", curves_figure), ("bars", bars_figure),
                     ("accuracy_vs_time", frontier_figure)):
    paths += save(make(report), outdir, stem)
  run_dir = predictions_run(report, run_name)
  if run_dir is None:
    print("no run with predictions.csv; skipping the predictions grid", file=sys.stderr)
    return paths
  try:
    paths += save(predictions_figure(run_dir), outdir, "predictions")
  except (OSError, ValueError) as e:
    print(f"{run_dir / PREDICTIONS_FILE}: skipped the predictions grid ({e})", file=sys.stderr)
  return paths
