"""oneDNN 2-D convolutions as a JAX op: `conv2d(x, kernel, geometry)` with a custom VJP.

NHWC float32 activations, HWIO float32 kernels, explicit padding, strides and
dilation (groups = 1). Forward, input gradient and kernel gradient are three
XLA FFI custom calls into `onednn_conv.cc` (built on first use by
`ftlab.ops.build`); a frozen kernel's gradient is never asked for, so XLA
drops its custom call with the rest of the dead code.

Under a mesh (the data-parallel `jit` of `ftlab.parallel.devices`) each call
is `custom_partitioning`-ed: the batch stays sharded on whatever mesh axes
shard it, every other dimension is replicated, and the kernel gradient, a sum
over the batch, is the per-device gradient summed across those axes (psum).

`unsupported(...)` says why a convolution cannot go through oneDNN (''
when it can); callers fall back to `lax.conv_general_dilated` for it.
"""
import ctypes
import dataclasses
import functools
from typing import Optional, Sequence, Tuple

import jax
from jax.experimental.custom_partitioning import custom_partitioning
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from ftlab.ops import build

TARGETS = {"forward": ("ftlab_onednn_conv_fwd", "FtlabConvForward"),
           "backward_data": ("ftlab_onednn_conv_bwd_data", "FtlabConvBackwardData"),
           "backward_weights": ("ftlab_onednn_conv_bwd_weights", "FtlabConvBackwardWeights")}


@dataclasses.dataclass(frozen=True)
class Geometry:
  """A convolution's static arguments, XLA's convention (dilation 1 = dense)."""
  strides: Tuple[int, int]
  padding: Tuple[Tuple[int, int], Tuple[int, int]]
  dilation: Tuple[int, int] = (1, 1)

  def attrs(self) -> dict:
    pads = np.asarray(self.padding, np.int64)
    return {"strides": np.asarray(self.strides, np.int64), "pad_lo": pads[:, 0].copy(),
            "pad_hi": pads[:, 1].copy(), "dilation": np.asarray(self.dilation, np.int64)}

  def output_hw(self, in_hw: Sequence[int], kernel_hw: Sequence[int]) -> Tuple[int, int]:
    return tuple((size + lo + hi - (k - 1) * d - 1) // s + 1
                 for size, k, (lo, hi), s, d in zip(in_hw, kernel_hw, self.padding, self.strides,
                                                    self.dilation))


# --- the library ---------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _load() -> str:
  """Builds (once, cached on disk), loads and registers the library; returns oneDNN's version."""
  lib = ctypes.CDLL(str(build.build()))
  for target, symbol in TARGETS.values():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
  lib.FtlabOnednnVersion.restype = ctypes.c_char_p
  return lib.FtlabOnednnVersion().decode()


def availability() -> Tuple[bool, str]:
  """(True, 'oneDNN <version>') once the library is loaded, else (False, why)."""
  try:
    return True, f"oneDNN {_load()}"
  except (build.BuildError, OSError, AttributeError) as e:
    return False, str(e)


def unsupported(x_shape, kernel_shape, dtype, geometry: Geometry) -> str:
  """Why oneDNN cannot run this convolution ('' when it can)."""
  if len(x_shape) != 4 or len(kernel_shape) != 4:
    return f"rank {len(x_shape)} input / {len(kernel_shape)} kernel (need NHWC and HWIO)"
  if jnp.dtype(dtype) != jnp.float32:
    return f"dtype {jnp.dtype(dtype).name} (only float32)"
  if x_shape[3] != kernel_shape[2]:
    return f"{x_shape[3]} input channels, kernel expects {kernel_shape[2]} (grouped)"
  if min(min(p) for p in geometry.padding) < 0:
    return f"negative padding {geometry.padding}"
  if min(geometry.output_hw(x_shape[1:3], kernel_shape[:2])) < 1:
    return "empty output"
  return ""


# --- the three custom calls, partitioned over the batch ------------------------------------


def _call(pass_name: str, out_shape, a, b, geometry: Geometry):
  _load()  # registers the targets (once) before the first call is lowered
  target = TARGETS[pass_name][0]
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, jnp.float32))(
      a, b, **geometry.attrs())


def _batch_axes(arg_shape) -> Optional[object]:
  """The mesh axes sharding dimension 0 of an operand (None: replicated)."""
  sharding = arg_shape.sharding
  spec = sharding.spec if isinstance(sharding, NamedSharding) else P()
  return spec[0] if len(spec) else None


