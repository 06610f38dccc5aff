"""Writing a report's files (report.md, .csv, .tex, .json) into its workdir."""
import json
import pathlib
from typing import Sequence

from ftlab.reports.csv_format import to_csv
from ftlab.reports.json_format import to_json
from ftlab.reports.latex import to_latex
from ftlab.reports.markdown import to_markdown
from ftlab.reports.pivot import Report


FORMATS = ("md", "csv", "tex", "json")


def write(report: Report, formats: Sequence[str]) -> list[pathlib.Path]:
  """Writes report.<fmt> for each format into the workdir; returns the paths."""
  render = {"md": to_markdown, "csv": to_csv, "tex": to_latex,
            "json": lambda r: json.dumps(to_json(r), indent=1) + "\n"}
  paths = []
  for fmt in formats:
    path = report.collection.workdir / f"report.{fmt}"
    path.write_text(render[fmt](report))
    paths.append(path)
  return paths
