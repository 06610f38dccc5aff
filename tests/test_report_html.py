"""report.html (ftlab.reports.html) and how every format shows empty, corrupt and running runs.

The sweep is tests/test_report.py's fixture (see its docstring) plus, written here, a
confusion.csv in every finished run dir (evaluator.write_confusion's format) and a tiny
predictions.csv with generated PNGs in two of them.
"""
import csv
import html
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ftlab.evaluation import evaluator
from ftlab.reports import collect, confusion, json_format, latex, markdown, outputs, pivot
from ftlab.reports.html import to_html
from tests import browser
from tests.helpers import REPORT_FIXTURE, write_predictions


CLASSES = ["A320", "B737", "A380"]
SCREENSHOT_COPY = pathlib.Path("/tmp/report_screenshot.png")
# In the page: sort the std table by linear_probe, the cost table by optimizer state (ascending).
SORT_JS = """(() => {
  const tables = document.querySelectorAll('table.sortable');
  const header = (table, text) => Array.from(table.tHead.rows[0].cells)
      .find((th) => th.textContent.trim() === text);
  header(tables[0], 'linear_probe').click();
  header(tables[4], 'optimizer state').click();
  return [tables[0].dataset.sortedBy, tables[4].dataset.sortedBy];
})()"""


def _build(workdir, **spec):
  return pivot.build(collect.collect(workdir), pivot.Spec(**spec))


def _write_confusion(run_dir: pathlib.Path, wrong: int) -> None:
  """10 images per class, the first `wrong` of them predicted as B737."""
  labels = np.repeat(np.arange(len(CLASSES)), 10)
  preds = labels.copy()
  preds[:wrong] = 1
  evaluator.write_confusion(str(run_dir / confusion.CONFUSION_FILE),
                            {"label": labels, "pred": preds}, CLASSES)


@pytest.fixture
def sweep(tmp_path):
  """The report fixture with confusion matrices and two predictions grids."""
  workdir = tmp_path / "sweep"
  shutil.copytree(REPORT_FIXTURE, workdir)
  for i, results in enumerate(sorted(workdir.glob("*/results.json"))):
    _write_confusion(results.parent, i % 5)
  for i, name in enumerate(("model=resnet18,strategy=full_ft,seed=2",
                            "model=resnet18,strategy=freeze_shallow,seed=2")):
    write_predictions(workdir / name, tmp_path / f"images{i}")
  return workdir


def markdown_tables(md: str) -> list:
  """Each pipe table of a Markdown text as rows of cell texts (bold marks and escapes removed)."""
  tables, current = [], None
  for line in md.splitlines():
    if not line.startswith("|"):
      current = None
      continue
    if current is None:
      current = []
      tables.append(current)
    if set(line) <= set("|-"):
      continue
    cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
    current.append([c.strip().removeprefix("**").removesuffix("**").replace("\\|", "|")
                    for c in cells])
  return tables


def test_html_tables_are_the_markdown_tables(sweep):
  rep = _build(sweep, reference="mindcv")
  page = to_html(rep)
  md_tables = markdown_tables(markdown.to_markdown(rep))
  assert len(md_tables) == 6
  assert browser.parse_tables(page) == md_tables
  # the page, like report.md, begins with the verdict
  main = page[page.index("<main>"):]
  assert main.startswith('<main>\n<section id="verdict"><h2>Verdict</h2><p>Untuned (every '
                         "strategy at one shared recipe): model=resnet18, <strong>freeze_shallow"
                         "</strong> wins"), main[:300]
  assert "<td class=\"best\"><strong>82.00 ± 2.00 (n=3)</strong></td>" in page
  assert '<td class="status-running">running</td>' in page
  assert "-27.00 ± 2.48 (n=3, p&lt;0.001, Holm p&lt;0.001) *" in page
  assert "-39.34 (n=1, no test)" in page
  # Self-contained: no links, no external sources, every image inline.
  assert not re.search(r"<link|@import|url\(|src=\"(?!data:image/png;base64,)", page)
  assert page.count('src="data:image/png;base64,') == 3 + 3 + 2
  for problem in rep.problems:
    assert f"<li><code>{html.escape(problem, quote=False)}</code></li>" in page


