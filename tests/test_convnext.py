"""ConvNeXt-Tiny/Small against torchvision: conversion, parity, drop-path, convert + predict.

torchvision's ConvNeXt is built with random weights, its LayerNorms and
`layer_scale` randomised too (1e-6 would make every block an identity and
hide conversion mistakes), converted with the generic `torch_to_flax` and
compared in eval mode at 96x83 px (odd sizes exercise the floor arithmetic
of the stride-4 stem and the 2x2 downsampling convs).
"""
import re

from PIL import Image
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from configs import default
from ftlab import convert, models, predict
from ftlab.models import convnext
from ftlab.training import state as state_lib
from ftlab.training import strategy
from ftlab.training.state import Phase
from tests.torch_reference import (
    NUM_CLASSES, assert_eval_parity, flax_outputs, numpy_state, randomise_, template_for,
    torch_forward)

HW = (96, 83)
TOL = 1e-4


def randomise_convnext_(net: torch.nn.Module, seed: int = 2) -> None:
  """`randomise_` plus random LayerNorm affines, conv weights and layer scales."""
  randomise_(net)
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.LayerNorm):
        m.weight.uniform_(0.5, 1.5, generator=gen)
        m.bias.normal_(0, 0.2, generator=gen)
      elif isinstance(m, torch.nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.normal_(0, fan_in**-0.5, generator=gen)
      elif isinstance(m, torchvision.models.convnext.CNBlock):
        m.layer_scale.uniform_(0.1, 0.4, generator=gen)


@pytest.fixture(scope="module")
def tiny():
  torch.manual_seed(0)
  net = torchvision.models.convnext_tiny(weights=None, num_classes=NUM_CLASSES)
  randomise_convnext_(net)
  net.eval()
  model = models.MODELS["convnext_tiny"].build(NUM_CLASSES, jnp.float32)
  template = template_for(model, HW)
  return net, model, template, torch_to_flax_of(net, template)


def torch_to_flax_of(net, template):
  from ftlab.pretrained.layout import torch_to_flax  # pylint: disable=import-outside-toplevel
  return torch_to_flax(numpy_state(net), template)


def _shapes(tree) -> dict:
  return {k: v.shape for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
def test_conversion_fills_every_variable_with_the_template_shape(tiny):
  _, _, template, variables = tiny
  assert set(template) == {"params"}  # no BatchNorm, no batch_stats
  assert _shapes(variables) == _shapes(template)
  assert variables["params"]["features"]["1"]["0"]["layer_scale"].shape == (96,)


@pytest.mark.slow
def test_eval_logits_and_trunk_match_torchvision(tiny):
  net, model, _, variables = tiny
  x = np.random.default_rng(0).standard_normal((2, 3, *HW), dtype=np.float32)
  ref_logits, ref_trunk = torch_forward(net, x, "classifier")
  assert_eval_parity(flax_outputs(model, variables, x), ref_logits, ref_trunk, TOL)


@pytest.mark.slow
def test_convnext_small_paths_and_shapes_match_torchvision():
  net = torchvision.models.convnext_small(weights=None, num_classes=NUM_CLASSES)
  template = template_for(models.MODELS["convnext_small"].build(NUM_CLASSES, jnp.float32), HW)
  assert _shapes(torch_to_flax_of(net, template)) == _shapes(template)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_small"])
def test_drop_path_rates_match_torchvision(name):
  net = getattr(torchvision.models, name)(weights=None)
  want = [m.stochastic_depth.p for m in net.modules()
          if isinstance(m, torchvision.models.convnext.CNBlock)]
  got = [r for stage in convnext.drop_path_rates(convnext.DEPTHS[name],
                                                 convnext.DROP_PATH_RATE[name]) for r in stage]
  np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_tiny", "convnext_small"])
def test_blocks_run_shallow_to_deep_in_torchvision_order(name):
  spec = models.MODELS[name]
  paths = [k.rsplit(".", 1)[0].replace(".", "/")
           for k, _ in getattr(torchvision.models, name)(weights=None).named_parameters()]
  firsts = [min(i for i, p in enumerate(paths)
                if any(re.fullmatch(b, "/".join(p.split("/")[:j]))
                       for j in range(1, p.count("/") + 2)))
            for b in spec.blocks]
  assert firsts == sorted(firsts) and firsts[0] == 0
  assert len(spec.blocks) == {"convnext_tiny": 13, "convnext_small": 19}[name]
  # freeze_shallow(7) == the stem and the first two stages, features.0-3
  assert spec.blocks[6] == "features/3/2"


def _drop_path_outputs(mode, model, variables, images, modules):
  """Outputs of each `modules` path's stochastic_depth under `mode` and at eval."""
  paths = {f"{m}/stochastic_depth" for m in modules}

  def output(train):
    _, state = model.apply(variables, images, train=train, mutable=["intermediates"],
                           rngs={"dropout": jax.random.key(2)},
                           capture_intermediates=lambda mdl, method: "/".join(mdl.path) in paths)
    found = traverse_util.flatten_dict(state["intermediates"])
    return {"/".join(k[:-2]): v[0] for k, v in found.items()}

  return jax.tree_util.tree_map(np.asarray, (output(mode), output(False)))  # eager: no compile


@pytest.mark.slow
def test_drop_path_on_in_trainable_blocks_and_off_in_frozen_ones(tiny):
  spec = models.MODELS["convnext_tiny"]
  model, variables = models.with_drop_path(tiny[1], 0.5), tiny[3]
  shapes = {k: v.shape for k, v in state_lib.flatten(variables["params"]).items()}
  cfg = default.get_config().strategy
  cfg.name, cfg.freeze_blocks = "freeze_shallow", 7
  mode = Phase(0, strategy.build_plan(spec, cfg, shapes), tx=None).mode
  images = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
  frozen, trainable = "features/3/2", "features/7/2"  # rates 0.5 * 6 / 17 and 0.5
  trained, evaluated = _drop_path_outputs(mode, model, variables, images, (frozen, trainable))
  np.testing.assert_array_equal(trained[frozen], evaluated[frozen])
  assert not np.array_equal(trained[trainable], evaluated[trainable])
  dropped = np.all(trained[trainable] == 0, axis=(1, 2, 3))
  assert 0 < dropped.sum() < 8  # whole samples dropped, the rest rescaled


def test_drop_path_rate_override():
  model = models.MODELS["convnext_small"].build(10, jnp.float32)
  assert model.drop_path_rate == 0.4
  assert models.with_drop_path(model, 0.0).drop_path_rate == 0.4
  assert models.with_drop_path(model, 0.2).drop_path_rate == 0.2
  assert models.with_drop_path(model, -1.0).drop_path_rate == 0.0
  with pytest.raises(ValueError, match="drop_path_rate"):
    models.with_drop_path(models.MODELS["resnet18"].build(10, jnp.float32), 0.1)


@pytest.mark.slow
def test_convert_and_predict_a_torchvision_checkpoint(tmp_path, tiny):
  net = tiny[0]
  torch.save(net.state_dict(), tmp_path / "convnext_tiny.pth")
  report = convert.convert_file("convnext_tiny", tmp_path / "convnext_tiny.pth", tmp_path / "c",
                                num_classes=NUM_CLASSES)
  assert len(report.loaded) == report.total and not report.reinitialized
  rgb = np.random.default_rng(0).integers(0, 256, (70, 90, 3), np.uint8)
  Image.fromarray(rgb).save(tmp_path / "x.png")
  predictor = predict.from_pretrained(str(tmp_path / "c"))
  (_, ranked), = predict.predict(predictor, [tmp_path / "x.png"], top_k=3)
  x = predictor.preprocess(tmp_path / "x.png")[None]
  with torch.no_grad():
    ref = torch.softmax(net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), -1).numpy()[0]
  assert [i for _, i, _, _ in ranked] == list(np.argsort(-ref, kind="stable")[:3])
  np.testing.assert_allclose([p for *_, p in ranked], np.sort(ref)[::-1][:3], atol=1e-4)


def test_build_setup_reads_config_model_drop_path_rate():
  config = default.get_config()
  config.model.name, config.data.image_size = "convnext_tiny", 32
  assert state_lib.build_setup(config, 10, 10, 0, 5).model.drop_path_rate == 0.1
  config.model.drop_path_rate = 0.3
  assert state_lib.build_setup(config, 10, 10, 0, 5).model.drop_path_rate == 0.3
  config.model.name = "resnet18"
  with pytest.raises(ValueError, match=r"config\.model\.drop_path_rate=0\.3"):
    state_lib.build_setup(config, 10, 10, 0, 5)
