"""Strategy-comparison report for a sweep's workdir.

Usage:

  python -m ftlab.report --workdir=runs/X [--metric=test.top1] [--rows=model]
      [--cols=strategy] [--formats=md,csv,tex,json] [--baseline=full_ft]
      [--only=seed=0] [--strategy_order=a,b] [--reference=mindcv] [--noplots]

Collects every results.json and failed.json below the workdir, plus the grid
of `<workdir>/sweep.json` (entries with neither file are `missing`), pivots
the metric over rows x cols (each may be a comma-separated list of keys) and
writes report.md (also printed), report.csv, report.tex and report.json into
the workdir, and plots into `<workdir>/plots/` (see ftlab.plots).

A key (rows, cols, --only) is looked up in results.json's top level, then in
its `config` (`model` also finds `model.name`), then in the run's sweep
overrides. Unreadable or incomplete result files are reported by path and
counted as `failed`; they never stop the report.
"""
import csv
import dataclasses
import io
import json
import math
import pathlib
import re
import sys
from typing import Any, Iterable, Sequence

from absl import app
from absl import flags

from ftlab import stats
from ftlab import sweep

FORMATS = ("md", "csv", "tex", "json")
COST_FIELDS = ("num_trainable_params", "optimizer_state_bytes", "train_time_s",
               "train_images_per_s", "peak_rss_mb")
_FRACTION_RE = re.compile(r"(top\d+|precision|recall|f1|acc|accuracy)$")
_LOWER_IS_BETTER_RE = re.compile(r"(loss|time|bytes|rss|error)")


@dataclasses.dataclass(frozen=True)
class Reference:
  """Published numbers to show beside ours: strategy -> test top-1 (%)."""
  title: str
  values: dict
  note: str


REFERENCES = {
    "mindcv": Reference(
        "MindCV fine-tuning guide: MobileNetV3-small on FGVC-Aircraft, test top-1 (%)",
        {"linear_probe": 48.66, "freeze_shallow": 76.83, "full_ft": 88.35,
         "full_ft_head_lr": 88.89, "full_ft_deep_lr": 88.68},
        "Single published runs (freeze all features, freeze shallow, full fine-tune, "
        "classifier LR x1.2, deeper-layer LR); their schedule and head LR multiplier may "
        "differ from this sweep's config."),
}


# ---------------------------------------------------------------------------
# Collecting runs.


@dataclasses.dataclass(frozen=True)
class Record:
  """One run as found on disk (or only in sweep.json's grid).

  Attributes:
    name: the run dir relative to the workdir.
    dir: the run dir.
    status: `finished`, `failed` or `missing`.
    results: the parsed results.json of a finished run, else None.
    overrides: the run's sweep overrides, when known.
    reason: why a run is failed or missing.
  """
  name: str
  dir: pathlib.Path
  status: str
  results: dict | None = None
  overrides: dict = dataclasses.field(default_factory=dict)
  reason: str = ""


@dataclasses.dataclass
class Collection:
  """Everything below a workdir: records in grid order, the index, problems."""
  workdir: pathlib.Path
  records: list
  index: dict
  problems: list


def _read_json_object(path: pathlib.Path) -> tuple[dict | None, str]:
  """Parses a JSON object; returns (data, '') or (None, one-line error)."""
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    return None, f"{path}: does not parse ({e})"
  if not isinstance(data, dict):
    return None, f"{path}: is not a JSON object"
  return data, ""


def _failed_record(name: str, run_dir: pathlib.Path, overrides: dict) -> Record:
  path = run_dir / sweep.FAILED_FILE
  data, error = _read_json_object(path)
  if data is None:
    return Record(name, run_dir, "failed", overrides=overrides, reason=error)
  reason = data.get("reason") or f"exit code {data.get('exit_code')}"
  last = [line for line in str(data.get("log_tail") or "").splitlines() if line.strip()]
  if last:
    reason += f" (log: {last[-1].strip()[:200]})"
  return Record(name, run_dir, "failed", overrides=data.get("overrides") or overrides,
                reason=f"{path}: {reason}")


