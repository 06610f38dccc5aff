"""MobileNetV2 and MobileNetV3-Small/Large with torchvision's module names.

Parameter paths mirror `torchvision.models.mobilenetv2` / `mobilenetv3`:
`features/0/0` (stem conv), `features/1/conv/0/0` (V2) or
`features/1/block/0/0` (V3), `features/4/block/2/fc1` (V3 squeeze-excitation),
`classifier/1` (V2) or `classifier/0`, `classifier/3` (V3). Every depthwise
conv is a `DepthwiseConv`; activations are written as torch defines them.

Initialisation (`native` and `torch` alike) is torchvision's: Kaiming-normal
fan-out convs, depthwise ones included (fan-out C*k*k), zero conv biases,
BatchNorm ones/zeros, Linear layers N(0, 0.01^2) with zero bias
(`inits.TORCHVISION_MOBILENET`).
"""
import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.conv import Conv
from ftlab.models.depthwise import DepthwiseConv
from ftlab.models.layers import BatchNorm, Dropout, TrainArg
from ftlab.models.pooling import global_avg_pool

HEAD = "classifier"
V3_BN_MOMENTUM = 0.01  # torchvision's MobileNetV3 (PyTorch convention)
V3_BATCH_NORM = functools.partial(BatchNorm, epsilon=1e-3, momentum=V3_BN_MOMENTUM)
INIT = inits.TORCHVISION_MOBILENET


def relu6(x):
  """torch.nn.ReLU6: min(max(x, 0), 6)."""
  return jnp.minimum(jnp.maximum(x, 0), 6)


def hardsigmoid(x):
  """torch.nn.Hardsigmoid: relu6(x + 3) / 6."""
  return relu6(x + 3) / 6


def hardswish(x):
  """torch.nn.Hardswish: x * relu6(x + 3) / 6."""
  return x * relu6(x + 3) / 6


def make_divisible(v: float, divisor: int = 8) -> int:
  """Rounds `v` to a multiple of `divisor`, losing at most 10% (TF-slim rule)."""
  rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * v else rounded


def conv1x1(features: int, dtype: Any, name: str, use_bias: bool = False) -> Conv:
  return Conv(features, (1, 1), use_bias=use_bias, dtype=dtype,
              kernel_init=INIT.conv, name=name)


def linear(features: int, fan_in: int, dtype: Any, name: str) -> nn.Dense:
  """A torchvision MobileNet `nn.Linear` with `fan_in` inputs."""
  return nn.Dense(features, dtype=dtype, kernel_init=INIT.dense,
                  bias_init=INIT.dense_bias(fan_in), name=name)


class ConvBNAct(nn.Module):
  """torchvision's Conv2dNormActivation: conv '0', BatchNorm '1', activation.

  Attributes:
    features: output channels; for `depthwise` they must equal the input's.
    kernel: square kernel size, padded symmetrically by (kernel - 1) // 2.
    stride: conv stride.
    depthwise: use a `DepthwiseConv` (torch groups == channels).
    act: activation applied after BatchNorm, or None.
    norm: BatchNorm constructor (carries eps and momentum).
    dtype: computation dtype.
  """
  features: int
  kernel: int = 1
  stride: int = 1
  depthwise: bool = False
  act: Optional[Callable] = None
  norm: Callable[..., nn.Module] = BatchNorm
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    p = (self.kernel - 1) // 2
    if self.depthwise:
      if x.shape[-1] != self.features:
        raise ValueError(f"depthwise conv maps {x.shape[-1]} channels to {self.features}")
      x = DepthwiseConv(self.kernel, self.stride, padding=p, dtype=self.dtype,
                        kernel_init=INIT.depthwise, name="0")(x)
    else:
      x = Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
               padding=((p, p), (p, p)), use_bias=False, dtype=self.dtype,
               kernel_init=INIT.conv, name="0")(x)
    x = self.norm(dtype=self.dtype, name="1")(x, train)
    return x if self.act is None else self.act(x)


def avg_pool_all(x, keepdims: bool = False):
  """Adaptive average pooling to 1x1 over the spatial axes of NHWC `x` (see pooling.py)."""
  pooled = global_avg_pool(x)
  return pooled[:, None, None, :] if keepdims else pooled


