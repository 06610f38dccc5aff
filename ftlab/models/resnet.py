"""ResNet-18/34/50 with torchvision's module names.

Parameter paths mirror `torchvision.models.resnet` (`conv1`, `bn1`,
`layer1/0/conv1`, `layer1/0/downsample/0`, `fc`), so
`pretrained.layout.torch_to_flax` converts its checkpoints directly. As in
torchvision (ResNet v1.5), a Bottleneck block strides in its 3x3 conv.

Initialisation (`native` and `torch` alike) is torchvision's: Kaiming-normal
fan-out convs, BatchNorm ones/zeros, `fc` at PyTorch's Linear default
(`inits.TORCHVISION_RESNET`).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits, parts
from ftlab.models.layers import BatchNorm, TrainArg, torch_conv
from ftlab.models.pooling import global_avg_pool, max_pool

BLOCKS = ("conv1|bn1", "layer1", "layer2", "layer3", "layer4")
HEAD = "fc"

INIT = inits.TORCHVISION_RESNET
conv = functools.partial(torch_conv, kernel_init=INIT.conv)


class Downsample(nn.Module):
  """The shortcut projection: torchvision's `downsample` Sequential (1x1 conv, BN)."""
  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = conv(self.features, 1, self.stride, self.dtype, name="0")(x)
    return BatchNorm(dtype=self.dtype, name="1")(x, train)


def shortcut(x, features: int, stride: int, dtype: Any, train: TrainArg):
  """Identity, or a `downsample` projection when the shape changes (as torchvision)."""
  if stride != 1 or x.shape[-1] != features:
    return Downsample(features, stride, dtype, name="downsample")(x, train)
  return x


class BasicBlock(nn.Module):
  """Two 3x3 convs (ResNet-18/34); outputs `planes` channels."""
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = conv(self.planes, 3, self.stride, self.dtype, name="conv1")(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(y, train))
    y = conv(self.planes, 3, 1, self.dtype, name="conv2")(y)
    y = BatchNorm(dtype=self.dtype, name="bn2")(y, train)
    return nn.relu(y + shortcut(x, self.planes, self.stride, self.dtype, train))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 convs (ResNet-50); outputs 4 * `planes` channels."""
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    out = 4 * self.planes
    y = conv(self.planes, 1, 1, self.dtype, name="conv1")(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(y, train))
    y = conv(self.planes, 3, self.stride, self.dtype, name="conv2")(y)
    y = nn.relu(BatchNorm(dtype=self.dtype, name="bn2")(y, train))
    y = conv(out, 1, 1, self.dtype, name="conv3")(y)
    y = BatchNorm(dtype=self.dtype, name="bn3")(y, train)
    return nn.relu(y + shortcut(x, out, self.stride, self.dtype, train))


class ResLayer(nn.Module):
  """torchvision's `layerN` Sequential: blocks named '0', '1', ...; the first strides."""
  block: Any
  planes: int
  num_blocks: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    for i in range(self.num_blocks):
      stride = self.stride if i == 0 else 1
      x = self.block(self.planes, stride, self.dtype, name=str(i))(x, train)
    return x


class ResNet(nn.Module):
  """A torchvision ResNet.

  Attributes:
    num_classes: size of the `fc` output.
    block: `BasicBlock` or `Bottleneck`.
    layers: number of blocks in layer1..layer4.
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  block: Any
  layers: Sequence[int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part="all"):
    """Logits ('all'), pooled trunk features ('trunk'), head(x) ('head'), or a piece
    cut at a block boundary (('upto', n) / ('from', n), models/parts.py)."""
    def head(x):
      x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=INIT.dense,
                   bias_init=INIT.dense_bias(x.shape[-1]), name="fc")(x.astype(self.dtype))
      return x.astype(jnp.float32)

    stages = self._stages(train)
    if parts.is_boundary(part):
      return parts.run(x, part, stages, lambda x: head(global_avg_pool(x)))
    if part not in ("all", "trunk", "head"):
      raise ValueError(f"part must be 'all', 'trunk' or 'head', got {part!r}")
    if part != "head":
      for stage in stages:
        x = stage(x)
      x = global_avg_pool(x)
      if part == "trunk":
        return x
    return head(x)

  def _stages(self, train: TrainArg) -> list:
    """One callable per entry of BLOCKS: the stem (conv1, bn1, max pool), then layer1..4."""
    def stem(x):
      x = conv(64, 7, 2, self.dtype, name="conv1")(x.astype(self.dtype))
      x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train))
      return max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))

    def layer(i, num_blocks):
      return lambda x: ResLayer(self.block, 64 * 2**i, num_blocks, 1 if i == 0 else 2,
                                self.dtype, name=f"layer{i + 1}")(x, train)

    return [stem] + [layer(i, n) for i, n in enumerate(self.layers)]


def resnet18(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> ResNet:
  inits.check(init)  # native == torch: torchvision's init
  return ResNet(num_classes, BasicBlock, (2, 2, 2, 2), dtype)


def resnet34(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> ResNet:
  inits.check(init)  # native == torch: torchvision's init
  return ResNet(num_classes, BasicBlock, (3, 4, 6, 3), dtype)


def resnet50(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> ResNet:
  inits.check(init)  # native == torch: torchvision's init
  return ResNet(num_classes, Bottleneck, (3, 4, 6, 3), dtype)
