"""LoRA: adapters as their own trainable group, no change at init, merged for evaluation/export."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from ftlab.models import get_spec
from ftlab.training import checkpoint, lora, steps, strategy, trainer
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from tests.helpers import tiny_config

TINY_TARGETS = (r"layer\d/conv/kernel",)


def _setup(name, size, **strategy_fields):
  config = default.get_config()
  config.model.name = name
  config.data.image_size = size
  config.strategy.name = "lora"
  for key, value in strategy_fields.items():
    config.strategy[key] = value
  return config, state_lib.build_setup(config, 5, 10, 0, 5)


def _images(size, n=2, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, size, size, 3), jnp.float32, -1.0, 1.0)


def _base_params(state):
  """The model's own parameters, adapters left out (what the model was before LoRA)."""
  flat = {**state.frozen, **state.trainable}
  return state_lib.unflatten({k: v for k, v in flat.items() if not lora.is_adapter(k)})


@pytest.mark.slow
@pytest.mark.parametrize("name,size,fields", [
    ("tiny_cnn", 16, {"lora_targets": TINY_TARGETS, "lora_rank": 2}),
    ("vit_s_16", 32, {}),  # its default targets: attention and MLP kernels of every layer
])
def test_adapters_at_init_leave_the_logits_unchanged(name, size, fields, fast_compiles):
  config, setup = _setup(name, size, **fields)
  state = state_lib.initial_state(setup, config, jax.random.key(0))
  adapters = {k for k in state.trainable if lora.is_adapter(k)}
  assert adapters == set(setup.lora.shapes) and adapters
  assert all(not np.any(state.trainable[k]) for k in adapters if k.endswith("/lora_b"))
  assert all(np.any(state.trainable[k]) for k in adapters if k.endswith("/lora_a"))
  x = _images(size)
  merged = setup.model.apply(state_lib.variables_of(state), x)
  base = setup.model.apply({"params": _base_params(state), "batch_stats": state.batch_stats}, x)
  np.testing.assert_array_equal(np.asarray(merged), np.asarray(base))


def test_vit_default_targets_are_attention_and_mlp_kernels():
  _, setup = _setup("vit_s_16", 32, lora_rank=4)
  layer = "encoder/layers/encoder_layer_{}/"
  expected = {layer.format(i) + leaf for i in range(12)
              for leaf in ("self_attention/in_proj_weight", "self_attention/out_proj/kernel",
                           "mlp/0/kernel", "mlp/3/kernel")}
  assert set(setup.lora.targets) == expected
  # torch's packed (3D, D) in_proj: inputs D on the last axis, outputs 3D on the first.
  assert setup.lora.shapes[layer.format(0) + "self_attention/in_proj_weight/lora_a"] == (384, 4)
  assert setup.lora.shapes[layer.format(0) + "self_attention/in_proj_weight/lora_b"] == (4, 1152)
  assert setup.lora.shapes[layer.format(0) + "mlp/0/kernel/lora_b"] == (4, 1536)


def test_cnn_default_targets_are_every_conv_kernel_outside_the_head():
  _, setup = _setup("resnet50", 32)
  shapes = state_lib.param_shapes(setup.model, 32)
  convs = {p for p, s in shapes.items() if p.endswith("/kernel") and len(s) == 4}
  assert set(setup.lora.targets) == convs  # no conv in ResNet's head
  assert "layer1/0/conv1/kernel" in setup.lora.targets  # Bottleneck's 1x1 reduction
  assert "layer1/0/conv2/kernel" in setup.lora.targets  # its 3x3
  assert not any(p.startswith("fc/") for p in setup.lora.targets)  # the head trains in full


def test_resnet18_default_adapters_reach_its_3x3_basic_blocks():
  """ResNet-18's blocks are 3x3 convs: adapting only 1x1s would adapt 3 downsamples (a linear
  probe under another name)."""
  _, setup = _setup("resnet18", 32)
  blocks = [p for p in setup.lora.targets if re.fullmatch(r"layer\d/\d/conv[12]/kernel", p)]
  assert len(blocks) == 16 and len(setup.lora.targets) == 20  # + the stem and 3 downsamples


def test_depthwise_kernels_get_no_default_adapter():
  _, setup = _setup("efficientnet_lite0", 32)
  assert "_blocks/1/_expand_conv/kernel" in setup.lora.targets
  assert not any("_depthwise_conv" in p for p in setup.lora.targets)


def test_plan_has_the_adapters_as_their_own_group_and_freezes_the_base():
  _, setup = _setup("tiny_cnn", 16, lora_targets=TINY_TARGETS, lora_rank=2)
  plan = setup.phases[0].plan
  adapter_group = plan.group_of("layer1/conv/kernel/lora_a")
  assert adapter_group is plan.group_of("layer2/conv/kernel/lora_b")
  assert set(adapter_group.paths) == set(setup.lora.shapes)
  assert adapter_group.size == sum(int(np.prod(s)) for s in setup.lora.shapes.values())
  assert {p for p in plan.labels if plan.trainable(p)} == set(setup.lora.shapes) | {
      "fc/kernel", "fc/bias"}
  assert "bn1" in plan.frozen_bn() and "layer1/bn" in plan.frozen_bn()
  table = plan.table().splitlines()
  row = next(line for line in table if line.startswith(adapter_group.name + " "))
  assert "lora_a|lora_b" in row and f"{adapter_group.size:,}" in row


