"""Vision Transformers (ViT-B/16, ViT-S/16) with torchvision's module names.

Parameter paths mirror `torchvision.models.vision_transformer`: `conv_proj`
(the patch embedding), `class_token`, `encoder/pos_embedding`,
`encoder/layers/encoder_layer_N/{ln_1, self_attention, ln_2, mlp/0, mlp/3}`,
`encoder/ln` and `heads/head`.

The attention keeps torch's packed layout: `self_attention/in_proj_weight` is
torch's (3D, D) matrix of the stacked q, k, v projections and
`self_attention/in_proj_bias` its (3D,) bias, under exactly torch's names, so
the converter copies them unchanged (a leaf of the same name in the Flax
module); `out_proj` is an ordinary Dense. ViT-S/16 (torchvision has none) is
torchvision's VisionTransformer class with ViT-S dimensions (patch 16, 12
layers, 6 heads, width 384, MLP 1536); timm's layout of the same model, with
its weights, is `vit_timm.vit_small_patch16_224`, which shares `attend` and
`layer_norm` with this module.

The position embedding's grid follows the input at initialisation, so a model
built for another image size has its own `pos_embedding` shape; loading a
checkpoint trained at another size resamples it (`pretrained.posemb`).

Initialisation (`native` and `torch` alike) is torchvision's: `conv_proj`
N(0, 1 / fan_in) (torch's trunc_normal_ cuts at +-2 absolute, i.e. never at
this std) with zero bias, `class_token` zeros, `pos_embedding` N(0, 0.02^2),
attention in_proj Xavier-uniform with zero bias, out_proj PyTorch's Linear
default weight with zero bias, MLP Linear layers Xavier-uniform with
N(0, 1e-6^2) biases, LayerNorm ones/zeros, `heads/head` zeros.

torchvision's ViTs have dropout and attention dropout 0 and no drop-path; the
Dropout layers are kept (rate `dropout`) where torchvision has them.
"""
import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftlab.models import inits
from ftlab.models.conv import Conv
from ftlab.models.layers import Dropout, TrainArg
from ftlab.models.mobilenet import check_part

HEAD = "heads"
LN_EPS = 1e-6


class Variant(NamedTuple):
  patch: int
  layers: int
  heads: int
  hidden: int
  mlp: int


VARIANTS = {
    "vit_b_16": Variant(16, 12, 12, 768, 3072),
    "vit_s_16": Variant(16, 12, 6, 384, 1536),
}


def block_names(layers: int) -> tuple:
  """BLOCKS: patch embedding with class token and position embedding, each layer, final LN."""
  return (("conv_proj|class_token|encoder/pos_embedding",)
          + tuple(f"encoder/layers/encoder_layer_{i}" for i in range(layers)) + ("encoder/ln",))


def _bias_normal_1e6(key, shape, dtype=jnp.float32):
  return 1e-6 * jax.random.normal(key, shape, dtype)


layer_norm = functools.partial(nn.LayerNorm, epsilon=LN_EPS)


