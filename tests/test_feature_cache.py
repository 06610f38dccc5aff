"""The feature cache under flip-only augmentation: both orientations, the pipeline's own draws."""
import dataclasses

import jax
import numpy as np
import pytest

from ftlab.data import datasets
from ftlab.data.pipeline import Augment, Loader
from ftlab.training import feature_cache
from ftlab.training import run as run_lib
from ftlab.training import trainer
from tests.helpers import tiny_config


def test_cached_orientations_replay_the_pipelines_flips(image_folder):
  data = datasets.load(tiny_config(image_folder).data)
  flips = Augment(16, train=False, flip_only=True)
  images = Loader(data.train, 8, flips, True, seed=3, num_workers=1)
  fixed = dataclasses.replace(flips, flip_only=False)
  ordered = np.stack([fixed(p, None) for p in data.train.paths])
  mirrored = np.stack([feature_cache.Mirrored(fixed)(p, None) for p in data.train.paths])
  assert not np.array_equal(ordered, mirrored)
  cached = feature_cache.FeatureLoader(ordered, images, mirrored)
  flipped_any = False
  for epoch in (0, 1):
    for want, got in zip(images.epoch(epoch), cached.epoch(epoch)):
      np.testing.assert_array_equal(got["features"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])
      flipped_any |= any(any(np.array_equal(x, m) for m in mirrored) for x in want["image"])
  assert flipped_any  # both orientations were drawn


def test_flip_only_needs_augment_off():
  with pytest.raises(ValueError, match="config.data.flip_only=True needs config.data.augment=False"):
    Augment(16, train=True, flip_only=True)


def _head(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_latest(run.template)
  run.ckpts.close()
  return jax.device_get(state.trainable)


@pytest.mark.slow
def test_flip_aware_cache_trains_the_same_head_as_images(image_folder, tmp_path):
  over = {"strategy.name": "linear_probe", "data.augment": False, "data.flip_only": True,
          "data.train_per_class": 20, "train.num_epochs": 2.0}
  heads = {}
  for cache in (True, False):
    config = tiny_config(image_folder, **over, **{"strategy.cache_features": cache})
    out = trainer.train_and_evaluate(config, str(tmp_path / str(cache)))
    assert out["feature_cache"] == cache
    assert out["data_subset"]["train_images_per_class"] == {"cat": 18, "dog": 18, "wolf": 18}
    assert out["compile"]["programs"] >= 2 and out["compile"]["seconds"] > 0
    heads[cache] = _head(config, str(tmp_path / str(cache)))
  for key in ("fc/kernel", "fc/bias"):
    np.testing.assert_allclose(heads[True][key], heads[False][key], rtol=1e-4, atol=1e-5)
