"""A study as a config file declares it, next to `get_config`:

  from ftlab.studies import space

  def get_study(arg=None):
    return space.study(
        strategies={
            "linear_probe": {"optimizer.lr": space.log_grid(0.01, 1.0, 5)},
            "full_ft": {"optimizer.lr": space.log_grid(0.001, 0.1, 5),
                        "optimizer.weight_decay": [0.0, 1e-4]},
        },
        final_seeds=[0, 1, 2],            # the default: three retrained seeds
        search_seed=1000,                 # the default: the search's own seed
        sizes=[{"data.train_per_class": k} for k in (5, 10, 20)],  # optional
        eta=3)

Each strategy's grid is the product of its axes (dotted config keys ->
values); its trials run with `strategy.name` set to the strategy's key and
the search seed. The chosen point is then retrained with every final seed:
the search seed is never a final seed, so the run that won the selection is
never the one reported on test (no winner's curse). Sizes (optional) are
overrides applied to every run of the study, one study per size: data-size
curves. `untuned=True` also runs every strategy at the config's own recipe
over the final seeds (the table a sweep would give).

The keys the planner sets (PLANNED_KEYS, every grid key and every size key)
cannot be overridden for the whole study (`--config.seed=0` is an error), and
a study whose checkpoints would be selected on its test split is refused.
"""
import dataclasses
from typing import Any, Mapping, Sequence

from ftlab.studies import halving
from ftlab.sweeps import grid as grid_lib
from ftlab.sweeps import naming, spec
from ftlab.sweeps.grid import SweepError


DEFAULT_ETA = 3
DEFAULT_MAX_RUNGS = 3
DEFAULT_FINAL_SEEDS = (0, 1, 2)
DEFAULT_SEARCH_SEED = 1000
# Keys every run of a study gets from the planner (besides the grid and size keys).
PLANNED_KEYS = ("seed", "strategy.name", "train.stop_at_fraction", "train.evaluate_held_out")


def log_grid(low: float, high: float, n: int) -> list:
  """`n` values from `low` to `high` evenly spaced in log, to 3 significant digits."""
  if not 0 < low < high or n < 2:
    raise SweepError(f"log_grid({low}, {high}, {n}) needs 0 < low < high and n >= 2")
  ratio = (high / low) ** (1 / (n - 1))
  return [float(f"{low * ratio ** i:.3g}") for i in range(n)]


