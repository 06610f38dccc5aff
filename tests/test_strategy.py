"""Strategy rules: matching, coverage, errors, presets."""
import re

import jax
import pytest

from configs import default
from ftlab.models import MODELS, get_spec
from ftlab.training import state as state_lib
from ftlab.training import strategy


def _shapes(name, size=32):
  spec = get_spec(name)
  model = spec.build(10, jax.numpy.float32)
  return spec, state_lib.param_shapes(model, size)


def _strategy_cfg(preset, **fields):
  cfg = default.get_config().strategy
  cfg.name = preset
  for k, v in fields.items():
    cfg[k] = v
  return cfg


def _plan(name, preset, **fields):
  cfg = _strategy_cfg(preset, **fields)
  spec, shapes = _shapes(name)
  return strategy.build_plan(spec, cfg, shapes), shapes


def _trainable(plan, shapes):
  return {p for p in shapes if plan.trainable(p)}


def test_first_match_wins_and_every_parameter_is_covered():
  _, shapes = _shapes("tiny_cnn")
  plan = strategy.compile_rules([("fc/.*", 10.0), ("fc/bias", "freeze"), (".*", 1.0)][:1] + [(".*", 1.0)], shapes)
  assert plan.group_of("fc/bias").action.lr_mult == 10.0
  with pytest.raises(strategy.StrategyError, match="matched by no rule"):
    strategy.compile_rules([("fc/.*", 1.0)], shapes)


def test_rule_matching_nothing_lists_nearest_paths():
  _, shapes = _shapes("tiny_cnn")
  with pytest.raises(strategy.StrategyError, match=r"rule 'fc/kernal' matches no parameter.*fc/kernel"):
    strategy.compile_rules([("fc/kernal", 2.0), (".*", 1.0)], shapes)


def test_bad_action_is_rejected():
  _, shapes = _shapes("tiny_cnn")
  with pytest.raises(strategy.StrategyError, match="'frozen' is not 'freeze'"):
    strategy.compile_rules([(".*", "frozen")], shapes)


def test_presets_on_resnet18():
  plan, shapes = _plan("resnet18", "linear_probe")
  assert _trainable(plan, shapes) == {"fc/kernel", "fc/bias"}
  assert "layer4/1/bn2" in plan.frozen_bn() and "bn1" in plan.frozen_bn()
  plan, shapes = _plan("resnet18", "freeze_shallow", freeze_blocks=3)  # stem, layer1, layer2
  frozen = set(shapes) - _trainable(plan, shapes)
  assert frozen == {p for p in shapes if re.match(r"(conv1|bn1|layer1|layer2)/", p)}
  plan, shapes = _plan("resnet18", "full_ft")
  assert _trainable(plan, shapes) == set(shapes) and not plan.frozen_bn()
  plan, _ = _plan("resnet18", "full_ft_head_lr", head_lr_mult=10.0)
  assert plan.group_of("fc/kernel").action.lr_mult == 10.0
  assert plan.group_of("layer4/1/conv2/kernel").action.lr_mult == 1.0
  plan, _ = _plan("resnet18", "full_ft_deep_lr", deep_lr_mults=(1.05, 1.1, 1.15))
  assert plan.group_of("layer2/0/conv1/kernel").action.lr_mult == 1.05
  assert plan.group_of("layer4/0/conv1/kernel").action.lr_mult == 1.15
  assert plan.group_of("layer1/0/conv1/kernel").action.lr_mult == 1.0
  assert not strategy.get_preset("scratch").pretrained


def test_freeze_shallow_seven_is_the_mindcv_cut_on_mobilenet_v3_small():
  plan, shapes = _plan("mobilenet_v3_small", "freeze_shallow", freeze_blocks=7)
  frozen_blocks = {p.split("/")[1] for p in shapes if not plan.trainable(p) and p.startswith("features/")}
  assert frozen_blocks == {str(i) for i in range(7)}
  assert all(plan.trainable(p) for p in shapes if p.startswith("classifier/"))


def test_freeze_blocks_out_of_range_names_the_key():
  with pytest.raises(strategy.StrategyError, match="config.strategy.freeze_blocks=99"):
    _plan("resnet18", "freeze_shallow", freeze_blocks=99)


