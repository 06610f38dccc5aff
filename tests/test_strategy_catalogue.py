"""The strategy catalogue: what each preset trains, phases, L2-SP, free frozen layers, feature cache."""
import os
import re

from flax import serialization
import jax
import numpy as np
import pytest

from configs import default
from ftlab.models import get_spec
from ftlab.pretrained import load
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training import steps, strategy, trainer
from tests.helpers import tiny_config


def _phases(name, preset, total_steps=100, steps_per_epoch=10, **fields):
  cfg = default.get_config().strategy
  cfg.name = preset
  for k, v in fields.items():
    cfg[k] = v
  spec = get_spec(name)
  shapes = state_lib.param_shapes(spec.build(10, jax.numpy.float32), 64)
  return spec, shapes, strategy.build_phases(spec, cfg, shapes, total_steps, steps_per_epoch)


def _trainable(plan, shapes):
  return {p for p in shapes if plan.trainable(p)}


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_single_phase_presets_select_what_they_claim(name):
  spec, shapes, [(_, lp, _)] = _phases(name, "linear_probe")
  head = {p for p in shapes if re.fullmatch(strategy.under(spec.head), p)}
  assert _trainable(lp, shapes) == head and head
  _, _, [(_, bitfit, _)] = _phases(name, "bitfit", bitfit_bn_scale=False)
  assert _trainable(bitfit, shapes) == head | {p for p in shapes if p.endswith("/bias")}
  assert not bitfit.frozen_bn()  # BN statistics keep adapting while the shifts train
  _, _, [(_, bitfit_bn, _)] = _phases(name, "bitfit", bitfit_bn_scale=True)
  assert _trainable(bitfit_bn, shapes) == _trainable(bitfit, shapes) | {
      p for p in shapes if p.endswith("/scale")}
  _, _, [(_, decay, _)] = _phases(name, "layer_decay", layer_decay=0.5)
  n = len(spec.blocks)
  first = next(p for p in shapes if re.fullmatch(strategy.under(spec.blocks[0]), p))
  last = next(p for p in shapes if re.fullmatch(strategy.under(spec.blocks[-1]), p))
  assert decay.group_of(first).action.lr_mult == pytest.approx(0.5 ** n)
  assert decay.group_of(last).action.lr_mult == pytest.approx(0.5)
  assert all(decay.group_of(p).action.lr_mult == 1.0 for p in head)


def test_lp_ft_and_gradual_unfreeze_phases():
  spec, shapes, phases = _phases("resnet18", "lp_ft", total_steps=100, steps_per_epoch=10,
                                 lp_epochs=3.0)
  assert [(start, window) for start, _, window in phases] == [(0, "probe"), (30, "fine_tune")]
  assert _trainable(phases[0][1], shapes) == {"fc/kernel", "fc/bias"}
  assert _trainable(phases[1][1], shapes) == set(shapes)
  # ResNet's 5 blocks (stem, layer1-4) in 5 stages over the first half of the 70 fine-tuning steps
  _, _, phases = _phases("resnet18", "gradual_unfreeze", total_steps=100, steps_per_epoch=10,
                         lp_epochs=3.0, unfreeze_stages=5, unfreeze_fraction=0.5)
  assert [start for start, _, _ in phases] == [0, 30, 37, 44, 51, 58]
  assert [window for _, _, window in phases] == ["probe"] + ["fine_tune"] * 5
  assert _trainable(phases[1][1], shapes) == {p for p in shapes if p.startswith(("fc/", "layer4/"))}
  assert _trainable(phases[-1][1], shapes) == set(shapes)
  _, _, phases = _phases("resnet18", "gradual_unfreeze", total_steps=100, steps_per_epoch=10,
                         lp_epochs=3.0, unfreeze_stages=2, unfreeze_fraction=0.5)
  assert [start for start, _, _ in phases] == [0, 30, 48]  # layer2-4, then all 5 blocks
  assert _trainable(phases[1][1], shapes) == {
      p for p in shapes if p.startswith(("fc/", "layer2/", "layer3/", "layer4/"))}


