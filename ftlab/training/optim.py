"""Optimizers compiled from a strategy `Plan` with `optax.multi_transform`.

The optimizer only ever sees the *trainable* parameters (a flat dict keyed by
'/'-joined path): frozen ones have no gradient and no optimizer state. Each
trainable group gets the base schedule (linear warm-up, then cosine decay or
constant) scaled by its LR multiplier, and weight decay scaled by its
`wd_mult` (semantics in `ftlab/training/strategy.py`).

The base schedule is a function of the run's *global* step. A phased
strategy (lp_ft, gradual_unfreeze) starts each phase with fresh optimizer
state, whose step count starts at 0, so each phase's transformation reads
its schedule at `count + phase start`: the warm-up runs once and the cosine
anneals once over the whole run, across phase boundaries. `config.optimizer.phase_warmup_epochs` adds a
linear re-warm-up at the start of each later phase (off by default).
"""
import jax.numpy as jnp
import optax

from ftlab.training.strategy import Group, Plan


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant")


def base_schedule(opt_cfg, total_steps: int, warmup_steps: int) -> optax.Schedule:
  if opt_cfg.schedule not in SCHEDULES:
    raise ValueError(f"config.optimizer.schedule={opt_cfg.schedule!r}; use one of {SCHEDULES}")
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  if opt_cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(opt_cfg.lr, max(total_steps - warmup_steps, 1))
  else:
    main = optax.constant_schedule(opt_cfg.lr)
  if warmup_steps == 0:
    return main
  warm = optax.linear_schedule(0.0, opt_cfg.lr, warmup_steps)
  return optax.join_schedules([warm, main], [warmup_steps])


def phase_schedule(base: optax.Schedule, start_step: int, rewarm_steps: int = 0) -> optax.Schedule:
  """The LR of a phase that starts at global step `start_step`, as a function of its own count.

  The base schedule is read at the global step (`start_step` + count). With
  `rewarm_steps` > 0, a phase after the first is also multiplied by a linear
  ramp from 0 to 1 over its first `rewarm_steps` steps
  (`config.optimizer.phase_warmup_epochs`): the newly unfrozen layers start
  with fresh momentum, as a run's first steps do.
  """
  if start_step == 0 or rewarm_steps <= 0:
    return lambda count: base(count + start_step)
  return lambda count: base(count + start_step) * jnp.minimum(count / rewarm_steps, 1.0)


def _scaled(schedule: optax.Schedule, mult: float) -> optax.Schedule:
  return lambda count: schedule(count) * mult


def group_transform(opt_cfg, group: Group, schedule: optax.Schedule) -> optax.GradientTransformation:
  lr = _scaled(schedule, group.action.lr_mult)
  wd = opt_cfg.weight_decay * group.action.wd_mult
  if opt_cfg.name == "adamw":
    return optax.adamw(lr, weight_decay=wd)
  if opt_cfg.name == "sgd":
    inner = optax.sgd(lr, momentum=opt_cfg.momentum or None, nesterov=opt_cfg.nesterov)
  elif opt_cfg.name == "adam":
    inner = optax.adam(lr)
  else:
    raise ValueError(f"config.optimizer.name={opt_cfg.name!r}; use one of {OPTIMIZERS}")
  return optax.chain(optax.add_decayed_weights(wd), inner) if wd else inner


def make_optimizer(opt_cfg, plan: Plan, total_steps: int, warmup_steps: int,
                   start_step: int = 0, rewarm_steps: int = 0) -> optax.GradientTransformation:
  """The transformation for the flat dict of trainable parameters of a phase.

  Args:
    opt_cfg: `config.optimizer`.
    plan: the phase's compiled strategy.
    total_steps: steps of the whole run (the schedule spans them all).
    warmup_steps: linear warm-up steps at the start of the run.
    start_step: the global step the phase starts at (its state's count is 0 there).
    rewarm_steps: linear re-warm-up of a later phase (`phase_schedule`); 0 = none.
  """
  if opt_cfg.nesterov and not (opt_cfg.name == "sgd" and opt_cfg.momentum > 0):
    raise ValueError(f"config.optimizer.nesterov=True needs config.optimizer.name='sgd' with "
                     f"config.optimizer.momentum > 0 (got {opt_cfg.name!r}, momentum "
                     f"{opt_cfg.momentum}); Nesterov momentum without momentum does nothing")
  schedule = phase_schedule(base_schedule(opt_cfg, total_steps, warmup_steps), start_step,
                            rewarm_steps)
  transforms = {g.name: group_transform(opt_cfg, g, schedule) for g in plan.trainable_groups}
  labels = lambda params: {p: plan.labels[p] for p in params}  # pylint: disable=unnecessary-lambda-assignment
  tx = optax.multi_transform(transforms, labels)
  if opt_cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt_cfg.grad_clip_norm), tx)
  return tx