def test_freeze_blocks_beyond_the_model_names_its_block_count_and_default():
  with pytest.raises(strategy.StrategyError,
                     match=r"freeze_blocks=7: the model has 5 trunk blocks .*between 1 and 4, "
                           r"or 0 for the model's default \(3\)"):
    _plan("resnet18", "freeze_shallow", freeze_blocks=7)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_freeze_shallow_on_defaults_freezes_the_models_own_leading_blocks(name):
  """config.strategy.freeze_blocks=0 (the default) works on every registered model: the first
  spec.freeze_blocks blocks are frozen, the next block and the head train."""
  assert default.get_config().strategy.freeze_blocks == 0
  spec, shapes = _shapes(name)
  n = spec.freeze_blocks
  assert 0 < n < len(spec.blocks), (name, n, len(spec.blocks))
  plan = strategy.build_plan(spec, _strategy_cfg("freeze_shallow"), shapes)
  frozen = re.compile(strategy.under("|".join(spec.blocks[:n])))
  assert {p for p in shapes if not plan.trainable(p)} == {p for p in shapes if frozen.fullmatch(p)}
  first_trained = re.compile(strategy.under(spec.blocks[n]))
  assert any(first_trained.fullmatch(p) and plan.trainable(p) for p in shapes)


def test_freeze_blocks_defaults_keep_the_mindcv_cut_and_the_demos():
  assert MODELS["mobilenet_v3_small"].freeze_blocks == 7  # the MindCV guide's features.0-6
  assert MODELS["efficientnet_lite0"].freeze_blocks == 9  # configs/demo.py's, before the default


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_blocks_and_head_cover_every_parameter_exactly_once(name):
  spec, shapes = _shapes(name, size=64)
  regexes = [re.compile(strategy.under(b)) for b in spec.blocks + (spec.head,)]
  for path in shapes:
    hits = [r.pattern for r in regexes if r.fullmatch(path)]
    assert len(hits) == 1, (path, hits)


def test_plan_table_lists_groups():
  plan, _ = _plan("tiny_cnn", "linear_probe")
  table = plan.table()
  assert "frozen" in table and "(?:fc)/.*" in table


def _setup(name, preset, total_steps, bn_momentum=0.0, bn="batch", lp_epochs=20.0):
  config = default.get_config()
  config.model.name = name
  config.model.bn_momentum = bn_momentum
  config.model.bn = bn
  config.data.image_size = 32
  config.strategy.name = preset
  config.strategy.lp_epochs = lp_epochs
  return state_lib.build_setup(config, 10, total_steps, 0, 10)


def test_stale_batchnorm_statistics_are_warned_about():
  # TF-trained Lite0 (momentum 0.01): after 80 steps 0.99**80 = 45% of ImageNet's statistics remain.
  warning = state_lib.stale_bn_warning(_setup("efficientnet_lite0", "full_ft", 80), 80)
  assert "45%" in warning and "momentum 0.01" in warning and "config.model.bn_momentum" in warning
  assert state_lib.stale_bn_warning(_setup("efficientnet_lite0", "full_ft", 80, 0.1), 80) == ""
  assert state_lib.stale_bn_warning(_setup("efficientnet_lite0", "full_ft", 2000), 2000) == ""
  assert state_lib.stale_bn_warning(_setup("resnet18", "full_ft", 80), 80) == ""
  # LayerNorms have a `scale` too, but no running statistics: a short ViT run has nothing stale.
  assert state_lib.stale_bn_warning(_setup("vit_s_16", "full_ft", 20), 20) == ""
  # No BatchNorm layer updates its statistics in a linear probe: nothing to warn about.
  assert state_lib.stale_bn_warning(_setup("efficientnet_lite0", "linear_probe", 80), 80) == ""
  # lp_ft updates them only after its probe (20 epochs of 10 steps here).
  warning = state_lib.stale_bn_warning(_setup("efficientnet_lite0", "lp_ft", 400), 400)
  assert "after 200 updating steps" in warning
  # Statistics that are re-estimated before every evaluation, or never updated, are never stale.
  for bn in ("reestimate", "frozen"):
    assert state_lib.stale_bn_warning(_setup("efficientnet_lite0", "full_ft", 80, bn=bn), 80) == ""
