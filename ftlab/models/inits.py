"""Parameter initialisers, one named `Scheme` per original's layer defaults, and the
transfer init of the layers a pretrained checkpoint does not provide (`transfer_init`).

`config.model.init` picks one of two schemes per architecture:

* `native`: what the framework that trained the published weights used
  (torchvision's `__init__` loops; TF's EfficientNet initialisers);
* `torch`: each layer type as PyTorch initialises it in the PyTorch original
  (for torchvision models the same as `native`; for EfficientNet-Lite the
  PyTorch defaults that `efficientnet_lite_pytorch` leaves in place), to
  reproduce a PyTorch table's from-scratch column.

BatchNorm starts at scale 1, bias 0 (running mean 0, variance 1) in every
scheme, as in PyTorch and TF.

Kernels are (kh, kw, in, out) for convs, (k, k, 1, C) for depthwise convs and
(in, out) for dense layers. `variance_scaling` takes fan_in from axis -2 and
fan_out from axis -1, each times the receptive field, which equals PyTorch's
fans of its (out, in / groups, kh, kw) weights, depthwise ones included
(fan_in k*k, fan_out C*k*k).
"""
import math
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

INITS = ("native", "torch")

# torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out).
KAIMING_NORMAL_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# torch.nn.init.kaiming_normal_(w) (fan_in, ReLU gain): N(0, 2 / fan_in), not truncated.
KAIMING_NORMAL_FAN_IN = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# PyTorch's default Conv2d/Linear weight, kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)).
TORCH_DEFAULT_KERNEL = nn.initializers.variance_scaling(1.0 / 3, "fan_in", "uniform")
# torchvision's MobileNetV2/V3 Linear weights: N(0, 0.01^2).
NORMAL_001 = nn.initializers.normal(0.01)
# TF EfficientNet's conv_kernel_initializer: N(0, 2 / fan_out), fan_out = kh*kw*out_filters.
TF_CONV = KAIMING_NORMAL_FAN_OUT
# The same for TF's depthwise kernels, whose out_filters is the depth multiplier
# 1: fan_out = k*k, the fan_in of a (k, k, 1, C) kernel.
TF_DEPTHWISE = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# TF EfficientNet's dense_kernel_initializer: U(+-1/sqrt(units)).
TF_DENSE = nn.initializers.variance_scaling(1.0 / 3, "fan_out", "uniform")
# torch.nn.init.trunc_normal_(w, std=0.02) (torchvision's ConvNeXt): N(0, 0.02^2) cut at
# +-2 in absolute terms, i.e. +-100 standard deviations (Flax's bounds are in stddevs).
TRUNC_NORMAL_002 = nn.initializers.truncated_normal(0.02, lower=-100.0, upper=100.0)
# Flax's nn.Conv/nn.Dense default: truncated N(0, 1 / fan_in).
LECUN_NORMAL = nn.initializers.lecun_normal()


def zeros_bias(fan_in: int) -> Initializer:
  """Zero biases, whatever the layer's fan_in."""
  del fan_in
  return nn.initializers.zeros


