"""EfficientNet-Lite0/1/2 with the module names of `efficientnet_lite_pytorch`.

Parameter paths mirror that package's `EfficientNet` state dict: `_conv_stem`,
`_bn0`, `_blocks/N/{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`
(no expansion in block 0, no squeeze-excitation in the Lite variants),
`_conv_head`, `_bn1`, `_fc`.

Architecture as the package builds it for 'efficientnet-liteN':

* ReLU6 everywhere; BatchNorm with eps 1e-3 and PyTorch momentum 0.01;
* stem (32 channels) and head (1280 channels) are not width-scaled, and the
  first and last stages are not depth-scaled either;
* TF 'SAME' padding computed *statically* from the configured image size
  (224/240/260), as `get_same_padding_conv2d(image_size)` does: every conv
  pads by `tf_same_padding(configured size at that depth)` whatever the input
  size, so other input sizes give exactly what the PyTorch model gives;
* residual iff stride 1 and equal widths; drop connect (stochastic depth) in
  training with rate 0.2 * block index / number of blocks.

Initialisation (`scheme`): `native` is TF's original (`inits.TF_EFFICIENTNET`:
convs N(0, 2 / fan_out) with a depthwise kernel's fan_out k*k, `_fc`
U(+-1/sqrt(num_classes)), zero biases), which trained the published weights;
`torch` is PyTorch's layer defaults (`inits.TORCH_DEFAULTS`), which
`efficientnet_lite_pytorch` leaves in place.
"""
import math
from typing import Any, Callable, NamedTuple, Tuple

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.conv import Conv
from ftlab.models.depthwise import DepthwiseConv, tf_same_padding
from ftlab.models.layers import BatchNorm, DropPath, Dropout, TrainArg
from ftlab.models.pooling import global_avg_pool

HEAD = "_fc"
STEM_BLOCK = "_conv_stem|_bn0"
HEAD_BLOCK = "_conv_head|_bn1"
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)

STEM_FEATURES = 32
HEAD_FEATURES = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention: 1 - TF's 0.99
DROP_CONNECT_RATE = 0.2


class StageRow(NamedTuple):
  """One row of the Lite block table (before width/depth scaling)."""
  repeats: int
  kernel: int
  stride: int
  expand: int
  in_features: int
  out_features: int


LITE_STAGES = (
    StageRow(1, 3, 1, 1, 32, 16),
    StageRow(2, 3, 2, 6, 16, 24),
    StageRow(2, 5, 2, 6, 24, 40),
    StageRow(3, 3, 2, 6, 40, 80),
    StageRow(3, 5, 1, 6, 80, 112),
    StageRow(4, 5, 2, 6, 112, 192),
    StageRow(1, 3, 1, 6, 192, 320),
)


class Variant(NamedTuple):
  width: float
  depth: float
  image_size: int
  dropout: float


VARIANTS = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, 0.3),
}


class BlockConfig(NamedTuple):
  """One MBConv block after scaling, with its static padding."""
  kernel: int
  stride: int
  expand: int
  in_features: int
  out_features: int
  pad: Tuple[int, int]


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Scales a channel count by `width`, rounding to a multiple of `divisor` (-10% at most)."""
  scaled = filters * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(index: int, repeats: int, depth: float) -> int:
  """Depth-scaled repeats; the first and last stages keep theirs (Lite)."""
  if index in (0, len(LITE_STAGES) - 1):
    return repeats
  return int(math.ceil(depth * repeats))


def block_configs(width: float, depth: float, image_size: int) -> Tuple[BlockConfig, ...]:
  """The scaled blocks in order, padded for the configured image size."""
  size = -(-image_size // 2)  # after the stride-2 stem
  blocks = []
  for index, stage in enumerate(LITE_STAGES):
    in_features = STEM_FEATURES if index == 0 else round_filters(stage.in_features, width)
    out_features = round_filters(stage.out_features, width)
    for r in range(stage_repeats(index, stage.repeats, depth)):
      stride = stage.stride if r == 0 else 1
      pad = tf_same_padding(size, stage.kernel, stride)
      blocks.append(BlockConfig(stage.kernel, stride, stage.expand,
                                in_features, out_features, pad))
      size = -(-size // stride)
      in_features = out_features
  return tuple(blocks)


def relu6(x):
  return jnp.minimum(jnp.maximum(x, 0), 6)


def conv1x1(features: int, dtype: Any, kernel_init: Callable, name: str) -> Conv:
  return Conv(features, (1, 1), use_bias=False, dtype=dtype,
              kernel_init=kernel_init, name=name)


def batch_norm(dtype: Any, name: str) -> BatchNorm:
  return BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype, name=name)


class DropConnect(DropPath):
  """EfficientNet's name for stochastic depth (`layers.DropPath`); the name keeps its module path."""


