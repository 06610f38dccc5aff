"""A sweep as a config file declares it: import the file, expand and check its grid."""
import dataclasses
import hashlib
import importlib.util
import os
import re
from typing import Any, Iterable, Sequence

from ftlab.configuration import args as config_args
from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.naming import short_key, unique_names


SCALAR_TYPES = (str, int, float, bool)


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A config file's expanded grid.

  Attributes:
    config_path: the config file as given on the command line.
    arg: the text after ':' in `--config`, or None.
    grid: one overrides dict per run, in the config's order.
    strategy_order: strategies in the order reports should show them.
    fixed: overrides given on the sweep's command line, applied to every run
      (key -> value text); not part of run names.
  """
  config_path: str
  arg: str | None
  grid: tuple
  strategy_order: tuple
  fixed: dict = dataclasses.field(default_factory=dict)

  @property
  def config_spec(self) -> str:
    return self.config_path if self.arg is None else f"{self.config_path}:{self.arg}"


def parse_config_spec(spec: str) -> tuple[str, str | None]:
  """Splits `path.py[:arg]` into the path and the argument (or None)."""
  path, sep, arg = spec.partition(":")
  return path, (arg if sep else None)


def import_file(path: str):
  if not os.path.isfile(path):
    raise SweepError(f"{path}: config file not found")
  digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
  spec = importlib.util.spec_from_file_location(f"_ftlab_cfg_{digest}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _validate_grid(grid: Any, path: str) -> tuple:
  if not isinstance(grid, (list, tuple)) or not grid:
    raise SweepError(f"{path}: get_sweep() must return a non-empty list of dicts")
  for i, overrides in enumerate(grid):
    if not isinstance(overrides, dict):
      raise SweepError(f"{path}: get_sweep()[{i}] is {type(overrides).__name__}, not a dict")
    for key, value in overrides.items():
      if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
        raise SweepError(f"{path}: get_sweep()[{i}] has invalid key {key!r}")
      if not isinstance(value, SCALAR_TYPES):
        raise SweepError(f"{path}: get_sweep()[{i}][{key!r}] = {value!r} is not a "
                         "str/int/float/bool")
  return tuple(dict(o) for o in grid)


def check_keys_exist(config: Any, grid: tuple, path: str, what: str = "sweep") -> None:
  """Fails early when a sweep (or study) key does not name a field of get_config()."""
  for key in dict.fromkeys(k for overrides in grid for k in overrides):
    node = config
    for part in key.split("."):
      if not hasattr(node, "keys") or part not in node:
        raise SweepError(f"{path}: {what} key {key!r} is not a field of get_config()")
      node = node[part]


def _strategy_order(module: Any, grid: tuple) -> tuple:
  declared = getattr(module, "STRATEGY_ORDER", None)
  seen = [v for o in grid for k, v in o.items() if short_key(k) == "strategy"]
  order = list(declared or [])
  order += [s for s in dict.fromkeys(seen) if s not in order]
  return tuple(order)


def config_value(config: Any, key: str, layers: Sequence[dict]) -> Any:
  """A dotted key's value for a run: the first of `layers` (overrides, strongest first) that sets
  it, else the config's; a text value (from the command line) takes the config value's type."""
  default = config
  for part in key.split("."):
    default = default[part]
  for layer in layers:
    if key in layer:
      value = layer[key]
      if isinstance(value, str) and not isinstance(default, str):
        return config_args.convert(key, value, default)
      return value
  return default


def parse_fixed(items: Iterable[str], grid: Sequence[dict] = ()) -> dict[str, str]:
  """Parses `key=value` overrides for every run; they may not vary in the grid."""
  fixed = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
      raise SweepError(f"override {item!r} is not of the form dotted.key=value")
    if any(key in overrides for overrides in grid):
      raise SweepError(f"override {key!r} is also a sweep axis; filter with --only instead")
    fixed[key] = value
  return fixed


def load_sweep(config_spec: str, fixed: Iterable[str] = ()) -> Sweep:
  """Imports a config file and expands its sweep.

  Args:
    config_spec: `path.py` or `path.py:arg`.
    fixed: `key=value` overrides for every run.

  Returns:
    The expanded `Sweep`.
  """
  path, arg = parse_config_spec(config_spec)
  module = import_file(path)
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path}: no get_sweep(); not a sweep config")
  grid = _validate_grid(module.get_sweep() if arg is None else module.get_sweep(arg), path)
  fixed = parse_fixed(fixed, grid)
  if hasattr(module, "get_config"):
    config = module.get_config() if arg is None else module.get_config(arg)
    check_keys_exist(config, grid + (fixed,), path)
  unique_names(grid)
  return Sweep(path, arg, grid, _strategy_order(module, grid), fixed)
