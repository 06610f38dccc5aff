"""ConvNeXt-Tiny and ConvNeXt-Small with torchvision's module names.

Parameter paths mirror `torchvision.models.convnext`:

* `features/0`: the stem, a 4x4 stride-4 conv `0` (with bias) and LayerNorm2d `1`;
* `features/1`, `3`, `5`, `7`: the stages, Sequentials of CNBlocks
  `features/<s>/<i>`, each with `block/0` (7x7 depthwise conv, through
  `DepthwiseConv`), `block/2` (LayerNorm over channels), `block/3` (Linear to
  4x width), GELU, `block/5` (Linear back) and the per-channel `layer_scale`
  (torch (C, 1, 1), here (C,)); the residual branch passes through
  `stochastic_depth` (drop-path) before the skip connection;
* `features/2`, `4`, `6`: downsampling, LayerNorm2d `0` and a 2x2 stride-2 conv `1`;
* `classifier`: LayerNorm2d `0`, Flatten, Linear `2`. `classifier/0` is a
  *pretrained* LayerNorm over the pooled features: it belongs to the head
  (`HEAD`), so a linear probe trains it together with the Linear, and a
  re-initialised head (other class count) keeps its pretrained values, since
  only entries whose shape differs are re-initialised.

`part='trunk'` returns the globally average-pooled features (before
`classifier/0`). Every LayerNorm has eps 1e-6 and no running statistics.

Stochastic depth rises linearly with the block index, rate * i / (blocks - 1)
as torchvision computes it: 0 for the first block, `drop_path_rate` for the
last. The default rate is torchvision's (`DROP_PATH_RATE`: 0.1 tiny, 0.4
small), the one the published weights were trained with;
`config.model.drop_path_rate` overrides it (see `models.with_drop_path`).
Inside frozen modules drop-path is off (`layers.stochastic`).

Initialisation (`native` and `torch` alike) is torchvision's: every conv and
Linear weight truncated N(0, 0.02^2), zero biases, LayerNorm ones/zeros,
`layer_scale` 1e-6 (`inits.TORCHVISION_CONVNEXT`).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.conv import Conv
from ftlab.models.depthwise import DepthwiseConv
from ftlab.models.layers import DropPath, TrainArg
from ftlab.models.mobilenet import check_part
from ftlab.models.pooling import global_avg_pool

HEAD = "classifier"
INIT = inits.TORCHVISION_CONVNEXT
WIDTHS = (96, 192, 384, 768)
DEPTHS = {"convnext_tiny": (3, 3, 9, 3), "convnext_small": (3, 3, 27, 3)}
# torchvision's stochastic_depth_prob, the rate the IMAGENET1K_V1 weights were trained with.
DROP_PATH_RATE = {"convnext_tiny": 0.1, "convnext_small": 0.4}
LAYER_SCALE = 1e-6
EPSILON = 1e-6


def layer_norm(dtype: Any, name: str) -> nn.LayerNorm:
  """torch.nn.LayerNorm(eps=1e-6) over the last (channel) axis, statistics in float32."""
  return nn.LayerNorm(epsilon=EPSILON, dtype=dtype, use_fast_variance=False, name=name)


def conv(features: int, size: int, dtype: Any, name: str) -> Conv:
  """A size x size, stride-size conv with bias and no padding (stem and downsampling)."""
  return Conv(features, (size, size), (size, size), padding="VALID", dtype=dtype,
              kernel_init=INIT.conv, name=name)


def linear(features: int, dtype: Any, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, kernel_init=INIT.dense, name=name)


class Block(nn.Module):
  """A CNBlock's `block`: depthwise 7x7 '0', LayerNorm '2', Linear '3', GELU, Linear '5'."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = DepthwiseConv(7, 1, padding=3, use_bias=True, dtype=self.dtype,
                      kernel_init=INIT.depthwise, name="0")(x)
    x = layer_norm(self.dtype, "2")(x)
    x = nn.gelu(linear(4 * c, self.dtype, "3")(x), approximate=False)
    return linear(c, self.dtype, "5")(x)


class CNBlock(nn.Module):
  """torchvision's CNBlock: x + drop_path(layer_scale * block(x))."""
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    scale = self.param("layer_scale", nn.initializers.constant(LAYER_SCALE), (x.shape[-1],),
                       jnp.float32)
    y = Block(self.dtype, name="block")(x) * scale.astype(self.dtype)
    return x + DropPath(self.drop_path, name="stochastic_depth")(y, train)


