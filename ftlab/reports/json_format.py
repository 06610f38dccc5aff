"""The JSON report, at full precision.

`counts` has finished/failed/missing/running; each cell has its status and the
`problems` of its runs that are not finished; `problems` lists them all (an
empty workdir: `cells` is [] and `problems` says no runs were found).
"""
import dataclasses

from ftlab.reports import provenance, stats, verdict
from ftlab.reports.pivot import Cell, Report, run_counts, selection_notes, val_selected


def _cell_json(cell: Cell) -> dict:
  return {"row": cell.row, "col": cell.col, "status": cell.status,
          "values": {str(k): v for k, v in cell.values.items()},
          "summary": dataclasses.asdict(cell.summary) if cell.summary else None,
          "n_failed": cell.n_failed, "n_missing": cell.n_missing, "n_running": cell.n_running,
          "best": cell.best, "problems": cell.problems,
          "delta": dataclasses.asdict(cell.delta) if cell.delta else None,
          "cost": cell.cost, "runs": cell.runs, "n_selected_on_val": cell.n_selected_on_val}


def to_json(report: Report) -> dict:
  """The report at full precision (values in display units)."""
  spec = report.spec
  index = report.collection.index
  return {"kind": "sweep", "workdir": str(report.collection.workdir),
          "commit": provenance.commit(),
          "settings": {"config": index.get("config_spec"), "fixed": index.get("fixed_overrides")},
          "verdict": verdict.to_json(report.verdict) if report.verdict else [],
          "metric": spec.metric,
          "unit": spec.unit, "scale": spec.scale, "higher_is_better": spec.higher_is_better,
          "rows_key": list(spec.rows), "cols_key": list(spec.cols), "rows": report.rows,
          "cols": report.cols, "baseline": spec.baseline, "alpha": spec.alpha,
          "test": stats.TEST_NAME, "correction": stats.HOLM, "confidence": stats.CONFIDENCE,
          "counts": run_counts(report),
          "cells": [_cell_json(report.cells[r, c]) for r in report.rows for c in report.cols],
          "selected_on_val": val_selected(report), "notes": selection_notes(report),
          "problems": report.problems}
