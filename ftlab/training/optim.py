"""Optimizers compiled from a strategy `Plan` with `optax.multi_transform`.

The optimizer only ever sees the *trainable* parameters (a flat dict keyed by
'/'-joined path): frozen ones have no gradient and no optimizer state. Each
trainable group gets the base schedule (linear warm-up, then cosine decay or
constant) scaled by its LR multiplier, and weight decay scaled by its
`wd_mult` (semantics in `ftlab/training/strategy.py`).

Each phase runs in a schedule `Window`: a span of the run's steps over
which one warm-up + cosine (or constant) schedule runs. Single-phase
strategies have one window, the whole run. The phased strategies (lp_ft,
gradual_unfreeze) have two, as Kumar et al. run LP-FT: the linear probe's
own (its steps, its peak LR, no warm-up), then full fine-tuning's own (the
steps, warm-up and peak LR a `full_ft` run of `train.num_epochs` has).
A phase starts with fresh optimizer state, whose step count starts at 0, so
its transformation reads its window's schedule at `count + phase start -
window start`: within a window the warm-up runs once and the cosine anneals
once, across phase boundaries (gradual unfreezing's stages).
`config.optimizer.phase_warmup_epochs` adds a linear re-warm-up at the start
of each phase that starts inside its window (off by default).

One compile per distinct program: the scalars a search varies (the base
LR, each group's LR multiplier, its weight decay, the momentum, the clipping
norm) are *values* (`hparams`, held in `TrainState.hparams` as float32
scalars) that the step passes to `make_optimizer`, not constants baked into
it, so two runs that differ only in them lower to the same HLO and the
persistent compilation cache serves the second. What stays in the program is
its structure: the optimizer, the schedule's step counts, and whether a term
is there at all (a weight decay, momentum or clipping norm of 0 switches its
transformation off, so 0 and non-zero are two programs).
"""
import dataclasses
from typing import Dict, Optional

import jax.numpy as jnp
import optax

from ftlab.training.strategy import Group, Plan


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant")


def optimizer_hparams(opt_cfg, plan: Plan) -> Dict[str, float]:
  """The optimizer's scalars of one phase, by name (the values `make_optimizer` reads).

  A group's weight decay is the product `weight_decay * wd_mult`, taken here
  in double precision as the constant it replaces was.
  """
  hparams = {"lr": opt_cfg.lr, "momentum": opt_cfg.momentum,
             "grad_clip_norm": opt_cfg.grad_clip_norm}
  for g in plan.trainable_groups:
    hparams[f"lr_mult/{g.name}"] = g.action.lr_mult
    hparams[f"weight_decay/{g.name}"] = opt_cfg.weight_decay * g.action.wd_mult
  return hparams


def base_schedule(opt_cfg, total_steps: int, warmup_steps: int, peak=None) -> optax.Schedule:
  """Warm-up then cosine or constant, peaking at `peak` (a value; default `opt_cfg.lr`)."""
  if opt_cfg.schedule not in SCHEDULES:
    raise ValueError(f"config.optimizer.schedule={opt_cfg.schedule!r}; use one of {SCHEDULES}")
  peak = opt_cfg.lr if peak is None else peak
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  if opt_cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, max(total_steps - warmup_steps, 1))
  else:
    main = optax.constant_schedule(peak)
  if warmup_steps == 0:
    return main
  warm = optax.linear_schedule(0.0, peak, warmup_steps)
  return optax.join_schedules([warm, main], [warmup_steps])


@dataclasses.dataclass(frozen=True)
class Window:
  """The span of the run's steps that one schedule covers: [start, start + steps), warm-up first."""
  start: int
  steps: int
  warmup: int = 0


