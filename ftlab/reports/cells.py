"""Formatting one cell's numbers as text (mean ± spread, deltas, p-values, costs)."""

from ftlab.reports.pivot import Cell


def _n_note(cell: Cell) -> str:
  parts = [f"n={cell.summary.n}"]
  parts += [f"{k} {v}" for k, v in (("failed", cell.n_failed), ("missing", cell.n_missing),
                                    ("running", cell.n_running)) if v]
  return "(" + ", ".join(parts) + ")"


def format_cell(cell: Cell, spread: str = "std") -> str:
  """`mean ± std (n=3)`, `mean ± ci (n=3)`, `mean (n=1)`, `failed`, `running` or `missing`."""
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
  """`+1.23 ± 0.45 (n=3, p=0.012, Holm p=0.036) *` (* when Holm p < alpha), or why there is no
  delta/test."""
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
  holm = f", Holm {format_p(d.p_holm)}" if d.p_holm is not None else ""
  return f"{d.mean:+.2f} ± {d.ci:.2f} (n={d.n}, {format_p(d.p)}{holm}){flag}"


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


def format_trainable(cost: dict) -> str:
  n, total = cost.get("num_trainable_params"), cost.get("num_params")
  share = f" ({100 * n / total:.1f}%)" if n is not None and total else ""
  return format_count(n) + share


def format_phase(cost: dict, phase: str) -> str:
  """`80 steps, 640 images, 10.2 s`: a phase's part of a cost dict (`studies.cost.PHASE_FIELDS`,
  `phase` 'finetune' or 'probe'), what is known of it; '-' when nothing is (no probe)."""
  steps, images, seconds = (cost.get(f"{phase}_{k}") for k in ("steps", "images", "train_time_s"))
  parts = [f"{steps:,.0f} steps" if steps is not None else None,
           f"{format_count(images)} images" if images is not None else None,
           format_seconds(seconds) if seconds is not None else None]
  return ", ".join(p for p in parts if p) or "-"


PHASE_NOTE = ("Fine-tuning: a run's steps, images (steps x batch) and train time, less those of "
              "the linear probe that lp_ft and gradual_unfreeze run first; probe: that probe's "
              "('-': the strategy has none; a results.json from before the probe was recorded "
              "counts it in fine-tuning). Train time excludes evaluation, compilation, caches and "
              "BatchNorm re-estimation (model.bn=reestimate: results.json's bn_stats_s) as "
              "measured by the run.")


def fixed_digits(x: float | None, digits: int) -> str:
  return "-" if x is None else f"{x:.{digits}f}"
