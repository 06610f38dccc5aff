"""A study's tables (tuned, paired with each size's winner, untuned, every trial, cost) as
format-neutral text."""
from ftlab.reports.cells import PHASE_NOTE, format_phase
from ftlab.reports.study_results import Row, StudyResults
from ftlab.reports.tables import Table, paired_table
from ftlab.sweeps.naming import format_value


def hparams_text(hparams: dict | None) -> str:
  """`lr=0.01, weight_decay=0.0001` (the last part of each dotted key)."""
  if not hparams:
    return "-"
  return ", ".join(f"{k.rsplit('.', 1)[-1]}={format_value(v)}" for k, v in hparams.items())


def value_text(row: Row) -> str:
  """`96.10 ± 0.59 (n=2, test set ±2.01)`, `96.10 (n=1)`, or the status (searching, running,
  failed)."""
  s = row.summary
  if s is None:
    return row.status
  missing = len(row.statuses) - s.n
  note = f"n={s.n}" + (f", {missing} {'running' if row.status == 'running' else 'failed'}"
                       if missing else "")
  if row.test_halfwidth is not None:
    note += f", test set ±{row.test_halfwidth:.2f}"
  return f"{s.mean:.2f} ± {s.ci:.2f} ({note})" if s.ci is not None else f"{s.mean:.2f} ({note})"


def _grid(results: StudyResults, rows: list, cell) -> tuple:
  strategies = list(results.study.strategies)
  table_rows, bold = [], set()
  for i, size in enumerate(results.study.sizes):
    by = {r.strategy: r for r in rows if r.size == size}
    table_rows.append([results.sizes[size].label] + [cell(by[s]) for s in strategies])
    means = {j: by[s].summary.mean for j, s in enumerate(strategies, 1) if by[s].summary}
    if means:
      top = max(means.values())
      bold |= {(i, j) for j, m in means.items() if m == top}
  return ["size (trained on)"] + strategies, table_rows, bold


SPREAD_NOTE = ("± is the 95% CI of the mean over the final seeds (Student t); test set ± is "
               "one run's binomial 95% half-width on the test set (Wilson's score interval at the "
               "mean, about 1.96·√(p(1−p)/N)): "
               "the larger of the two limits what the table can separate.")


def tuned_table(results: StudyResults) -> Table:
  header, rows, bold = _grid(results, results.tuned,
                             lambda r: f"{value_text(r)} @ {hparams_text(r.chosen)}"
                             if r.summary else value_text(r))
  seeds = ", ".join(str(s) for s in results.study.final_seeds)
  return Table("Tuned strategies: test top-1 %, mean ± 95% CI over the final seeds", header,
               rows, bold, [f"Each strategy's hyperparameters were chosen on minival by "
                            f"successive halving (eta={results.study.eta}) with the search seed "
                            f"{results.study.search_seed}, then retrained from scratch with the "
                            f"final seeds {seeds}; the search seed is none of them, so the trial "
                            "that won the selection is never the run reported on test. `@` gives "
                            "the chosen point. Bold: the best mean of the row.", SPREAD_NOTE])


def _labels(results: StudyResults) -> dict:
  return {name: size.label for name, size in results.sizes.items()}


def untuned_table(results: StudyResults) -> Table:
  header, rows, bold = _grid(results, results.untuned, value_text)
  return Table("Untuned: every strategy at the config's own recipe (test top-1 %)", header, rows,
               bold, ["The table a plain sweep gives: one shared recipe for every strategy.",
                      SPREAD_NOTE])


def _trial_cells(sp, trial) -> list:
  cells, chosen = [], sp.winner is not None and sp.winner.order == trial.order
  for i, f in enumerate(sp.fractions):
    entry = next((e for e in sp.rungs[i] if e.trial.order == trial.order), None) \
        if i < len(sp.rungs) else None
    if entry is None:
      cells.append("")
      continue
    r = entry.result
    text = f"{100 * r.top1:.2f}" if r.top1 is not None else r.status
    last = i + 1 == len(sp.fractions)
    cells.append(text + (" chosen" if last and chosen else " →" if entry.promoted and not last
                         else ""))
  return cells


def trials_table(results: StudyResults) -> Table:
  depth = max(len(sp.fractions) for sp in results.plan.strategies)
  header = ["size", "strategy", "hyperparameters"] + [f"rung {i + 1}" for i in range(depth)]
  rows = []
  for sp in results.plan.strategies:
    for trial in results.study.trials(sp.size, sp.strategy):
      cells = _trial_cells(sp, trial)
      rows.append([sp.size, sp.strategy, hparams_text(trial.hparams)]
                  + cells + [""] * (depth - len(cells)))
  by = "minival loss" if results.study.score == "loss" else "minival top-1"
  return Table("Every trial: minival top-1 % at each rung", header, rows, set(),
               ["Rungs are fractions of the full run's steps (for 4 trials at eta 3: 1/3, where "
                "the search ends since one trial is kept, unless the study asks finish_winner), "
                "moved to the run's scheduled minival evaluations where it has some; a "
                "trial's score there is the minival of the weights it goes on from, at the end "
                f"its best checkpoint's; ranked by {by}. → went on to the next rung; chosen: the "
                "strategy's final point. The test split is never evaluated during the search."])


def cost_table(results: StudyResults) -> Table:
  im, study = results.images, results.study
  grid = im["full_grid"]
  ratio = f"{im['total'] / grid:.2f}x of a full grid" if grid else "-"
  rows = [["search (successive halving)", f"{im['search']:,}"],
          [f"final seeds ({len(study.final_seeds)}, retrained)", f"{im['final']:,}"],
          ["search + final", f"{im['total']:,} ({ratio})"],
          ["a full grid without halving", f"{grid:,}" if grid else "unknown"]]
  if study.untuned:
    rows.append(["untuned runs", f"{im['untuned']:,}"])
  n = len(study.final_seeds)
  per_seed = im["final"] / n if im["final"] else 0
  notes = [f"Each final seed is one full run per strategy and size ({per_seed:,.0f} images per "
           f"seed so far); the {n} final seeds are {im['final'] / max(im['total'], 1):.0%} of "
           "the study's images. Failed runs count what they trained up to their last rung stop "
           "or checkpoint."]
  return Table("Cost: training images through the network (steps x batch)", ["", "images"], rows,
               set(), notes)


def phase_cost_table(results: StudyResults) -> Table:
  """A final run's fine-tuning and probe, per size and strategy."""
  labels = _labels(results)
  rows = [[labels.get(c["size"], c["size"]), c["strategy"], str(c["n"]),
           format_phase(c, "finetune") if c["n"] else "-",
           format_phase(c, "probe") if c["n"] else "-"] for c in results.final_costs]
  return Table("Cost of a final run (mean over its finished final seeds)",
               ["size", "strategy", "n", "fine-tuning", "probe"], rows, set(), [PHASE_NOTE])


def tables(results: StudyResults) -> list:
  out = [tuned_table(results), paired_table(results.verdict, "size", _labels(results))]
  if results.study.untuned:
    out += [untuned_table(results), paired_table(results.untuned_verdict, "size",
                                                 _labels(results))]
  return out + [trials_table(results), cost_table(results), phase_cost_table(results)]