@pytest.mark.slow
@browser.requires_chromium
def test_report_html_in_chromium(sweep, tmp_path):
  rep = _build(sweep)
  paths = outputs.write(rep, outputs.FORMATS)
  assert [p.name for p in paths] == [f"report.{f}" for f in ("md", "csv", "tex", "json", "html")]
  shot = tmp_path / "report.png"
  rendered = browser.render(sweep / "report.html", screenshot_path=shot, script=SORT_JS,
                            full_page=True, timeout_s=90)

  md = markdown_tables((sweep / "report.md").read_text(encoding="utf-8"))
  std, ci, delta, paired, cost = rendered.tables
  assert (ci, delta, paired) == (md[1], md[2], md[3])  # not clicked: the Markdown's order
  assert std == [md[0][0], md[0][2], md[0][1]]  # by linear_probe: 48.66 before 52.00
  assert rendered.script_result == ["linear_probe ascending", "optimizer state ascending"]
  by_bytes = ["390.6 KiB", "781.2 KiB", "15.3 MiB", "61.0 MiB", "83.9 MiB", "running"]
  assert [row[4] for row in cost[1:]] == by_bytes  # units understood, text cells last
  assert sorted(cost[1:]) == sorted(md[4][1:]) and cost[0] == md[4][0]

  assert len(rendered.images) == 8 and rendered.broken_images == []
  assert all(img["natural_width"] > 100 and img["natural_height"] > 100
             for img in rendered.images)
  assert rendered.js_errors == []
  assert rendered.requests == [(sweep / "report.html").resolve().as_uri()]
  assert shot.stat().st_size > 10_000
  shutil.copyfile(shot, SCREENSHOT_COPY)


def _all_formats(workdir: pathlib.Path, **spec) -> dict:
  """Every format's text (json parsed) for the workdir, written as the CLI does."""
  rep = _build(workdir, **spec)
  outputs.write(rep, outputs.FORMATS)
  texts = {f: (workdir / f"report.{f}").read_text(encoding="utf-8") for f in outputs.FORMATS}
  texts["json"] = json.loads(texts["json"])
  texts["csv_rows"] = list(csv.DictReader(io.StringIO(texts["csv"])))
  return texts


