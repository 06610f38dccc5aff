"""The learning rate actually applied: each phase reads its schedule window (the probe's, then
full fine-tuning's), across gradual unfreezing's stages."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from tests.helpers import tiny_config


LR = 0.1
PROBE = "fc/bias"  # trainable in every phase of lp_ft and gradual_unfreeze


def _setup(strategy_name: str, total: int, steps_per_epoch: int, warmup: int = 0, **overrides):
  config = tiny_config("unused", **{
      "strategy.name": strategy_name, "optimizer.lr": LR, "optimizer.momentum": 0.0,
      "optimizer.weight_decay": 0.0, "optimizer.schedule": "cosine", **overrides})
  return config, state_lib.build_setup(config, 3, total, warmup, steps_per_epoch)


def applied_lrs(config, setup, total: int) -> np.ndarray:
  """The LR each step applies to `PROBE`, read off SGD's update for a gradient of ones.

  Walks the steps as the trainer does: `regroup` (fresh optimizer state) at
  each phase boundary, then the phase's transformation.
  """
  state = state_lib.initial_state(setup, config, jax.random.key(0), load_weights=False)
  updates = {i: jax.jit(p.tx.update) for i, p in enumerate(setup.phases)}
  phase, lrs = 0, []
  for step in range(total):
    index = setup.phase_index(step)
    if index != phase:
      state, phase = state_lib.regroup(state, setup.phases[index]), index
    grads = {k: jnp.ones_like(v) for k, v in state.trainable.items()}
    update, opt_state = updates[phase](grads, state.opt_state, state.trainable)
    state = state.replace(opt_state=opt_state)
    lrs.append(-float(update[PROBE][0]))
  return np.asarray(lrs)


def cosine(step: int, total: int, peak: float = LR) -> float:
  return 0.5 * peak * (1.0 + math.cos(math.pi * step / total))


@pytest.mark.slow
def test_lp_ft_runs_the_probe_then_full_fine_tunings_own_schedule():
  total, per_epoch = 1000, 100
  config, setup = _setup("lp_ft", total, per_epoch, **{"strategy.lp_epochs": 4.0,
                                                       "strategy.lp_lr_mult": 10.0})
  assert [p.start for p in setup.phases] == [0, 400]
  lrs = applied_lrs(config, setup, total)
  for step in (0, 1, 200, 399):  # the probe: its own cosine over 400 steps, peak 10 x LR
    assert lrs[step] == pytest.approx(cosine(step, 400, 10 * LR), rel=1e-5, abs=1e-7), step
  for step in (400, 401, 700, 999):  # fine-tuning: a fresh cosine over its 600 steps from LR
    assert lrs[step] == pytest.approx(cosine(step - 400, 600), rel=1e-5, abs=1e-7), step
  assert lrs[999] < 1e-4 * LR


def test_the_probe_adds_its_steps_to_the_fine_tuning_epochs():
  config = tiny_config("unused", **{"strategy.name": "lp_ft", "strategy.lp_epochs": 3.0,
                                    "train.num_epochs": 2.0, "optimizer.warmup_epochs": 1.0})
  schedule = run_lib.Schedule.create(config, num_train=80)  # 10 steps per epoch at batch 8
  assert (schedule.probe_steps, schedule.total_steps, schedule.warmup_steps) == (30, 50, 10)
  full = run_lib.Schedule.create(tiny_config("unused", **{"train.num_epochs": 2.0}), 80)
  assert (full.probe_steps, full.total_steps) == (0, 20)


@pytest.mark.slow
def test_gradual_unfreeze_stages_share_fine_tunings_one_schedule():
  total, per_epoch = 60, 10
  config, setup = _setup("gradual_unfreeze", total, per_epoch,
                         **{"strategy.lp_epochs": 2.0, "strategy.unfreeze_stages": 3,
                            "strategy.unfreeze_fraction": 0.75, "strategy.lp_lr_mult": 10.0})
  # tiny_cnn's 3 blocks unfrozen one a stage over the first 3/4 of the 40 fine-tuning steps
  assert [p.start for p in setup.phases] == [0, 20, 30, 40]
  lrs = applied_lrs(config, setup, total)
  np.testing.assert_allclose(lrs[:20], [cosine(s, 20, 10 * LR) for s in range(20)], rtol=1e-5,
                             atol=1e-7)
  np.testing.assert_allclose(lrs[20:], [cosine(s, 40) for s in range(40)], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_fine_tunings_warmup_starts_after_the_probe():
  total, warmup = 40, 10
  config, setup = _setup("lp_ft", total, 10, warmup=warmup, **{"strategy.lp_epochs": 1.0,
                                                                "strategy.lp_lr_mult": 10.0})
  lrs = applied_lrs(config, setup, total)
  assert lrs[0] == pytest.approx(10 * LR, rel=1e-5)        # the probe has no warm-up
  assert lrs[10] == 0.0                                    # fine-tuning warms up from zero
  assert lrs[19] == pytest.approx(LR * 9 / 10, rel=1e-5)
  assert lrs[20] == pytest.approx(LR, rel=1e-5)            # then its cosine from the peak
  assert lrs[21] < lrs[20]


@pytest.mark.parametrize("overrides", [{"optimizer.nesterov": True},
                                       {"optimizer.nesterov": True, "optimizer.name": "adam"}])
def test_nesterov_without_momentum_is_an_error(overrides):
  with pytest.raises(ValueError, match="config.optimizer.nesterov=True needs"):
    _setup("full_ft", 10, 10, **overrides)


@pytest.mark.slow
def test_phase_warmup_ramps_each_later_stage_up_to_the_shared_schedule():
  total, per_epoch = 60, 10
  config, setup = _setup("gradual_unfreeze", total, per_epoch, **{
      "strategy.lp_epochs": 2.0, "strategy.unfreeze_stages": 3, "strategy.lp_lr_mult": 10.0,
      "strategy.unfreeze_fraction": 0.75, "optimizer.phase_warmup_epochs": 0.5})
  lrs = applied_lrs(config, setup, total)
  # the probe and the first fine-tuning stage start their windows: no ramp
  np.testing.assert_allclose(lrs[:30], [cosine(s, 20, 10 * LR) for s in range(20)]
                             + [cosine(s, 40) for s in range(10)], rtol=1e-5, atol=1e-7)
  assert lrs[30] == 0.0  # a stage inside the window ramps up, as a run's first warm-up step
  for k in (1, 3, 5, 9):
    assert lrs[30 + k] == pytest.approx(cosine(10 + k, 40) * min(k / 5, 1.0), rel=1e-5), k