def phase_schedule(base: optax.Schedule, offset: int, rewarm_steps: int = 0) -> optax.Schedule:
  """The LR of a phase that starts `offset` steps into its window, as a function of its own count.

  The window's schedule `base` is read at `offset` + count. With
  `rewarm_steps` > 0, a phase that starts inside its window (offset > 0) is
  also multiplied by a linear ramp from 0 to 1 over its first `rewarm_steps`
  steps (`config.optimizer.phase_warmup_epochs`): the newly unfrozen layers
  start with fresh momentum, as a run's first steps do.
  """
  if offset == 0 or rewarm_steps <= 0:
    return lambda count: base(count + offset)
  return lambda count: base(count + offset) * jnp.minimum(count / rewarm_steps, 1.0)


def window_schedule(opt_cfg, window: Window, start_step: int, rewarm_steps: int,
                    peak) -> optax.Schedule:
  """The LR of a phase starting at global step `start_step` in `window`, peaking at `peak` (a
  value), as a function of the phase's own step count."""
  return phase_schedule(base_schedule(opt_cfg, window.steps, window.warmup, peak),
                        start_step - window.start, rewarm_steps)


def _scaled(schedule: optax.Schedule, mult: float) -> optax.Schedule:
  return lambda count: schedule(count) * mult


def group_transform(opt_cfg, group: Group, schedule: optax.Schedule,
                    hparams: Dict[str, float]) -> optax.GradientTransformation:
  """One group's transformation; its structure from `opt_cfg`, its scalars from `hparams`."""
  lr = _scaled(schedule, hparams[f"lr_mult/{group.name}"])
  decays = bool(opt_cfg.weight_decay * group.action.wd_mult)
  wd = hparams[f"weight_decay/{group.name}"] if decays else 0.0
  if opt_cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=wd)
  if opt_cfg.name == "sgd":
    momentum = hparams["momentum"] if opt_cfg.momentum else None
    inner = optax.sgd(lr, momentum=momentum, nesterov=opt_cfg.nesterov)
  elif opt_cfg.name == "adam":
    inner = optax.adam(lr)
  else:
    raise ValueError(f"config.optimizer.name={opt_cfg.name!r}; use one of {OPTIMIZERS}")
  return optax.chain(optax.add_decayed_weights(wd), inner) if decays else inner


def make_optimizer(opt_cfg, plan: Plan, window: Window, start_step: int = 0,
                   rewarm_steps: int = 0,
                   hparams: Optional[Dict[str, float]] = None) -> optax.GradientTransformation:
  """The transformation for the flat dict of trainable parameters of a phase.

  Args:
    opt_cfg: `config.optimizer`.
    plan: the phase's compiled strategy.
    window: the steps the phase's schedule spans, with its warm-up (`Window`).
    start_step: the global step the phase starts at (its state's count is 0 there).
    rewarm_steps: linear re-warm-up of a phase inside its window (`phase_schedule`); 0 = none.
    hparams: the phase's scalars (`optimizer_hparams`), as traced values inside the
      step; None = `opt_cfg`'s as Python constants (the same transformation's init
      and state structure).
  """
  if opt_cfg.nesterov and not (opt_cfg.name == "sgd" and opt_cfg.momentum > 0):
    raise ValueError(f"config.optimizer.nesterov=True needs config.optimizer.name='sgd' with "
                     f"config.optimizer.momentum > 0 (got {opt_cfg.name!r}, momentum "
                     f"{opt_cfg.momentum}); Nesterov momentum without momentum does nothing")
  hparams = optimizer_hparams(opt_cfg, plan) if hparams is None else hparams
  schedule = window_schedule(opt_cfg, window, start_step, rewarm_steps, hparams["lr"])
  transforms = {g.name: group_transform(opt_cfg, g, schedule, hparams)
                for g in plan.trainable_groups}
  labels = lambda params: {p: plan.labels[p] for p in params}  # pylint: disable=unnecessary-lambda-assignment
  tx = optax.multi_transform(transforms, labels)
  if opt_cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(hparams["grad_clip_norm"]), tx)
  return tx
