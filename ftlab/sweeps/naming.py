"""Run names: a stable, file-system-safe name per grid entry, from its overrides."""
import hashlib
import re
from typing import Any, Sequence

from ftlab.sweeps.grid import SweepError


MAX_NAME_LEN = 200


def short_key(key: str) -> str:
  """`model.name` -> `model`; other dotted keys stay as they are."""
  return key[:-len(".name")] if key.endswith(".name") else key


def format_value(value: Any) -> str:
  """How a value is written in names and on the command line."""
  if isinstance(value, float):
    return repr(value)
  return str(value)


def sanitise(text: str) -> str:
  text = re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)
  return "_" + text[1:] if text.startswith(".") else text


def run_name(overrides: dict) -> str:
  """A stable, file-system-safe name from overrides, in their declared order.

  Args:
    overrides: dotted key -> value.

  Returns:
    e.g. `model=resnet18,strategy=full_ft,seed=0`; names longer than
    MAX_NAME_LEN are cut and end in a hash of the full name.
  """
  raw = ",".join(f"{short_key(k)}={format_value(v)}" for k, v in overrides.items())
  name = sanitise(raw) or "default"
  if len(name) > MAX_NAME_LEN:
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    name = f"{name[:MAX_NAME_LEN - 11]}-{digest}"
  return name


def unique_names(grid: Sequence[dict]) -> list[str]:
  """Names for every grid entry; raises if two entries share a name."""
  names, first = [], {}
  for i, overrides in enumerate(grid):
    name = run_name(overrides)
    if name in first:
      raise SweepError(f"sweep entries {first[name]} and {i} both get the run name "
                       f"{name!r}; make their overrides differ")
    first[name] = i
    names.append(name)
  return names
