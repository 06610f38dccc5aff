"""Depthwise convolution with a (k, k, 1, C) kernel (PyTorch groups=C layout).

XLA's grouped convolution (`feature_group_count=C`) is very slow on CPU for
depthwise kernels (EfficientNet-Lite trains 5-7x slower than in PyTorch).
Here the convolution is written as k*k shifted multiply-adds over the padded
input, which XLA fuses into a single elementwise loop. A `jax.custom_vjp`
supplies the backward pass:

* the input gradient is the transposed shifted multiply-add: each tap's
  `g * w[i, j]` dilated by the stride and padded into place (3x3), or
  equivalently the dilated, padded `g` correlated with the flipped kernel
  (larger kernels, where that is faster);
* the kernel gradient is k*k reductions of `g * shifted(x)`, computed over
  chunks of the batch small enough to stay in cache (one pass over the whole
  batch per tap is memory bound).

All arithmetic accumulates in float32; outputs have the input's dtype.

`DepthwiseConv` runs this path or XLA's grouped convolution (`grouped_conv`)
as `models.conv.depthwise_resolved()` says (per backend, `config.model.depthwise_impl`).
"""
from typing import Any, Callable, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ftlab.models import conv as conv_lib
from ftlab.models import inits

Pads = Tuple[Tuple[int, int], Tuple[int, int]]
PaddingArg = Union[str, int, Sequence]

# Kernel-gradient batch chunks: at most DW_CHUNK_BYTES of (padded input +
# output gradient) and at most DW_MAX_CHUNK images. Measured on the 2-core
# Xeon (2 MiB L2 per core) over Lite0 layer shapes at batch 32: 2-4 images per
# chunk were 1.5-3x faster than one pass over the batch or one image a step.
DW_CHUNK_BYTES = 4 << 20
DW_MAX_CHUNK = 4