def study(strategies: Mapping[str, Mapping[str, Sequence[Any]]],
          final_seeds: Sequence[int] = DEFAULT_FINAL_SEEDS,
          search_seed: int = DEFAULT_SEARCH_SEED,
          sizes: Sequence[Mapping[str, Any]] | None = None, eta: int = DEFAULT_ETA,
          max_rungs: int = DEFAULT_MAX_RUNGS, untuned: bool = False, score: str = "top1",
          rungs_at_evaluations: bool = True, finish_winner: bool = False) -> dict:
  """A study declaration (plain data; `load_study` checks it).

  `score`: what a rung ranks its trials by, the minival top-1 the trainer's
  `evaluate_minival()` returns at the stop ('top1') or its loss ('loss'), each
  the other's tie-break. `rungs_at_evaluations`: move the rungs to the run's
  scheduled minival evaluations (ftlab.studies.halving.at_evaluations).
  `finish_winner`: train the last trial left on to the end of its run (by
  default the search ends at the first rung that keeps one trial, which the
  final seeds then retrain: ftlab.studies.halving.until_one).
  """
  return {"strategies": {k: dict(v) for k, v in strategies.items()},
          "final_seeds": list(final_seeds), "search_seed": search_seed,
          "sizes": [dict(s) for s in sizes or [{}]], "eta": eta, "max_rungs": max_rungs,
          "untuned": untuned, "score": score, "rungs_at_evaluations": rungs_at_evaluations,
          "finish_winner": finish_winner}


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
  final_seeds: tuple   # the retrained seeds the tables average
  search_seed: int     # the search trials' seed, never a final seed
  sizes: dict          # size name -> overrides
  eta: int
  max_rungs: int
  untuned: bool
  score: str           # halving.SCORES: what rungs rank by
  rungs: dict          # strategy -> its rungs' fractions of the full run (the last 1)
  fixed: dict          # `--config.k=v` given to the study: every run gets them
  cache_dir: str = ""  # the runs' persistent compilation cache (to count programs compiled)

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
    try:
      naming.unique_names(grids[name])  # each trial's dir is named after its point
    except SweepError as e:
      raise SweepError(f"{where}: {e}") from e
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
  search = declared["search_seed"]
  if not isinstance(eta, int) or eta < 2:
    raise SweepError(f"{path}: get_study() eta={eta!r}: successive halving needs an integer "
                     "eta >= 2 (keep the best 1/eta at each rung)")
  if not isinstance(rungs, int) or rungs < 1:
    raise SweepError(f"{path}: get_study() max_rungs={rungs!r} must be an integer >= 1")
  if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
    raise SweepError(f"{path}: get_study() final_seeds={seeds!r} must be a non-empty list of ints")
  if len(set(seeds)) != len(seeds):
    raise SweepError(f"{path}: get_study() final_seeds={seeds!r} repeats a seed")
  if not isinstance(declared["finish_winner"], bool):
    raise SweepError(f"{path}: get_study() finish_winner={declared['finish_winner']!r} must be "
                     "True or False")
  if declared["score"] not in halving.SCORES:
    raise SweepError(f"{path}: get_study() score={declared['score']!r}; use one of "
                     f"{halving.SCORES}")
  if not isinstance(search, int) or isinstance(search, bool) or search in seeds:
    raise SweepError(f"{path}: get_study() search_seed={search!r} must be an int outside "
                     f"final_seeds={seeds!r} (the final runs are retrained, not the selected trial)")


def _check_fixed(fixed: Mapping, grids: Mapping, sizes: Mapping, path: str) -> None:
  """Refuses a study-wide override of a key the planner sets per run."""
  owners = {key: "the planner sets it for every run" for key in PLANNED_KEYS}
  owners.update({k: f"strategy {name!r} searches it" for name, g in grids.items()
                 for hp in g for k in hp})
  owners.update({k: "a data size sets it" for o in sizes.values() for k in o})
  for key in fixed:
    if key in owners:
      raise SweepError(f"--config.{key}: {path}'s study sets {key!r} itself ({owners[key]}); "
                       "it cannot be overridden for the whole study")


def _layers(fixed: Mapping, hparams: Mapping, size: Mapping) -> tuple:
  """A run's overrides, strongest first (as `sweeps.runner.build_command` merges them)."""
  return (fixed, hparams, size)


def _check_selection(config, grids: Mapping, sizes: Mapping, fixed: Mapping, path: str) -> None:
  """Refuses a study whose checkpoints would be selected on its test split."""
  for size_name, size in sizes.items():
    for strategy, grid in grids.items():
      for hp in grid:
        layers = _layers(fixed, hp, size)
        fraction = spec.config_value(config, "data.minival_fraction", layers)
        val = spec.config_value(config, "data.val_split", layers)
        test = spec.config_value(config, "data.test_split", layers)
        if fraction == 0 and val and val == test:
          raise SweepError(
              f"{path}: strategy {strategy!r} at size {size_name!r} has "
              f"data.minival_fraction=0 and data.val_split == data.test_split == {test!r}: its "
              "checkpoints would be selected on the test split; carve a minival "
              "(data.minival_fraction > 0) or give a val split of its own")


def _subset_active(config, layers: tuple) -> bool:
  return (spec.config_value(config, "data.train_per_class", layers) > 0
          or spec.config_value(config, "data.train_fraction", layers) < 1.0)


