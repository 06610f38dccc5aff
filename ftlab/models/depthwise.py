"""Depthwise convolution with a (k, k, 1, C) kernel (PyTorch groups=C layout).

Placeholder formulation through XLA's grouped convolution; see the issue on
CPU speed (a shifted multiply-add formulation replaces the internals, keeping
the parameter layout).
"""
from typing import Any, Union

import flax.linen as nn
import jax
import jax.numpy as jnp


def tf_same_padding(size: int, k: int, stride: int) -> tuple:
  """TensorFlow 'SAME' padding (extra pixel at the end) for one spatial dim."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


class DepthwiseConv(nn.Module):
  """Depthwise conv. `padding` is 'SAME' (TF arithmetic) or an int (symmetric)."""
  kernel_size: int
  strides: int = 1
  padding: Union[str, int] = "SAME"
  use_bias: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                        (k, k, 1, c), jnp.float32)
    if self.padding == "SAME":
      pad = [tf_same_padding(x.shape[1], k, self.strides),
             tf_same_padding(x.shape[2], k, self.strides)]
    else:
      pad = [(self.padding, self.padding)] * 2
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), (self.strides,) * 2, pad,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (c,), jnp.float32).astype(self.dtype)
    return y
