"""The LaTeX report: booktabs tables.

Problems (runs failed, missing or running, each naming its file) are `%`
comments at the top, so that the file can be `\\input` into a paper as is; a
visible note under the first table gives the run counts and points to them.
"""

from ftlab.reports.pivot import Report, selection_notes
from ftlab.reports.tables import Table, counts_text, tables


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}


_TEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": "$-$", "√": r"$\surd$", "·": r"$\cdot$"}


def tex_escape(text: str) -> str:
  """Escapes LaTeX specials and maps ±, Δ, −, √, · to math."""
  out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))
  for symbol, tex in _TEX_SYMBOLS.items():
    out = out.replace(symbol, tex)
  return out


def table_to_latex(table: Table) -> str:
  """A booktabs `table` environment (needs \\usepackage{booktabs})."""
  out = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{tex_escape(table.title)}}}"]
  if table.header:
    out += [rf"\begin{{tabular}}{{l{'r' * (len(table.header) - 1)}}}", r"\toprule",
            " & ".join(tex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
      texts = [tex_escape(t) for t in row]
      texts = [rf"\textbf{{{t}}}" if (i, j) in table.bold else t for j, t in enumerate(texts)]
      out.append(" & ".join(texts) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
  out += [rf"\par\smallskip\footnotesize {tex_escape(n)}" for n in table.notes]
  out += [r"\end{table}", ""]
  return "\n".join(out)


def _problem_comments(report: Report) -> str:
  """Each problem as a `%` comment line (newlines in it folded)."""
  if not report.problems:
    return ""
  lines = ["% Problems:"] + [f"% - {' '.join(str(p).split())}" for p in report.problems]
  return "\n".join(lines) + "\n"


def to_latex(report: Report) -> str:
  """All tables as booktabs LaTeX; selection and problem notes go under the first."""
  out = tables(report)
  out[0].notes += selection_notes(report)
  if report.problems:
    out[0].notes.append(f"Runs: {counts_text(report)}; {len(report.problems)} problem(s) are "
                        "listed in the comments at the top of this file.")
  return ("% Written by ftlab.report; needs \\usepackage{booktabs}.\n"
          + _problem_comments(report) + "\n".join(table_to_latex(t) for t in out))