def load_record(run_dir: pathlib.Path, name: str, overrides: dict) -> Record:
  """Reads one run dir: finished results, failed.json, or missing."""
  path = run_dir / sweep.RESULTS_FILE
  if path.exists():
    data, error = _read_json_object(path)
    if data is not None and data.get("status") == "finished":
      return Record(name, run_dir, "finished", data, overrides)
    if data is None:
      return Record(name, run_dir, "failed", overrides=overrides, reason=error)
    if not (run_dir / sweep.FAILED_FILE).exists():
      return Record(name, run_dir, "missing", overrides=overrides,
                    reason=f"{path}: status is {data.get('status')!r}, not finished")
  if (run_dir / sweep.FAILED_FILE).exists():
    return _failed_record(name, run_dir, overrides)
  return Record(name, run_dir, "missing", overrides=overrides,
                reason=f"{run_dir}: no {sweep.RESULTS_FILE} or {sweep.FAILED_FILE}")


def _run_dirs(workdir: pathlib.Path) -> list[pathlib.Path]:
  found = {p.parent for f in (sweep.RESULTS_FILE, sweep.FAILED_FILE)
           for p in workdir.rglob(f)}
  return sorted(found)


def _read_index(workdir: pathlib.Path, problems: list) -> dict:
  path = workdir / sweep.INDEX_FILE
  if not path.exists():
    return {}
  data, error = _read_json_object(path)
  if data is None:
    problems.append(error + "; the grid is unknown, so missing runs are not shown")
    return {}
  return data


def collect(workdir: str | pathlib.Path) -> Collection:
  """All runs below `workdir`: sweep.json's grid first (in order), then others."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise FileNotFoundError(f"{workdir}: workdir not found")
  problems = []
  index = _read_index(workdir, problems)
  grid = {e["name"]: e.get("overrides", {}) for e in index.get("runs", [])
          if isinstance(e, dict) and "name" in e}
  on_disk = {d.relative_to(workdir).as_posix(): d for d in _run_dirs(workdir)}
  names = list(grid) + sorted(n for n in on_disk if n not in grid)
  records = [load_record(on_disk.get(n, workdir / n), n, grid.get(n, {})) for n in names]
  problems += [r.reason for r in records if r.status != "finished"]
  return Collection(workdir, records, index, problems)


# ---------------------------------------------------------------------------
# Looking up keys and the metric.


def dig(data: Any, dotted: str) -> Any:
  """`data['a']['b']` for 'a.b', or None when any part is absent."""
  for part in dotted.split("."):
    if not isinstance(data, dict) or part not in data:
      return None
    data = data[part]
  return data


def _is_scalar(value: Any) -> bool:
  return isinstance(value, (str, int, float, bool))


def lookup(record: Record, key: str) -> Any:
  """A key's value for a run: results.json, then its config, then overrides."""
  if record.results is not None:
    for source in (record.results, record.results.get("config")):
      for candidate in (key, key + ".name"):
        value = dig(source, candidate)
        if _is_scalar(value):
          return value
  if record.overrides:
    try:
      return record.overrides[sweep.resolve_key(key, record.overrides)]
    except sweep.SweepError:
      return None
  return None


def metric_value(record: Record, metric: str) -> float | None:
  """The metric of a finished run as a float, or None if absent/non-numeric.

  `<split>.top1`/`top5` is the exact count fraction where the split has counts
  (stats.counted_fraction), so equal counts give equal values.
  """
  value = dig(record.results, metric)
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    return None
  parent, _, key = metric.rpartition(".")
  block = dig(record.results, parent) if parent else None
  exact = stats.counted_fraction(block, key) if isinstance(block, dict) else None
  return float(value) if exact is None else exact


def selected_on_val(record: Record) -> bool:
  """Whether a finished run chose its checkpoint on `val` (no minival carve-out)."""
  return record.results is not None and record.results.get("selection_split") == "val"


