"""The study's decisions as plain data (`decisions.json`): every rung, who went on and why.

A rung's decision, once taken (every trial there finished or failed, at
least one promoted), is kept: the planner reads it back (`taken`), so a trial
that fails or is retried later never re-makes it, and the finals always
belong to the point the search chose.
"""
import pathlib

from ftlab.studies.halving import fraction_text
from ftlab.sweeps import rundir


DECISIONS_FILE = "decisions.json"


def _entry(e) -> dict:
  r = e.result
  return {"trial": e.trial.name, "hparams": e.trial.hparams, "status": r.status,
          "minival_top1": r.top1, "minival_loss": r.loss, "step": r.step,
          "promoted": e.promoted}


def _why(sp, i: int, eta: int, score: str) -> str:
  entries, earlier = sp.rungs[i], i < len(sp.kept)
  if not earlier and any(e.result.status == "pending" for e in entries):
    return "waiting for its trials"
  kept = sum(e.promoted for e in entries)
  failed = sum(e.result.status == "failed" for e in entries)
  last = i + 1 == len(sp.fractions)
  measure, tie = (("minival loss", "higher minival top-1") if score == "loss"
                  else ("minival top-1", "lower minival loss"))
  rule = (f"the best {measure} wins" if last else
          f"the best {kept} of {len(entries)} by {measure} (n // eta={eta}, at least 1) go on")
  extra = f"; {failed} failed (ranked last)" if failed else ""
  kept_note = "; taken in an earlier round and kept" if earlier else ""
  return f"{rule}; ties: {tie}, then grid order{extra}{kept_note}"


def strategy_decisions(sp, eta: int, score: str) -> dict:
  """One `planner.StrategyPlan` as JSON."""
  return {
      "size": sp.size, "strategy": sp.strategy,
      "rungs": [{"fraction": f, "budget": fraction_text(f),
                 "trials": [_entry(e) for e in sp.rungs[i]] if i < len(sp.rungs) else [],
                 "decided": i < sp.decided_rungs,
                 "why": _why(sp, i, eta, score) if i < len(sp.rungs) else "not reached"}
                for i, f in enumerate(sp.fractions)],
      "decided": sp.decided,
      "chosen": None if sp.winner is None else {"trial": sp.winner.name,
                                                "hparams": sp.winner.hparams},
      "final_runs": {str(seed): {"dir": str(d), "status": f.status}
                     for seed, (d, f) in sp.finals.items()},
      "stale": [{"dir": str(d), "why": why} for d, why in sp.stale],
  }


def to_json(plan, eta: int, score: str) -> dict:
  """A `planner.StudyPlan` as JSON."""
  return {"strategies": [strategy_decisions(sp, eta, score) for sp in plan.strategies],
          "pending_runs": [str(t.dir) for t in plan.tasks]}


def taken(workdir: pathlib.Path) -> dict:
  """{(size, strategy): [names promoted at rung 1, at rung 2, ...]} for the rungs decided so far
  (a rung where every trial failed promoted none: not kept, its trials may be retried)."""
  data, _ = rundir.read_object(pathlib.Path(workdir) / DECISIONS_FILE)
  out = {}
  for s in (data or {}).get("strategies", []):
    kept = []
    for rung in s.get("rungs", []):
      promoted = [t["trial"] for t in rung.get("trials", []) if t.get("promoted")]
      if not rung.get("decided") or not promoted:
        break
      kept.append((rung["fraction"], promoted))
    out[s["size"], s["strategy"]] = kept
  return out