def test_a_probe_that_leaves_no_fine_tuning_is_an_error():
  with pytest.raises(strategy.StrategyError, match="no fine-tuning steps"):
    _phases("resnet18", "lp_ft", total_steps=30, steps_per_epoch=10, lp_epochs=3.0)
  with pytest.raises(strategy.StrategyError, match="config.strategy.lp_epochs=0.0"):
    _phases("resnet18", "lp_ft", total_steps=30, steps_per_epoch=10, lp_epochs=0.0)


def _run(root, workdir, **overrides):
  config = tiny_config(root, **overrides)
  return config, trainer.train_and_evaluate(config, workdir)


def _state(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_latest(run.template)
  start = run.template(0, load_weights=True)
  run.ckpts.close()
  return start, state


def _params(state):
  return jax.device_get({**state.frozen, **state.trainable})


@pytest.mark.slow
def test_lp_ft_changes_only_the_head_then_the_trunk(image_folder, tmp_path):
  # 63 train images -> 7 steps per epoch; lp phase = steps 0..6, ft phase = 7..13
  over = {"strategy.name": "lp_ft", "train.num_epochs": 1.0, "strategy.lp_epochs": 1.0}
  config = tiny_config(image_folder, **over)
  mid_dir = str(tmp_path / "mid")
  trainer.train_and_evaluate(tiny_config(image_folder, **over, **{"train.stop_after_steps": 7}), mid_dir)
  start, mid = _state(config, mid_dir)
  for path, value in _params(start).items():
    changed = not np.array_equal(value, _params(mid)[path])
    assert changed == path.startswith("fc/"), path
  out = trainer.train_and_evaluate(config, mid_dir)
  _, end = _state(config, mid_dir)
  assert out["num_phases"] == 2
  assert not np.array_equal(_params(end)["conv1/kernel"], _params(mid)["conv1/kernel"])


def _distance(a, b):
  return float(np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a if not k.startswith("fc/"))))


def _pretrained_dir(path, name: str, num_classes: int, size: int) -> str:
  """A `ftlab.convert`-style directory holding random weights of `name` with `num_classes` outputs."""
  model = get_spec(name).build(num_classes, jax.numpy.float32)
  variables = jax.device_get(state_lib.init_variables(model, size, jax.random.key(7)))
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, load.VARIABLES_FILE), "wb") as f:
    f.write(serialization.msgpack_serialize(variables))
  return str(path)


@pytest.mark.slow
def test_l2sp_stays_closer_to_the_start_than_full_ft(image_folder, tmp_path):
  pretrained = _pretrained_dir(tmp_path / "weights", "tiny_cnn", 5, 16)  # the 3-class head re-inits
  common = {"train.num_epochs": 2.0, "optimizer.lr": 0.1, "model.pretrained": pretrained}
  dists = {}
  for name, extra in (("full_ft", {}), ("l2sp", {"strategy.l2sp_alpha": 5.0})):
    config, _ = _run(image_folder, str(tmp_path / name), **{"strategy.name": name}, **common, **extra)
    start, end = _state(config, str(tmp_path / name))
    dists[name] = _distance(_params(end), _params(start))
  assert 0 < dists["l2sp"] < 0.8 * dists["full_ft"], dists