def with_metric(records: Sequence[Record], metric: str, problems: list) -> list[Record]:
  """Finished runs without a numeric `metric` become failed, with a reason."""
  out = []
  for r in records:
    if r.status == "finished" and metric_value(r, metric) is None:
      reason = f"{r.dir / sweep.RESULTS_FILE}: no numeric {metric!r}"
      problems.append(reason)
      r = dataclasses.replace(r, status="failed", reason=reason)
    out.append(r)
  return out


def select(records: Sequence[Record], only: Iterable[str]) -> list[Record]:
  """Records whose keys match every `key=value` in `only`."""
  filters = []
  for item in only:
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"--only={item!r} is not of the form key=value")
    filters.append((key.strip(), value.strip()))
  return [r for r in records
          if all(lookup(r, k) is not None and sweep.same_value(lookup(r, k), v)
                 for k, v in filters)]


# ---------------------------------------------------------------------------
# The pivot.


@dataclasses.dataclass(frozen=True)
class Spec:
  """What to report.

  Attributes:
    metric: dotted results.json key, e.g. `test.top1`.
    rows: keys whose values label the rows.
    cols: keys whose values label the columns.
    baseline: column label the paired deltas compare against.
    alpha: significance threshold of the paired test.
    reference: a key of REFERENCES to tabulate beside ours, or ''.
  """
  metric: str = "test.top1"
  rows: tuple = ("model",)
  cols: tuple = ("strategy",)
  baseline: str = "full_ft"
  alpha: float = stats.ALPHA
  reference: str = ""

  @property
  def is_fraction(self) -> bool:
    return bool(_FRACTION_RE.search(self.metric.rsplit(".", 1)[-1]))

  @property
  def scale(self) -> float:
    return 100.0 if self.is_fraction else 1.0

  @property
  def unit(self) -> str:
    return "%" if self.is_fraction else ""

  @property
  def higher_is_better(self) -> bool:
    return not _LOWER_IS_BETTER_RE.search(self.metric)


@dataclasses.dataclass
class Cell:
  """One (row, col): per-seed values in display units and their summaries."""
  row: str
  col: str
  values: dict = dataclasses.field(default_factory=dict)
  runs: list = dataclasses.field(default_factory=list)
  n_failed: int = 0
  n_missing: int = 0
  summary: stats.Summary | None = None
  best: bool = False
  delta: stats.PairedDelta | None = None
  cost: dict = dataclasses.field(default_factory=dict)
  n_selected_on_val: int = 0

  @property
  def status(self) -> str:
    if self.summary is not None:
      return "ok"
    return "failed" if self.n_failed else "missing"


@dataclasses.dataclass
class Report:
  """A pivot of cells plus what it was built from."""
  spec: Spec
  collection: Collection
  records: list
  rows: list
  cols: list
  cells: dict

  @property
  def problems(self) -> list:
    return self.collection.problems


def label(record: Record, keys: Sequence[str], fallback: dict) -> str:
  """The row/column label of a run: its values for `keys`, comma-joined."""
  parts = []
  for key in keys:
    value = lookup(record, key)
    parts.append(sweep.format_value(value) if value is not None else fallback.get(key, "?"))
  return ",".join(parts)


def _shared_values(records: Sequence[Record], keys: Sequence[str]) -> dict:
  """For runs that lack a key (e.g. failed ones), the value all others share."""
  out = {}
  for key in keys:
    values = {sweep.format_value(v) for r in records if (v := lookup(r, key)) is not None}
    if len(values) == 1:
      out[key] = values.pop()
  return out


def _order(labels: Iterable[str], preferred: Sequence[str]) -> list[str]:
  seen = list(dict.fromkeys(labels))
  return [p for p in preferred if p in seen] + [s for s in seen if s not in preferred]


def _strategy_order(collection: Collection, keys: Sequence[str],
                    given: Sequence[str] = ()) -> list:
  """For a strategy axis: the given order, else sweep.json's (the config's STRATEGY_ORDER)."""
  if tuple(keys) in (("strategy",), ("strategy.name",)):
    return list(given or collection.index.get("strategy_order") or [])
  return []


