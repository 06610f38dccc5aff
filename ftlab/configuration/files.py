"""A run's files on disk: config.json read back (defaults for newer keys), the same-run check, atomic JSON writes."""
import json
import logging
import os

import ml_collections

from configs import default


# Keys that may differ when a run is resumed (they change no result).
RESUMABLE_CHANGES = ("train.stop_after_steps", "train.stop_at_fraction", "train.evaluate_held_out",
                     "train.log_every_steps", "train.checkpoint_every_steps",
                     "train.compilation_cache_dir", "data.num_workers", "data.prefetch", "data.root")


def _flat_config(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat_config(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


def check_same_run(config, workdir: str) -> None:
  """Refuses to resume (and overwrite) a workdir that holds a run of another config."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  _add_missing(saved, default.get_config())  # keys declared since: their defaults
  old = _flat_config(saved)
  new = _flat_config(json.loads(config.to_json_best_effort()))
  changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES]
  if changed:
    raise ValueError(f"{workdir} holds a run with a different config ({'; '.join(changed)}); "
                     f"use a new --workdir (nothing in {workdir} was changed)")


def _add_missing(saved: dict, defaults: ml_collections.ConfigDict, prefix: str = "") -> list:
  """Adds to `saved` the keys of `defaults` it lacks; returns their dotted names."""
  added = []
  for key, value in defaults.items():
    if isinstance(value, ml_collections.ConfigDict):
      added += _add_missing(saved.setdefault(key, {}), value, f"{prefix}{key}.")
    elif key not in saved:
      saved[key] = json.loads(json.dumps(value))  # as config.json holds it: a tuple as a list
      added.append(prefix + key)
  return added


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json; keys declared since it was written take their defaults (logged)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} an ftlab run directory?")
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  added = _add_missing(saved, default.get_config())
  if added:
    logging.info("%s predates config keys %s: using their defaults", path, ", ".join(added))
  return ml_collections.ConfigDict(saved)


def write_json_atomic(path: str, obj: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, default=float)
  os.replace(tmp, path)
