"""Strategy-comparison report for a sweep's workdir.

Usage:

  python -m ftlab.report --workdir=runs/X [--metric=test.top1] [--rows=model]
      [--cols=strategy] [--formats=md,csv,tex,json,html] [--baseline=full_ft]
      [--only=seed=0] [--strategy_order=a,b] [--reference=mindcv] [--noplots]

Every report begins with the verdict (ftlab/reports/verdict.py): per data
size, or per row of a sweep (labelled untuned), the winner, the strategies
tied with it after Holm's correction and those beaten, paired at the image
level from predictions.csv, and how many more seeds would separate the
closest one.

A study's workdir (one with study.json, written by ftlab.study) gets the study
report instead (ftlab/reports/study_output.py): the verdict, the tuned
strategies' test top-1 with the chosen hyperparameters, every strategy paired
with its size's winner, the untuned tables when the study ran them, every
trial per rung, the cost in images against a full grid, a sensitivity plot
per size and a data-size plot; report.md, .json and .html (the other formats
are not written for studies; --baseline is the sweep table's).

Otherwise it collects every run dir below the workdir (one with results.json, failed.json,
log.txt or checkpoints/), plus the grid of `<workdir>/sweep.json`, pivots the
metric over rows x cols (each may be a comma-separated list of keys) and writes
report.md (also printed), report.csv, report.tex, report.json and report.html
(self-contained: tables, figures, confusion matrices, sample predictions; see
ftlab.reports.html) into the workdir, and plots into `<workdir>/plots/` (see
ftlab.reports.plots; --noplots writes none there, while report.html still
inlines its figures).

A run is `finished` (results.json with status finished), `failed` (failed.json,
or a results.json that does not parse or lacks the metric), `running` (sweep.json
says so, results.json has status running, or the dir has checkpoints/ or
log.txt but neither result file) or `missing` (nothing of it on disk, or a
results.json of another status, or sweep.json says it was interrupted). Cells
without a finished run say failed, running or missing, never a number; an
empty workdir still writes every file, saying that no runs were found.

A key (rows, cols, --only) is looked up in results.json's top level, then in
its `config` (`model` also finds `model.name`), then in the run's sweep
overrides. Unreadable or incomplete result files are reported by path and
counted as `failed`; they never stop the report.

`--results_md=docs/results.md --results_from=RUN[,RUN...]` writes instead
the results page of the docs from the report.json of each RUN (written by an
earlier `ftlab.report --workdir=RUN`): per run its verdict and table, the
commands that reproduce it, its settings and the commit that wrote it
(ftlab/reports/results_md.py); `--readme=README.md` also rewrites the README's generated block
(the demo's verdict) from the first of them.
"""
import pathlib
import sys
from typing import Sequence

from absl import app, flags

from ftlab.reports import plots, results_md, stats, study_output, study_results
from ftlab.reports.collect import collect
from ftlab.reports.markdown import to_markdown
from ftlab.reports.outputs import FORMATS, write
from ftlab.reports.pivot import Spec, build
from ftlab.reports.references import REFERENCES
from ftlab.studies.space import STUDY_FILE


FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the CLI flags (only under `__main__`)."""
  flags.DEFINE_string("workdir", None, "Sweep workdir to report on.")
  flags.DEFINE_string("metric", "test.top1", "Dotted results.json key to compare.")
  flags.DEFINE_string("rows", "model", "Comma-separated keys labelling the rows.")
  flags.DEFINE_string("cols", "strategy", "Comma-separated keys labelling the columns.")
  flags.DEFINE_list("formats", list(FORMATS), f"Files to write, among {FORMATS}.")
  flags.DEFINE_string("baseline", "full_ft", "Column the paired deltas compare against.")
  flags.DEFINE_float("alpha", stats.ALPHA, "p-value threshold of the paired t-test.")
  flags.DEFINE_multi_string("only", [], "Keep runs with key=value; repeat to combine.")
  flags.DEFINE_list("strategy_order", [], "Order of strategies (default: sweep.json's, "
                    "i.e. the config's STRATEGY_ORDER, then first appearance).")
  flags.DEFINE_bool("plots", True, "Also write plots into <workdir>/plots.")
  flags.DEFINE_enum("reference", "", [""] + list(REFERENCES),
                    "Also tabulate published numbers, e.g. mindcv (MobileNetV3-small on "
                    "FGVC-Aircraft).")
  flags.DEFINE_string("results_md", None, "Write this results page (docs/results.md) from the "
                      "report.json of every --results_from workdir, instead of a report.")
  flags.DEFINE_list("results_from", [], "With --results_md: the workdirs, in the page's order.")
  flags.DEFINE_string("readme", None, "With --results_md: also rewrite this README's generated "
                      "block with the first workdir's verdict and table.")
  flags.DEFINE_string("predictions_run", None, "Run (dir name) for the predictions grid; "
                      "default: the best finished run that has predictions.csv (report.html "
                      "shows it first, then each column's best).")


def _split_keys(text: str) -> tuple:
  return tuple(k.strip() for k in text.split(",") if k.strip())


def _study_report() -> int:
  """A study's workdir (study.json): tuned tables, trials, cost, sensitivity and size plots."""
  try:
    results = study_results.load(FLAGS.workdir)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for problem in results.problems:
    print(f"warning: {problem}", file=sys.stderr)
  print(study_output.to_markdown(results))
  formats = [f for f in FLAGS.formats if f in study_output.FORMATS]
  for path in study_output.write(results, formats, FLAGS.plots):
    print(f"wrote {path}", file=sys.stderr)
  return 0


def _results_page() -> int:
  """docs/results.md from report.json files; nothing is written when one is missing."""
  if not FLAGS.results_from:
    raise app.UsageError("--results_md needs --results_from=RUN[,RUN...]")
  try:
    entries = results_md.load(FLAGS.results_from)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  command = ["python", "-m", "ftlab.report", f"--results_md={FLAGS.results_md}",
             f"--results_from={','.join(FLAGS.results_from)}"]
  readme = None
  if FLAGS.readme:
    command.append(f"--readme={FLAGS.readme}")
    try:
      readme = results_md.replace_block(pathlib.Path(FLAGS.readme).read_text(encoding="utf-8"),
                                        results_md.readme_block(entries, command), FLAGS.readme)
    except (OSError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
  pathlib.Path(FLAGS.results_md).write_text(results_md.render(entries, command), encoding="utf-8")
  print(f"wrote {FLAGS.results_md}", file=sys.stderr)
  if readme is not None:
    pathlib.Path(FLAGS.readme).write_text(readme, encoding="utf-8")
    print(f"wrote {FLAGS.readme}", file=sys.stderr)
  return 0


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.results_md:
    return _results_page()
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  unknown = set(FLAGS.formats) - set(FORMATS)
  if unknown:
    raise app.UsageError(f"--formats: unknown {sorted(unknown)}; choose from {FORMATS}")
  if (pathlib.Path(FLAGS.workdir) / STUDY_FILE).exists():
    return _study_report()
  spec = Spec(FLAGS.metric, _split_keys(FLAGS.rows), _split_keys(FLAGS.cols),
              FLAGS.baseline, FLAGS.alpha, FLAGS.reference)
  try:
    report = build(collect(FLAGS.workdir), spec, FLAGS.only, FLAGS.strategy_order)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  for problem in report.problems:
    print(f"warning: {problem}", file=sys.stderr)
  print(to_markdown(report))
  for path in write(report, FLAGS.formats, FLAGS.predictions_run):
    print(f"wrote {path}", file=sys.stderr)
  if FLAGS.plots:
    for path in plots.write_all(report, FLAGS.predictions_run):
      print(f"wrote {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
