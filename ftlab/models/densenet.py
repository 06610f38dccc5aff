"""DenseNet-121 with torchvision's module names.

Parameter paths mirror `torchvision.models.densenet`: `features/conv0`,
`features/norm0`, `features/denseblock1/denselayer1/norm1`,
`features/transition1/conv`, `features/norm5`, `classifier`. torchvision's
DenseNet-121 has no dropout (drop_rate 0), so neither does this one.

Note: torchvision's own loader renames legacy checkpoint keys
(`denselayer1.norm.1` -> `denselayer1.norm1`); state dicts taken from a
torchvision model (`model.state_dict()`) already use the new names.

Initialisation (`native` and `torch` alike) is torchvision's: Kaiming-normal
fan-in convs (not truncated), BatchNorm ones/zeros, `classifier` weight at
PyTorch's Linear default with zero bias (`inits.TORCHVISION_DENSENET`).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.layers import BatchNorm, TrainArg, torch_conv
from ftlab.models.pooling import global_avg_pool, max_pool

HEAD = "classifier"
INIT = inits.TORCHVISION_DENSENET
BLOCKS = (
    "features/(conv0|norm0)",
    "features/denseblock1", "features/transition1",
    "features/denseblock2", "features/transition2",
    "features/denseblock3", "features/transition3",
    "features/(denseblock4|norm5)",
)


def conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
  """torchvision initialises DenseNet convs with Kaiming fan-in."""
  return torch_conv(features, kernel, stride, dtype, name, INIT.conv)


class DenseLayer(nn.Module):
  """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv; returns the input with `growth` channels appended."""
  growth: int
  bn_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = nn.relu(BatchNorm(dtype=self.dtype, name="norm1")(x, train))
    y = conv(self.bn_size * self.growth, 1, 1, self.dtype, name="conv1")(y)
    y = nn.relu(BatchNorm(dtype=self.dtype, name="norm2")(y, train))
    y = conv(self.growth, 3, 1, self.dtype, name="conv2")(y)
    return jnp.concatenate([x, y], axis=-1)


class DenseBlock(nn.Module):
  """`denseblockN`: layers named 'denselayer1', 'denselayer2', ..."""
  num_layers: int
  growth: int
  bn_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    for i in range(self.num_layers):
      x = DenseLayer(self.growth, self.bn_size, self.dtype, name=f"denselayer{i + 1}")(x, train)
    return x


class Transition(nn.Module):
  """`transitionN`: BN, ReLU, 1x1 conv halving the channels, 2x2 average pool."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = nn.relu(BatchNorm(dtype=self.dtype, name="norm")(x, train))
    x = conv(x.shape[-1] // 2, 1, 1, self.dtype, name="conv")(x)
    return nn.avg_pool(x, (2, 2), (2, 2))


class DenseFeatures(nn.Module):
  """DenseNet `features`: stem, dense blocks with transitions between, `norm5`."""
  block_config: Sequence[int]
  growth: int
  num_init_features: int
  bn_size: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = conv(self.num_init_features, 7, 2, self.dtype, name="conv0")(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name="norm0")(x, train))
    x = max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for i, num_layers in enumerate(self.block_config):
      x = DenseBlock(num_layers, self.growth, self.bn_size, self.dtype,
                     name=f"denseblock{i + 1}")(x, train)
      if i != len(self.block_config) - 1:
        x = Transition(self.dtype, name=f"transition{i + 1}")(x, train)
    return BatchNorm(dtype=self.dtype, name="norm5")(x, train)


class DenseNet(nn.Module):
  """A torchvision DenseNet-BC.

  Attributes:
    num_classes: size of the `classifier` output.
    block_config: dense layers per block.
    growth: channels each dense layer adds.
    num_init_features: stem width.
    bn_size: bottleneck width as a multiple of `growth`.
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  block_config: Sequence[int] = (6, 12, 24, 16)
  growth: int = 32
  num_init_features: int = 64
  bn_size: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), pooled trunk features ('trunk'), or head(x) ('head')."""
    if part not in ("all", "trunk", "head"):
      raise ValueError(f"part must be 'all', 'trunk' or 'head', got {part!r}")
    if part != "head":
      x = DenseFeatures(self.block_config, self.growth, self.num_init_features,
                        self.bn_size, self.dtype, name="features")(x.astype(self.dtype), train)
      x = global_avg_pool(nn.relu(x))
      if part == "trunk":
        return x
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=INIT.dense,
                 bias_init=INIT.dense_bias(x.shape[-1]), name="classifier")(x.astype(self.dtype))
    return x.astype(jnp.float32)


def densenet121(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> DenseNet:
  inits.check(init)  # native == torch: torchvision's init
  return DenseNet(num_classes, dtype=dtype)
