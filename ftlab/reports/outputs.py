"""Writing a report's files (report.md, .csv, .tex, .json, .html) into its workdir."""
import json
import pathlib
from typing import Sequence

from ftlab.reports.csv_format import to_csv
from ftlab.reports.html import to_html
from ftlab.reports.json_format import to_json
from ftlab.reports.latex import to_latex
from ftlab.reports.markdown import to_markdown
from ftlab.reports.pivot import Report


FORMATS = ("md", "csv", "tex", "json", "html")


def write(report: Report, formats: Sequence[str],
          predictions_run: str | None = None) -> list[pathlib.Path]:
  """Writes report.<fmt> (UTF-8) for each format into the workdir; returns the paths.

  Args:
    report: the pivoted report.
    formats: among FORMATS.
    predictions_run: for html, a run whose predictions grid is shown first, or None.
  """
  render = {"md": to_markdown, "csv": to_csv, "tex": to_latex,
            "json": lambda r: json.dumps(to_json(r), indent=1) + "\n",
            "html": lambda r: to_html(r, predictions_run)}
  paths = []
  for fmt in formats:
    path = report.collection.workdir / f"report.{fmt}"
    path.write_text(render[fmt](report), encoding="utf-8")
    paths.append(path)
  return paths
