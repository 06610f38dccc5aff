"""The learning rate actually applied follows the run's one schedule, across phase boundaries."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def cosine(step: int, total: int) -> float:
  return 0.5 * LR * (1.0 + math.cos(math.pi * step / total))


@pytest.mark.slow
def test_lp_ft_anneals_once_across_the_phase_boundary():
  total = 1000
  config, setup = _setup("lp_ft", total, 100, **{"strategy.lp_fraction": 0.5})
  assert [p.start for p in setup.phases] == [0, 500]
  lrs = applied_lrs(config, setup, total)
  for step in (0, 499, 500, 501, 999):
    assert lrs[step] == pytest.approx(cosine(step, total), rel=1e-5, abs=1e-9), step
  assert lrs[500] == pytest.approx(LR / 2, rel=1e-5)  # not the full LR again
  assert lrs[999] < 1e-5 * LR                         # annealed to about zero


@pytest.mark.slow
def test_gradual_unfreeze_with_one_epoch_per_phase_anneals():
  total, per_epoch = 60, 10
  config, setup = _setup("gradual_unfreeze", total, per_epoch,
                         **{"strategy.unfreeze_every_epochs": 1.0})
  assert [p.start for p in setup.phases] == [0, 10, 20, 30]  # tiny_cnn: 3 blocks
  lrs = applied_lrs(config, setup, total)
  np.testing.assert_allclose(lrs, [cosine(s, total) for s in range(total)], rtol=1e-5, atol=1e-7)  # float32 near zero


@pytest.mark.slow
def test_warmup_runs_once_in_a_phased_run():
  total, warmup = 40, 10
  config, setup = _setup("lp_ft", total, 10, warmup=warmup, **{"strategy.lp_fraction": 0.25})
  lrs = applied_lrs(config, setup, total)
  assert lrs[9] == pytest.approx(LR * 9 / 10, rel=1e-5)   # still warming up in phase 0
  assert lrs[10] == pytest.approx(LR, rel=1e-5)           # phase 1 starts at the peak, no new warm-up
  assert lrs[11] < lrs[10]


@pytest.mark.parametrize("overrides", [{"optimizer.nesterov": True},
                                       {"optimizer.nesterov": True, "optimizer.name": "adam"}])
def test_nesterov_without_momentum_is_an_error(overrides):
  with pytest.raises(ValueError, match="config.optimizer.nesterov=True needs"):
    _setup("full_ft", 10, 10, **overrides)


@pytest.mark.slow
def test_phase_warmup_ramps_each_later_phase_up_to_the_one_schedule():
  total, per_epoch = 40, 10
  config, setup = _setup("lp_ft", total, per_epoch, **{"strategy.lp_fraction": 0.5,
                                                       "optimizer.phase_warmup_epochs": 0.5})
  lrs = applied_lrs(config, setup, total)
  np.testing.assert_allclose(lrs[:20], [cosine(s, total) for s in range(20)], rtol=1e-5, atol=1e-7)
  assert lrs[20] == 0.0  # the phase's first step, as a run's first warm-up step
  for k in (1, 3, 5, 10):
    assert lrs[20 + k] == pytest.approx(cosine(20 + k, total) * min(k / 5, 1.0), rel=1e-5), k