def tf_same_padding(size: int, k: int, stride: int) -> tuple:
  """TensorFlow 'SAME' padding (extra pixel at the end) for one spatial dim."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


def resolve_padding(padding: PaddingArg, height: int, width: int, k: int,
                    stride: int) -> Pads:
  """Explicit ((top, bottom), (left, right)) padding.

  Args:
    padding: 'SAME' (TF arithmetic for the actual input size), an int
      (symmetric), a pair `(lo, hi)` applied to both spatial dims, or a pair of
      such pairs `((top, bottom), (left, right))`.
    height: input height.
    width: input width.
    k: kernel size.
    stride: stride.

  Returns:
    The padding of both spatial dims as a tuple of int pairs.
  """
  if isinstance(padding, str):
    if padding.upper() != "SAME":
      raise ValueError(f"padding must be 'SAME', an int or pairs, got {padding!r}")
    return tf_same_padding(height, k, stride), tf_same_padding(width, k, stride)
  if isinstance(padding, int):
    return (padding, padding), (padding, padding)
  if len(padding) == 2 and all(isinstance(p, int) for p in padding):
    return (tuple(padding),) * 2
  (top, bottom), (left, right) = padding
  return (int(top), int(bottom)), (int(left), int(right))


def _out_size(padded: int, k: int, stride: int) -> int:
  return (padded - k) // stride + 1


def _tap(xp, i: int, j: int, stride: int, out_hw: Tuple[int, int]):
  """The input window multiplied by kernel tap (i, j): xp[:, i::s, j::s] cropped."""
  n, _, _, c = xp.shape
  ho, wo = out_hw
  limit = (n, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1, c)
  return lax.slice(xp, (0, i, j, 0), limit, (1, stride, stride, 1))


def _shifted_sum(xp, kernel, stride: int, out_hw: Tuple[int, int]):
  """sum_ij tap(xp, i, j) * kernel[i, j, 0] in float32 (any kernel height/width)."""
  w = kernel.astype(jnp.float32)
  acc = None
  for i in range(kernel.shape[0]):
    for j in range(kernel.shape[1]):
      term = _tap(xp, i, j, stride, out_hw).astype(jnp.float32) * w[i, j, 0]
      acc = term if acc is None else acc + term
  return acc


def _pad_hw(x, pads: Pads, interior: int = 0):
  """Zero-pads the spatial dims (lax.pad: negative pads crop)."""
  zero = jnp.zeros((), x.dtype)
  config = ((0, 0, 0),) + tuple((lo, hi, interior) for lo, hi in pads) + ((0, 0, 0),)
  return lax.pad(x, zero, config)


def _forward(x, kernel, stride: int, pads: Pads):
  xp = _pad_hw(x, pads)
  k = kernel.shape[0]
  out_hw = (_out_size(xp.shape[1], k, stride), _out_size(xp.shape[2], k, stride))
  return _shifted_sum(xp, kernel, stride, out_hw).astype(x.dtype)


def _input_grad_scatter(g, kernel, stride: int, pads: Pads, in_hw: Tuple[int, int]):
  """Transpose of `_forward` w.r.t. x, tap by tap: g * w[i, j] dilated into place.

  Output pixel o reads input row o*s + i - pad_lo, so tap i's product lands
  there: pad by i - pad_lo in front (negative crops), s - 1 between rows.
  """
  w = kernel.astype(jnp.float32)
  g32 = g.astype(jnp.float32)
  acc = None
  for i in range(kernel.shape[0]):
    for j in range(kernel.shape[1]):
      config = []
      for tap, (lo, _), size, out in zip((i, j), pads, in_hw, g.shape[1:3]):
        front = tap - lo
        config.append((front, size - front - (stride * (out - 1) + 1)))
      term = _pad_hw(g32 * w[i, j, 0], tuple(config), interior=stride - 1)
      acc = term if acc is None else acc + term
  return acc.astype(g.dtype)


def _input_grad_gather(g, kernel, stride: int, pads: Pads, in_hw: Tuple[int, int]):
  """Transpose of `_forward` w.r.t. x: correlate the dilated g with the flipped kernel.

  Output pixel o reads padded input rows o*s + i, so padded row r receives
  g[(r - i) / s] * w[i]. Dilating g by s and padding it by k - 1 - pad_lo in
  front turns that into a stride-1 correlation with the flipped kernel whose
  window starts exactly at input row 0; the back padding makes the result
  exactly `in_hw` long (negative values crop rows that only saw padding).
  """
  k = kernel.shape[0]
  gpads = []
  for (lo, _), size, out in zip(pads, in_hw, g.shape[1:3]):
    dilated = stride * (out - 1) + 1
    front = k - 1 - lo
    gpads.append((front, size + k - 1 - front - dilated))
  gp = _pad_hw(g, tuple(gpads), interior=stride - 1)
  flipped = kernel[::-1, ::-1]
  return _shifted_sum(gp, flipped, 1, in_hw).astype(g.dtype)


def _input_grad(g, kernel, stride: int, pads: Pads, in_hw: Tuple[int, int]):
  """Input gradient: scatter form for 3x3 kernels, gather form for larger ones.

  Measured on Lite0 shapes at batch 32: for 3x3 the scatter form (one fused
  loop over the output) is 2-3x faster than materialising the dilated
  gradient; for 5x5 the gather form is 2-4x faster than 25 fused pads.
  """
  if kernel.shape[0] * kernel.shape[1] <= 9:
    return _input_grad_scatter(g, kernel, stride, pads, in_hw)
  return _input_grad_gather(g, kernel, stride, pads, in_hw)


def _kernel_grad_sum(xp, g, k: int, stride: int):
  """(k, k, 1, C) float32: sum over batch and space of g * tap(xp, i, j)."""
  out_hw = g.shape[1:3]
  g32 = g.astype(jnp.float32)
  rows = []
  for i in range(k):
    for j in range(k):
      tap = _tap(xp, i, j, stride, out_hw).astype(jnp.float32)
      rows.append(jnp.sum(g32 * tap, axis=(0, 1, 2)))
  return jnp.stack(rows).reshape(k, k, 1, -1)


def dw_chunk_size(image_bytes: int, batch: int, budget: int = None,
                  max_chunk: int = None) -> int:
  """Images per kernel-gradient chunk for a per-image footprint in bytes."""
  budget = DW_CHUNK_BYTES if budget is None else budget
  max_chunk = DW_MAX_CHUNK if max_chunk is None else max_chunk
  return max(1, min(batch, max_chunk, budget // max(image_bytes, 1)))


def _kernel_grad(x, g, k: int, stride: int, pads: Pads):
  """Kernel gradient, scanning over batch chunks (plus one remainder chunk)."""
  xp = _pad_hw(x, pads)
  n = xp.shape[0]
  image_bytes = (xp[0].size + g[0].size) * xp.dtype.itemsize
  chunk = dw_chunk_size(image_bytes, n)
  full = n // chunk
  xs = xp[:full * chunk].reshape((full, chunk) + xp.shape[1:])
  gs = g[:full * chunk].reshape((full, chunk) + g.shape[1:])

  def step(acc, xg):
    return acc + _kernel_grad_sum(xg[0], xg[1], k, stride), None

  init = jnp.zeros((k, k, 1, xp.shape[-1]), jnp.float32)
  acc, _ = lax.scan(step, init, (xs, gs))
  if n % chunk:
    acc = acc + _kernel_grad_sum(xp[full * chunk:], g[full * chunk:], k, stride)
  return acc


def depthwise_conv(x, kernel, strides: int = 1, padding: PaddingArg = "SAME"):
  """Depthwise convolution of NHWC `x` with a (k, k, 1, C) kernel.

  Args:
    x: (N, H, W, C) input.
    kernel: (k, k, 1, C) kernel, cast to `x.dtype`'s precision by the caller.
    strides: stride of both spatial dims.
    padding: see `resolve_padding`.

  Returns:
    (N, Ho, Wo, C) output in `x.dtype`, equal to
    `lax.conv_general_dilated(..., feature_group_count=C)` up to rounding.
  """
  k = kernel.shape[0]
  pads = resolve_padding(padding, x.shape[1], x.shape[2], k, strides)
  return _depthwise_vjp(x, kernel, int(strides), pads)


def grouped_conv(x, kernel, strides: int = 1, padding: PaddingArg = "SAME"):
  """`depthwise_conv` by XLA's grouped convolution (one group per channel: cuDNN on GPU)."""
  pads = resolve_padding(padding, x.shape[1], x.shape[2], kernel.shape[0], strides)
  return lax.conv_general_dilated(x, kernel, (strides, strides), pads,
                                  dimension_numbers=conv_lib.DIMENSION_NUMBERS,
                                  feature_group_count=x.shape[-1])


