"""Loads pretrained weights into a freshly initialised model for fine-tuning.

`load_pretrained(template, source, spec)` reads the checkpoint (a registered
name, a `.pth`/`.pt`/`.safetensors` file, or a directory written by
`python -m ftlab.convert`), converts it to the Flax layout and merges it into
`template`, entry by entry:

* same shape: loaded;
* different shape inside the head (`spec.head`): kept from the template, i.e.
  re-initialised — the usual case when the task has its own classes;
* a ViT position embedding (`pos_embedding`, timm's `pos_embed`) of another
  grid (the model's image size differs from the checkpoint's): resampled
  bicubically, class token kept
  (`posemb.resample`), and listed as `resized`;
* different shape elsewhere: an error naming the entry and both shapes;
* only in the checkpoint: `unexpected` (ignored); only in the model: `missing`
  (kept from the template). `strict=True` turns either into an error.

Names in the report are '/'-joined Flax paths with their collection first
(`params/fc/kernel`, `batch_stats/bn1/mean`); unexpected checkpoint keys that
do not convert keep their PyTorch name.
"""
import dataclasses
import json
import os
import pathlib
import re
from typing import Any, Dict, List, Mapping, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from ftlab.pretrained import layout, posemb, pth, registry

VARIABLES_FILE = "variables.msgpack"
META_FILE = "meta.json"
SUMMARY_NAMES = 8
# The position embeddings' leaf names: torchvision's ViT, timm's (both with the class token's row).
POSEMB_LEAVES = ("pos_embedding", "pos_embed")


class ShapeMismatchError(ValueError):
  """A checkpoint entry outside the head does not fit the model."""


class StrictLoadError(ValueError):
  """strict=True and the checkpoint and the model do not have the same entries."""


@dataclasses.dataclass
class LoadReport:
  """What `load_pretrained` did with each entry.

  Attributes:
    source: the checkpoint as given, with the file it resolved to.
    total: number of arrays in the model's variables.
    loaded: entries taken from the checkpoint.
    reinitialized: head entries kept from the template because their shape
      differs; `shapes[name]` is (checkpoint shape, model shape).
    resized: position embeddings resampled to the model's patch grid;
      `shapes[name]` is (checkpoint shape, model shape).
    missing: model entries absent from the checkpoint (kept from the template).
    unexpected: checkpoint entries the model does not have (ignored);
      `reasons[name]` says why when the key did not convert.
  """
  source: str
  total: int = 0
  loaded: List[str] = dataclasses.field(default_factory=list)
  reinitialized: List[str] = dataclasses.field(default_factory=list)
  resized: List[str] = dataclasses.field(default_factory=list)
  missing: List[str] = dataclasses.field(default_factory=list)
  unexpected: List[str] = dataclasses.field(default_factory=list)
  shapes: Dict[str, Tuple[tuple, tuple]] = dataclasses.field(default_factory=dict)
  reasons: Dict[str, str] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    """A few lines for the training log: counts and the names that matter."""
    reinit = [f"{n} {self.shapes[n][0]} -> {self.shapes[n][1]}" for n in self.reinitialized]
    resized = [f"{n} {self.shapes[n][0]} -> {self.shapes[n][1]}" for n in self.resized]
    return "\n".join([
        f"loaded {len(self.loaded)} of {self.total} arrays from {self.source}",
        f"re-initialised (head shape differs): {_names(reinit)}",
        *([f"resized (position embedding resampled bicubically): {_names(resized)}"]
          if resized else []),
        f"missing (kept from init): {_names(self.missing)}",
        f"unexpected (ignored): {_names(self.unexpected)}",
    ])


def _names(names: List[str]) -> str:
  if not names:
    return "none"
  shown = ", ".join(names[:SUMMARY_NAMES])
  more = len(names) - SUMMARY_NAMES
  return f"{shown} ... and {more} more" if more > 0 else shown


def _flat(tree: Mapping) -> Dict[tuple, Any]:
  return traverse_util.flatten_dict(dict(tree))


def _join(path: tuple) -> str:
  return "/".join(str(p) for p in path)


def in_head(path: tuple, head: str) -> bool:
  """True if a '/'-joined prefix of the (collection-less) module path matches `head`."""
  return any(re.fullmatch(head, _join(path[:i])) for i in range(1, len(path)))


def read_converted(directory) -> Tuple[dict, dict]:
  """Reads a `convert` output directory: (variables as numpy trees, meta)."""
  directory = pathlib.Path(directory)
  variables_path, meta_path = directory / VARIABLES_FILE, directory / META_FILE
  if not variables_path.is_file():
    raise FileNotFoundError(f"{directory} has no {VARIABLES_FILE}: not written by ftlab.convert")
  meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
  variables = serialization.msgpack_restore(variables_path.read_bytes())
  return variables, meta


def convert_state_dict(state_dict: Mapping[str, np.ndarray], template: Mapping):
  """torch_to_flax, falling back to key by key so unconvertible keys become unexpected."""
  try:
    return _flat(layout.torch_to_flax(state_dict, template)), {}
  except layout.ConversionError:
    pass
  flat, reasons = {}, {}
  for key, value in state_dict.items():
    try:
      flat.update(_flat(layout.torch_to_flax({key: value}, template)))
    except layout.ConversionError as e:
      reasons[key] = str(e)
  return flat, reasons


