"""`Conv`: the models' 2-D convolution, on XLA or on oneDNN (`config.model.conv_impl`).

A drop-in for `flax.linen.Conv` as ftlab's models use it (NHWC, HWIO
`kernel` and optional `bias` parameters with nn.Conv's names, shapes and
default initialisers, groups = 1), so parameter paths and converted weights
are unchanged. Where its convolution runs is chosen once per process:

* `xla`: `lax.conv_general_dilated` (XLA's kernels: Eigen/YNNPACK on CPU,
  cuDNN on GPU);
* `onednn`: ftlab's oneDNN custom calls (`ftlab.ops.conv`, CPU backend
  only); a ValueError at `select` if the library cannot be built or loaded;
* `auto`: `AUTO_CPU` on the CPU backend (falling back to `xla` with one
  log line if that is `onednn` and the library is unavailable), `xla` on
  GPU/TPU. `AUTO_CPU` is `onednn`: on a quiet 2-core EPYC its train steps
  were 1.0-1.55x XLA's in every row of `bench_step.py`'s grid (ResNet-18 and
  EfficientNet-Lite0, 96 and 224, full_ft and linear_probe, 3 rounds;
  docs/performance.md), level only in Lite0's 224 linear probe (0.98x).

Depthwise convolutions (`models.depthwise.DepthwiseConv`) are chosen here
too, per backend (`config.model.depthwise_impl`): `ftlab` is the shifted
multiply-add path of `models.depthwise` (5-7x faster than XLA's grouped
convolution on the CPU, where Eigen has no depthwise kernel); `xla` is
`lax.conv_general_dilated` with one group per channel (cuDNN's depthwise
kernels on GPU); `auto` is `AUTO_DEPTHWISE[backend]`, else `xla`. oneDNN's
depthwise is not used: ftlab's library implements groups = 1 only.

`select(impl, depthwise_impl)` is called by `training.state.build_setup`
with the config's values; each choice (and, for `auto`, why) is logged once. A convolution the
oneDNN path does not support (grouped, negative padding) runs on XLA, logged
once per shape; bfloat16 (or any dtype but float32) runs on XLA, logged once per dtype.
"""
import functools
import logging
from typing import Any, Callable, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ftlab.ops import conv as onednn

IMPLS = ("auto", "xla", "onednn")
AUTO_CPU = "onednn"  # what `auto` picks on the CPU backend; see the module docstring
DEPTHWISE_IMPLS = ("auto", "ftlab", "xla")
# depthwise_impl=auto per backend (others: xla). No GPU measurement has been
# made yet (docs/performance.md): cuDNN's grouped convolution is the default there.
AUTO_DEPTHWISE = {"cpu": "ftlab"}
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
PaddingLike = Union[str, int, Sequence]

_selected = {"impl": "auto", "depthwise": "auto"}  # set by `select`; read when a Conv is traced


def select(impl: str, depthwise_impl: str = "auto") -> str:
  """Makes `impl` (config.model.conv_impl) and `depthwise_impl` (config.model.depthwise_impl)
  the process's choices; returns what `impl` resolves to."""
  if impl not in IMPLS:
    raise ValueError(f"config.model.conv_impl={impl!r}; use one of {list(IMPLS)}")
  if depthwise_impl not in DEPTHWISE_IMPLS:
    raise ValueError(f"config.model.depthwise_impl={depthwise_impl!r}; use one of "
                     f"{list(DEPTHWISE_IMPLS)}")
  if impl == "onednn":
    ok, why = onednn.availability()
    if not ok:
      raise ValueError(f"config.model.conv_impl='onednn' but ftlab's oneDNN library is "
                       f"unavailable: {why}")
  _selected["impl"], _selected["depthwise"] = impl, depthwise_impl
  return resolved()


def resolved() -> str:
  """'onednn' or 'xla': the selected implementation, `auto` resolved for the default backend."""
  return _resolve(_selected["impl"], jax.default_backend())