def _vjp_fwd(x, kernel, stride, pads):
  return _forward(x, kernel, stride, pads), (x, kernel)


def _vjp_bwd(stride, pads, res, g):
  x, kernel = res
  k = kernel.shape[0]
  dx = _input_grad(g, kernel, stride, pads, x.shape[1:3])
  dw = _kernel_grad(x, g, k, stride, pads).astype(kernel.dtype)
  return dx, dw


_depthwise_vjp = jax.custom_vjp(_forward, nondiff_argnums=(2, 3))
_depthwise_vjp.defvjp(_vjp_fwd, _vjp_bwd)


class DepthwiseConv(nn.Module):
  """Depthwise conv with PyTorch's (k, k, 1, C) kernel layout.

  Attributes:
    kernel_size: spatial size k of the square kernel.
    strides: stride of both spatial dims (1 or 2 in practice).
    padding: 'SAME' (TF arithmetic, extra pixel at the end), an int
      (symmetric), or explicit pairs (see `resolve_padding`), e.g. TF 'SAME'
      padding computed statically for a configured image size.
    use_bias: add a per-channel `bias` parameter (zeros at init).
    dtype: computation dtype (parameters stay float32).
    kernel_init: initialiser of the (k, k, 1, C) kernel, whose fan_in is k*k
      and fan_out C*k*k as for PyTorch's (C, 1, k, k) weight; the default is
      torchvision's Kaiming-normal fan-out (see `inits`).
  """
  kernel_size: int
  strides: int = 1
  padding: PaddingArg = "SAME"
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Callable = inits.KAIMING_NORMAL_FAN_OUT

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, 1, c), jnp.float32)
    conv = depthwise_conv if conv_lib.depthwise_resolved() == "ftlab" else grouped_conv
    y = conv(x.astype(self.dtype), kernel.astype(self.dtype), self.strides, self.padding)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (c,), jnp.float32).astype(self.dtype)
    return y
