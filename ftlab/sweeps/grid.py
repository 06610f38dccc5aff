"""Grid algebra for config files: `product`, `zip_`, `chain`, `cross` of dotted-key overrides.

A sweepable config defines `get_sweep(arg=None) -> list[dict]` built with these:

  from ftlab.sweeps import grid
  def get_sweep(arg=None):
    return grid.product(**{"strategy.name": ["linear_probe", "full_ft"], "seed": [0, 1]})
"""
import itertools
from typing import Any, Iterable, Sequence


class SweepError(ValueError):
  """A sweep config, filter or index is unusable; the message says where."""


def product(**axes: Sequence[Any]) -> list[dict]:
  """Cartesian product of the axes, in declaration order (last varies fastest).

  Example: `product(**{'model.name': ['a', 'b'], 'seed': [0, 1]})`.

  Args:
    **axes: dotted config key -> list of values.

  Returns:
    One overrides dict per combination.
  """
  keys = list(axes)
  return [dict(zip(keys, values))
          for values in itertools.product(*(axes[k] for k in keys))]


def zip_(**axes: Sequence[Any]) -> list[dict]:
  """Element-wise combination of equally long axes.

  Args:
    **axes: dotted config key -> list of values, all of the same length.

  Returns:
    One overrides dict per position.

  Raises:
    SweepError: if the axes differ in length.
  """
  lengths = {k: len(v) for k, v in axes.items()}
  if len(set(lengths.values())) > 1:
    raise SweepError(f"zip_ needs axes of equal length, got {lengths}")
  keys = list(axes)
  return [dict(zip(keys, values)) for values in zip(*(axes[k] for k in keys))]


def chain(*grids: Iterable[dict]) -> list[dict]:
  """Concatenates grids, e.g. two products with different axes."""
  return [dict(overrides) for grid in grids for overrides in grid]


def cross(*grids: Iterable[dict]) -> list[dict]:
  """Product of grids: every combination of one entry of each, merged."""
  out = []
  for parts in itertools.product(*(list(g) for g in grids)):
    merged = {}
    for part in parts:
      merged.update(part)
    out.append(merged)
  return out
