"""Frozen modules run in inference mode inside a training step: no dropout, drop-path or BN stats."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ftlab.models import MODELS, get_spec
from ftlab.training import state as state_lib
from ftlab.training import strategy
from ftlab.training.state import Phase


SIZE = 32
pytestmark = pytest.mark.usefixtures("fast_compiles")


def _phase(spec, shapes, name: str, **fields) -> Phase:
  cfg = default.get_config().strategy
  cfg.name = name
  for k, v in fields.items():
    cfg[k] = v
  return Phase(0, strategy.build_plan(spec, cfg, shapes), tx=None)


def _variables(name: str):
  spec = get_spec(name)
  model = spec.build(10, jnp.float32)
  variables = state_lib.init_variables(model, SIZE, jax.random.key(0))
  images = jax.random.normal(jax.random.key(1), (4, SIZE, SIZE, 3))
  return spec, model, variables, images


def _captured(model, variables, images, mode, module: str):
  """The `__call__` output of the module at path `module`: (in a train step under `mode`, at eval)."""
  wanted = lambda mdl, method: method == "__call__" and "/".join(mdl.path) == module  # pylint: disable=unnecessary-lambda-assignment

  def output(train):
    _, state = model.apply(variables, images, train=train, mutable=["batch_stats", "intermediates"],
                           capture_intermediates=wanted, rngs={"dropout": jax.random.key(2)})
    (leaf,) = jax.tree_util.tree_leaves(state["intermediates"])
    return leaf

  trained, evaluated = jax.jit(lambda: (output(mode), output(False)))()
  return np.asarray(trained), np.asarray(evaluated)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_frozen_trunk_under_train_mode_equals_eval_bit_for_bit(name):
  spec, model, variables, images = _variables(name)
  shapes = {k: v.shape for k, v in state_lib.flatten(variables["params"]).items()}
  mode = _phase(spec, shapes, "linear_probe").mode

  def train_trunk(v, x, seed):
    return model.apply(v, x, train=mode, part="trunk", mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(seed)})

  @jax.jit
  def both(v, x):  # a drop-path left on would differ between rngs and from eval
    return model.apply(v, x, train=False, part="trunk"), train_trunk(v, x, 2), train_trunk(v, x, 3)

  evaluated, *trained = both(variables, images)
  for features, updates in trained:
    np.testing.assert_array_equal(np.asarray(features), np.asarray(evaluated))
    jax.tree_util.tree_map(np.testing.assert_array_equal, updates["batch_stats"],
                           variables["batch_stats"])


def _simple_block(spec) -> int:
  """A freeze_shallow depth whose last frozen block is one plain module path."""
  for n in range(len(spec.blocks) // 2 + 1, 0, -1):
    if re.fullmatch(r"[\w/]+", spec.blocks[n - 1]):
      return n
  raise AssertionError(f"no plain block name in {spec.blocks}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v3_small", "resnet18"])
def test_freeze_shallow_boundary_activations_equal_eval(name):
  spec, model, variables, images = _variables(name)
  shapes = {k: v.shape for k, v in state_lib.flatten(variables["params"]).items()}
  n = _simple_block(spec)
  mode = _phase(spec, shapes, "freeze_shallow", freeze_blocks=n).mode
  boundary = spec.blocks[n - 1]
  np.testing.assert_array_equal(*_captured(model, variables, images, mode, boundary))


@pytest.mark.slow
def test_trainable_block_keeps_its_drop_path():
  spec, model, variables, images = _variables("efficientnet_lite0")
  shapes = {k: v.shape for k, v in state_lib.flatten(variables["params"]).items()}
  mode = _phase(spec, shapes, "full_ft").mode
  block = "_blocks/15"  # residual, drop-path rate 0.2 * 15 / 16
  assert not np.array_equal(*_captured(model, variables, images, mode, block))


def test_frozen_modules_are_those_with_no_trainable_parameter():
  spec = get_spec("tiny_cnn")
  shapes = state_lib.param_shapes(spec.build(3, jnp.float32), SIZE)
  plan = _phase(spec, shapes, "freeze_shallow", freeze_blocks=2).plan
  assert plan.frozen_modules() == {"conv1", "bn1", "layer1", "layer1/conv", "layer1/bn"}
