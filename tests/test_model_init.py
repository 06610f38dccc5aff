"""`config.model.init`: each architecture's random initialisation, layer type by layer type.

Every check is a formula (a normal's std, a uniform's bound) applied to one
representative parameter of each layer type (conv, depthwise conv, dense
weight and bias, BatchNorm). Where a PyTorch original can be built here
(torchvision's models; `efficientnet_lite_pytorch` for EfficientNet-Lite
`torch`), the same check is applied to its freshly constructed parameter of
the same name, so the formulas are PyTorch's, not only ours. TF's EfficientNet
initialisers are checked by formula (tensorflow/tpu efficientnet_model.py:
conv N(0, 2 / (kh*kw*out_filters)), out_filters 1 for depthwise kernels;
dense U(+-1/sqrt(units)), zero biases).
"""
import math

from efficientnet_lite_pytorch import EfficientNet
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

from configs import default
from ftlab import models
from ftlab.models import convnext, densenet, vit
from ftlab.training import state


NUM_CLASSES = 1000  # enough dense biases for their bound to show
# RBG keys compile far faster than threefry (seconds per model); the
# distributions are the same.
KEY = jax.random.key(0, impl="rbg")


def init_flat(model, size: int = 32) -> dict:
  """'params/...' and 'batch_stats/...' arrays of a real init at `size`x`size`."""
  x = jnp.zeros((1, size, size, 3), jnp.float32)
  variables = jax.jit(lambda r: model.init(r, x, train=False))(KEY)
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(variables).items()}


def torch_flat(net: torch.nn.Module) -> dict:
  """`net`'s state dict under Flax names ('params/a/b/kernel', 'batch_stats/a/mean')."""
  flat = {}
  for name, value in net.state_dict().items():
    *path, leaf = name.split(".")
    if leaf == "num_batches_tracked":
      continue
    if leaf.startswith("running_"):
      key = "batch_stats/" + "/".join(path) + "/" + leaf[len("running_"):]
    elif leaf == "weight":  # a BatchNorm's weight is its scale
      key = "params/" + "/".join(path) + ("/scale" if value.ndim == 1 else "/kernel")
    else:  # a bias, or a bare parameter such as ViT's class_token
      key = "/".join(["params", *path, leaf])
    flat[key] = value.detach().numpy()
  return flat


def normal(std: float):
  """Check: N(0, std^2), not truncated."""
  def check(w):
    w = np.asarray(w, np.float64).ravel()
    assert abs(w.std() / std - 1) < 0.05, (w.std(), std)
    assert abs(w.mean()) < 5 * std / math.sqrt(w.size), w.mean()
    # Flax's truncated normals stop at 2.27 std; these layers hold > 400 values.
    assert np.abs(w).max() > 2.5 * std, (np.abs(w).max(), std)
  return check


def uniform(bound: float):
  """Check: U(-bound, bound)."""
  def check(w):
    w = np.asarray(w, np.float64).ravel()
    assert np.abs(w).max() <= bound * (1 + 1e-6), (np.abs(w).max(), bound)
    assert np.abs(w).max() > 0.97 * bound, (np.abs(w).max(), bound)
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.05, (w.std(), bound)
  return check


def constant(value: float):
  def check(w):
    np.testing.assert_array_equal(w, value)
  return check


def fresh_bn(path: str) -> dict:
  """Checks of a BatchNorm at `path`: scale 1, bias 0, running mean 0, variance 1."""
  return {f"params/{path}/scale": constant(1.0), f"params/{path}/bias": constant(0.0),
          f"batch_stats/{path}/mean": constant(0.0), f"batch_stats/{path}/var": constant(1.0)}


def check_all(flat: dict, checks: dict, source: str) -> None:
  for key, check in checks.items():
    try:
      check(flat[key])
    except AssertionError as e:
      raise AssertionError(f"{source} {key}: {e}") from e


def kaiming_fan_out(kh: int, kw: int, out: int):
  return normal(math.sqrt(2 / (kh * kw * out)))


def torch_default(fan_in: int):
  return uniform(1 / math.sqrt(fan_in))