def _add_record(cell: Cell, record: Record, spec: Spec, problems: list) -> None:
  cell.runs.append(record.name)
  if record.status != "finished":
    cell.n_failed += record.status == "failed"
    cell.n_missing += record.status == "missing"
    return
  seed = lookup(record, "seed")
  seed = record.name if seed is None else seed
  if seed in cell.values:
    problems.append(f"{record.dir}: cell ({cell.row}, {cell.col}) already has seed {seed}; "
                    "runs differing in another key are mixed: add it to --rows/--cols or "
                    "use --only; this run is left out")
    return
  cell.values[seed] = metric_value(record, spec.metric) * spec.scale
  cell.n_selected_on_val += selected_on_val(record)
  for field in COST_FIELDS + ("num_params",):
    cell.cost.setdefault(field, []).append(record.results.get(field))


def _mean_or_none(values: list) -> float | None:
  numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
  return sum(numbers) / len(numbers) if numbers else None


def _finalize(cell: Cell) -> None:
  if cell.values:
    cell.summary = stats.summarize(list(cell.values.values()))
  cell.cost = {k: _mean_or_none(v) for k, v in cell.cost.items()}


def _mark_best(report: Report) -> None:
  """Marks the best cell(s) of every row, comparing means as displayed."""
  sign = 1 if report.spec.higher_is_better else -1
  for row in report.rows:
    cells = [report.cells[row, c] for c in report.cols if report.cells[row, c].summary]
    if not cells:
      continue
    best = max(sign * round(c.summary.mean, 2) for c in cells)
    for c in cells:
      c.best = sign * round(c.summary.mean, 2) == best


def _add_deltas(report: Report) -> None:
  base = report.spec.baseline
  if base not in report.cols:
    return
  for row in report.rows:
    reference = report.cells[row, base]
    for col in report.cols:
      cell = report.cells[row, col]
      if col != base and cell.values and reference.values:
        cell.delta = stats.paired_delta(cell.values, reference.values, report.spec.alpha)


def build(collection: Collection, spec: Spec, only: Iterable[str] = (),
          strategy_order: Sequence[str] = ()) -> Report:
  """Pivots the collection's runs into cells with summaries, best marks, deltas.

  Args:
    collection: the runs found by `collect`.
    spec: metric, row/column keys, baseline and alpha.
    only: `key=value` filters on the runs.
    strategy_order: overrides sweep.json's strategy order.

  Returns:
    The `Report`.
  """
  problems = collection.problems
  records = select(with_metric(collection.records, spec.metric, problems), only)
  fallback = _shared_values(records, spec.rows + spec.cols)
  labelled = [(label(r, spec.rows, fallback), label(r, spec.cols, fallback), r)
              for r in records]
  rows = _order((r for r, _, _ in labelled),
                _strategy_order(collection, spec.rows, strategy_order))
  cols = _order((c for _, c, _ in labelled),
                _strategy_order(collection, spec.cols, strategy_order))
  cells = {(r, c): Cell(r, c) for r in rows for c in cols}
  for row, col, record in labelled:
    _add_record(cells[row, col], record, spec, problems)
  for cell in cells.values():
    _finalize(cell)
  report = Report(spec, collection, records, rows, cols, cells)
  _mark_best(report)
  _add_deltas(report)
  return report


# ---------------------------------------------------------------------------
# Formatting cells.


def _n_note(cell: Cell) -> str:
  parts = [f"n={cell.summary.n}"]
  parts += [f"{k} {v}" for k, v in (("failed", cell.n_failed), ("missing", cell.n_missing)) if v]
  return "(" + ", ".join(parts) + ")"


def format_cell(cell: Cell, spread: str = "std") -> str:
  """`mean ± std (n=3)`, `mean ± ci (n=3)`, `mean (n=1)`, `failed` or `missing`."""
  if cell.summary is None:
    return cell.status
  s = cell.summary
  width = s.std if spread == "std" else s.ci
  if width is None:
    return f"{s.mean:.2f} {_n_note(cell)}"
  return f"{s.mean:.2f} ± {width:.2f} {_n_note(cell)}"


