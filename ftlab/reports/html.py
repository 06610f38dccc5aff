"""The HTML report: one self-contained file to open in a browser.

Nothing is linked or fetched: the stylesheet and script are inline
(`html_assets`) and every figure is an inline base64 PNG (`figures_inline`).
The page shows, in order: the metric, the run counts and a warning when runs
are not finished; the selection-split notes; every table of
`tables.tables(report)` (the same cell texts as report.md and report.tex, so
they cannot disagree), each sortable by clicking a header; the figures of
`plots` (curves, bars, accuracy vs time); per column (strategy) the confusion
matrix of its best finished run as a heat map, then that column's predictions
grid (see `figures_inline`); and the problems, each line naming its file.

`--noplots` only means that nothing is written into `<workdir>/plots/`: the
HTML draws its figures in memory either way (leave `html` out of `--formats`
to skip drawing them).
"""
import html
import re

from ftlab.reports.figures_inline import Figures, InlineFigure, report_figures
from ftlab.reports.html_assets import CSS, JS
from ftlab.reports.pivot import RUN_STATUSES, Report, run_counts, selection_notes
from ftlab.reports.tables import Table, tables
from ftlab.reports.verdict import paragraphs as verdict_paragraphs


STATUS_TEXTS = ("failed", "missing", "running")
WIDE_FIGURE_PX = 760  # figures wider than this take a whole row of the grid
_CODE_RE = re.compile(r"`([^`]+)`")
_BOLD_RE = re.compile(r"\*\*([^*]+)\*\*")
_NUMBER_RE = re.compile(r"[+\-−]?\d")


def _text(text) -> str:
  """Escaped text with Markdown's `code` spans as <code>."""
  return _CODE_RE.sub(r"<code>\1</code>", html.escape(str(text), quote=False))


def bold_html(text: str) -> str:
  """A Markdown paragraph (the verdict's) as HTML: `code` and **bold** spans."""
  return _BOLD_RE.sub(r"<strong>\1</strong>", _text(text))


def verdict_section(paragraphs: list) -> str:
  """The verdict paragraphs, first on the page."""
  body = "".join(f"<p>{bold_html(t)}</p>" for t in paragraphs)
  return f'<section id="verdict"><h2>Verdict</h2>{body}</section>'


def _attr(classes: list) -> str:
  return f' class="{" ".join(classes)}"' if classes else ""


def _cell(text: str, bold: bool, label: bool) -> str:
  classes = (["label"] if label else []) + (["best"] if bold else [])
  classes += [f"status-{text}"] if text in STATUS_TEXTS else []
  body = html.escape(text, quote=False)
  return f"<td{_attr(classes)}>{f'<strong>{body}</strong>' if bold else body}</td>"


def _label_columns(table: Table) -> set:
  """The first column and those without a number in them (left-aligned)."""
  return {0} | {j for j in range(len(table.header))
                if not any(_NUMBER_RE.match(row[j]) for row in table.rows if j < len(row))}


