"""ResNeSt-50d against timm: conversion, eval/train parity, blocks, init, convert + predict.

timm's `resnest50d` is built with random weights (BatchNorm statistics and
affines randomised too, `zero_init_last` undone), converted with the generic
`torch_to_flax` and compared at 80x72 px: odd feature maps in layer3/layer4
exercise the ceil-mode 2x2 average pool of the avg-down shortcut and the
padded 3x3 average pool after the split attention.
"""
from PIL import Image
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch

from ftlab import convert, models, predict
from ftlab.models import resnest
from ftlab.pretrained import download, load, registry
from ftlab.pretrained.layout import torch_to_flax
from tests.torch_reference import (
    NUM_CLASSES, assert_eval_parity, flax_outputs, max_diff, nhwc, numpy_state, randomise_,
    run_jitted, template_for, torch_forward)

HW = (80, 72)
TOL = 1e-4


@pytest.fixture(scope="module")
def timm_pair():
  torch.manual_seed(0)
  net = timm.create_model("resnest50d", pretrained=False, num_classes=NUM_CLASSES)
  randomise_(net)  # also gives bn3 (zero-initialised by timm) a non-zero scale
  net.eval()
  model = models.MODELS["resnest50d"].build(NUM_CLASSES, jnp.float32)
  template = template_for(model, HW)
  return net, model, template, torch_to_flax(numpy_state(net), template)


def _shapes(tree) -> dict:
  return {k: v.shape for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
def test_conversion_fills_every_variable_with_the_template_shape(timm_pair):
  _, _, template, variables = timm_pair
  assert _shapes(variables) == _shapes(template)
  attn = variables["params"]["layer2"]["0"]["conv2"]
  assert attn["conv"]["kernel"].shape == (3, 3, 64, 256)  # radix 2 groups of 128 -> 2 x 128
  assert attn["fc1"]["kernel"].shape == (1, 1, 128, 64) and attn["fc2"]["bias"].shape == (256,)
  assert "downsample" in variables["params"]["layer1"]["0"]


@pytest.mark.slow
def test_eval_logits_and_trunk_match_timm(timm_pair, fast_compiles):
  net, model, _, variables = timm_pair
  x = np.random.default_rng(0).standard_normal((2, 3, *HW), dtype=np.float32)
  ref_logits, ref_trunk = torch_forward(net, x, "fc")
  assert_eval_parity(flax_outputs(model, variables, x), ref_logits, ref_trunk, TOL)


@pytest.mark.slow
def test_train_mode_logits_match_timm(timm_pair, fast_compiles):
  net, model, _, variables = timm_pair
  x = np.random.default_rng(1).standard_normal((4, 3, *HW), dtype=np.float32)
  net.train()
  try:
    with torch.no_grad():
      ref = net(torch.from_numpy(x)).numpy()
  finally:
    net.eval()
  logits, _ = run_jitted(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
                         variables, nhwc(x))
  assert max_diff(logits, ref) < TOL


def test_blocks_run_shallow_to_deep_in_timm_order():
  net = timm.create_model("resnest50d", pretrained=False)
  names = [k for k, _ in net.named_parameters()]
  firsts = [min(i for i, n in enumerate(names) if n.split(".")[0] in b.split("|"))
            for b in resnest.BLOCKS]
  assert firsts == sorted(firsts) and firsts[0] == 0
  assert {n.split(".")[0] for n in names} == {"conv1", "bn1", "layer1", "layer2", "layer3",
                                              "layer4", "fc"}


@pytest.mark.slow
def test_init_is_timms():
  model = models.MODELS["resnest50d"].build(NUM_CLASSES, jnp.float32)
  params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  block = params["layer3"]["2"]
  assert not np.any(block["bn3"]["scale"]) and np.all(block["bn1"]["scale"] == 1)
  kernel = np.asarray(block["conv3"]["kernel"])  # (1, 1, 256, 1024): fan-out 1024
  assert abs(kernel.std() - np.sqrt(2 / 1024)) < 0.05 * np.sqrt(2 / 1024)
  with pytest.raises(ValueError, match="config.model.init"):
    models.MODELS["resnest50d"].build(NUM_CLASSES, jnp.float32, init="xavier")


def test_attention_width_is_timms_make_divisible():
  from timm.layers.helpers import make_divisible  # pylint: disable=import-outside-toplevel
  for width in (64, 128, 256, 512, 40, 24):
    assert resnest.attention_width(width) == make_divisible(width * 2 * 0.25, min_value=32,
                                                            divisor=8)


@pytest.mark.slow
def test_convert_and_predict_a_timm_checkpoint(tmp_path, timm_pair, fast_compiles):
  net = timm_pair[0]
  torch.save(net.state_dict(), tmp_path / "resnest50d.pth")
  report = convert.convert_file("resnest50d", tmp_path / "resnest50d.pth", tmp_path / "c",
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


@pytest.mark.slow
def test_a_checkpoint_of_another_variant_names_the_first_mismatch(tmp_path):
  # timm's resnest50d_4s2x40d has the same module names but 80-channel (2 x 40) bottlenecks.
  other = timm.create_model("resnest50d_4s2x40d", pretrained=False)
  torch.save(other.state_dict(), tmp_path / "other.pth")
  model = models.MODELS["resnest50d"].build(1000, jnp.float32)
  template = load.template_variables(model, 64)
  with pytest.raises(load.ShapeMismatchError) as err:
    load.load_pretrained(template, tmp_path / "other.pth", models.MODELS["resnest50d"])
  message = str(err.value)
  assert "\n" not in message  # the stem is the same in both: the first difference is layer1's
  assert message.endswith("params/layer1/0/bn1/bias has shape (80,) in the checkpoint but (64,) "
                          "in the model, and it is not part of the head")


@pytest.mark.slow
def test_registered_name_downloads_converts_and_predicts(tmp_path, monkeypatch, timm_pair,
                                                         fast_compiles):
  # The registered file is timm's, named with its sha256 prefix as torch.hub names files; here a
  # random timm checkpoint stands in for it behind a file:// URL with the same naming.
  assert registry.WEIGHTS["resnest50d"].url == (
      "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-resnest/"
      "resnest50-528c19ca.pth")
  assert registry.WEIGHTS["resnest50d"].sha256 == "528c19ca"
  net = timm.create_model("resnest50d", pretrained=False)  # 1000 classes, as the real file
  randomise_(net)
  net.eval()
  raw = tmp_path / "raw.pth"
  torch.save(net.state_dict(), raw)
  served = tmp_path / "server" / f"resnest50-{download.sha256_of(raw)[:8]}.pth"
  served.parent.mkdir()
  raw.rename(served)
  monkeypatch.setitem(registry.WEIGHTS, "resnest50d",
                      registry.Remote(served.as_uri(), served.name.split("-")[1][:8]))
  monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
  predictor = predict.from_pretrained("resnest50d")
  assert predictor.class_names[0] == predict.imagenet_classes()[0]
  x = np.random.default_rng(3).standard_normal((1, 64, 64, 3), dtype=np.float32)
  with torch.no_grad():
    ref = torch.softmax(net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), -1).numpy()
  assert max_diff(predictor.probabilities(x), ref) < 1e-5