def check_part(part: str):
  if part not in ("all", "trunk", "head"):
    raise ValueError(f"part must be 'all', 'trunk' or 'head', got {part!r}")


# ----------------------------------------------------------------- MobileNetV2

V2_SETTING = (  # expand ratio t, channels c, repeats n, first stride s
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class V2Conv(nn.Module):
  """The `conv` Sequential of a V2 inverted residual: [expand], depthwise, 1x1, BN."""
  features: int
  stride: int
  expand_ratio: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    hidden = int(round(x.shape[-1] * self.expand_ratio))
    i = 0
    if self.expand_ratio != 1:
      x = ConvBNAct(hidden, act=relu6, dtype=self.dtype, name="0")(x, train)
      i = 1
    x = ConvBNAct(hidden, 3, self.stride, depthwise=True, act=relu6, dtype=self.dtype,
                  name=str(i))(x, train)
    x = conv1x1(self.features, self.dtype, name=str(i + 1))(x)
    return BatchNorm(dtype=self.dtype, name=str(i + 2))(x, train)


class V2InvertedResidual(nn.Module):
  """torchvision's mobilenetv2.InvertedResidual (residual iff stride 1 and same width)."""
  features: int
  stride: int
  expand_ratio: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = V2Conv(self.features, self.stride, self.expand_ratio, self.dtype, name="conv")(x, train)
    return x + y if self.stride == 1 and x.shape[-1] == self.features else y


class V2Features(nn.Module):
  """MobileNetV2 `features`: stem '0', inverted residuals '1'..'17', 1x1 conv '18'."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = ConvBNAct(32, 3, 2, act=relu6, dtype=self.dtype, name="0")(x, train)
    index = 1
    for t, c, n, s in V2_SETTING:
      for i in range(n):
        x = V2InvertedResidual(c, s if i == 0 else 1, t, self.dtype, name=str(index))(x, train)
        index += 1
    return ConvBNAct(1280, act=relu6, dtype=self.dtype, name=str(index))(x, train)


class V2Classifier(nn.Module):
  """MobileNetV2 `classifier`: Dropout '0', Linear '1'."""
  num_classes: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = Dropout(self.dropout, name="0")(x, train)
    return linear(self.num_classes, x.shape[-1], self.dtype, name="1")(x)


class MobileNetV2(nn.Module):
  """torchvision's MobileNetV2 (width 1.0); see the module docstring for names."""
  num_classes: int
  dropout: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), pooled trunk features ('trunk'), or head(x) ('head')."""
    check_part(part)
    if part != "head":
      x = avg_pool_all(V2Features(self.dtype, name="features")(x.astype(self.dtype), train))
      if part == "trunk":
        return x
    x = V2Classifier(self.num_classes, self.dropout, self.dtype, name="classifier")(
        x.astype(self.dtype), train)
    return x.astype(jnp.float32)


V2_BLOCKS = tuple(f"features/{i}" for i in range(19))


def mobilenet_v2(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> MobileNetV2:
  inits.check(init)  # native == torch: torchvision's init
  return MobileNetV2(num_classes, dtype=dtype)


# ----------------------------------------------------------------- MobileNetV3


class V3Config(NamedTuple):
  """One row of torchvision's inverted_residual_setting (width multiplier 1)."""
  kernel: int
  expanded: int
  out: int
  use_se: bool
  use_hs: bool
  stride: int


def _rows(*rows) -> tuple:
  return tuple(V3Config(k, e, o, se, act == "HS", s) for k, e, o, se, act, s in rows)


V3_LARGE = _rows(
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1), (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1))
V3_SMALL = _rows(
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1), (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1))


class SqueezeExcitation(nn.Module):
  """torchvision's SqueezeExcitation with ReLU and Hardsigmoid (1x1 convs fc1, fc2)."""
  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = avg_pool_all(x, keepdims=True)
    s = nn.relu(conv1x1(self.squeeze, self.dtype, name="fc1", use_bias=True)(s))
    s = conv1x1(x.shape[-1], self.dtype, name="fc2", use_bias=True)(s)
    return hardsigmoid(s) * x


