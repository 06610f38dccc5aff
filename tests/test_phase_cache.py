"""The frozen phases of lp_ft and gradual_unfreeze on cached inputs: the same run as on images."""
import logging

import jax
import numpy as np
import pytest

from ftlab.training import phase_cache, trainer
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from tests.helpers import tiny_config

CACHED = {"data.augment": False, "data.flip_only": True}


def _leaves(config, workdir) -> dict:
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_latest(run.template)
  run.ckpts.close()
  tree = jax.device_get({**state.trainable, **state.frozen, "batch_stats": state.batch_stats})
  return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def _cached_and_not(image_folder, tmp_path, **overrides) -> dict:
  """results.json of the run with caches and of the run on images; their weights are equal."""
  out, leaves = {}, {}
  for cache in (True, False):
    config = tiny_config(image_folder, **CACHED, **overrides,
                         **{"strategy.cache_features": cache})
    out[cache] = trainer.train_and_evaluate(config, str(tmp_path / str(cache)))
    leaves[cache] = _leaves(config, str(tmp_path / str(cache)))
  assert leaves[True].keys() == leaves[False].keys()
  for key, value in leaves[False].items():
    np.testing.assert_allclose(leaves[True][key], value, rtol=1e-4, atol=1e-5, err_msg=key)
  return out


UNFREEZE = {"strategy.unfreeze_stages": 3, "strategy.unfreeze_fraction": 0.75}


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["reestimate", "batch"])
@pytest.mark.parametrize("name, epochs, expected", [
    # lp_ft: 2 epochs of linear probe on features, then 2 of fine-tuning on images
    ("lp_ft", 2.0, {"0": "trunk features", "1": "images"}),
    # gradual_unfreeze: the probe, then tiny_cnn's 3 blocks unfrozen from the top over 3/4 of
    # 8 fine-tuning epochs (stages of 14, 14, 28 steps): from block 2, 1, then all on images
    ("gradual_unfreeze", 8.0, {"0": "trunk features", "1": "activations after block 2",
                               "2": "activations after block 1", "3": "images"}),
])
def test_frozen_phases_on_caches_equal_the_run_on_images(image_folder, tmp_path, name, epochs,
                                                         expected, bn):
  out = _cached_and_not(image_folder, tmp_path, **{
      "strategy.name": name, "strategy.lp_epochs": 2.0, "train.num_epochs": epochs,
      "model.bn": bn, **UNFREEZE})
  assert out[True]["phase_inputs"] == expected
  assert set(out[False]["phase_inputs"].values()) == {"images"}
  assert out[True]["feature_cache_s"] > 0 and out[False]["feature_cache_s"] == 0


def test_which_phases_are_cached(image_folder, caplog):
  def setup_of(lp_epochs, **overrides):
    config = tiny_config(image_folder, **{**CACHED, **UNFREEZE, "strategy.name": "gradual_unfreeze",
                                          "strategy.lp_epochs": lp_epochs, **overrides})
    total = int(7 * lp_epochs) + 56  # 7 steps an epoch, 8 epochs of fine-tuning
    return config, state_lib.build_setup(config, 3, total, 0, 7), total

  config, setup, total = setup_of(2.0)  # phases at 0, 14, 28, 42
  assert [p.start for p in setup.phases] == [0, 14, 28, 42]
  assert phase_cache.choose(setup, config, 0, 63, total, 7) == phase_cache.PhaseInput(on_features=True)
  assert phase_cache.choose(setup, config, 1, 63, total, 7) == phase_cache.PhaseInput(from_block=2)
  assert phase_cache.choose(setup, config, 3, 63, total, 7) == phase_cache.IMAGES  # trains all
  config, setup, total = setup_of(1.0)  # a probe of one epoch
  with caplog.at_level(logging.INFO):
    assert phase_cache.choose(setup, config, 0, 63, total, 7) == phase_cache.IMAGES
  assert "its 7 steps are at most one epoch" in caplog.text
  config, setup, total = setup_of(2.0, **{"data.augment": True, "data.flip_only": False})
  assert phase_cache.choose(setup, config, 0, 63, total, 7) == phase_cache.IMAGES  # random crops