RESNET18 = {
    "params/conv1/kernel": kaiming_fan_out(7, 7, 64),
    "params/layer4/1/conv2/kernel": kaiming_fan_out(3, 3, 512),
    "params/layer2/0/downsample/0/kernel": kaiming_fan_out(1, 1, 128),
    **fresh_bn("layer3/1/bn2"),
    "params/fc/kernel": torch_default(512),
    "params/fc/bias": torch_default(512),
}
MOBILENET_V3_SMALL = {
    "params/features/10/block/0/0/kernel": kaiming_fan_out(1, 1, 576),
    "params/features/10/block/1/0/kernel": kaiming_fan_out(5, 5, 576),  # depthwise: C*k*k
    "params/features/10/block/2/fc1/kernel": kaiming_fan_out(1, 1, 144),
    "params/features/10/block/2/fc1/bias": constant(0.0),
    **fresh_bn("features/10/block/1/1"),
    "params/classifier/0/kernel": normal(0.01),
    "params/classifier/0/bias": constant(0.0),
    "params/classifier/3/kernel": normal(0.01),
    "params/classifier/3/bias": constant(0.0),
}
SMALL_DENSENET = {  # block_config (1, 1, 1, 1): 68 features enter the classifier
    "params/features/conv0/kernel": normal(math.sqrt(2 / (7 * 7 * 3))),
    "params/features/denseblock2/denselayer1/conv1/kernel": normal(math.sqrt(2 / 48)),
    "params/features/denseblock2/denselayer1/conv2/kernel": normal(math.sqrt(2 / (9 * 128))),
    **fresh_bn("features/norm5"),
    "params/classifier/kernel": torch_default(68),
    "params/classifier/bias": constant(0.0),
}
SMALL_CONVNEXT = {  # one CNBlock per stage; trunc_normal_(std=0.02) cuts at +-2 = 100 std
    "params/features/0/0/kernel": normal(0.02),
    "params/features/0/0/bias": constant(0.0),
    "params/features/0/1/scale": constant(1.0),
    "params/features/1/0/block/0/kernel": normal(0.02),  # depthwise 7x7
    "params/features/1/0/block/0/bias": constant(0.0),
    "params/features/1/0/block/2/scale": constant(1.0),
    "params/features/1/0/block/2/bias": constant(0.0),
    "params/features/1/0/block/3/kernel": normal(0.02),
    "params/features/1/0/block/5/bias": constant(0.0),
    "params/features/1/0/layer_scale": constant(np.float32(1e-6)),
    "params/features/2/1/kernel": normal(0.02),
    "params/classifier/0/scale": constant(1.0),
    "params/classifier/2/kernel": normal(0.02),
    "params/classifier/2/bias": constant(0.0),
}
VIT_D, VIT_MLP = 384, 1536  # ViT-S widths, one layer, at 32 px (a 2x2 grid)
SMALL_VIT = {
    "params/conv_proj/kernel": normal(math.sqrt(1 / (3 * 16 * 16))),
    "params/conv_proj/bias": constant(0.0),
    "params/class_token": constant(0.0),
    "params/encoder/pos_embedding": normal(0.02),
    "params/encoder/layers/encoder_layer_0/self_attention/in_proj_weight":
        uniform(math.sqrt(6 / (VIT_D + 3 * VIT_D))),  # Xavier on (3D, D)
    "params/encoder/layers/encoder_layer_0/self_attention/in_proj_bias": constant(0.0),
    "params/encoder/layers/encoder_layer_0/self_attention/out_proj/kernel": torch_default(VIT_D),
    "params/encoder/layers/encoder_layer_0/self_attention/out_proj/bias": constant(0.0),
    "params/encoder/layers/encoder_layer_0/mlp/0/kernel": uniform(math.sqrt(6 / (VIT_D + VIT_MLP))),
    "params/encoder/layers/encoder_layer_0/mlp/0/bias": normal(1e-6),
    "params/encoder/layers/encoder_layer_0/mlp/3/kernel": uniform(math.sqrt(6 / (VIT_D + VIT_MLP))),
    "params/encoder/layers/encoder_layer_0/ln_1/scale": constant(1.0),
    "params/encoder/layers/encoder_layer_0/ln_1/bias": constant(0.0),
    "params/encoder/ln/scale": constant(1.0),
    "params/heads/head/kernel": constant(0.0),
    "params/heads/head/bias": constant(0.0),
}
TORCHVISION = {
    "convnext": (lambda: convnext.ConvNeXt(NUM_CLASSES, (1, 1, 1, 1)),
                 lambda: torchvision.models.ConvNeXt(
                     [torchvision.models.convnext.CNBlockConfig(c, o, 1)
                      for c, o in zip(convnext.WIDTHS, convnext.WIDTHS[1:] + (None,))],
                     num_classes=NUM_CLASSES),
                 SMALL_CONVNEXT),
    "resnet18": (lambda: models.get_spec("resnet18").build(NUM_CLASSES, jnp.float32),
                 lambda: torchvision.models.resnet18(num_classes=NUM_CLASSES), RESNET18),
    "mobilenet_v3_small": (
        lambda: models.get_spec("mobilenet_v3_small").build(NUM_CLASSES, jnp.float32),
        lambda: torchvision.models.mobilenet_v3_small(num_classes=NUM_CLASSES),
        MOBILENET_V3_SMALL),
    "densenet": (lambda: densenet.DenseNet(NUM_CLASSES, block_config=(1, 1, 1, 1)),
                 lambda: torchvision.models.DenseNet(block_config=(1, 1, 1, 1),
                                                     num_classes=NUM_CLASSES),
                 SMALL_DENSENET),
    "vit": (lambda: vit.VisionTransformer(NUM_CLASSES, vit.VARIANTS["vit_s_16"]._replace(layers=1)),
            lambda: torchvision.models.VisionTransformer(32, 16, 1, 6, VIT_D, VIT_MLP,
                                                         num_classes=NUM_CLASSES),
            SMALL_VIT),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_models_start_as_torchvision_does(name):
  ours, theirs, checks = TORCHVISION[name]
  torch.manual_seed(0)
  check_all(torch_flat(theirs()), checks, "torchvision")
  check_all(init_flat(ours()), checks, "ftlab")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in models.MODELS
                                  if not n.startswith(("tiny", "efficientnet"))])