def attend(qkv, heads: int, dtype: Any):
  """Multi-head scaled dot-product attention: packed (N, S, 3D) q, k, v -> (N, S, D).

  The last axis holds q, k and v in that order, each as `heads` consecutive
  slices of D / heads, as torch's packed `in_proj` and timm's `attn.qkv` both
  lay them out. The softmax runs in float32.
  """
  n, s, width = qkv.shape
  d = width // 3
  q, k, v = jnp.split(qkv.reshape(n, s, 3 * heads, d // heads), 3, axis=2)
  logits = jnp.einsum("nqhc,nkhc->nhqk", q, k) / math.sqrt(d // heads)
  attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dtype)
  return jnp.einsum("nhqk,nkhc->nqhc", attn, v).reshape(n, s, d)


class SelfAttention(nn.Module):
  """torch.nn.MultiheadAttention(batch_first=True) on (x, x, x), packed in_proj."""
  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    w = self.param("in_proj_weight", nn.initializers.xavier_uniform(), (3 * d, d), jnp.float32)
    b = self.param("in_proj_bias", nn.initializers.zeros, (3 * d,), jnp.float32)
    qkv = jnp.einsum("nsd,ed->nse", x, w.astype(self.dtype)) + b.astype(self.dtype)
    y = attend(qkv, self.heads, self.dtype)
    return nn.Dense(d, dtype=self.dtype, kernel_init=inits.TORCH_DEFAULT_KERNEL,
                    name="out_proj")(y)


class MLP(nn.Module):
  """torchvision's MLPBlock: Linear '0', GELU, Dropout '2', Linear '3', Dropout '4'."""
  mlp: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=nn.initializers.xavier_uniform(),
                              bias_init=_bias_normal_1e6)
    y = nn.gelu(dense(self.mlp, name="0")(x), approximate=False)
    y = Dropout(self.dropout, name="2")(y, train)
    y = dense(x.shape[-1], name="3")(y)
    return Dropout(self.dropout, name="4")(y, train)


class EncoderBlock(nn.Module):
  """torchvision's EncoderBlock: pre-LN attention and MLP, each with a residual."""
  heads: int
  mlp: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = layer_norm(dtype=self.dtype, name="ln_1")(x)
    y = SelfAttention(self.heads, self.dtype, name="self_attention")(y)
    x = x + Dropout(self.dropout, name="dropout")(y, train)
    y = layer_norm(dtype=self.dtype, name="ln_2")(x)
    return x + MLP(self.mlp, self.dropout, self.dtype, name="mlp")(y, train)


class Layers(nn.Module):
  """torchvision's `encoder.layers` Sequential: `encoder_layer_0`, `encoder_layer_1`, ..."""
  variant: Variant
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    v = self.variant
    for i in range(v.layers):
      x = EncoderBlock(v.heads, v.mlp, self.dropout, self.dtype,
                       name=f"encoder_layer_{i}")(x, train)
    return x


class Encoder(nn.Module):
  """torchvision's Encoder: + pos_embedding, dropout, `layers`, final `ln`."""
  variant: Variant
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, *x.shape[1:]), jnp.float32)
    x = Dropout(self.dropout, name="dropout")(x + pos.astype(self.dtype), train)
    x = Layers(self.variant, self.dropout, self.dtype, name="layers")(x, train)
    return layer_norm(dtype=self.dtype, name="ln")(x)


def check_image_size(height: int, width: int, patch: int) -> None:
  """A ValueError naming config.data.image_size unless `patch` divides both sides."""
  if height % patch or width % patch:
    size = height if height == width else (height, width)
    raise ValueError(
        f"config.data.image_size={size} is not divisible by the ViT patch size {patch}")


class VisionTransformer(nn.Module):
  """torchvision's VisionTransformer (no conv stem, no representation layer).

  Attributes:
    num_classes: size of the `heads/head` output.
    variant: patch size, depth, heads, width and MLP width.
    dropout: torchvision's `dropout` (0 in its ViTs).
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  variant: Variant
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), the class token after `encoder/ln` ('trunk'), or head(x) ('head')."""
    check_part(part)
    if part != "head":
      x = self._trunk(x.astype(self.dtype), train)
      if part == "trunk":
        return x
    x = Heads(self.num_classes, self.dtype, name="heads")(x.astype(self.dtype))
    return x.astype(jnp.float32)

  def _trunk(self, x, train: TrainArg):
    v = self.variant
    check_image_size(x.shape[1], x.shape[2], v.patch)
    fan_in = 3 * v.patch * v.patch
    x = Conv(v.hidden, (v.patch, v.patch), (v.patch, v.patch), padding="VALID", dtype=self.dtype,
             kernel_init=nn.initializers.normal(math.sqrt(1 / fan_in)), name="conv_proj")(x)
    x = x.reshape(x.shape[0], -1, v.hidden)
    token = self.param("class_token", nn.initializers.zeros, (1, 1, v.hidden), jnp.float32)
    token = jnp.broadcast_to(token.astype(self.dtype), (x.shape[0], 1, v.hidden))
    x = jnp.concatenate([token, x], axis=1)
    x = Encoder(v, self.dropout, self.dtype, name="encoder")(x, train)
    return x[:, 0]


class Heads(nn.Module):
  """torchvision's `heads` Sequential: one zero-initialised Linear `head`."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                    name="head")(x)


def build(name: str, num_classes: int, dtype: Any = jnp.float32, init: str = "native"):
  inits.check(init)  # native == torch: torchvision's init
  return VisionTransformer(num_classes, VARIANTS[name], dtype=dtype)


vit_b_16 = functools.partial(build, "vit_b_16")
vit_s_16 = functools.partial(build, "vit_s_16")
BLOCKS = block_names(12)
# LoRA's default targets: the packed q/k/v projection, the attention output and both MLP layers.
LORA_TARGETS = (
    r"encoder/layers/encoder_layer_\d+/self_attention/(?:in_proj_weight|out_proj/kernel)",
    r"encoder/layers/encoder_layer_\d+/mlp/(?:0|3)/kernel")
