"""A run's bookkeeping over its invocations (`RunMeta`), saved as JSON with every checkpoint.

The trainer writes it (the minival history, the best score and its step, the
seconds spent training, compiling, caching, probing and re-estimating BatchNorm
statistics), `checkpoint.py` saves and restores it with the train state so that
a resumed run continues where the interrupted one stopped, and `rungs.py` and
`results.py` read it.
"""
import dataclasses
from typing import List

# Keys that checkpoints written before them lack, with the value such a run had meanwhile
# (no feature cache, no probe phase or BatchNorm re-estimation timed).
NEWER_KEYS = {"feature_cache_s": 0.0, "probe_train_time_s": 0.0, "bn_stats_s": 0.0}


@dataclasses.dataclass
class RunMeta:
  """A fresh run's bookkeeping by default; `from_json` reads a checkpoint's back."""
  history: List[dict] = dataclasses.field(default_factory=list)  # one entry per minival evaluation
  best_top1: float = -1.0  # the selected weights' best minival top-1 (-1: no evaluation yet)
  best_step: int = -1  # the step of the best checkpoint (-1: none yet)
  train_time_s: float = 0.0  # train steps only: compilation, evaluation and checkpoints excluded
  compile_time_s: float = 0.0  # the train steps' compilations
  feature_cache_s: float = 0.0  # building the feature, boundary and phase caches
  probe_train_time_s: float = 0.0  # the part of train_time_s spent in probe phases (lp_ft, ...)
  bn_stats_s: float = 0.0  # re-estimating BatchNorm statistics (model.bn=reestimate), compiles too

  def to_json(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

  @classmethod
  def from_json(cls, data: dict, where: str = "checkpoint meta") -> "RunMeta":
    """The bookkeeping of a checkpoint's `meta` JSON; one written before a key in `NEWER_KEYS`
    takes that key's value there. `where` names the source in errors."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
      raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(names)}); "
                       "was it written by a newer ftlab?")
    missing = [name for name in names if name not in data and name not in NEWER_KEYS]
    if missing:
      raise ValueError(f"{where}: lacks the key {missing[0]!r}")
    return cls(**{**NEWER_KEYS, **data})