def format_p(p: float) -> str:
  return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def format_delta(cell: Cell, baseline: str) -> str:
  """`+1.23 ± 0.45 (n=3, p=0.012) *`, or why there is no delta/test."""
  if cell.col == baseline:
    return "baseline"
  d = cell.delta
  if d is None or d.n == 0:
    return "no shared seeds" if cell.values else cell.status
  if d.n < 2:
    return f"{d.mean:+.2f} (n=1, {d.note})"
  if d.p is None:
    return f"{d.mean:+.2f} ± {d.ci:.2f} (n={d.n}, {d.note})"
  flag = " *" if d.significant else ""
  return f"{d.mean:+.2f} ± {d.ci:.2f} (n={d.n}, {format_p(d.p)}){flag}"


def format_count(n: float | None) -> str:
  if n is None:
    return "-"
  for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
    if abs(n) >= div:
      return f"{n / div:.2f}{suffix}"
  return f"{n:.0f}"


def format_bytes(b: float | None) -> str:
  if b is None:
    return "-"
  for div, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
    if abs(b) >= div:
      return f"{b / div:.1f} {suffix}"
  return f"{b:.0f} B"


def format_seconds(s: float | None) -> str:
  if s is None:
    return "-"
  if s < 120:
    return f"{s:.1f} s"
  return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


def _format_trainable(cost: dict) -> str:
  n, total = cost.get("num_trainable_params"), cost.get("num_params")
  share = f" ({100 * n / total:.1f}%)" if n is not None and total else ""
  return format_count(n) + share


def _fixed(x: float | None, digits: int) -> str:
  return "-" if x is None else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------
# Tables, rendered to Markdown and LaTeX.


@dataclasses.dataclass
class Table:
  """A titled grid of strings; `bold` holds (row, col) indices into `rows`."""
  title: str
  header: list
  rows: list
  bold: set = dataclasses.field(default_factory=set)
  notes: list = dataclasses.field(default_factory=list)


def metric_title(spec: Spec) -> str:
  return f"{spec.metric} ({spec.unit})" if spec.unit else spec.metric


def value_table(report: Report, spread: str) -> Table:
  """The pivot with mean ± std (spread='std') or mean ± 95% CI ('ci')."""
  spec = report.spec
  what = "std over seeds" if spread == "std" else "95% CI"
  bold, rows = set(), []
  for i, row in enumerate(report.rows):
    cells = [report.cells[row, c] for c in report.cols]
    rows.append([row] + [format_cell(c, spread) for c in cells])
    bold |= {(i, j + 1) for j, c in enumerate(cells) if c.best}
  direction = "highest" if spec.higher_is_better else "lowest"
  notes = [f"Bold: the {direction} mean in its row (ties all bold)."]
  if spread == "std":
    notes.append("± is the sample standard deviation over seeds (ddof=1); n counts "
                 "finished seeds; failed/missing runs never contribute a number.")
  else:
    notes.append("± is the 95% confidence-interval half-width of the mean, "
                 "t(0.975, n-1)·s/√n (Student t over seeds); n=1 cells have no interval.")
  return Table(f"{metric_title(spec)}: mean ± {what}",
               [",".join(spec.rows)] + report.cols, rows, bold, notes)


def delta_table(report: Report) -> Table:
  """Paired deltas of every column against the baseline column."""
  spec = report.spec
  unit = " (percentage points)" if spec.is_fraction else ""
  title = f"Δ {spec.metric} vs {spec.baseline}{unit}"
  if spec.baseline not in report.cols:
    return Table(title, [], [], notes=[f"No column {spec.baseline!r}; no paired deltas."])
  cols = [c for c in report.cols if c != spec.baseline]
  rows = [[row] + [format_delta(report.cells[row, c], spec.baseline) for c in cols]
          for row in report.rows]
  notes = [f"Δ is the mean over shared seeds of (column − {spec.baseline}) ± the 95% t "
           "half-width of that mean.",
           f"Test: {stats.TEST_NAME}; * marks p < {spec.alpha:g} (no correction for "
           "multiple comparisons); fewer than 2 shared seeds, or differences equal up to "
           "float32 rounding: no test."]
  return Table(title, [",".join(spec.rows)] + cols, rows, notes=notes)