def _check_nested(config, sizes: Mapping, fixed: Mapping, path: str) -> None:
  """Refuses a data-size curve whose full-size point is not a superset of its subsets.

  With `data.minival_from='subset'` a subset's minival is the end of each
  class's subset order (ftlab.data.subsets.draw), while the whole train split's
  is carved by ftlab.data.sources.carve_minival: the full size would train on
  images that are minival at the smaller sizes.
  """
  subsets, whole = [], []
  for name, size in sizes.items():
    layers = _layers(fixed, {}, size)
    nests = (spec.config_value(config, "data.minival_from", layers) == "full"
             or spec.config_value(config, "data.minival_fraction", layers) == 0)
    if not nests:
      (subsets if _subset_active(config, layers) else whole).append(name)
  if subsets and whole:
    raise SweepError(
        f"{path}: get_study() size {whole[0]!r} trains on the whole train split while "
        f"{subsets[0]!r} draws a subset with data.minival_from='subset': the whole split's "
        "minival is carved differently, so the sizes are not nested; set "
        f"data.minival_from='full' (one minival for every size) or drop size {whole[0]!r}")


def _rungs(config, grids: Mapping, sizes: Mapping, fixed: Mapping, declared: dict) -> dict:
  """Each strategy's rung fractions, at the run's scheduled evaluations when every run of the
  strategy evaluates at the same fractions (else, or when not asked, the halving's own)."""
  out = {}
  for strategy, grid in grids.items():
    ideal = halving.rung_fractions(len(grid), declared["eta"], declared["max_rungs"])
    schedules = {halving.evaluation_fractions(
        spec.config_value(config, "train.num_epochs", _layers(fixed, hp, size)),
        spec.config_value(config, "train.eval_every_epochs", _layers(fixed, hp, size)))
        for hp in grid for size in sizes.values()}
    if declared["rungs_at_evaluations"] and len(schedules) == 1:
      ideal = halving.at_evaluations(ideal, schedules.pop())
    out[strategy] = (ideal if declared["finish_winner"]
                     else halving.until_one(ideal, len(grid), declared["eta"]))
  return out


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
  fixed = spec.parse_fixed(fixed_items)
  _check_fixed(fixed, grids, sizes, path)
  every = [hp for g in grids.values() for hp in g] + list(sizes.values())
  config = module.get_config() if arg is None else module.get_config(arg)
  spec.check_keys_exist(config, tuple(every) + (fixed,), path, what="study")
  _check_selection(config, grids, sizes, fixed, path)
  _check_nested(config, sizes, fixed, path)
  cache_dir = fixed.get("train.compilation_cache_dir", config.train.compilation_cache_dir)
  return Study(config_spec, grids, tuple(declared["final_seeds"]), declared["search_seed"],
               sizes, declared["eta"], declared["max_rungs"], bool(declared["untuned"]),
               declared["score"], _rungs(config, grids, sizes, fixed, declared), fixed, cache_dir)


STUDY_FILE = "study.json"


def to_json(study: Study) -> dict:
  return {"config_spec": study.config_spec, "strategies": study.strategies,
          "final_seeds": list(study.final_seeds), "search_seed": study.search_seed,
          "sizes": study.sizes, "eta": study.eta, "max_rungs": study.max_rungs,
          "untuned": study.untuned, "score": study.score,
          "rungs": {k: list(v) for k, v in study.rungs.items()}, "fixed": study.fixed}


def from_json(data: dict) -> Study:
  """study.json read back (a study.json without `search_seed` predates retrained finals: its
  first final seed was the search's, and its layout is not this one's; a KeyError)."""
  return Study(data["config_spec"], data["strategies"], tuple(data["final_seeds"]),
               data["search_seed"], data["sizes"], data["eta"], data["max_rungs"],
               data["untuned"], data["score"], {k: tuple(v) for k, v in data["rungs"].items()},
               data["fixed"])
