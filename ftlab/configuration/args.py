"""Config arguments: `configs/aircraft.py:model=resnet18,strategy=full_ft`.

A config file's `get_config(arg)` receives the text after ':'. `parse(arg,
**defaults)` turns it into a dict with the declared keys only (an unknown
key is an error naming it), values converted to the default's type.
"""
from typing import Any, Dict


def convert(key: str, text: str, default: Any) -> Any:
  """`text` as a value of `default`'s type (`true`/`false`/`1`/`0` for a bool)."""
  if isinstance(default, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"config argument {key}={text!r} is not a bool")
    return text.lower() in ("true", "1")
  try:
    return type(default)(text)
  except ValueError as e:
    raise ValueError(f"config argument {key}={text!r} is not a {type(default).__name__}") from e


def parse(arg: str, **defaults: Any) -> Dict[str, Any]:
  """Parses 'k=v,k2=v2' against `defaults`; returns defaults updated."""
  out = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"config argument {item!r} is not key=value")
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
    out[key] = convert(key, value, defaults[key])
  return out
