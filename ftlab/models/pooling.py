"""Pooling written for XLA:CPU: max pooling and the global average pool.

Max pooling
-----------
`flax.linen.max_pool` lowers to `reduce_window`, whose gradient XLA:CPU expands
into a variadic reduce-window carrying four int32 index arrays, iotas and a
scatter: about 80 ms of ResNet-18's 440 ms train step (batch 32, 96x96, 2 CPU
cores), more than the stem convolution itself. Here the forward pass is the
elementwise maximum of the window's strided views and the gradient goes, as in
PyTorch, to the first maximum of each window in row-major order, computed with
elementwise compares and the transpose of the strided views (a few fused loops).

Global average pooling
----------------------
With YNNPACK reductions enabled (`ftlab/training/runtime.py`), a `jnp.mean` over the
spatial dims becomes a YNNPACK fusion that pulls in every convolution upstream
of it that nothing else reads: in a frozen trunk (linear probe), all of
ResNet-18's layer3 and layer4, whose convolutions are ~20% slower in YNNPACK
than in XLA's Eigen kernels. As a contraction with a constant vector the pool
is a single dot and the convolutions stay on Eigen (ResNet-18 linear_probe at
96x96: 251 -> 293 images/s). Same value up to float rounding.
"""
import functools
from typing import Sequence, Tuple

import jax
from jax import lax
import jax.numpy as jnp


Pair = Tuple[int, int]


def window_views(x, window: Pair, strides: Pair, padding: Sequence[Pair]) -> list:
  """Each window offset's strided view of NHWC `x` padded with -inf, row-major."""
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)),
               constant_values=-jnp.inf)
  n, h, w, c = xp.shape
  ho = (h - window[0]) // strides[0] + 1
  wo = (w - window[1]) // strides[1] + 1
  return [lax.slice(xp, (0, i, j, 0),
                    (n, i + (ho - 1) * strides[0] + 1, j + (wo - 1) * strides[1] + 1, c),
                    (1, strides[0], strides[1], 1))
          for i in range(window[0]) for j in range(window[1])]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x, window: Pair, strides: Pair, padding: Sequence[Pair]):
  """NHWC max pooling (padding is -inf, as in PyTorch and `nn.max_pool`)."""
  return functools.reduce(jnp.maximum, window_views(x, window, strides, padding))


def _max_pool_fwd(x, window, strides, padding):
  y = max_pool(x, window, strides, padding)
  return y, (x, y)


def _max_pool_bwd(window, strides, padding, residuals, g):
  x, y = residuals
  views, transpose = jax.vjp(lambda x: window_views(x, window, strides, padding), x)
  taken = jnp.zeros(y.shape, bool)
  cotangents = []
  for view in views:
    first = (view == y) & ~taken
    taken = taken | first
    cotangents.append(jnp.where(first, g, jnp.zeros_like(g)))
  return transpose(cotangents)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def global_avg_pool(x):
  """(N, H, W, C) -> (N, C) spatial mean, as a dot (see the module docstring)."""
  n, h, w, c = x.shape
  weights = jnp.full((h * w,), 1.0 / (h * w), x.dtype)
  return jnp.einsum("npc,p->nc", x.reshape(n, h * w, c), weights)