@pytest.mark.slow
def test_a_train_step_moves_only_adapters_and_head_and_keeps_no_state_for_the_base():
  config, setup = _setup("tiny_cnn", 16, lora_targets=TINY_TARGETS, lora_rank=2)
  state = state_lib.initial_state(setup, config, jax.random.key(0))
  assert set(state.trainable) == set(setup.lora.shapes) | {"fc/kernel", "fc/bias"}
  # SGD momentum: one value per trainable weight (scalar step counts aside), none for the base.
  momentum = sum(x.size for x in jax.tree_util.tree_leaves(state.opt_state) if x.ndim)
  assert momentum == sum(x.size for x in state.trainable.values())
  frozen = jax.device_get(state.frozen)
  batch = {"image": jnp.asarray(np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)),
                                jnp.uint8),
           "label": jnp.arange(8) % 5}
  step = jax.jit(steps.make_train_step(setup))
  for _ in range(2):
    state, _ = step(state, batch, jax.random.key(1))
  for path, value in frozen.items():
    np.testing.assert_array_equal(np.asarray(state.frozen[path]), value, err_msg=path)
  assert np.any(state.trainable["layer2/conv/kernel/lora_b"])


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_merged_kernels_equal_the_unmerged_low_rank_forward():
  rng = np.random.default_rng(0)

  def normal(*shape):
    return rng.standard_normal(shape, np.float32)

  r, scale = 3, 0.5
  x2, x4 = normal(4, 6), normal(2, 5, 5, 6)
  w_dense, w_torch = normal(6, 7), normal(7, 6)
  w_1x1, w_3x3 = normal(1, 1, 6, 7), normal(3, 3, 6, 7)
  a2, b = normal(6, r), normal(r, 7)
  a_3x3 = normal(3 * 3 * 6, r)
  params = {"d/kernel": w_dense, "t/in_proj_weight": w_torch, "p/kernel": w_1x1, "c/kernel": w_3x3,
            "d/kernel/lora_a": a2, "d/kernel/lora_b": b, "t/in_proj_weight/lora_a": a2,
            "t/in_proj_weight/lora_b": b, "p/kernel/lora_a": a2, "p/kernel/lora_b": b,
            "c/kernel/lora_a": a_3x3, "c/kernel/lora_b": b, "c/bias": np.ones(7)}
  merged = lora.merge(params, scale)
  assert set(merged) == {"d/kernel", "t/in_proj_weight", "p/kernel", "c/kernel", "c/bias"}

  def close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  close(x2 @ merged["d/kernel"], x2 @ w_dense + scale * (x2 @ a2) @ b)
  close(x2 @ merged["t/in_proj_weight"].T, x2 @ w_torch.T + scale * (x2 @ a2) @ b)
  close(np.asarray(_conv(x4, merged["p/kernel"])), x4 @ w_1x1[0, 0] + scale * (x4 @ a2) @ b)
  # PEFT's conv LoRA: a kxk conv to r channels (A), then a 1x1 conv (B).
  down = _conv(x4, a_3x3.reshape(3, 3, 6, r))
  close(np.asarray(_conv(x4, merged["c/kernel"])),
        np.asarray(_conv(x4, w_3x3)) + scale * np.asarray(down) @ b)
  assert lora.merge({"d/kernel": w_dense}, scale) == {"d/kernel": w_dense}  # no adapters: as is


@pytest.mark.slow
def test_trained_run_reads_back_merged_and_evaluates_as_trained(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"strategy.name": "lora", "strategy.lora_rank": 2,
                                        "strategy.lora_targets": TINY_TARGETS,
                                        "train.num_epochs": 1.0, "optimizer.lr": 0.2})
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  best = checkpoint.load_best(workdir)  # what ftlab.evaluate / ftlab.predict --workdir use
  init = best.model.init(jax.random.key(0), _images(16), train=False)
  assert (jax.tree_util.tree_structure(best.variables["params"])
          == jax.tree_util.tree_structure(init["params"]))  # plain model variables, no adapters
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_best(run.template)
  run.ckpts.close()
  assert state.lora_scale == config.strategy.lora_alpha / 2  # rank 2
  assert np.any(state.trainable["layer2/conv/kernel/lora_b"])
  x = _images(16, n=4)
  # The training loss function's view of the model (adapters merged at every step) ...
  flat = {**state.frozen, **state.trainable}
  unmerged_loss_view = state_lib.model_params(flat, state.lora_scale)
  want = best.model.apply({"params": unmerged_loss_view, "batch_stats": state.batch_stats}, x)
  # ... equals the merged checkpoint, and the adapters changed the base model's logits.
  got = best.model.apply(best.variables, x)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
  base = best.model.apply({"params": _base_params(state), "batch_stats": state.batch_stats}, x)
  assert not np.allclose(np.asarray(base), np.asarray(got), atol=1e-4)


def test_target_matching_nothing_lists_the_nearest_paths():
  with pytest.raises(strategy.StrategyError,
                     match=r"lora_targets: 'layer1/conv/kernal' matches no parameter.*"
                           r"'layer1/conv/kernel'"):
    _setup("tiny_cnn", 16, lora_targets=("layer1/conv/kernal",))
  with pytest.raises(strategy.StrategyError, match="matches no parameter outside the head"):
    _setup("tiny_cnn", 16, lora_targets=("fc/kernel",))  # the head trains in full
  with pytest.raises(strategy.StrategyError, match=r"'layer1/bn/bias' of shape \(16,\) is not a"):
    _setup("tiny_cnn", 16, lora_targets=(r"layer1/bn/bias",))
  with pytest.raises(strategy.StrategyError, match="config.strategy.lora_targets is empty"):
    # a trunk of depthwise kernels only: nothing a default adapter could take
    lora.resolve(get_spec("tiny_cnn"), default.get_config().strategy,
                 {"dw/kernel": (3, 3, 1, 8), "fc/kernel": (8, 3), "fc/bias": (3,)})
  with pytest.raises(strategy.StrategyError, match="config.strategy.lora_rank=0"):
    _setup("tiny_cnn", 16, lora_targets=TINY_TARGETS, lora_rank=0)
