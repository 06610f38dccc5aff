"""The study's decisions as plain data (`decisions.json`): every rung, who went on and why."""
from ftlab.studies.planner import Plan, StrategyPlan, fraction_text


def _entry(e) -> dict:
  r = e.result
  return {"trial": e.trial.name, "hparams": e.trial.hparams, "status": r.status,
          "minival_top1": r.top1, "minival_loss": r.loss, "step": r.step,
          "promoted": e.promoted}


def _why(sp: StrategyPlan, i: int, eta: int) -> str:
  entries = sp.rungs[i]
  if any(e.result.status == "pending" for e in entries):
    return "waiting for its trials"
  kept = sum(e.promoted for e in entries)
  failed = sum(e.result.status == "failed" for e in entries)
  last = i + 1 == len(sp.fractions)
  rule = "the best minival top-1 wins" if last else f"the best {kept} of {len(entries)} (n // eta={eta}, at least 1) go on"
  extra = f"; {failed} failed (ranked last)" if failed else ""
  return f"{rule}; ties: lower minival loss, then grid order{extra}"


def strategy_decisions(sp: StrategyPlan, eta: int) -> dict:
  return {
      "size": sp.size, "strategy": sp.strategy,
      "rungs": [{"fraction": f, "budget": fraction_text(f),
                 "trials": [_entry(e) for e in sp.rungs[i]] if i < len(sp.rungs) else [],
                 "why": _why(sp, i, eta) if i < len(sp.rungs) else "not reached"}
                for i, f in enumerate(sp.fractions)],
      "decided": sp.decided,
      "chosen": None if sp.winner is None else {"trial": sp.winner.name,
                                                "hparams": sp.winner.hparams},
      "final_runs": {str(seed): {"dir": str(d), "status": f.status}
                     for seed, (d, f) in sp.finals.items()},
  }


def to_json(plan: Plan, eta: int) -> dict:
  return {"strategies": [strategy_decisions(sp, eta) for sp in plan.strategies],
          "pending_runs": [str(t.dir) for t in plan.tasks]}