def _forward_impl(geometry, x, kernel):
  out_hw = geometry.output_hw(x.shape[1:3], kernel.shape[:2])
  return _call("forward", (x.shape[0], *out_hw, kernel.shape[3]), x, kernel, geometry)


def _backward_data_impl(geometry, in_hw, g, kernel):
  return _call("backward_data", (g.shape[0], *in_hw, kernel.shape[2]), g, kernel, geometry)


def _backward_weights_impl(geometry, kernel_shape, x, g):
  return _call("backward_weights", kernel_shape, x, g, geometry)


def _batch_parallel(geometry, *static_and_mesh):
  """partition() of forward and backward_data: batch sharded in and out, the kernel replicated."""
  mesh, arg_shapes, _ = static_and_mesh[-3:]
  statics = static_and_mesh[:-3]
  axes = _batch_axes(arg_shapes[0])
  batch = NamedSharding(mesh, P(axes))
  replicated = NamedSharding(mesh, P())
  impl = _forward_impl if not statics else _backward_data_impl
  lower = lambda a, b: impl(geometry, *statics, a, b)  # pylint: disable=unnecessary-lambda-assignment
  return mesh, lower, batch, (batch, replicated)


def _batch_reduced(geometry, kernel_shape, mesh, arg_shapes, result_shape):
  """partition() of backward_weights: per-device sums over its batch shard, summed across devices."""
  del result_shape
  axes = _batch_axes(arg_shapes[0])
  batch = NamedSharding(mesh, P(axes))

  def lower(x, g):
    dw = _backward_weights_impl(geometry, kernel_shape, x, g)
    return jax.lax.psum(dw, axes) if axes is not None else dw

  return mesh, lower, NamedSharding(mesh, P()), (batch, batch)


def _infer_batch(geometry, *static_and_mesh):
  mesh, arg_shapes, _ = static_and_mesh[-3:]
  return NamedSharding(mesh, P(_batch_axes(arg_shapes[0])))


def _infer_replicated(geometry, kernel_shape, mesh, arg_shapes, result_shape):
  del geometry, kernel_shape, arg_shapes, result_shape
  return NamedSharding(mesh, P())


def _replicated_factors(rule: str) -> tuple:
  """Every factor of a Shardy rule but the batch's n, in order of appearance (Shardy wants it sorted)."""
  names = [f for f in rule.replace(",", " ").replace("->", " ").split() if f != "n"]
  return tuple(dict.fromkeys(names))


# Shardy rules: only the batch factor n may stay sharded; spatial and channel factors replicate.
_FORWARD_RULE = "n a b c, d e c o -> n f g o"
_BACKWARD_DATA_RULE = "n f g o, d e c o -> n a b c"
_BACKWARD_WEIGHTS_RULE = "n a b c, n f g o -> d e c o"

_forward = custom_partitioning(_forward_impl, static_argnums=(0,))
_forward.def_partition(partition=_batch_parallel, infer_sharding_from_operands=_infer_batch,
                       sharding_rule=_FORWARD_RULE,
                       need_replication_factors=_replicated_factors(_FORWARD_RULE))
_backward_data = custom_partitioning(_backward_data_impl, static_argnums=(0, 1))
_backward_data.def_partition(partition=_batch_parallel, infer_sharding_from_operands=_infer_batch,
                             sharding_rule=_BACKWARD_DATA_RULE,
                             need_replication_factors=_replicated_factors(_BACKWARD_DATA_RULE))
_backward_weights = custom_partitioning(_backward_weights_impl, static_argnums=(0, 1))
_backward_weights.def_partition(partition=_batch_reduced,
                                infer_sharding_from_operands=_infer_replicated,
                                sharding_rule=_BACKWARD_WEIGHTS_RULE, reduction_factors=("n",),
                                need_replication_factors=_replicated_factors(_BACKWARD_WEIGHTS_RULE))


# --- the differentiable op ----------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x, kernel, geometry: Geometry):
  """oneDNN's convolution of NHWC `x` (float32) with HWIO `kernel`; see `unsupported`."""
  return _forward(geometry, x, kernel)


def _conv2d_fwd(x, kernel, geometry):
  return _forward(geometry, x, kernel), (x, kernel)


def _conv2d_bwd(geometry, residuals, g):
  x, kernel = residuals
  dx = _backward_data(geometry, tuple(x.shape[1:3]), g, kernel)
  dw = _backward_weights(geometry, tuple(kernel.shape), x, g)
  return dx, dw


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
