"""An exponential moving average of the weights (timm's ModelEmaV2, MindCV's `ema`).

`TrainState.ema` is `{}` when `config.train.ema_decay` is 0, else
`{"params": {path: array}, "batch_stats": {path: array}}`: '/'-joined paths
of the trainable parameters and of the running statistics of the BatchNorm
layers that update them. After every step, as timm does for every entry of
the state dict, `ema = decay * ema + (1 - decay) * new`; it starts as a copy
of the weights the run starts from (pretrained or random). Frozen parameters
and frozen BatchNorm statistics have no EMA copy: they are constants of the
run, so their average is their value, and `weights` reads them from the state.

Phased strategies (`state.regroup`): a parameter (or BatchNorm layer) that
becomes trainable at a phase boundary starts its EMA at its current value.
That is exact, not an approximation: it was constant until then, and the
EMA of a constant that started at it is that constant. One that becomes
frozen drops its EMA copy and from then on averages to its raw value (no
preset does this; a custom phased strategy could).
"""
from typing import Dict

from flax import traverse_util
import jax
import jax.numpy as jnp


def _flat(tree) -> Dict[str, jax.Array]:
  return traverse_util.flatten_dict(tree, sep="/")


def _bn_entries(batch_stats, updated_bn: frozenset) -> Dict[str, jax.Array]:
  return {k: v for k, v in _flat(batch_stats).items() if k.rsplit("/", 1)[0] in updated_bn}


def regroup(ema: dict, trainable: Dict[str, jax.Array], batch_stats,
            updated_bn: frozenset) -> dict:
  """The EMA laid out for a phase: kept entries keep their average, new ones start at their value.

  Copies: the step donates its state, and one buffer must not be donated twice.
  """
  params, stats = ema.get("params", {}), ema.get("batch_stats", {})
  return {"params": {k: params[k] if k in params else jnp.copy(v) for k, v in trainable.items()},
          "batch_stats": {k: stats[k] if k in stats else jnp.copy(v)
                          for k, v in _bn_entries(batch_stats, updated_bn).items()}}


def update(ema: dict, trainable: Dict[str, jax.Array], batch_stats, decay: float) -> dict:
  """One step of the average (inside the compiled step)."""
  stats = _flat(batch_stats)

  def mix(old, new):
    return decay * old + (1.0 - decay) * new

  return {"params": {k: mix(v, trainable[k]) for k, v in ema["params"].items()},
          "batch_stats": {k: mix(v, stats[k]) for k, v in ema["batch_stats"].items()}}


def weights(state):
  """`state` with the EMA in place of the raw weights it averages (for evaluation)."""
  stats = {**_flat(state.batch_stats), **state.ema["batch_stats"]}
  return state.replace(trainable={**state.trainable, **state.ema["params"]},
                       batch_stats=traverse_util.unflatten_dict(stats, sep="/"))
