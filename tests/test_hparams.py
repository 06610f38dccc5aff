"""One compile per distinct program: the scalars a search varies are values of the train state."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.training import state as state_lib
from ftlab.training import steps
from tests.helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL, WARMUP, PER_EPOCH = 20, 4, 10
BASE = {"strategy.name": "full_ft_head_lr", "optimizer.momentum": 0.9,
        "train.label_smoothing": 0.1}
A = {**BASE, "optimizer.lr": 0.05, "optimizer.weight_decay": 1e-4, "strategy.head_lr_mult": 10.0}
B = {**BASE, "optimizer.lr": 0.2, "optimizer.weight_decay": 5e-4, "strategy.head_lr_mult": 3.0,
     "optimizer.momentum": 0.8, "train.label_smoothing": 0.2}


_START = []  # the initial state, built once: every config here starts from the same weights


def _setup(overrides):
  config = tiny_config("unused", **overrides)
  setup = state_lib.build_setup(config, 3, TOTAL, WARMUP, PER_EPOCH)
  if not _START:
    _START.append(state_lib.initial_state(setup, config, jax.random.key(0), load_weights=False))
  return setup, state_lib.regroup(_START[0], setup.phases[0])


def _batch():
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8),
          "label": rng.integers(0, 3, 8).astype(np.int32), "mask": np.ones(8, np.float32)}


def _lowered(overrides) -> str:
  setup, state = _setup(overrides)
  fn = jax.jit(steps.make_train_step(setup), donate_argnums=(0,))
  return fn.lower(state, _batch(), jax.random.key(1)).as_text()


@pytest.mark.slow
def test_runs_differing_only_in_scalars_lower_to_the_same_program():
  assert _lowered(A) == _lowered(B)
  # what a value cannot change is still part of the program
  assert _lowered({**A, "optimizer.name": "adam"}) != _lowered(A)
  assert _lowered({**A, "optimizer.weight_decay": 0.0}) != _lowered(A)  # a term switched off


def _step_with_constants(setup):
  """Today's program: the phase's scalars baked in as Python constants."""
  step = steps.make_train_step(setup)
  constants = setup.phases[0].hparams
  return lambda state, batch, rng: step(state.replace(hparams=constants), batch, rng)


def _two_steps(fn, state):
  for i in range(2):
    state, _ = fn(state, _batch(), jax.random.key(i))
  return jax.device_get({**state.trainable, "step": state.step})


@pytest.fixture(scope="module")
def shared_step():
  """A's compiled step: every config of this file differing only in values runs it."""
  setup, _ = _setup(A)
  return jax.jit(steps.make_train_step(setup))


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [A, B])
def test_values_give_the_updates_the_constants_gave(overrides, shared_step):
  setup, state = _setup(overrides)
  assert set(state.hparams) >= {"lr", "momentum", "label_smoothing", "lr_mult/g0",
                                "weight_decay/g0"}
  assert state.hparams["lr"].dtype == jnp.float32
  got = _two_steps(shared_step, state)
  setup, state = _setup(overrides)
  want = _two_steps(jax.jit(_step_with_constants(setup)), state)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.slow
def test_different_values_give_different_updates(shared_step):
  (_, state_a), (_, state_b) = _setup(A), _setup(B)
  start = jax.device_get(state_a.trainable)
  a, b = _two_steps(shared_step, state_a), _two_steps(shared_step, state_b)
  for key in ("fc/kernel", "conv1/kernel"):
    assert not np.allclose(a[key] - start[key], b[key] - start[key]), key
  # the head's multiplier scales only the head (first step: momentum holds the gradient alone)
  one = lambda state: jax.device_get(  # pylint: disable=unnecessary-lambda-assignment
      shared_step(state, _batch(), jax.random.key(0))[0].trainable)
  twice, once = one(_setup({**A, "strategy.head_lr_mult": 20.0})[1]), one(_setup(A)[1])
  np.testing.assert_allclose(twice["fc/kernel"] - start["fc/kernel"],
                             2 * (once["fc/kernel"] - start["fc/kernel"]), rtol=1e-4, atol=1e-7)
  np.testing.assert_array_equal(twice["conv1/kernel"], once["conv1/kernel"])


CACHE_PROBE = """
import sys
import jax
from ftlab.training import compile_stats, runtime
runtime.configure_xla()
runtime.use_compilation_cache(sys.argv[1], min_compile_s=0.0)
from tests import test_hparams as t
from ftlab.training import steps
for overrides in (t.A, t.B):
  setup, state = t._setup(overrides)
  stats = compile_stats.CompileStats().start()
  jax.jit(steps.make_train_step(setup), donate_argnums=(0,)).lower(
      state, t._batch(), jax.random.key(1)).compile()
  stats.stop()
  print(stats.programs, stats.cache_hits, stats.cache_misses, f"{stats.seconds:.3f}")
"""


@pytest.mark.slow
def test_the_second_configs_step_comes_from_the_compilation_cache(tmp_path):
  out = subprocess.run([sys.executable, "-c", CACHE_PROBE, str(tmp_path / "xla")], cwd=REPO,
                       text=True, capture_output=True, timeout=300, check=True).stdout.split("\n")
  first, second = (line.split() for line in out[:2])
  # programs, cache hits, cache misses: A's step is compiled and stored, B's loaded
  assert first[:3] == ["1", "0", "1"] and float(first[3]) > 0, first
  assert second[:3] == ["1", "1", "0"], second
