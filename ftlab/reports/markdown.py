"""The Markdown report (also what `ftlab.report` prints)."""

from ftlab.reports.pivot import Report, selection_notes
from ftlab.reports.tables import Table, counts_text, tables
from ftlab.reports.verdict import paragraphs


def _md_escape(text: str) -> str:
  return str(text).replace("|", "\\|")


def table_to_markdown(table: Table) -> str:
  """A `##` section with a pipe table and its notes."""
  out = [f"## {table.title}", ""]
  if table.header:
    out.append("| " + " | ".join(_md_escape(h) for h in table.header) + " |")
    out.append("|" + "|".join(["---"] * len(table.header)) + "|")
    for i, row in enumerate(table.rows):
      texts = [_md_escape(t) for t in row]
      texts = [f"**{t}**" if (i, j) in table.bold else t for j, t in enumerate(texts)]
      out.append("| " + " | ".join(texts) + " |")
    out.append("")
  out += [*table.notes, ""]
  return "\n".join(out)


def to_markdown(report: Report) -> str:
  """The full Markdown report."""
  spec = report.spec
  unit = ", in %" if spec.is_fraction else ""
  better = "higher" if spec.higher_is_better else "lower"
  head = [f"# Fine-tuning report: {report.collection.workdir}", ""]
  if report.verdict is not None and report.rows:
    head += [line for text in paragraphs(report.verdict) for line in (text, "")]
  head += [f"Metric `{spec.metric}`{unit}, {better} is better; rows `{','.join(spec.rows)}`, "
          f"columns `{','.join(spec.cols)}`. Runs: {counts_text(report)}.", ""]
  head += [line for note in selection_notes(report) for line in (note, "")]
  body = [table_to_markdown(t) for t in tables(report)]
  problems = []
  if report.problems:
    problems = ["## Problems", "", *(f"- {p}" for p in report.problems), ""]
  return "\n".join(head + body + problems)
