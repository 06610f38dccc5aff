"""freeze_shallow on activations cached at the freeze boundary: the same run as on images."""
import logging

import jax
import numpy as np
import pytest

from ftlab.models import get_spec
from ftlab.training import boundary_cache, steps, trainer
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from tests.helpers import tiny_config

FREEZE = {"strategy.name": "freeze_shallow", "strategy.freeze_blocks": 2, "data.augment": False}


def _setup(model, image_size, **overrides):
  config = tiny_config("unused", **{**FREEZE, "model.name": model,
                                    "data.image_size": image_size, **overrides})
  return config, state_lib.build_setup(config, 3, 20, 0, 10)


def test_the_boundary_is_the_frozen_prefix():
  for model in ("tiny_cnn", "resnet18"):
    for n in (1, 2):
      _, setup = _setup(model, 32, **{"strategy.freeze_blocks": n})
      assert boundary_cache.frozen_prefix(setup) == n
  _, setup = _setup("tiny_cnn", 16, **{"strategy.name": "full_ft"})
  assert boundary_cache.frozen_prefix(setup) == 0


def test_falls_back_to_images_saying_why(caplog):
  config, setup = _setup("tiny_cnn", 16, **{"strategy.cache_max_bytes": 1000})
  with caplog.at_level(logging.INFO):
    assert boundary_cache.boundary_block(setup, config, 100, 16) == 0
  assert "config.strategy.cache_max_bytes=1000" in caplog.text
  # 16x16x8 floats after block 1, 8x8x16 after block 2: 4 KiB per image
  assert boundary_cache.activation_bytes(setup, 2, 16) == 8 * 8 * 16 * 4
  config, setup = _setup("tiny_cnn", 16)
  assert boundary_cache.boundary_block(setup, config, 100, 16) == 2
  config, setup = _setup("mobilenet_v3_small", 32)
  with caplog.at_level(logging.INFO):
    assert boundary_cache.boundary_block(setup, config, 100, 32) == 0
  assert "does not run from a block boundary" in caplog.text
  config, setup = _setup("tiny_cnn", 16, **{"data.augment": True})
  assert boundary_cache.boundary_block(setup, config, 100, 16) == 0


@pytest.mark.slow
def test_resnet_top_trained_on_boundary_activations_equals_on_images(fast_compiles):
  del fast_compiles
  _, setup = _setup("resnet18", 32)
  assert get_spec("resnet18").boundaries
  state = state_lib.initial_state(setup, tiny_config("unused", **FREEZE), jax.random.key(0),
                                  load_weights=False)
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
           "label": np.array([0, 1, 2, 0], np.int32), "mask": np.ones(4, np.float32)}
  acts = jax.jit(boundary_cache.make_upto_step(setup, 2))(state, batch)
  on_images = jax.jit(steps.make_train_step(setup))
  on_acts = jax.jit(steps.make_train_step(setup, from_block=2))
  a, b = state, state
  for i in range(2):
    a, ma = on_images(a, batch, jax.random.key(i))
    b, mb = on_acts(b, {"features": acts, "label": batch["label"]}, jax.random.key(i))
  np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-5)
  for key, value in jax.device_get(a.trainable).items():
    np.testing.assert_allclose(jax.device_get(b.trainable)[key], value, rtol=1e-4, atol=1e-6,
                               err_msg=key)
  stats_a, stats_b = (state_lib.flatten(jax.device_get(s.batch_stats)) for s in (a, b))
  assert any(k.startswith("layer4/") for k in stats_a)
  for key, value in stats_a.items():
    np.testing.assert_allclose(stats_b[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
  assert not np.allclose(a.trainable["fc/kernel"], state.trainable["fc/kernel"])


def _params(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_latest(run.template)
  run.ckpts.close()
  return jax.device_get({**state.trainable, **state.frozen})


@pytest.mark.slow
def test_tiny_cnn_run_on_the_boundary_cache_equals_the_run_on_images(image_folder, tmp_path):
  over = {**FREEZE, "data.flip_only": True, "train.num_epochs": 2.0}
  params = {}
  for cache in (True, False):
    config = tiny_config(image_folder, **over, **{"strategy.cache_features": cache})
    out = trainer.train_and_evaluate(config, str(tmp_path / str(cache)))
    assert out["boundary_cache_block"] == (2 if cache else 0)
    params[cache] = _params(config, str(tmp_path / str(cache)))
  for key, value in params[False].items():
    np.testing.assert_allclose(params[True][key], value, rtol=1e-4, atol=1e-5, err_msg=key)
