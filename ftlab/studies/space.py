"""A study as a config file declares it, next to `get_config`:

  from ftlab.studies import space

  def get_study(arg=None):
    return space.study(
        strategies={
            "linear_probe": {"optimizer.lr": space.log_grid(0.01, 1.0, 5)},
            "full_ft": {"optimizer.lr": space.log_grid(0.001, 0.1, 5),
                        "optimizer.weight_decay": [0.0, 1e-4]},
        },
        final_seeds=[0, 1],               # the first is the search's seed
        sizes=[{"data.train_per_class": k} for k in (5, 10, 20)],  # optional
        eta=3)

Each strategy's grid is the product of its axes (dotted config keys ->
values); its trials run with `strategy.name` set to the strategy's key. Sizes
(optional) are overrides applied to every run of the study, one study per
size: data-size curves. `untuned=True` also runs every strategy at the
config's own recipe over the final seeds (the table a sweep would give).
"""
import dataclasses
from typing import Any, Mapping, Sequence

from ftlab.sweeps import grid as grid_lib
from ftlab.sweeps import naming, spec
from ftlab.sweeps.grid import SweepError


DEFAULT_ETA = 3
DEFAULT_MAX_RUNGS = 3


def log_grid(low: float, high: float, n: int) -> list:
  """`n` values from `low` to `high` evenly spaced in log, to 3 significant digits."""
  if not 0 < low < high or n < 2:
    raise SweepError(f"log_grid({low}, {high}, {n}) needs 0 < low < high and n >= 2")
  ratio = (high / low) ** (1 / (n - 1))
  return [float(f"{low * ratio ** i:.3g}") for i in range(n)]


def study(strategies: Mapping[str, Mapping[str, Sequence[Any]]], final_seeds: Sequence[int] = (0, 1),
          sizes: Sequence[Mapping[str, Any]] | None = None, eta: int = DEFAULT_ETA,
          max_rungs: int = DEFAULT_MAX_RUNGS, untuned: bool = False) -> dict:
  """A study declaration (plain data; `load_study` checks it)."""
  return {"strategies": {k: dict(v) for k, v in strategies.items()},
          "final_seeds": list(final_seeds), "sizes": [dict(s) for s in sizes or [{}]],
          "eta": eta, "max_rungs": max_rungs, "untuned": untuned}


@dataclasses.dataclass(frozen=True)
class Trial:
  """One (size, strategy, hyperparameters) point of the search."""
  size: str            # the size's name ('all' without sizes)
  strategy: str
  hparams: dict        # the searched overrides
  order: int           # position in the strategy's grid (ties go to the earlier)

  @property
  def name(self) -> str:
    return naming.run_name(self.hparams) if self.hparams else "default"


@dataclasses.dataclass(frozen=True)
class Study:
  """A config file's checked study."""
  config_spec: str
  strategies: dict     # strategy -> its grid (list of overrides dicts)
  final_seeds: tuple
  sizes: dict          # size name -> overrides
  eta: int
  max_rungs: int
  untuned: bool
  fixed: dict          # `--config.k=v` given to the study: every run gets them
  cache_dir: str = ""  # the runs' persistent compilation cache (to count programs compiled)

  @property
  def search_seed(self) -> int:
    return self.final_seeds[0]

  def trials(self, size: str, strategy: str) -> list:
    return [Trial(size, strategy, hp, i) for i, hp in enumerate(self.strategies[strategy])]


def _check_values(where: str, axes: Mapping[str, Any]) -> None:
  for key, values in axes.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise SweepError(f"{where}: {key!r} has an empty grid (give at least one value)")
    for v in values:
      if not isinstance(v, spec.SCALAR_TYPES):
        raise SweepError(f"{where}: {key!r} value {v!r} is not a str/int/float/bool")


def _strategy_grids(declared: Mapping, path: str) -> dict:
  if not isinstance(declared, Mapping) or not declared:
    raise SweepError(f"{path}: get_study() declares no strategies")
  grids = {}
  for name, axes in declared.items():
    where = f"{path}: get_study() strategy {name!r}"
    if not isinstance(axes, Mapping):
      raise SweepError(f"{where} is {type(axes).__name__}, not a dict of key -> values")
    if "strategy.name" in axes:
      raise SweepError(f"{where} sets 'strategy.name'; the strategy's key is its name")
    _check_values(where, axes)
    grids[name] = grid_lib.product(**axes) if axes else [{}]
  return grids


def _sizes(declared: Sequence[Mapping], path: str) -> dict:
  sizes = {}
  for overrides in declared:
    if not isinstance(overrides, Mapping):
      raise SweepError(f"{path}: get_study() size {overrides!r} is not a dict of overrides")
    _check_values(f"{path}: get_study() size", {k: [v] for k, v in overrides.items()})
    name = naming.run_name(overrides) if overrides else "all"
    if name in sizes:
      raise SweepError(f"{path}: get_study() declares size {name!r} twice")
    sizes[name] = dict(overrides)
  return sizes


def _check(declared: dict, path: str) -> None:
  eta, rungs, seeds = declared["eta"], declared["max_rungs"], declared["final_seeds"]
  if not isinstance(eta, int) or eta < 2:
    raise SweepError(f"{path}: get_study() eta={eta!r}: successive halving needs an integer "
                     "eta >= 2 (keep the best 1/eta at each rung)")
  if not isinstance(rungs, int) or rungs < 1:
    raise SweepError(f"{path}: get_study() max_rungs={rungs!r} must be an integer >= 1")
  if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
    raise SweepError(f"{path}: get_study() final_seeds={seeds!r} must be a non-empty list of ints")
  if len(set(seeds)) != len(seeds):
    raise SweepError(f"{path}: get_study() final_seeds={seeds!r} repeats a seed")


def load_study(config_spec: str, fixed_items: Sequence[str] = ()) -> Study:
  """Imports a config file and checks its `get_study()` against its `get_config()`.

  Raises:
    SweepError: naming the config, the strategy and the key at fault.
  """
  path, arg = spec.parse_config_spec(config_spec)
  module = spec.import_file(path)
  if not hasattr(module, "get_study"):
    raise SweepError(f"{path}: no get_study(); not a study config")
  declared = module.get_study() if arg is None else module.get_study(arg)
  if not isinstance(declared, dict) or "strategies" not in declared:
    raise SweepError(f"{path}: get_study() must return ftlab.studies.space.study(...)")
  _check(declared, path)
  grids = _strategy_grids(declared["strategies"], path)
  sizes = _sizes(declared["sizes"], path)
  every = [hp for g in grids.values() for hp in g] + list(sizes.values())
  fixed = spec.parse_fixed(fixed_items, every)
  config = module.get_config() if arg is None else module.get_config(arg)
  spec.check_keys_exist(config, tuple(every) + (fixed,), path, what="study")
  cache_dir = fixed.get("train.compilation_cache_dir", config.train.compilation_cache_dir)
  return Study(config_spec, grids, tuple(declared["final_seeds"]), sizes, declared["eta"],
               declared["max_rungs"], bool(declared["untuned"]), fixed, cache_dir)



STUDY_FILE = "study.json"


def to_json(study: Study) -> dict:
  return {"config_spec": study.config_spec, "strategies": study.strategies,
          "final_seeds": list(study.final_seeds), "sizes": study.sizes, "eta": study.eta,
          "max_rungs": study.max_rungs, "untuned": study.untuned, "fixed": study.fixed}


def from_json(data: dict) -> Study:
  return Study(data["config_spec"], data["strategies"], tuple(data["final_seeds"]),
               data["sizes"], data["eta"], data["max_rungs"], data["untuned"], data["fixed"])