def test_empty_workdir_writes_every_format(tmp_path):
  out = subprocess.run([sys.executable, "-m", "ftlab.report", f"--workdir={tmp_path}"],
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  line = f"{tmp_path}: {collect.NO_RUNS}"
  assert f"warning: {line}" in out.stderr and "no runs to plot" in out.stderr
  for fmt in outputs.FORMATS:
    assert line in (tmp_path / f"report.{fmt}").read_text(encoding="utf-8")
  texts = _all_formats(tmp_path)
  assert "Runs: 0 finished, 0 failed, 0 missing, 0 running." in texts["md"]
  assert f"No runs to report: no runs found below {tmp_path}" in texts["md"]
  assert markdown_tables(texts["md"]) == []
  (row,) = texts["csv_rows"]
  assert (row["status"], row["mean"], row["problems"]) == ("no runs", "", line)
  assert texts["json"]["cells"] == [] and texts["json"]["problems"] == [line]
  assert texts["json"]["counts"] == {"finished": 0, "failed": 0, "missing": 0, "running": 0}
  assert f"% - {line}" in texts["tex"] and r"\begin{tabular}" not in texts["tex"]
  assert "No runs to report" in texts["html"] and "<table" not in texts["html"]
  assert "No figures: no runs to plot." in texts["html"] and "<img" not in texts["html"]


def _finished(workdir: pathlib.Path, strategy: str, seed: int, top1: float) -> pathlib.Path:
  run_dir = workdir / f"strategy={strategy},seed={seed}"
  run_dir.mkdir(parents=True)
  (run_dir / "results.json").write_text(json.dumps(
      {"status": "finished", "model": "resnet18", "strategy": strategy, "seed": seed,
       "test": {"top1": top1}, "train_time_s": 10.0}))
  return run_dir


def _index(workdir: pathlib.Path, strategies) -> None:
  """A sweep.json whose grid is `strategies` x seed 0 of resnet18."""
  runs = [{"name": f"strategy={s},seed=0", "status": "pending",
           "overrides": {"model.name": "resnet18", "strategy.name": s, "seed": 0}}
          for s in strategies]
  (workdir / "sweep.json").write_text(json.dumps({"runs": runs}))


def test_truncated_results_json_is_failed_in_every_format(tmp_path):
  _index(tmp_path, ["linear_probe", "full_ft"])
  _finished(tmp_path, "full_ft", 0, 0.8)
  bad = _finished(tmp_path, "linear_probe", 0, 0.5) / "results.json"
  bad.write_text(bad.read_text()[:40])
  texts = _all_formats(tmp_path)
  assert "| resnet18 | failed | **80.00 (n=1)** |" in texts["md"]
  assert f"- {bad}: does not parse" in texts["md"]
  row = next(r for r in texts["csv_rows"] if r["strategy"] == "linear_probe")
  assert (row["status"], row["n_failed"], row["mean"]) == ("failed", "1", "")
  assert row["problems"].startswith(f"{bad}: does not parse")
  cell = next(c for c in texts["json"]["cells"] if c["col"] == "linear_probe")
  assert (cell["status"], cell["summary"], cell["values"]) == ("failed", None, {})
  assert cell["problems"][0].startswith(f"{bad}: does not parse")
  assert r"resnet18 & failed & \textbf{80.00 (n=1)}" in texts["tex"]
  assert f"% - {bad}: does not parse" in texts["tex"]
  assert '<td class="status-failed">failed</td>' in texts["html"]
  assert f"<li><code>{bad}: does not parse" in texts["html"]


def test_running_runs_in_every_format(tmp_path):
  _index(tmp_path, ["linear_probe", "freeze_shallow", "full_ft"])
  _finished(tmp_path, "full_ft", 0, 0.8)
  (tmp_path / "strategy=freeze_shallow,seed=0" / "checkpoints" / "latest").mkdir(parents=True)
  (tmp_path / "strategy=linear_probe,seed=0").mkdir()
  (tmp_path / "strategy=linear_probe,seed=0" / "log.txt").write_text("step 10\n")
  texts = _all_formats(tmp_path)
  # sweep.json says pending: a dir with log.txt or checkpoints/ but no results is running.
  assert "Runs: 1 finished, 0 failed, 0 missing, 2 running." in texts["md"]
  assert "| resnet18 | running | running | **80.00 (n=1)** |" in texts["md"]
  assert "| resnet18 | freeze_shallow | 0 | running | running | running | running | running |" \
      in texts["md"]
  for strategy, has in (("linear_probe", "log.txt"), ("freeze_shallow", "checkpoints/")):
    line = f"{tmp_path / f'strategy={strategy},seed=0'}: running (has {has}"
    for fmt in ("md", "csv", "tex", "html"):
      assert line in texts[fmt], fmt
    assert any(p.startswith(line) for p in texts["json"]["problems"])
  statuses = {c["col"]: (c["status"], c["summary"]) for c in texts["json"]["cells"]}
  assert statuses == {"linear_probe": ("running", None), "freeze_shallow": ("running", None),
                      "full_ft": ("ok", statuses["full_ft"][1])}
  assert texts["json"]["counts"]["running"] == 2
  rows = [r for r in texts["csv_rows"] if r["status"] == "running"]
  assert [(r["strategy"], r["n_running"], r["mean"]) for r in rows] == [
      ("linear_probe", "1", ""), ("freeze_shallow", "1", "")]
  assert '<td class="status-running">running</td>' in texts["html"]


def test_sweep_json_status_decides_running(tmp_path):
  runs = [{"name": f"seed={s}", "overrides": {"strategy.name": "full_ft", "seed": s},
           "status": status} for s, status in enumerate(("running", "interrupted", "pending"))]
  (tmp_path / "sweep.json").write_text(json.dumps({"runs": runs}))
  for name in ("seed=1", "seed=2"):
    (tmp_path / name).mkdir()
    (tmp_path / name / "log.txt").write_text("started\n")
  records = {r.name: r for r in collect.collect(tmp_path).records}
  assert [records[f"seed={s}"].status for s in range(3)] == ["running", "missing", "running"]
  assert "sweep.json status 'running'" in records["seed=0"].reason
  assert records["seed=1"].reason.endswith("(sweep.json status 'interrupted')")
  cell = _build(tmp_path, rows=("strategy",), cols=("seed",)).cells["full_ft", "0"]
  assert (cell.status, cell.n_running) == ("running", 1)


def test_no_finished_runs_and_a_bad_confusion_csv(sweep):
  bad = sweep / "model=mnv3_small,strategy=full_ft,seed=1" / confusion.CONFUSION_FILE
  bad.write_text(bad.read_text()[:30])
  with pytest.raises(ValueError, match="rows"):
    confusion.read_confusion(bad)
  page = to_html(_build(sweep))
  assert f"<li><code>{bad}: skipped its confusion matrix" in page
  assert page.count('src="data:image/png;base64,') == 3 + 2 + 2
  for results in sweep.glob("*/results.json"):
    results.write_text('{"status": "fini')  # truncated: every run failed
  rep = _build(sweep)
  assert {c.status for c in rep.cells.values()} == {"failed"}
  assert rep.rows == ["resnet18", "mnv3_small"]  # labels from sweep.json's overrides
  page = to_html(rep)
  assert "No finished run has a confusion.csv." in page
  assert page.count('src="data:image/png;base64,') == 3  # curves, bars, frontier: empty
  md = markdown.to_markdown(rep)
  assert "| resnet18 | failed | failed | failed |" in md
  cells = {c for table in markdown_tables(md) for row in table[1:] for c in row[1:]}
  assert cells == {"failed", "0", "linear_probe", "freeze_shallow", "full_ft"}  # no number
  json.dumps(json_format.to_json(rep))
  latex.to_latex(rep)


def test_read_confusion_round_trips_the_evaluators_file(tmp_path):
  classes = ["Boeing 737-800", "A320, neo", "Aérospatiale"]
  labels, preds = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
  path = tmp_path / "confusion.csv"
  evaluator.write_confusion(str(path), {"label": labels, "pred": preds}, classes)
  matrix = confusion.read_confusion(path)
  assert matrix.classes == classes
  assert matrix.counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
  assert matrix.accuracy == pytest.approx(4 / 6)