class MBConvBlock(nn.Module):
  """Inverted residual: [1x1 expand], depthwise, 1x1 project, each with BN."""
  config: BlockConfig
  drop_connect: float = 0.0
  dtype: Any = jnp.float32
  scheme: inits.Scheme = inits.TF_EFFICIENTNET

  @nn.compact
  def __call__(self, x, train: TrainArg):
    cfg = self.config
    hidden = cfg.in_features * cfg.expand
    y = x
    if cfg.expand != 1:
      y = conv1x1(hidden, self.dtype, self.scheme.conv, "_expand_conv")(y)
      y = relu6(batch_norm(self.dtype, "_bn0")(y, train))
    y = DepthwiseConv(cfg.kernel, cfg.stride, padding=cfg.pad, dtype=self.dtype,
                      kernel_init=self.scheme.depthwise, name="_depthwise_conv")(y)
    y = relu6(batch_norm(self.dtype, "_bn1")(y, train))
    y = conv1x1(cfg.out_features, self.dtype, self.scheme.conv, "_project_conv")(y)
    y = batch_norm(self.dtype, "_bn2")(y, train)
    if cfg.stride == 1 and cfg.in_features == cfg.out_features:
      y = DropConnect(self.drop_connect)(y, train) + x
    return y


class Blocks(nn.Module):
  """The `_blocks` ModuleList: children named '0', '1', ..."""
  configs: Tuple[BlockConfig, ...]
  drop_connect_rate: float = DROP_CONNECT_RATE
  dtype: Any = jnp.float32
  scheme: inits.Scheme = inits.TF_EFFICIENTNET

  @nn.compact
  def __call__(self, x, train: TrainArg):
    n = len(self.configs)
    for i, cfg in enumerate(self.configs):
      rate = self.drop_connect_rate * i / n
      x = MBConvBlock(cfg, rate, self.dtype, self.scheme, name=str(i))(x, train)
    return x


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite; see the module docstring for names and padding.

  Attributes:
    num_classes: classifier outputs.
    width: channel multiplier.
    depth: repeat multiplier.
    image_size: configured input size, which fixes every conv's padding.
    dropout: dropout rate before `_fc`.
    drop_connect_rate: stochastic-depth rate of the last block.
    dtype: computation dtype (parameters stay float32).
    scheme: initialisers (see the module docstring).
  """
  num_classes: int
  width: float = 1.0
  depth: float = 1.0
  image_size: int = 224
  dropout: float = 0.2
  drop_connect_rate: float = DROP_CONNECT_RATE
  dtype: Any = jnp.float32
  scheme: inits.Scheme = inits.TF_EFFICIENTNET

  def trunk(self, x, train: TrainArg):
    pad = tf_same_padding(self.image_size, 3, 2)
    x = Conv(STEM_FEATURES, (3, 3), (2, 2), padding=(pad, pad), use_bias=False,
             dtype=self.dtype, kernel_init=self.scheme.conv, name="_conv_stem")(x)
    x = relu6(batch_norm(self.dtype, "_bn0")(x, train))
    configs = block_configs(self.width, self.depth, self.image_size)
    x = Blocks(configs, self.drop_connect_rate, self.dtype, self.scheme, name="_blocks")(x, train)
    x = conv1x1(HEAD_FEATURES, self.dtype, self.scheme.conv, "_conv_head")(x)
    x = relu6(batch_norm(self.dtype, "_bn1")(x, train))
    return global_avg_pool(x)

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), pooled trunk features ('trunk'), or head(x) ('head')."""
    if part not in ("all", "trunk", "head"):
      raise ValueError(f"part must be 'all', 'trunk' or 'head', got {part!r}")
    if part != "head":
      x = self.trunk(x.astype(self.dtype), train)
      if part == "trunk":
        return x
    x = Dropout(self.dropout)(x.astype(self.dtype), train)
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=self.scheme.dense,
                 bias_init=self.scheme.dense_bias(x.shape[-1]), name="_fc")(x)
    return x.astype(jnp.float32)


def build(name: str, num_classes: int, dtype: Any = jnp.float32, init: str = "native",
          **overrides) -> EfficientNetLite:
  """The registered variant `name` ('efficientnet_lite0'...) with optional overrides."""
  variant = VARIANTS[name]._asdict()
  variant.update(overrides)
  scheme = inits.select(init, native=inits.TF_EFFICIENTNET, torch=inits.TORCH_DEFAULTS)
  return EfficientNetLite(num_classes, dtype=dtype, scheme=scheme, **variant)


def efficientnet_lite0(num_classes: int, dtype: Any = jnp.float32,
                       init: str = "native") -> EfficientNetLite:
  return build("efficientnet_lite0", num_classes, dtype, init)


def efficientnet_lite1(num_classes: int, dtype: Any = jnp.float32,
                       init: str = "native") -> EfficientNetLite:
  return build("efficientnet_lite1", num_classes, dtype, init)


def efficientnet_lite2(num_classes: int, dtype: Any = jnp.float32,
                       init: str = "native") -> EfficientNetLite:
  return build("efficientnet_lite2", num_classes, dtype, init)


def block_names(name: str) -> tuple:
  """`ModelSpec.blocks` of variant `name`: stem, each `_blocks/N`, head conv."""
  v = VARIANTS[name]
  n = len(block_configs(v.width, v.depth, v.image_size))
  return (STEM_BLOCK,) + tuple(f"_blocks/{i}" for i in range(n)) + (HEAD_BLOCK,)