def checkpoint_variables(source, template: Mapping) -> Tuple[dict, dict, str]:
  """Reads and converts a checkpoint.

  Returns:
    ({(collection, *path): array} in the Flax layout,
     {checkpoint key: why it did not convert}, a description of the source).
  """
  path = registry.resolve(source)
  description = str(source) if os.fspath(source) == str(path) else f"{source} ({path})"
  if path.is_dir():
    variables, _ = read_converted(path)
    return _flat(variables), {}, description
  flat, reasons = convert_state_dict(pth.load_state_dict(path), template)
  return flat, reasons, description


def _kept(name, in_template, why: str, source: str):
  if isinstance(in_template, jax.ShapeDtypeStruct):
    raise ValueError(f"{source}: {name} is {why}, so it keeps the template's value, but the "
                     "template is abstract there (pass initialised variables)")
  return in_template


def _is_posemb(name: str, old: tuple, new: tuple) -> bool:
  """A ViT position embedding (1, tokens, D) whose number of tokens differs."""
  return (name.rsplit("/", 1)[-1] in POSEMB_LEAVES and len(old) == len(new) == 3
          and old[0] == new[0] == 1 and old[2] == new[2])


def _merge_entry(name, in_template, ckpt, head: bool, report: LoadReport):
  """The value for one template entry; records what happened in `report`."""
  if ckpt is None:
    report.missing.append(name)
    return _kept(name, in_template, "missing from the checkpoint", report.source)
  if tuple(ckpt.shape) == tuple(in_template.shape):
    report.loaded.append(name)
    return jnp.asarray(ckpt, dtype=in_template.dtype)
  if _is_posemb(name, ckpt.shape, in_template.shape):
    report.resized.append(name)
    report.loaded.append(name)
    report.shapes[name] = (tuple(ckpt.shape), tuple(in_template.shape))
    return jnp.asarray(posemb.resample(ckpt, in_template.shape[1]), dtype=in_template.dtype)
  if head:
    report.reinitialized.append(name)
    report.shapes[name] = (tuple(ckpt.shape), tuple(in_template.shape))
    return _kept(name, in_template, "a head entry of another shape", report.source)
  raise ShapeMismatchError(
      f"{report.source}: {name} has shape {tuple(ckpt.shape)} in the checkpoint but "
      f"{tuple(in_template.shape)} in the model, and it is not part of the head")


def merge(template: Mapping, checkpoint: Mapping[tuple, Any], head: str, *,
          strict: bool = False, reasons: Mapping[str, str] = None,
          source: str = "checkpoint") -> Tuple[dict, LoadReport]:
  """Merges flat Flax-layout checkpoint entries into the template (see module doc).

  Args:
    template: the model's variables; only shapes/dtypes are read for entries
      that are loaded, so those may be `jax.ShapeDtypeStruct`s (see
      `template_variables`).
    checkpoint: {(collection, *path): array}.
    head: regex naming the classifier's module path (`ModelSpec.head`).
    strict: raise `StrictLoadError` on any missing or unexpected entry.
    reasons: checkpoint keys that did not convert, with why (unexpected).
    source: how to name the checkpoint in messages.

  Returns:
    (variables as a nested dict, LoadReport).
  """
  report = LoadReport(source=source)
  flat_template = _flat(template)
  report.total = len(flat_template)
  merged = {}
  for path in sorted(flat_template, key=lambda p: p[0] != "params"):  # params first
    value = flat_template[path]
    merged[path] = _merge_entry(_join(path), value, checkpoint.get(path), in_head(path[1:], head),
                                report)
  report.unexpected = sorted(_join(p) for p in checkpoint if p not in flat_template)
  report.unexpected += list(reasons or {})
  report.reasons = dict(reasons or {})
  if strict and (report.missing or report.unexpected):
    raise StrictLoadError(f"{source}: strict loading failed; missing: {_names(report.missing)}; "
                          f"unexpected: {_names(report.unexpected)}")
  return traverse_util.unflatten_dict(merged), report


def template_variables(model, image_size: int, rng=None) -> dict:
  """Variables to load into, without paying for a full random initialisation.

  The trunk's entries are `jax.ShapeDtypeStruct`s (from `jax.eval_shape`);
  the head is initialised for real through `part='head'`, which is cheap. Good
  for checkpoints that cover the whole trunk (converting, predicting);
  `merge` raises if an abstract entry would have to be kept.
  """
  rng = jax.random.key(0) if rng is None else rng
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  abstract = jax.eval_shape(lambda r, x: model.init(r, x, train=False), rng, images)
  features = jax.eval_shape(lambda v, x: model.apply(v, x, part="trunk"), abstract, images)
  head = model.init(rng, jnp.zeros(features.shape, features.dtype), train=False, part="head")
  flat = _flat(abstract)
  flat.update(_flat(head))
  return traverse_util.unflatten_dict(flat)


def load_pretrained(template: Mapping, source, spec, *, strict: bool = False):
  """Loads pretrained weights into freshly initialised variables.

  Args:
    template: `{'params': ..., 'batch_stats': ...}` of the model built for the
      task's number of classes.
    source: a registered name (`registry.WEIGHTS`), a `.pth`/`.pt`/
      `.safetensors` file, or a directory written by `ftlab.convert`.
    spec: the model's `ModelSpec` (its `head` regex decides what may be
      re-initialised).
    strict: fail on any missing or unexpected entry.

  Returns:
    (variables, LoadReport).
  """
  checkpoint, reasons, description = checkpoint_variables(source, template)
  return merge(template, checkpoint, spec.head, strict=strict, reasons=reasons,
               source=description)
