"""A study's report files: report.md (also printed), report.json, report.html, plots/.

Each begins with the verdict, one paragraph per data size (`reports.verdict`),
then the untuned verdict when the study ran the untuned recipe.
"""
import html
import json
import pathlib

from ftlab.reports import plots, provenance
from ftlab.reports import verdict as verdict_lib
from ftlab.reports.figures_inline import InlineFigure
from ftlab.reports.html import table_to_html, verdict_section
from ftlab.reports.html_assets import CSS, JS
from ftlab.reports.markdown import table_to_markdown
from ftlab.reports.study_plots import figures
from ftlab.reports.study_results import Row, StudyResults
from ftlab.reports.study_tables import tables
from ftlab.studies import space


FORMATS = ("md", "json", "html")


def _intro(results: StudyResults) -> list:
  s = results.study
  subset = [k for o in s.sizes.values() for k in o]
  where = ("" if not subset else " Data sizes: " + ", ".join(s.sizes) + " (minival carved as "
           "`data.minival_from` says in each run's config).")
  n = len(s.strategies)
  return [f"Study `{s.config_spec}` in `{results.workdir}`: {n} strateg{'ies' if n > 1 else 'y'}, "
          f"{sum(len(g) for g in s.strategies.values())} search trials per size, final seeds "
          f"{', '.join(map(str, s.final_seeds))}.{where}"]


def verdict_paragraphs(results: StudyResults) -> list:
  """The tuned verdict's paragraphs, then the untuned one's."""
  out = verdict_lib.paragraphs(results.verdict)
  if results.untuned_verdict is not None:
    out += verdict_lib.paragraphs(results.untuned_verdict)
  return out


def to_markdown(results: StudyResults) -> str:
  out = [f"# Study report: {results.workdir}", ""]
  out += [line for p in verdict_paragraphs(results) for line in (p, "")]
  out += [*_intro(results), ""]
  out += [table_to_markdown(t) for t in tables(results)]
  if results.problems:
    out += ["## Problems", "", *(f"- {p}" for p in results.problems), ""]
  return "\n".join(out)


def _row_json(row: Row) -> dict:
  s = row.summary
  return {"size": row.size, "strategy": row.strategy, "status": row.status,
          "chosen": row.chosen, "final_seeds": sorted(row.statuses),
          "test_top1": {str(k): v for k, v in row.values.items()},
          "test_mean": s.mean if s else None, "test_ci95": s.ci if s else None,
          "test_count": row.test_count, "test_halfwidth": row.test_halfwidth}


def to_json(results: StudyResults) -> dict:
  trials = [{"size": sp.size, "strategy": sp.strategy, "rung": i + 1, "fraction": sp.fractions[i],
             "trial": e.trial.name, "hparams": e.trial.hparams, "status": e.result.status,
             "minival_top1": e.result.top1, "promoted": e.promoted}
            for sp in results.plan.strategies for i, rung in enumerate(sp.rungs) for e in rung]
  verdicts = verdict_lib.to_json(results.verdict)
  if results.untuned_verdict is not None:
    verdicts += verdict_lib.to_json(results.untuned_verdict)
  s = results.study
  return {"kind": "study", "workdir": str(results.workdir), "config": s.config_spec,
          "commit": provenance.commit(), "settings": space.to_json(s),
          "verdict": verdicts, "search_seed": s.search_seed, "final_seeds": list(s.final_seeds),
          "sizes": {n: {"label": z.label, "train_images_per_class": list(z.per_class)}
                    for n, z in results.sizes.items()},
          "strategies": [_row_json(r) for r in results.tuned],
          "untuned": [_row_json(r) for r in results.untuned], "trials": trials,
          "images": results.images, "final_run_cost": results.final_costs,
          "problems": results.problems}


def to_html(results: StudyResults) -> str:
  body = [table_to_html(t, f"table-{i}") for i, t in enumerate(tables(results))]
  figs = []
  for _, title, fig in figures(results):
    f = InlineFigure.draw(title, title, fig)
    figs.append(f'<figure><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
                f'width="{f.width}" height="{f.height}" src="{f.src}"></figure>')
  problems = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in results.problems)
  return "\n".join([
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
      f"<title>Study report: {html.escape(str(results.workdir))}</title>",
      f"<style>{CSS}</style></head><body>", "<header><h1>Study report</h1>",
      *(f"<p>{html.escape(t)}</p>" for t in _intro(results)), "</header>",
      "<main>", verdict_section(verdict_paragraphs(results)),
      '<section id="tables">', *body, "</section>",
      f'<section id="figures"><h2>Figures</h2><div class="figures">{"".join(figs)}</div></section>',
      f'<section id="problems"><h2>Problems</h2>'
      f'{f"<ul class=problems>{problems}</ul>" if problems else "<p class=note>None.</p>"}'
      "</section></main>", f"<script>{JS}</script>", "</body></html>", ""])


def write(results: StudyResults, formats, with_plots: bool) -> list:
  """Writes the report files into the study's workdir; returns their paths."""
  render = {"md": to_markdown, "json": lambda r: json.dumps(to_json(r), indent=1) + "\n",
            "html": to_html}
  paths = []
  for fmt in formats:
    path = pathlib.Path(results.workdir) / f"report.{fmt}"
    path.write_text(render[fmt](results), encoding="utf-8")
    paths.append(path)
  if with_plots:
    for stem, _, fig in figures(results):
      paths += plots.save(fig, pathlib.Path(results.workdir) / plots.PLOTS_DIR, stem)
  return paths
