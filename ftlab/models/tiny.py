"""A tiny CNN with BatchNorm for tests and quick demos (torch-style names).

It has no original outside ftlab: `native` is Flax's layer defaults (truncated
LeCun-normal kernels, zero biases: what it has always used), `torch` the
PyTorch defaults its PyTorch twin (`tests/test_pretrained.py`) would start from.
"""
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits, parts
from ftlab.models.conv import Conv
from ftlab.models.layers import BatchNorm, Dropout, TrainArg

BLOCKS = ("conv1|bn1", "layer1", "layer2")
HEAD = "fc"


class ConvBN(nn.Module):
  features: int
  stride: int = 1
  dtype: Any = jnp.float32
  kernel_init: Callable = inits.FLAX_DEFAULTS.conv

  @nn.compact
  def __call__(self, x, train: TrainArg):
    x = Conv(self.features, (3, 3), (self.stride, self.stride),
             padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
             kernel_init=self.kernel_init, name="conv")(x)
    return nn.relu(BatchNorm(dtype=self.dtype, name="bn")(x, train))


class TinyCNN(nn.Module):
  num_classes: int
  width: int = 8
  dropout: float = 0.0
  dtype: Any = jnp.float32
  scheme: inits.Scheme = inits.FLAX_DEFAULTS

  @classmethod
  def build(cls, num_classes, dtype=jnp.float32, init="native"):
    scheme = inits.select(init, native=inits.FLAX_DEFAULTS, torch=inits.TORCH_DEFAULTS)
    return cls(num_classes=num_classes, dtype=dtype, scheme=scheme)

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part="all"):
    """Logits ('all'), pooled features ('trunk'), head(x) ('head'), or a piece (models/parts.py)."""
    conv_init = self.scheme.conv

    def stem(x):
      x = Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
               dtype=self.dtype, kernel_init=conv_init, name="conv1")(x.astype(self.dtype))
      return nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, train))

    def layer(i):
      return lambda x: ConvBN(self.width * 2**i, stride=2, dtype=self.dtype,
                              kernel_init=conv_init, name=f"layer{i}")(x, train)

    def head(x):
      x = Dropout(self.dropout)(x, train)
      x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=self.scheme.dense,
                   bias_init=self.scheme.dense_bias(x.shape[-1]), name="fc")(x)
      return x.astype(jnp.float32)

    stages = (stem, layer(1), layer(2))
    if parts.is_boundary(part):
      return parts.run(x, part, stages, lambda x: head(jnp.mean(x, axis=(1, 2))))
    if part in ("all", "trunk"):
      for stage in stages:
        x = stage(x)
      x = jnp.mean(x, axis=(1, 2))
      if part == "trunk":
        return x
    return head(x)