class Stage(nn.Module):
  """A Sequential of CNBlocks '0', '1', ... with the given drop-path rates."""
  rates: Sequence[float]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    for i, rate in enumerate(self.rates):
      x = CNBlock(rate, self.dtype, name=str(i))(x, train)
    return x


class Stem(nn.Module):
  """`features/0`: 4x4 stride-4 conv '0', LayerNorm2d '1'."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return layer_norm(self.dtype, "1")(conv(self.features, 4, self.dtype, "0")(x))


class Downsample(nn.Module):
  """`features/2|4|6`: LayerNorm2d '0', 2x2 stride-2 conv '1'."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return conv(self.features, 2, self.dtype, "1")(layer_norm(self.dtype, "0")(x))


def drop_path_rates(depths: Sequence[int], rate: float) -> list:
  """Per-stage lists of torchvision's linearly increasing rates rate * i / (blocks - 1)."""
  total, start, rates = sum(depths), 0, []
  for depth in depths:
    rates.append(tuple(rate * i / (total - 1.0) for i in range(start, start + depth)))
    start += depth
  return rates


class Features(nn.Module):
  """ConvNeXt `features`: stem '0', stages '1', '3', '5', '7', downsampling '2', '4', '6'."""
  depths: Sequence[int]
  drop_path_rate: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = Stem(WIDTHS[0], self.dtype, name="0")(x)
    rates = drop_path_rates(self.depths, self.drop_path_rate)
    for s, stage_rates in enumerate(rates):
      x = Stage(stage_rates, self.dtype, name=str(2 * s + 1))(x, train)
      if s + 1 < len(rates):
        x = Downsample(WIDTHS[s + 1], self.dtype, name=str(2 * s + 2))(x)
    return x


class Classifier(nn.Module):
  """ConvNeXt `classifier` on pooled features: LayerNorm '0' (pretrained), Flatten, Linear '2'."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return linear(self.num_classes, self.dtype, "2")(layer_norm(self.dtype, "0")(x))


class ConvNeXt(nn.Module):
  """torchvision's ConvNeXt (widths 96-768); see the module docstring for names.

  Attributes:
    num_classes: size of the `classifier/2` output.
    depths: CNBlocks per stage.
    drop_path_rate: stochastic-depth rate of the last block.
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  depths: Sequence[int]
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), pooled trunk features ('trunk'), or head(x) ('head')."""
    check_part(part)
    if part != "head":
      x = Features(self.depths, self.drop_path_rate, self.dtype, name="features")(
          x.astype(self.dtype), train)
      x = global_avg_pool(x)
      if part == "trunk":
        return x
    x = Classifier(self.num_classes, self.dtype, name="classifier")(x.astype(self.dtype))
    return x.astype(jnp.float32)


def block_names(name: str) -> tuple:
  """BLOCKS, shallow to deep: ConvNeXt's own layer-decay grouping, one CNBlock finer.

  The stem, then one block per CNBlock, except that the deep third stage's
  CNBlocks go in threes (as ConvNeXt's official layer-wise LR decay groups
  them); each downsampling layer joins the block that follows it. Tiny: 13
  blocks, small: 19; `freeze_blocks=7` freezes features.0-3 (stem and the
  first two stages) on both.
  """
  d1, d2, d3, d4 = DEPTHS[name]
  blocks = ["features/0"] + [f"features/1/{i}" for i in range(d1)]
  blocks += ["features/2|features/3/0"] + [f"features/3/{i}" for i in range(1, d2)]
  thirds = [f"features/5/(?:{'|'.join(str(j) for j in range(i, min(i + 3, d3)))})"
            for i in range(0, d3, 3)]
  blocks += ["features/4|" + thirds[0]] + thirds[1:]
  blocks += ["features/6|features/7/0"] + [f"features/7/{i}" for i in range(1, d4)]
  return tuple(blocks)


def _build(name: str, num_classes: int, dtype: Any, init: str) -> ConvNeXt:
  inits.check(init)  # native == torch: torchvision's init
  return ConvNeXt(num_classes, DEPTHS[name], DROP_PATH_RATE[name], dtype=dtype)


def convnext_tiny(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> ConvNeXt:
  return _build("convnext_tiny", num_classes, dtype, init)


def convnext_small(num_classes: int, dtype: Any = jnp.float32, init: str = "native") -> ConvNeXt:
  return _build("convnext_small", num_classes, dtype, init)