def cost_table(report: Report) -> Table:
  """Training cost per (row, col), means over the cell's finished seeds."""
  header = [",".join(report.spec.rows), ",".join(report.spec.cols), "n",
            "trainable params", "optimizer state", "train time", "images/s", "peak RSS"]
  rows = []
  for (row, col), cell in report.cells.items():
    if cell.summary is None:
      rows.append([row, col, "0", *[cell.status] * 5])
      continue
    c = cell.cost
    rows.append([row, col, str(cell.summary.n), _format_trainable(c),
                 format_bytes(c.get("optimizer_state_bytes")),
                 format_seconds(c.get("train_time_s")),
                 _fixed(c.get("train_images_per_s"), 1),
                 "-" if c.get("peak_rss_mb") is None else f"{c['peak_rss_mb']:.0f} MB"])
  notes = ["Means over the finished seeds of each cell; train time excludes evaluation "
           "and compilation as measured by the run."]
  return Table("Cost (mean over seeds)", header, rows, notes=notes)


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


# ---------------------------------------------------------------------------
# Whole reports.


def _counts(report: Report) -> dict:
  counts = {"finished": 0, "failed": 0, "missing": 0}
  for r in report.records:
    counts[r.status] += 1
  return counts


def _val_selected(report: Report) -> list[str]:
  return [r.name for r in report.records if r.status == "finished" and selected_on_val(r)]


def selection_notes(report: Report) -> list[str]:
  """Notes naming how many runs chose their checkpoint on `val`; [] when none did."""
  names = _val_selected(report)
  if not names:
    return []
  notes = [f"Note: {len(names)} of {_counts(report)['finished']} finished runs selected their "
           "checkpoint on `val` (config.data.minival_fraction=0): their `val` numbers were "
           "used for checkpoint selection and are not held out."]
  if report.spec.metric.startswith("val."):
    notes.append(f"This report's metric `{report.spec.metric}` is a `val` number: for those "
                 "runs it is the score their checkpoint was chosen on, not a held-out score.")
  return notes


def reference_table(report: Report, ref: Reference) -> Table:
  """Published numbers in our column order, above our means."""
  cols = report.cols + [c for c in ref.values if c not in report.cols]
  rows = [["reference"] + [_fixed(ref.values.get(c), 2) for c in cols]]
  for row in report.rows:
    cells = [report.cells.get((row, c)) for c in cols]
    rows.append([row] + ["-" if c is None else (f"{c.summary.mean:.2f}" if c.summary
                                                 else c.status) for c in cells])
  return Table(ref.title, [",".join(report.spec.rows)] + cols, rows,
               notes=[ref.note, f"Our rows: mean {report.spec.metric} over seeds."])


def tables(report: Report) -> list[Table]:
  """Every table of the report, in order."""
  out = [value_table(report, "std"), value_table(report, "ci"), delta_table(report),
         cost_table(report)]
  if report.spec.reference:
    out.append(reference_table(report, REFERENCES[report.spec.reference]))
  return out


def to_markdown(report: Report) -> str:
  """The full Markdown report."""
  spec, counts = report.spec, _counts(report)
  unit = ", in %" if spec.is_fraction else ""
  better = "higher" if spec.higher_is_better else "lower"
  head = [f"# Fine-tuning report: {report.collection.workdir}", "",
          f"Metric `{spec.metric}`{unit}, {better} is better; rows `{','.join(spec.rows)}`, "
          f"columns `{','.join(spec.cols)}`. Runs: {counts['finished']} finished, "
          f"{counts['failed']} failed, {counts['missing']} missing.", ""]
  head += [line for note in selection_notes(report) for line in (note, "")]
  body = [table_to_markdown(t) for t in tables(report)]
  problems = []
  if report.problems:
    problems = ["## Problems", "", *(f"- {p}" for p in report.problems), ""]
  return "\n".join(head + body + problems)


