"""Mixup/CutMix in the train step: timm's targets, the mixed loss, and off = unchanged."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.training import feature_cache
from ftlab.training import mixup as mixup_lib
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training import steps, trainer
from tests.helpers import tiny_config


def _setup(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  run.ckpts.close()
  return run


def _images(rng, n=8, size=6):
  return jnp.asarray(rng.normal(size=(n, size, size, 3)), jnp.float32)


@pytest.mark.slow
@pytest.mark.parametrize("mixup_alpha,cutmix_alpha", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_targets_sum_to_one_and_smooth_as_timm(mixup_alpha, cutmix_alpha):
  mix = mixup_lib.Mixup(mixup_alpha, cutmix_alpha, prob=1.0, switch_prob=0.5)
  labels = jnp.asarray([0, 1, 2, 3, 4, 0, 1, 2])
  for seed in range(20):
    _, targets, dominant, lam = mixup_lib.apply(mix, jax.random.key(seed), _images(
        np.random.default_rng(seed)), labels, 5, 0.1)
    targets, lam = np.asarray(targets), float(lam)
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
    off, on = 0.1 / 5, 1 - 0.1 + 0.1 / 5  # timm's mixup_target
    y1 = np.where(np.eye(5)[np.asarray(labels)] > 0, on, off)
    np.testing.assert_allclose(targets, lam * y1 + (1 - lam) * y1[::-1], rtol=1e-6, atol=1e-7)
    expected = np.where(lam >= 0.5, np.asarray(labels), np.asarray(labels)[::-1])
    np.testing.assert_array_equal(np.asarray(dominant), expected)


@pytest.mark.slow
def test_cutmix_pastes_one_box_from_the_mirror_and_corrects_lam():
  mix = mixup_lib.Mixup(0.0, 1.0, prob=1.0, switch_prob=0.5)
  images = _images(np.random.default_rng(0), size=12)
  boxes = 0
  for seed in range(20):
    mixed, _, _, lam = mixup_lib.apply(mix, jax.random.key(seed), images, jnp.arange(8), 8, 0.0)
    mixed = np.asarray(mixed)
    from_mirror = np.all(mixed == np.asarray(images)[::-1], axis=-1)
    own = np.all(mixed == np.asarray(images), axis=-1)
    assert np.all(from_mirror | own)
    pasted = from_mirror[0] & ~own[0]
    rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
    if rows.size:  # one rectangle
      boxes += 1
      assert pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert float(lam) == pytest.approx(1 - pasted.sum() / 144, abs=1e-6)
  assert boxes >= 15


def test_prob_and_switch_prob_follow_timm():
  never = mixup_lib.Mixup(0.8, 1.0, prob=0.0, switch_prob=0.5)
  images = _images(np.random.default_rng(0))
  mixed, _, _, lam = mixup_lib.apply(never, jax.random.key(0), images, jnp.arange(8), 8, 0.0)
  assert float(lam) == 1.0 and np.array_equal(np.asarray(mixed), np.asarray(images))
  half = mixup_lib.Mixup(0.8, 1.0, prob=0.5, switch_prob=0.25)
  kinds = {"none": 0, "cutmix": 0, "mixup": 0}
  for seed in range(400):
    # pylint: disable-next=protected-access
    lam, use_cutmix = mixup_lib._draw(half, jax.random.key(seed))
    kinds["none" if float(lam) == 1.0 else "cutmix" if bool(use_cutmix) else "mixup"] += 1
  assert abs(kinds["none"] - 200) < 40
  assert abs(kinds["cutmix"] - 50) < 25 and abs(kinds["mixup"] - 150) < 35


@pytest.mark.slow
def test_mixed_loss_equals_the_hand_computed_one(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"train.mixup_alpha": 0.8, "train.label_smoothing": 0.1})
  run = _setup(config, str(tmp_path / "run"))
  state = state_lib.initial_state(run.setup, config, jax.random.key(0))
  batch = next(run.loaders["train"].epoch(0))
  _, out = jax.jit(steps.make_train_step(run.setup))(state, batch, jax.random.key(3))
  lam = float(out["mixup_lam"])
  assert 0.0 < lam < 1.0
  x = np.asarray(steps.normalize(batch["image"], run.setup.spec))
  mixed = lam * x + (1 - lam) * x[::-1]
  logits, _ = run.setup.model.apply(state_lib.variables_of(state), jnp.asarray(mixed),
                                    train=run.setup.phases[0].mode, mutable=["batch_stats"])
  logits = np.asarray(logits, np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
  y = np.full((8, 3), 0.1 / 3)
  y[np.arange(8), batch["label"]] += 0.9
  target = lam * y + (1 - lam) * y[::-1]
  assert float(out["loss"]) == pytest.approx(-(target * log_p).sum(-1).mean(), rel=1e-5)
  dominant = batch["label"] if lam >= 0.5 else batch["label"][::-1]
  assert float(out["top1"]) == pytest.approx(np.mean(logits.argmax(-1) == dominant))


@pytest.mark.slow
def test_off_is_bit_identical_to_a_step_that_never_mixes(image_folder, tmp_path):
  """alphas 0 (the step as it was) == mixup on with a draw that never mixes: the mixing code
  and its rng stream leave the images, targets, dropout draws and update untouched."""
  results = []
  for name, prob in (("off", 1.0), ("never", 1e-12)):
    alpha = 0.0 if name == "off" else 0.8
    config = tiny_config(image_folder, **{"train.mixup_alpha": alpha, "train.mixup_prob": prob,
                                          "train.label_smoothing": 0.1})
    run = _setup(config, str(tmp_path / name))
    assert (run.setup.mixup.enabled) == (name == "never")
    state = state_lib.initial_state(run.setup, config, jax.random.key(0))
    batch = next(run.loaders["train"].epoch(0))
    results.append(jax.device_get(jax.jit(steps.make_train_step(run.setup))(
        state, batch, jax.random.key(3))))
  (off_state, off_metrics), (never_state, never_metrics) = results
  assert float(never_metrics.pop("mixup_lam")) == 1.0
  jax.tree_util.tree_map(np.testing.assert_array_equal, off_metrics, never_metrics)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state_lib.variables_of(off_state),
                         state_lib.variables_of(never_state))


@pytest.mark.slow
def test_mixup_is_not_run_on_cached_features(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"strategy.name": "linear_probe", "data.augment": False,
                                        "train.cutmix_alpha": 1.0, "train.num_epochs": 1.0})
  run = _setup(config, str(tmp_path / "setup"))
  assert not feature_cache.eligible(run.setup, config)
  with pytest.raises(ValueError, match="not defined on cached trunk features"):
    steps.make_train_step(run.setup, on_features=True)
  out = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert out["feature_cache"] is False


@pytest.mark.parametrize("key,value,message", [
    ("train.mixup_alpha", -0.1, r"config.train.mixup_alpha=-0.1 must be >= 0"),
    ("train.mixup_prob", 1.5, r"config.train.mixup_prob=1.5 must be in \[0, 1\]"),
    ("train.mixup_switch_prob", -1.0, r"config.train.mixup_switch_prob=-1.0 must be in"),
])
def test_bad_mixup_keys_are_one_line_errors(image_folder, tmp_path, key, value, message):
  with pytest.raises(ValueError, match=message):
    _setup(tiny_config(image_folder, **{key: value}), str(tmp_path / "run"))