class V3Block(nn.Module):
  """The `block` Sequential of a V3 inverted residual: [expand], depthwise, [SE], project."""
  config: V3Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    cfg = self.config
    act = hardswish if cfg.use_hs else nn.relu
    layer = functools.partial(ConvBNAct, norm=V3_BATCH_NORM, dtype=self.dtype)
    names = iter(str(i) for i in range(4))
    if cfg.expanded != x.shape[-1]:
      x = layer(cfg.expanded, act=act, name=next(names))(x, train)
    x = layer(cfg.expanded, cfg.kernel, cfg.stride, depthwise=True, act=act,
              name=next(names))(x, train)
    if cfg.use_se:
      squeeze = make_divisible(cfg.expanded // 4)
      x = SqueezeExcitation(squeeze, self.dtype, name=next(names))(x)
    return layer(cfg.out, name=next(names))(x, train)


class V3InvertedResidual(nn.Module):
  """torchvision's mobilenetv3.InvertedResidual (residual iff stride 1 and same width)."""
  config: V3Config
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = V3Block(self.config, self.dtype, name="block")(x, train)
    return x + y if self.config.stride == 1 and x.shape[-1] == self.config.out else y


class V3Features(nn.Module):
  """MobileNetV3 `features`: stem '0', inverted residuals, 1x1 conv to 6x width last."""
  setting: Sequence[V3Config]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    layer = functools.partial(ConvBNAct, act=hardswish, norm=V3_BATCH_NORM, dtype=self.dtype)
    x = layer(16, 3, 2, name="0")(x, train)
    for i, cfg in enumerate(self.setting):
      x = V3InvertedResidual(cfg, self.dtype, name=str(i + 1))(x, train)
    last = 6 * self.setting[-1].out
    return layer(last, name=str(len(self.setting) + 1))(x, train)


class V3Classifier(nn.Module):
  """MobileNetV3 `classifier`: Linear '0', Hardswish, Dropout '2', Linear '3'."""
  num_classes: int
  hidden: int
  dropout: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = hardswish(linear(self.hidden, x.shape[-1], self.dtype, name="0")(x))
    x = Dropout(self.dropout, name="2")(x, train)
    return linear(self.num_classes, x.shape[-1], self.dtype, name="3")(x)


class MobileNetV3(nn.Module):
  """torchvision's MobileNetV3 (width 1.0, no dilation, full tail).

  Attributes:
    num_classes: size of the `classifier/3` output.
    setting: the inverted residual rows (`V3_SMALL` or `V3_LARGE`).
    last_channel: width of `classifier/0` (1024 small, 1280 large).
    dropout: dropout rate before `classifier/3`.
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  setting: Sequence[V3Config]
  last_channel: int
  dropout: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), pooled trunk features ('trunk'), or head(x) ('head')."""
    check_part(part)
    if part != "head":
      x = V3Features(self.setting, self.dtype, name="features")(x.astype(self.dtype), train)
      x = avg_pool_all(x)
      if part == "trunk":
        return x
    x = V3Classifier(self.num_classes, self.last_channel, self.dropout, self.dtype,
                     name="classifier")(x.astype(self.dtype), train)
    return x.astype(jnp.float32)


V3_SMALL_BLOCKS = tuple(f"features/{i}" for i in range(len(V3_SMALL) + 2))
V3_LARGE_BLOCKS = tuple(f"features/{i}" for i in range(len(V3_LARGE) + 2))


def mobilenet_v3_small(num_classes: int, dtype: Any = jnp.float32,
                       init: str = "native") -> MobileNetV3:
  inits.check(init)  # native == torch: torchvision's init
  return MobileNetV3(num_classes, V3_SMALL, 1024, dtype=dtype)


def mobilenet_v3_large(num_classes: int, dtype: Any = jnp.float32,
                       init: str = "native") -> MobileNetV3:
  inits.check(init)  # native == torch: torchvision's init
  return MobileNetV3(num_classes, V3_LARGE, 1280, dtype=dtype)
