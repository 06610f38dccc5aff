"""`--only` filters: `key=value` over grid keys (short keys such as `strategy` allowed)."""
from typing import Any, Iterable

from ftlab.sweeps.grid import SweepError
from ftlab.sweeps.naming import format_value, short_key


def resolve_key(key: str, keys: Iterable[str]) -> str:
  """Maps a possibly short key (`strategy`) to the one grid key it names.

  A key matches itself, `key.name`, or any key ending in `.key`.

  Raises:
    SweepError: if no key or several keys match.
  """
  keys = list(dict.fromkeys(keys))
  if key in keys:
    return key
  matches = [k for k in keys if short_key(k) == key or k.endswith("." + key)]
  if len(matches) != 1:
    what = "matches no" if not matches else f"is ambiguous between {matches} among the"
    raise SweepError(f"filter key {key!r} {what} sweep keys {keys}")
  return matches[0]


def parse_filters(items: Iterable[str], keys: Iterable[str]) -> dict[str, set]:
  """Parses `k=v` items; values for the same key are alternatives."""
  keys = list(keys)
  filters: dict[str, set] = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise SweepError(f"filter {item!r} is not of the form key=value")
    filters.setdefault(resolve_key(key.strip(), keys), set()).add(value.strip())
  return filters


def same_value(value: Any, text: str) -> bool:
  """Whether a filter's text names `value` (`1e-3` names 0.001, `true` names True)."""
  if isinstance(value, bool):
    return str(value).lower() == text.lower()
  if format_value(value) == text:
    return True
  if isinstance(value, (int, float)):
    try:
      return float(text) == float(value)
    except ValueError:
      return False
  return False


def matches(overrides: dict, filters: dict[str, set]) -> bool:
  """True if the overrides satisfy every filter."""
  return all(k in overrides and any(same_value(overrides[k], v) for v in values)
             for k, values in filters.items())