def test_torchvision_models_native_is_torch(name):
  spec = models.get_spec(name)
  assert spec.build(10, jnp.float32, "torch") == spec.build(10, jnp.float32, "native")


LITE0_NATIVE = {  # TF's conv_kernel_initializer / dense_kernel_initializer
    "params/_conv_stem/kernel": kaiming_fan_out(3, 3, 32),
    "params/_blocks/12/_expand_conv/kernel": kaiming_fan_out(1, 1, 1152),
    "params/_blocks/12/_depthwise_conv/kernel": normal(math.sqrt(2 / (5 * 5))),
    "params/_blocks/15/_depthwise_conv/kernel": normal(math.sqrt(2 / (3 * 3))),
    "params/_conv_head/kernel": kaiming_fan_out(1, 1, 1280),
    **fresh_bn("_blocks/12/_bn1"),
    "params/_fc/kernel": uniform(1 / math.sqrt(NUM_CLASSES)),
    "params/_fc/bias": constant(0.0),
}
LITE0_TORCH = {  # PyTorch's Conv2d / Linear defaults: U(+-1/sqrt(in / groups * k * k))
    "params/_conv_stem/kernel": torch_default(3 * 3 * 3),
    "params/_blocks/12/_expand_conv/kernel": torch_default(192),
    "params/_blocks/12/_depthwise_conv/kernel": torch_default(5 * 5),
    "params/_blocks/15/_depthwise_conv/kernel": torch_default(3 * 3),
    "params/_conv_head/kernel": torch_default(320),
    **fresh_bn("_blocks/12/_bn1"),
    "params/_fc/kernel": torch_default(1280),
    "params/_fc/bias": torch_default(1280),
}


def lite0(init: str):
  return models.get_spec("efficientnet_lite0").build(NUM_CLASSES, jnp.float32, init)


@pytest.mark.slow
def test_lite_native_is_tf_efficientnet():
  check_all(init_flat(lite0("native")), LITE0_NATIVE, "ftlab")


@pytest.mark.slow
def test_lite_torch_is_efficientnet_lite_pytorch():
  torch.manual_seed(0)
  net = EfficientNet.from_name("efficientnet-lite0", num_classes=NUM_CLASSES)
  check_all(torch_flat(net), LITE0_TORCH, "efficientnet_lite_pytorch")
  check_all(init_flat(lite0("torch")), LITE0_TORCH, "ftlab")


def test_tiny_cnn_native_is_flax_torch_is_pytorch():
  spec = models.get_spec("tiny_cnn")
  native = init_flat(spec.build(NUM_CLASSES, jnp.float32, "native"))
  torch_ = init_flat(spec.build(NUM_CLASSES, jnp.float32, "torch"))
  kernel = native["params/layer2/conv/kernel"]  # (3, 3, 16, 32): truncated N(0, 1 / fan_in)
  assert abs(kernel.std() * math.sqrt(9 * 16) - 1) < 0.05
  assert np.abs(kernel).max() < 2.3 / math.sqrt(9 * 16)
  np.testing.assert_array_equal(native["params/fc/bias"], 0.0)
  check_all(torch_, {"params/layer2/conv/kernel": torch_default(9 * 16),
                     **fresh_bn("layer2/bn"),
                     "params/fc/kernel": torch_default(32),
                     "params/fc/bias": torch_default(32)}, "ftlab")


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_unknown_init_is_an_error_naming_the_key(name):
  message = r"^config\.model\.init='tf'; use one of \['native', 'torch'\]$"
  with pytest.raises(ValueError, match=message):
    models.get_spec(name).build(10, jnp.float32, "tf")


def test_build_setup_reads_config_model_init():
  config = default.get_config()
  config.model.name = "tiny_cnn"
  config.model.init = "xavier"
  with pytest.raises(ValueError, match=r"config\.model\.init='xavier'"):
    state.build_setup(config, 10, 10, 0, 5)
