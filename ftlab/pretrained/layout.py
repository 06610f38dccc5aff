"""Explicit layout transforms from PyTorch tensors to Flax variables.

PyTorch `a.b.c.<leaf>` maps to the Flax module path `a/b/c`. What the leaf
becomes is decided by the Flax template (the model's freshly initialised
variables) at that module path:

* a module with a `kernel` of rank 4 is a convolution: OIHW -> HWIO (a
  depthwise conv's (C, 1, k, k) becomes (k, k, 1, C) by the same transpose);
* a module with a `kernel` of rank 2 is a linear layer: (out, in) -> (in, out);
* a module with a `scale` and `batch_stats` is a BatchNorm: weight/bias ->
  params scale/bias, running_mean/running_var -> batch_stats mean/var;
  num_batches_tracked is dropped;
* a module with a `scale` and no `batch_stats` is a LayerNorm (ConvNeXt's
  `LayerNorm2d` and `nn.LayerNorm`): weight/bias -> params scale/bias, and it
  has no running statistics;
* a leaf the Flax module holds under the torch leaf's own name, with the same
  rank, is copied unchanged: a bare `nn.Parameter` (ViT's `class_token`,
  `encoder.pos_embedding`) or a packed projection kept in torch's layout
  (`self_attention.in_proj_weight` (3D, D), `in_proj_bias`); with another
  rank (ConvNeXt's `layer_scale`, (C, 1, 1) in torch) the singleton axes of
  torch's broadcasting shape are dropped -> (C,).

Checkpoint keys pass through `canonical_key` first. Its one rule is for
torchvision's DenseNet checkpoints, which predate the model's current names:
they store `denselayer1.norm.1.weight` where the model (and its Flax mirror)
has `denselayer1.norm1.weight` (torchvision renames them when loading, in
`densenet._load_state_dict`); no other architecture needs a rename.
"""
import re
from typing import Mapping

import numpy as np
from flax import traverse_util


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """OIHW -> HWIO."""
  return np.transpose(w, (2, 3, 1, 0))


def linear_kernel(w: np.ndarray) -> np.ndarray:
  """(out, in) -> (in, out)."""
  return np.transpose(w, (1, 0))


class ConversionError(ValueError):
  pass


_LEGACY_DENSE_LAYER = re.compile(r"(\.denselayer\d+\.(?:norm|conv))\.([12])\.")


def canonical_key(key: str) -> str:
  """Maps a legacy DenseNet key (`...denselayer3.conv.2.weight`) to the current
  name (`...denselayer3.conv2.weight`); every other key is returned unchanged."""
  return _LEGACY_DENSE_LAYER.sub(r"\1\2.", key)


_BATCH_NORM = {"weight": ("params", "scale"), "bias": ("params", "bias"),
               "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
_LAYER_NORM = {"weight": ("params", "scale"), "bias": ("params", "bias")}


def _norm_target(module_path, leaf, value, is_batch_norm: bool):
  """(collection, flax leaf, value) of a BatchNorm's or LayerNorm's torch leaf."""
  kind, names = ("BatchNorm", _BATCH_NORM) if is_batch_norm else ("LayerNorm", _LAYER_NORM)
  if leaf not in names:
    raise ConversionError(f"unexpected {kind} leaf {leaf!r} at {'/'.join(module_path)}")
  return names[leaf] + (value,)


def _leaf_target(module_path, leaf, value, template_params, stats_modules=frozenset()):
  """Returns (collection, flax leaf name, converted value) or None to drop."""
  if leaf == "num_batches_tracked":
    return None
  flax_module = template_params.get(module_path, None)
  if flax_module is None:
    raise ConversionError(
        f"checkpoint key {'.'.join(module_path + (leaf,))!r} has no module "
        f"{'/'.join(module_path)!r} in the Flax model")
  same = flax_module.get(leaf)
  if leaf not in ("weight", "bias") and same is not None and np.ndim(same) == value.ndim:
    return "params", leaf, value
  if "scale" in flax_module:  # BatchNorm (with batch_stats) or LayerNorm
    return _norm_target(module_path, leaf, value, module_path in stats_modules)
  if leaf == "bias":
    return "params", "bias", value
  if leaf == "weight" and "kernel" in flax_module:
    if value.ndim == 4:
      return "params", "kernel", conv_kernel(value)
    if value.ndim == 2:
      return "params", "kernel", linear_kernel(value)
  if leaf in flax_module and leaf not in ("weight", "kernel"):  # a bare nn.Parameter
    return "params", leaf, value.reshape([d for d in value.shape if d != 1] or [1])
  raise ConversionError(
      f"cannot map checkpoint key {'.'.join(module_path + (leaf,))!r} of shape "
      f"{value.shape} onto Flax module {'/'.join(module_path)!r} "
      f"(leaves {sorted(flax_module)})")


def _module_index(template_params) -> dict:
  """{module path tuple: {leaf name: array}} for the template's params."""
  index = {}
  for path, value in traverse_util.flatten_dict(template_params).items():
    index.setdefault(path[:-1], {})[path[-1]] = value
  return index


def torch_to_flax(state_dict: Mapping[str, np.ndarray], template: Mapping) -> dict:
  """Converts a PyTorch state dict into a {'params', 'batch_stats'} tree.

  Args:
    state_dict: '.'-joined PyTorch names -> numpy arrays.
    template: the Flax model's variables (only the structure is read).

  Returns:
    Nested dict with 'params' and (if any) 'batch_stats', holding exactly the
    converted checkpoint entries; shapes are *not* checked against the
    template here (`pretrained.load.merge` does that, naming both shapes).
  """
  index = _module_index(template["params"])
  stats_modules = frozenset(_module_index(template.get("batch_stats", {})))
  flat = {}
  for key, value in state_dict.items():
    parts = tuple(canonical_key(key).split("."))
    target = _leaf_target(parts[:-1], parts[-1], np.asarray(value), index, stats_modules)
    if target is None:
      continue
    collection, leaf, converted = target
    flat[(collection,) + parts[:-1] + (leaf,)] = np.ascontiguousarray(converted)
  return traverse_util.unflatten_dict(flat)