def to_latex(report: Report) -> str:
  """All tables as booktabs LaTeX; selection notes go under the first."""
  out = tables(report)
  out[0].notes += selection_notes(report)
  return "% Written by ftlab.report; needs \\usepackage{booktabs}.\n" + "\n".join(
      table_to_latex(t) for t in out)


def _csv_number(x: float | None, digits: int) -> str:
  return "" if x is None else f"{x:.{digits}f}"


def _csv_row(report: Report, cell: Cell) -> list:
  s, d, c = cell.summary, cell.delta, cell.cost
  return [cell.row, cell.col, report.spec.metric, cell.status,
          s.n if s else 0, cell.n_failed, cell.n_missing,
          _csv_number(s and s.mean, 2), _csv_number(s and s.std, 2),
          _csv_number(s and s.ci, 2), int(cell.best),
          _csv_number(d and d.mean, 2), _csv_number(d and d.ci, 2), d.n if d else "",
          "" if d is None or d.p is None else f"{d.p:.4g}",
          "" if d is None or d.significant is None else int(d.significant),
          d.note if d else "", cell.n_selected_on_val,
          _csv_number(c.get("num_trainable_params"), 0),
          _csv_number(c.get("optimizer_state_bytes"), 0),
          _csv_number(c.get("train_time_s"), 1), _csv_number(c.get("train_images_per_s"), 1),
          _csv_number(c.get("peak_rss_mb"), 0)]


def to_csv(report: Report) -> str:
  """One row per cell: summary, best flag (1/0), delta vs baseline, cost."""
  spec = report.spec
  header = [",".join(spec.rows), ",".join(spec.cols), "metric", "status", "n", "n_failed",
            "n_missing", "mean", "std", "ci95", "best", f"delta_vs_{spec.baseline}",
            "delta_ci95", "delta_n", "p_value", "significant", "test_note",
            "n_selected_on_val", *COST_FIELDS]
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(header)
  for r in report.rows:
    for c in report.cols:
      writer.writerow(_csv_row(report, report.cells[r, c]))
  return out.getvalue()


def _cell_json(cell: Cell) -> dict:
  return {"row": cell.row, "col": cell.col, "status": cell.status,
          "values": {str(k): v for k, v in cell.values.items()},
          "summary": dataclasses.asdict(cell.summary) if cell.summary else None,
          "n_failed": cell.n_failed, "n_missing": cell.n_missing, "best": cell.best,
          "delta": dataclasses.asdict(cell.delta) if cell.delta else None,
          "cost": cell.cost, "runs": cell.runs, "n_selected_on_val": cell.n_selected_on_val}


def to_json(report: Report) -> dict:
  """The report at full precision (values in display units)."""
  spec = report.spec
  return {"workdir": str(report.collection.workdir), "metric": spec.metric,
          "unit": spec.unit, "scale": spec.scale, "higher_is_better": spec.higher_is_better,
          "rows_key": list(spec.rows), "cols_key": list(spec.cols), "rows": report.rows,
          "cols": report.cols, "baseline": spec.baseline, "alpha": spec.alpha,
          "test": stats.TEST_NAME, "confidence": stats.CONFIDENCE, "counts": _counts(report),
          "cells": [_cell_json(report.cells[r, c]) for r in report.rows for c in report.cols],
          "selected_on_val": _val_selected(report), "notes": selection_notes(report), "problems": report.problems}


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


# ---------------------------------------------------------------------------
# CLI.

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
  flags.DEFINE_string("predictions_run", None, "Run (dir name) for the predictions grid; "
                      "default: the best finished run that has predictions.csv.")


def _split_keys(text: str) -> tuple:
  return tuple(k.strip() for k in text.split(",") if k.strip())


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  unknown = set(FLAGS.formats) - set(FORMATS)
  if unknown:
    raise app.UsageError(f"--formats: unknown {sorted(unknown)}; choose from {FORMATS}")
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
  for path in write(report, FLAGS.formats):
    print(f"wrote {path}", file=sys.stderr)
  if FLAGS.plots:
    from ftlab import plots  # pylint: disable=import-outside-toplevel
    for path in plots.write_all(report, FLAGS.predictions_run):
      print(f"wrote {path}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