def torch_default_bias(fan_in: int) -> Initializer:
  """PyTorch's default Conv2d/Linear bias: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Scheme(NamedTuple):
  """The initialisers of one scheme by layer type.

  Attributes:
    conv: conv kernels.
    depthwise: depthwise conv kernels, (k, k, 1, C).
    dense: dense (Linear) kernels.
    dense_bias: dense biases, as a function of the layer's fan_in.
  """
  conv: Initializer
  depthwise: Initializer
  dense: Initializer
  dense_bias: Callable[[int], Initializer]


# torchvision's ResNet: Kaiming-normal fan-out convs, Linear left at PyTorch's default.
TORCHVISION_RESNET = Scheme(KAIMING_NORMAL_FAN_OUT, KAIMING_NORMAL_FAN_OUT,
                            TORCH_DEFAULT_KERNEL, torch_default_bias)
# torchvision's MobileNetV2/V3: Kaiming-normal fan-out convs (conv biases zero,
# Flax's default), Linear N(0, 0.01^2) with zero bias.
TORCHVISION_MOBILENET = Scheme(KAIMING_NORMAL_FAN_OUT, KAIMING_NORMAL_FAN_OUT,
                               NORMAL_001, zeros_bias)
# torchvision's DenseNet: Kaiming-normal fan-in convs, Linear default weight, zero bias.
TORCHVISION_DENSENET = Scheme(KAIMING_NORMAL_FAN_IN, KAIMING_NORMAL_FAN_IN,
                              TORCH_DEFAULT_KERNEL, zeros_bias)
# torchvision's ConvNeXt: every conv (depthwise too) and Linear weight trunc_normal_(std=0.02),
# zero biases.
TORCHVISION_CONVNEXT = Scheme(TRUNC_NORMAL_002, TRUNC_NORMAL_002, TRUNC_NORMAL_002, zeros_bias)
# TF's EfficientNet(-Lite) (tensorflow/tpu efficientnet_model.py), biases zero.
TF_EFFICIENTNET = Scheme(TF_CONV, TF_DEPTHWISE, TF_DENSE, zeros_bias)
# PyTorch's layer defaults (Conv2d and Linear reset_parameters).
TORCH_DEFAULTS = Scheme(TORCH_DEFAULT_KERNEL, TORCH_DEFAULT_KERNEL,
                        TORCH_DEFAULT_KERNEL, torch_default_bias)
# Flax's layer defaults.
FLAX_DEFAULTS = Scheme(LECUN_NORMAL, LECUN_NORMAL, LECUN_NORMAL, zeros_bias)


def check(init: str) -> str:
  """`init` if it names a scheme; otherwise a ValueError naming config.model.init."""
  if init not in INITS:
    raise ValueError(f"config.model.init={init!r}; use one of {list(INITS)}")
  return init


def select(init: str, native: Scheme, torch: Scheme) -> Scheme:
  """The scheme `init` ('native' or 'torch') names."""
  return native if check(init) == "native" else torch


# config.model.head_init: how the layers a pretrained checkpoint did not provide (a new head) start.
HEAD_INITS = ("torch", "zero", "native")


def _fan_in(path: str, params: dict) -> int:
  """PyTorch's fan_in of a kernel (all axes but the last) or of the bias beside one."""
  kernel = params[path.rsplit("/", 1)[0] + "/kernel"] if path.endswith("/bias") else params[path]
  return max(math.prod(kernel.shape[:-1]), 1)


def transfer_init(params: dict, loaded: frozenset, head_init: str, num_classes: int, rng) -> dict:
  """`params` (flat, '/'-joined) with every kernel and bias not in `loaded` re-drawn per `head_init`.

  * `torch`: PyTorch's Linear/Conv2d default, U(+-1/sqrt(fan_in)) for kernel
    and bias (timm's `reset_classifier`, torchvision's usual head replacement);
  * `zero`: the output layer (kernels with `num_classes` outputs, and their
    biases) starts at zero (big_vision's and BiT's `head_zeroinit`); any other
    layer the checkpoint did not provide gets `torch`'s init, since a chain
    of zero layers would not train;
  * `native`: left as the architecture's scratch init drew it (`config.model.init`).

  Other leaves the checkpoint did not provide (a norm's scale) keep the
  architecture's init. A ValueError names config.model.head_init if it is unknown.
  """
  if head_init not in HEAD_INITS:
    raise ValueError(f"config.model.head_init={head_init!r}; use one of {list(HEAD_INITS)}")
  new = sorted(k for k in params if k not in loaded and k.rsplit("/", 1)[-1] in ("kernel", "bias")
               and (k.endswith("/kernel") or k.rsplit("/", 1)[0] + "/kernel" in params))
  if head_init == "native" or not new:
    return params
  out = dict(params)
  for i, path in enumerate(new):
    kernel = params[path.rsplit("/", 1)[0] + "/kernel"]
    if head_init == "zero" and kernel.shape[-1] == num_classes:
      out[path] = jnp.zeros_like(params[path])
    else:
      bound = 1.0 / math.sqrt(_fan_in(path, params))
      out[path] = jax.random.uniform(jax.random.fold_in(rng, i), params[path].shape,
                                     params[path].dtype, -bound, bound)
  return out