@pytest.mark.slow
def test_l2sp_anchors_every_loaded_parameter_and_decays_the_new_ones(tmp_path, fast_compiles):
  # MobileNetV3's head `classifier` holds the pretrained classifier/0 (576 -> 1024) and the new
  # classifier/3: the first is anchored with alpha, only the second decayed with beta.
  size = 32
  config = tiny_config("unused", **{
      "model.name": "mobilenet_v3_small", "data.image_size": size, "strategy.name": "l2sp",
      "strategy.l2sp_alpha": 2.0, "strategy.l2sp_beta": 3.0,
      "model.pretrained": _pretrained_dir(tmp_path / "w", "mobilenet_v3_small", 1000, size)})
  setup = state_lib.build_setup(config, 10, 10, 0, 10)
  state = state_lib.initial_state(setup, config, jax.random.key(0))
  loaded = {k for k, v in state.anchor["loaded"].items() if float(v) == 1.0}
  assert loaded == set(state.trainable) - {"classifier/3/kernel", "classifier/3/bias"}
  assert "classifier/0/kernel" in loaded
  moved = {k: v + 1.0 for k, v in state.trainable.items()}  # every weight 1 away from its start
  penalty = float(jax.jit(strategy.l2sp_penalty, static_argnums=(2, 3))(moved, state.anchor, *setup.l2sp))
  near = sum(v.size for k, v in moved.items() if k in loaded)
  rest = sum(float(np.sum(np.square(v))) for k, v in moved.items() if k not in loaded)
  assert penalty == pytest.approx(0.5 * 2.0 * near + 0.5 * 3.0 * rest, rel=1e-5)


def test_l2sp_without_pretrained_weights_is_an_error():
  config = tiny_config("unused", **{"strategy.name": "l2sp"})
  with pytest.raises(ValueError, match="config.model.pretrained is empty"):
    state_lib.build_setup(config, 3, 10, 0, 10)


def _conv_count(compiled) -> int:
  """XLA convolutions plus ftlab's oneDNN convolution custom calls (conv_impl=auto on the CPU)."""
  return len(re.findall(r"convolution|custom_call_target=\"ftlab_onednn_conv", compiled.as_text()))


@pytest.mark.slow
def test_frozen_trunk_has_no_backward_convolutions(image_folder, tmp_path):
  counts = {}
  for name in ("linear_probe", "freeze_shallow", "full_ft"):
    config = tiny_config(image_folder, **{"strategy.name": name, "strategy.freeze_blocks": 2})
    run = run_lib.prepare(config, str(tmp_path / name), for_training=False)
    state = run.template(0)
    batch = run.devices.shard_batch(next(run.loaders["train"].epoch(0)))
    step = jax.jit(steps.make_train_step(run.setup)).lower(state, batch, jax.random.key(0)).compile()
    counts[name] = _conv_count(step)
    forward = jax.jit(steps.make_eval_step(run.setup)).lower(state, batch).compile()
    counts["forward"] = _conv_count(forward)
    if name == "linear_probe":
      shapes = {x.shape for x in jax.tree_util.tree_leaves(state.opt_state)}
      assert shapes - {()} == {(3,), (32, 3)}  # momentum only for fc/kernel and fc/bias (+ step counters)
  assert counts["linear_probe"] == counts["forward"], counts
  assert counts["forward"] < counts["freeze_shallow"] < counts["full_ft"], counts


@pytest.mark.slow
def test_cached_features_train_the_same_head_as_images(image_folder, tmp_path):
  over = {"strategy.name": "linear_probe", "data.augment": False, "train.num_epochs": 2.0}
  heads = {}
  for cache in (True, False):
    config, out = _run(image_folder, str(tmp_path / str(cache)), **over,
                       **{"strategy.cache_features": cache})
    assert out["feature_cache"] == cache
    _, end = _state(config, str(tmp_path / str(cache)))
    heads[cache] = _params(end)
  for key in ("fc/kernel", "fc/bias"):
    np.testing.assert_allclose(heads[True][key], heads[False][key], rtol=1e-4, atol=1e-5)
  assert not np.allclose(heads[True]["fc/kernel"], 0.0)


@pytest.mark.slow
def test_ridge_probe_reports_a_choice_on_minival(image_folder, tmp_path):
  _, out = _run(image_folder, str(tmp_path / "run"), **{
      "strategy.name": "linear_probe", "data.augment": False, "train.num_epochs": 1.0})
  ridge = out["ridge_probe"]
  assert ridge["lambda"] in [float(k) for k in ridge["sweep"]]
  assert 0.0 <= ridge["test_top1"] <= 1.0 and ridge["minival_top1"] == max(ridge["sweep"].values())
