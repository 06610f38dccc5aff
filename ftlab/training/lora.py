"""LoRA (Hu et al. 2021): low-rank adapters beside frozen kernels, as extra trainable leaves.

An adapted parameter `P` gets two leaves beside it in the flat parameter dict
(`training/state.py`): `P/lora_a` of shape (m, r) and `P/lora_b` of shape
(r, n), where (m, n) is `P` seen as a matrix from its inputs to its outputs:

* a Flax `kernel` (Dense (in, out), conv (kh, kw, in, out)): m = all axes but
  the last, n = the last;
* a 2D leaf kept in torch's (out, in) layout (ViT's packed
  `self_attention/in_proj_weight`): m = the last axis, n = the first.

The model sees `P + (alpha / r) * A @ B` (reshaped, or transposed for torch's
layout): `merge` computes it inside the loss function before `model.apply`,
at every step, so gradients reach A and B through the merged kernel and the
model code knows nothing of adapters. Evaluation, prediction and export call
the same `merge` once (`state.variables_of`), so a fine-tuned checkpoint
reads back as plain model variables of the original architecture.

Initialisation as PEFT's: A Kaiming-uniform with a = sqrt(5), i.e.
U(-1/sqrt(m), 1/sqrt(m)), and B zeros, so the logits at init are the base
model's.

Targets (`config.strategy.lora_targets`) are regexes that fully match
parameter paths; parameters under the head are trained in full and get no
adapter. Empty means the architecture's default (`ModelSpec.lora_targets`;
ViT: the attention and MLP kernels), or, for a model that declares none,
every convolution kernel (1x1 or kxk; depthwise ones have no matrix) and
Dense kernel outside the head, so the adapters reach a CNN's main blocks
(ResNet-18's 3x3 BasicBlocks, EfficientNet's pointwise convs). A target that matches no adaptable parameter is a one-line error
listing the nearest paths; adapting a parameter that is not a matrix or a
conv kernel (a bias, a norm's scale, a depthwise kernel) is an error too.
"""
import dataclasses
import math
import re
from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from ftlab.models import ModelSpec
from ftlab.training import strategy

LORA_A, LORA_B = strategy.LORA_LEAVES
KERNEL = "kernel"


@dataclasses.dataclass(frozen=True)
class Adapters:
  """The adapters of a run.

  Attributes:
    rank: r, the inner dimension of every A @ B.
    alpha: the scale numerator; the update is (alpha / r) * A @ B.
    targets: the adapted parameter paths, sorted.
    shapes: {adapter path (`P/lora_a`, `P/lora_b`): shape}.
  """
  rank: int
  alpha: float
  targets: Tuple[str, ...]
  shapes: Dict[str, Tuple[int, ...]]

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


def _matrix(path: str, shape: tuple) -> Tuple[int, int]:
  """(inputs, outputs) of `path` seen as a matrix; a ValueError if it is none."""
  leaf = path.rsplit("/", 1)[-1]
  if leaf == KERNEL and len(shape) == 2:
    return shape[0], shape[1]
  if leaf == KERNEL and len(shape) == 4 and shape[2] > 1:
    return math.prod(shape[:-1]), shape[-1]
  if leaf != KERNEL and len(shape) == 2:  # torch's (out, in) layout
    return shape[1], shape[0]
  raise strategy.StrategyError(
      f"config.strategy.lora_targets: {path!r} of shape {tuple(shape)} is not a matrix or a "
      "convolution kernel (biases, norms and depthwise kernels get no adapter)")


def is_adapter(path: str) -> bool:
  return path.rsplit("/", 1)[-1] in (LORA_A, LORA_B)


def default_targets(spec: ModelSpec, shapes: Dict[str, tuple]) -> Tuple[str, ...]:
  """The architecture's own targets, or every convolution (1x1 or kxk, not depthwise) and Dense
  kernel outside the head: the main blocks of every CNN (ResNet-18's BasicBlocks are 3x3)."""
  if spec.lora_targets:
    return spec.lora_targets
  head = re.compile(strategy.under(spec.head))
  return tuple(re.escape(p) for p, s in sorted(shapes.items())
               if p.endswith("/" + KERNEL) and not head.fullmatch(p)
               and (len(s) == 2 or (len(s) == 4 and s[2] > 1)))


def resolve(spec: ModelSpec, strategy_cfg, shapes: Dict[str, tuple]) -> Adapters:
  """The adapters `config.strategy` asks for on a model with parameter `shapes`."""
  rank, alpha = int(strategy_cfg.lora_rank), float(strategy_cfg.lora_alpha)
  if rank < 1 or alpha <= 0:
    raise strategy.StrategyError(f"config.strategy.lora_rank={strategy_cfg.lora_rank} must be "
                                 f">= 1 and lora_alpha={strategy_cfg.lora_alpha} > 0")
  targets = tuple(strategy_cfg.lora_targets) or default_targets(spec, shapes)
  if not targets:
    raise strategy.StrategyError(
        "config.strategy.lora_targets is empty and the model has no convolution or Dense "
        "kernel outside its head: name the kernels to adapt")
  head = re.compile(strategy.under(spec.head))
  trunk = [p for p in shapes if not head.fullmatch(p)]
  chosen = set()
  for target in targets:
    pattern = re.compile(target)
    hits = [p for p in trunk if pattern.fullmatch(p)]
    if not hits:
      raise strategy.StrategyError(
          f"config.strategy.lora_targets: {target!r} matches no parameter outside the head "
          f"({spec.head!r}); nearest paths: {strategy.nearest_paths(target, trunk)}")
    chosen.update(hits)
  adapter_shapes = {}
  for path in sorted(chosen):
    m, n = _matrix(path, shapes[path])
    adapter_shapes[f"{path}/{LORA_A}"] = (m, rank)
    adapter_shapes[f"{path}/{LORA_B}"] = (rank, n)
  return Adapters(rank, alpha, tuple(sorted(chosen)), adapter_shapes)


def init(adapters: Adapters, rng) -> Dict[str, jax.Array]:
  """Fresh adapters: A ~ U(-1/sqrt(m), 1/sqrt(m)) (PEFT's), B = 0."""
  values = {}
  for i, path in enumerate(adapters.targets):
    a_shape = adapters.shapes[f"{path}/{LORA_A}"]
    bound = 1.0 / math.sqrt(a_shape[0])
    values[f"{path}/{LORA_A}"] = jax.random.uniform(jax.random.fold_in(rng, i), a_shape,
                                                    jnp.float32, -bound, bound)
    values[f"{path}/{LORA_B}"] = jnp.zeros(adapters.shapes[f"{path}/{LORA_B}"], jnp.float32)
  return values


def delta(path: str, shape: tuple, a, b, scale: float):
  """(alpha / r) * A @ B laid out as the parameter at `path` of `shape`."""
  update = scale * (a @ b)
  if path.rsplit("/", 1)[-1] != KERNEL:  # torch's (out, in) layout
    return update.T
  return update.reshape(shape)


def merge(params: Dict[str, jax.Array], scale: float) -> Dict[str, jax.Array]:
  """The flat parameters with every adapter folded into its kernel (and the adapter leaves gone)."""
  suffix = "/" + LORA_A
  adapted = [k[:-len(suffix)] for k in params if k.endswith(suffix)]
  if not adapted:
    return params
  merged = {k: v for k, v in params.items() if not is_adapter(k)}
  for path in adapted:
    w = merged[path]
    update = delta(path, w.shape, params[path + suffix], params[f"{path}/{LORA_B}"], scale)
    merged[path] = w + update.astype(w.dtype)
  return merged
