"""ResNeSt-50d (Zhang et al. 2020, split-attention networks) with timm's module names.

Parameter paths mirror `timm.models.resnest` (`resnest50d`): the deep stem
`conv1/{0,1,3,4,6}` (three 3x3 convs, 32-32-64 channels, the first strided,
BatchNorms `1` and `4`) with `bn1`; `layer1..layer4` of ResNeSt bottlenecks
`layerN/i/{conv1, bn1, conv2, conv3, bn3, downsample}`, where `conv2` is the
split-attention unit (`conv2/{conv, bn0, fc1, bn1, fc2}`) and `downsample`
timm's avg-down projection (`downsample/1` conv, `downsample/2` BatchNorm;
`0` is the parameter-free average pool); the classifier `fc`. Converted timm
checkpoints therefore drop in through `pretrained.layout`.

The block (radix 2, cardinality 1, base width 64, `avd=True`,
`avd_first=False`): 1x1 conv -> split attention over a 3x3 conv with
radix * width channels in radix groups -> in a strided block, a 3x3 average
pool of stride 2 (padding 1, zeros counted, as torch's AvgPool2d) -> 1x1
conv; the shortcut of a block that changes the shape average-pools 2x2
(ceil mode, padding not counted) before its 1x1 conv.

Split attention (timm's `SplitAttn`): the radix branches are summed, pooled
globally, through `fc1` (1x1 conv with bias, BatchNorm, ReLU) and `fc2` into
radix * width logits, softmaxed over the radix axis per channel, and weight
the branches.

Initialisation (`native` and `torch` alike) is timm's: every conv
Kaiming-normal fan-out (fc1/fc2 biases PyTorch's default), BatchNorm
ones/zeros except each block's last (`bn3`), whose scale starts at zero
(`zero_init_last`), `fc` at PyTorch's Linear default.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.layers import BatchNorm, TrainArg, torch_conv
from ftlab.models.mobilenet import check_part
from ftlab.models.pooling import global_avg_pool, max_pool

BLOCKS = ("conv1|bn1", "layer1", "layer2", "layer3", "layer4")
HEAD = "fc"
LAYERS = (3, 4, 6, 3)
STEM_WIDTH = 32
RADIX = 2
ATTN_RATIO, ATTN_MIN, ATTN_DIVISOR = 0.25, 32, 8  # timm's make_divisible(C * radix * 0.25, 32, 8)

INIT = inits.TORCHVISION_RESNET  # Kaiming-normal fan-out convs, Linear at torch's default
conv = functools.partial(torch_conv, kernel_init=INIT.conv)


def attention_width(width: int) -> int:
  """timm's `make_divisible(width * radix * rd_ratio, min_value=32, divisor=8)`."""
  v = width * RADIX * ATTN_RATIO
  new = max(ATTN_MIN, int(v + ATTN_DIVISOR / 2) // ATTN_DIVISOR * ATTN_DIVISOR)
  return new + ATTN_DIVISOR if new < 0.9 * v else new


def avg_pool_3x3_s2(x):
  """torch's AvgPool2d(3, 2, padding=1) (count_include_pad=True)."""
  return nn.avg_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)), count_include_pad=True)


def avg_pool_2x2_ceil(x):
  """torch's AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)."""
  pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
  return nn.avg_pool(x, (2, 2), (2, 2), pad, count_include_pad=False)


class SplitAttention(nn.Module):
  """timm's SplitAttn with radix 2 and one group: `conv`, `bn0`, `fc1`, `bn1`, `fc2`."""
  width: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = nn.Conv(RADIX * self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                feature_group_count=RADIX, dtype=self.dtype, kernel_init=INIT.conv,
                name="conv")(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name="bn0")(y, train))
    branches = y.reshape(*y.shape[:3], RADIX, self.width)  # torch: channel r * width + c
    gap = global_avg_pool(jnp.sum(branches, axis=3))[:, None, None, :]
    attn = attention_width(self.width)
    gap = nn.Conv(attn, (1, 1), dtype=self.dtype, kernel_init=INIT.conv,
                  bias_init=inits.torch_default_bias(self.width), name="fc1")(gap)
    gap = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(gap, train))
    logits = nn.Conv(RADIX * self.width, (1, 1), dtype=self.dtype, kernel_init=INIT.conv,
                     bias_init=inits.torch_default_bias(attn), name="fc2")(gap)
    weights = jax.nn.softmax(logits.reshape(-1, 1, 1, RADIX, self.width).astype(jnp.float32),
                             axis=3).astype(self.dtype)
    return jnp.sum(branches * weights, axis=3)


class Downsample(nn.Module):
  """timm's avg-down shortcut: `0` average pool (when strided), `1` 1x1 conv, `2` BatchNorm."""
  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    if self.stride != 1:
      x = avg_pool_2x2_ceil(x)
    x = conv(self.features, 1, 1, self.dtype, name="1")(x)
    return BatchNorm(dtype=self.dtype, name="2")(x, train)


class Bottleneck(nn.Module):
  """timm's ResNestBottleneck (avd after the split attention); outputs 4 * `planes` channels."""
  planes: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    out = 4 * self.planes
    y = conv(self.planes, 1, 1, self.dtype, name="conv1")(x)
    y = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(y, train))
    y = SplitAttention(self.planes, self.dtype, name="conv2")(y, train)
    if self.stride != 1:
      y = avg_pool_3x3_s2(y)
    y = conv(out, 1, 1, self.dtype, name="conv3")(y)
    y = BatchNorm(dtype=self.dtype, scale_init=nn.initializers.zeros, name="bn3")(y, train)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out:
      shortcut = Downsample(out, self.stride, self.dtype, name="downsample")(x, train)
    return nn.relu(y + shortcut)


class Stage(nn.Module):
  """timm's `layerN` Sequential: blocks '0', '1', ...; the first strides."""
  planes: int
  num_blocks: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    for i in range(self.num_blocks):
      x = Bottleneck(self.planes, self.stride if i == 0 else 1, self.dtype, name=str(i))(x, train)
    return x


class Stem(nn.Module):
  """timm's deep stem `conv1` Sequential: 3x3/2 conv, BN, ReLU, 3x3 conv, BN, ReLU, 3x3 conv."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = conv(STEM_WIDTH, 3, 2, self.dtype, name="0")(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name="1")(x, train))
    x = conv(STEM_WIDTH, 3, 1, self.dtype, name="3")(x)
    x = nn.relu(BatchNorm(dtype=self.dtype, name="4")(x, train))
    return conv(2 * STEM_WIDTH, 3, 1, self.dtype, name="6")(x)


class ResNeSt(nn.Module):
  """timm's ResNeSt-50d.

  Attributes:
    num_classes: size of the `fc` output.
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), pooled trunk features ('trunk'), or head(x) ('head')."""
    check_part(part)
    if part != "head":
      x = self._trunk(x.astype(self.dtype), train)
      if part == "trunk":
        return x
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=INIT.dense,
                 bias_init=INIT.dense_bias(x.shape[-1]), name="fc")(x.astype(self.dtype))
    return x.astype(jnp.float32)

  def _trunk(self, x, train: TrainArg):
    x = Stem(self.dtype, name="conv1")(x, train)
    x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train))
    x = max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    for i, num_blocks in enumerate(LAYERS):
      x = Stage(64 * 2**i, num_blocks, 1 if i == 0 else 2, self.dtype,
                name=f"layer{i + 1}")(x, train)
    return global_avg_pool(x)


def resnest50d(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> ResNeSt:
  inits.check(init)  # native == torch: timm's init
  return ResNeSt(num_classes, dtype)