@functools.lru_cache(maxsize=None)
def _resolve(impl: str, backend: str) -> str:
  if impl == "xla":
    choice, why = "xla", "config.model.conv_impl='xla'"
  elif impl == "onednn":
    choice, why = "onednn", f"config.model.conv_impl='onednn', {onednn.availability()[1]}"
  elif backend != "cpu":
    choice, why = "xla", f"conv_impl=auto on the {backend} backend"
  elif AUTO_CPU == "xla":
    choice, why = "xla", "conv_impl=auto on the CPU: ftlab.models.conv.AUTO_CPU='xla'"
  else:
    ok, detail = onednn.availability()
    choice = "onednn" if ok else "xla"
    why = f"conv_impl=auto on the CPU, {detail}" if ok else f"conv_impl=auto: {detail}"
  logging.info("convolutions: %s (%s)", "oneDNN" if choice == "onednn" else "XLA", why)
  return choice


def depthwise_resolved() -> str:
  """'ftlab' or 'xla': where depthwise convolutions run on the default backend."""
  return _resolve_depthwise(_selected["depthwise"], jax.default_backend())


@functools.lru_cache(maxsize=None)
def _resolve_depthwise(impl: str, backend: str) -> str:
  if impl != "auto":
    choice, why = impl, f"config.model.depthwise_impl={impl!r}"
  else:
    choice = AUTO_DEPTHWISE.get(backend, "xla")
    why = f"depthwise_impl=auto on the {backend} backend"
  logging.info("depthwise convolutions: %s (%s)",
               "ftlab's shifted multiply-adds" if choice == "ftlab" else "XLA grouped", why)
  return choice


@functools.lru_cache(maxsize=None)
def _log_fallback(shapes: str, reason: str) -> None:
  logging.info("convolution %s runs on XLA: oneDNN does not support %s", shapes, reason)


@functools.lru_cache(maxsize=None)
def _log_dtype_fallback(dtype: str) -> None:
  logging.info("%s convolutions run on XLA: ftlab's oneDNN path is float32 only", dtype)


def _pair(v: Union[int, Sequence[int]]) -> Tuple[int, int]:
  return (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)


def explicit_padding(padding: PaddingLike, in_hw: Sequence[int], kernel_hw: Sequence[int],
                     strides: Sequence[int], dilation: Sequence[int]) -> Tuple[Tuple[int, int], ...]:
  """nn.Conv's padding argument ('SAME', 'VALID', an int, ints or (lo, hi) pairs) as pairs."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"Conv padding={padding!r}: use 'SAME', 'VALID', an int or (lo, hi) pairs")
    effective = [(k - 1) * d + 1 for k, d in zip(kernel_hw, dilation)]
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, effective, strides, padding.upper()))
  if isinstance(padding, int):
    return ((padding, padding),) * 2
  return tuple((p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding)


def conv2d(x, kernel, strides: Sequence[int], padding: PaddingLike,
           dilation: Sequence[int] = (1, 1)):
  """NHWC `x` convolved with the HWIO `kernel` by the selected implementation."""
  strides, dilation = _pair(strides), _pair(dilation)
  pads = explicit_padding(padding, x.shape[1:3], kernel.shape[:2], strides, dilation)
  if resolved() == "onednn":
    geometry = onednn.Geometry(strides, pads, dilation)
    reason = onednn.unsupported(x.shape, kernel.shape, x.dtype, geometry)
    if not reason:
      return onednn.conv2d(x, kernel, geometry)
    if jnp.dtype(x.dtype) != jnp.float32:
      _log_dtype_fallback(jnp.dtype(x.dtype).name)  # once per run, not once per shape
    else:
      _log_fallback(f"{x.shape} * {kernel.shape} {geometry}", reason)
  return lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation,
                                  dimension_numbers=DIMENSION_NUMBERS)


class Conv(nn.Module):
  """`flax.linen.Conv` (2-D, groups = 1) whose convolution `conv2d` places.

  Attributes are nn.Conv's: kernel_size and strides (ints or pairs), padding
  ('SAME', 'VALID', an int or (lo, hi) pairs), kernel_dilation, use_bias,
  dtype (computation; parameters stay float32), kernel_init, bias_init.
  """
  features: int
  kernel_size: Union[int, Sequence[int]]
  strides: Union[int, Sequence[int]] = 1
  padding: PaddingLike = "SAME"
  kernel_dilation: Union[int, Sequence[int]] = 1
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
    dtype = self.dtype or jnp.result_type(x.dtype, jnp.float32)
    y = conv2d(x.astype(dtype), kernel.astype(dtype), self.strides, self.padding,
               self.kernel_dilation)
    if bias is not None:
      y = y + bias.astype(dtype)
    return y