def table_to_html(table: Table, table_id: str) -> str:
  """A <section> with the table's title, a sortable <table> (if it has a header), its notes."""
  out = [f'<section id="{table_id}">', f"<h2>{_text(table.title)}</h2>"]
  if table.header:
    labels = _label_columns(table)
    head = "".join(f'<th scope="col"{_attr(["label"] if j in labels else [])}>'
                   f"{html.escape(h, quote=False)}</th>" for j, h in enumerate(table.header))
    out += ['<table class="sortable">', f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for i, row in enumerate(table.rows):
      out.append("<tr>" + "".join(_cell(t, (i, j) in table.bold, j in labels)
                                  for j, t in enumerate(row)) + "</tr>")
    out += ["</tbody>", "</table>"]
  out += [f'<p class="note">{_text(n)}</p>' for n in table.notes]
  out.append("</section>")
  return "\n".join(out)


def _figure(fig: InlineFigure) -> str:
  alt = html.escape(f"{fig.title}: {fig.caption}")
  wide = ' class="wide"' if fig.width > WIDE_FIGURE_PX else ""
  return (f'<figure{wide}><h3>{_text(fig.title)}</h3><img alt="{alt}" width="{fig.width}" '
          f'height="{fig.height}" src="{fig.src}">'
          f"<figcaption>{_text(fig.caption)}</figcaption></figure>")


def _figure_section(section_id: str, title: str, figs: list, empty: str) -> str:
  body = (f'<div class="figures">{"".join(_figure(f) for f in figs)}</div>' if figs
          else f'<p class="note">{_text(empty)}</p>')
  return f'<section id="{section_id}"><h2>{_text(title)}</h2>\n{body}\n</section>'


def _figure_sections(report: Report, figures: Figures) -> list:
  """The figure, confusion-matrix and predictions sections."""
  none = "No figures: no runs to plot." if not report.rows else ""
  return [
      _figure_section("figures", "Figures", figures.plots, none),
      _figure_section("confusion", "Confusion matrices (test split)", figures.confusions,
                      none or "No finished run has a confusion.csv."),
      _figure_section("predictions", "Sample predictions", figures.predictions,
                      none or "No finished run has a predictions.csv."),
  ]


def _header(report: Report) -> str:
  """Title, workdir, metric sentence, run counts and navigation."""
  spec, counts = report.spec, run_counts(report)
  unit = ", in %" if spec.is_fraction else ""
  better = "higher" if spec.higher_is_better else "lower"
  badges = "".join(f'<span class="{s}">{counts[s]} {s}</span>' for s in RUN_STATUSES)
  out = ["<header>", "<h1>Fine-tuning report</h1>",
         f'<p class="workdir"><code>{html.escape(str(report.collection.workdir))}</code></p>',
         f"<p>Metric <code>{html.escape(spec.metric)}</code>{unit}, {better} is better; rows "
         f"<code>{html.escape(','.join(spec.rows))}</code>, columns "
         f"<code>{html.escape(','.join(spec.cols))}</code>.</p>",
         f'<p class="counts">Runs: {badges}</p>',
         '<nav><a href="#tables">Tables</a><a href="#figures">Figures</a>'
         '<a href="#confusion">Confusion matrices</a><a href="#predictions">Predictions</a>'
         '<a href="#problems">Problems</a></nav>', "</header>"]
  return "\n".join(out)


def _alerts(report: Report) -> list:
  """A warning naming how many runs are not finished, and the selection-split notes."""
  out = []
  if not report.records:
    out.append('<p class="alert">No runs to report; see <a href="#problems">Problems</a>.</p>')
  elif report.problems:
    counts = run_counts(report)
    unfinished = ", ".join(f"{counts[s]} {s}" for s in STATUS_TEXTS if counts[s])
    out.append(f'<p class="alert">{len(report.problems)} problem(s)'
               f"{f' ({unfinished})' if unfinished else ''}: see "
               '<a href="#problems">Problems</a>; such cells say failed, missing or running '
               "and never hold a number.</p>")
  out += [f'<p class="alert info">{_text(n)}</p>' for n in selection_notes(report)]
  return out


def _problems(report: Report, figures: Figures) -> str:
  """The report's problems, then the figures' (each names its file), or 'None.'."""
  items = [f"<li><code>{html.escape(p, quote=False)}</code></li>"
           for p in report.problems + figures.problems]
  body = f'<ul class="problems">{"".join(items)}</ul>' if items else '<p class="note">None.</p>'
  return f'<section id="problems"><h2>Problems</h2>\n{body}\n</section>'


def to_html(report: Report, predictions_run: str | None = None) -> str:
  """The full HTML page.

  Args:
    report: the pivoted report.
    predictions_run: a run (dir name) whose predictions grid is shown first, or None.

  Returns:
    The page, self-contained, as text (write it as UTF-8).
  """
  figures = report_figures(report, predictions_run)
  body = [verdict_section(verdict_paragraphs(report.verdict))] if report.verdict else []
  body += [f'<div id="tables">{"".join(_alerts(report))}</div>']
  body += [table_to_html(t, f"table-{i + 1}") for i, t in enumerate(tables(report))]
  body += _figure_sections(report, figures) + [_problems(report, figures)]
  title = html.escape(f"Fine-tuning report: {report.collection.workdir}")
  return "\n".join([
      "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
      '<meta name="viewport" content="width=device-width, initial-scale=1">',
      f"<title>{title}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
      _header(report), "<main>", *body, "</main>",
      "<footer>Written by ftlab.report; self-contained (inline styles, script and images)."
      "</footer>",
      f"<script>{JS}</script>", "</body>", "</html>", ""])
