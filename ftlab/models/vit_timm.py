"""ViT-S/16 with timm's module names (`timm.create_model('vit_small_patch16_224')`).

Parameter paths mirror `timm.models.vision_transformer.VisionTransformer`'s
state dict with timm's defaults (`class_token=True`, `no_embed_class=False`,
`global_pool='token'`): `patch_embed/proj` (the patch embedding conv),
`cls_token`, `pos_embed` (1, 1 + grid, D) whose first row is the class
token's, `blocks/N/{norm1, attn/qkv, attn/proj, norm2, mlp/fc1, mlp/fc2}`,
the final `norm` and `head`. LayerNorm eps 1e-6, exact GELU, q/k/v as one
biased Linear `attn/qkv` (3D outputs: q, k, v, each head after head, as
torchvision's packed in_proj), so the attention itself is `vit.attend`; the
features entering the head are the class token after `norm`.

Same dimensions as `vit.vit_s_16` (patch 16, 12 blocks, 6 heads, width 384,
MLP 1536); only the names and the initialisation differ. The position
embedding follows the input size at initialisation; a checkpoint of another
size is resampled at load (`pretrained.posemb`, class token kept).

Initialisation (`native` and `torch` alike: timm's `init_weights`, the
PyTorch original's): Linear layers trunc_normal_(std=0.02) (cut at +-2
absolute) with zero bias, the head included; `cls_token` N(0, 1e-6^2);
`pos_embed` trunc_normal_(std=0.02); `patch_embed/proj` at PyTorch's Conv2d
default; LayerNorm ones/zeros.

timm's dropout rates (`drop_rate`, `proj_drop_rate`, `pos_drop_rate`) are 0
for this model; the Dropout layers are kept (rate `dropout`) where timm has
them, except the attention-probability dropout (`attn_drop`, also 0). No
drop-path (timm's default `drop_path_rate=0`).
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ftlab.models import inits, vit
from ftlab.models.conv import Conv
from ftlab.models.layers import Dropout, TrainArg
from ftlab.models.mobilenet import check_part

HEAD = "head"
VARIANTS = {"vit_small_patch16_224": vit.VARIANTS["vit_s_16"]}

dense = functools.partial(nn.Dense, kernel_init=inits.TRUNC_NORMAL_002,
                          bias_init=nn.initializers.zeros)


def block_names(layers: int) -> tuple:
  """BLOCKS: patch embedding with class token and position embedding, each block, final norm."""
  return (("patch_embed|cls_token|pos_embed",) + tuple(f"blocks/{i}" for i in range(layers))
          + ("norm",))


class Attention(nn.Module):
  """timm's Attention: `qkv` Linear, scaled dot-product attention, `proj` Linear."""
  heads: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    d = x.shape[-1]
    qkv = dense(3 * d, dtype=self.dtype, name="qkv")(x)
    y = dense(d, dtype=self.dtype, name="proj")(vit.attend(qkv, self.heads, self.dtype))
    return Dropout(self.dropout, name="proj_drop")(y, train)


class Mlp(nn.Module):
  """timm's Mlp: `fc1`, GELU (exact), `drop1`, `fc2`, `drop2`."""
  mlp: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = nn.gelu(dense(self.mlp, dtype=self.dtype, name="fc1")(x), approximate=False)
    y = Dropout(self.dropout, name="drop1")(y, train)
    y = dense(x.shape[-1], dtype=self.dtype, name="fc2")(y)
    return Dropout(self.dropout, name="drop2")(y, train)


class Block(nn.Module):
  """timm's Block: pre-LN attention and MLP, each with a residual (no layer scale)."""
  heads: int
  mlp: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    y = vit.layer_norm(dtype=self.dtype, name="norm1")(x)
    x = x + Attention(self.heads, self.dropout, self.dtype, name="attn")(y, train)
    y = vit.layer_norm(dtype=self.dtype, name="norm2")(x)
    return x + Mlp(self.mlp, self.dropout, self.dtype, name="mlp")(y, train)


class Blocks(nn.Module):
  """timm's `blocks` Sequential: `0`, `1`, ..."""
  variant: vit.Variant
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg):
    v = self.variant
    for i in range(v.layers):
      x = Block(v.heads, v.mlp, self.dropout, self.dtype, name=str(i))(x, train)
    return x


class PatchEmbed(nn.Module):
  """timm's PatchEmbed: a patch x patch conv `proj` of stride patch, flattened to tokens."""
  variant: vit.Variant
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    v = self.variant
    vit.check_image_size(x.shape[1], x.shape[2], v.patch)
    fan_in = 3 * v.patch * v.patch
    x = Conv(v.hidden, (v.patch, v.patch), (v.patch, v.patch), padding="VALID", dtype=self.dtype,
             kernel_init=inits.TORCH_DEFAULT_KERNEL, bias_init=inits.torch_default_bias(fan_in),
             name="proj")(x)
    return x.reshape(x.shape[0], -1, v.hidden)


class VisionTransformer(nn.Module):
  """timm's VisionTransformer with class token, position embedding over it, token pooling.

  Attributes:
    num_classes: size of the `head` output.
    variant: patch size, depth, heads, width and MLP width.
    dropout: timm's `drop_rate`/`proj_drop_rate`/`pos_drop_rate` (0 for these weights).
    dtype: computation dtype (parameters stay float32; logits are float32).
  """
  num_classes: int
  variant: vit.Variant
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: TrainArg = False, part: str = "all"):
    """Logits (`part='all'`), the class token after `norm` ('trunk'), or head(x) ('head')."""
    check_part(part)
    if part != "head":
      x = self._trunk(x.astype(self.dtype), train)
      if part == "trunk":
        return x
    x = Dropout(self.dropout, name="head_drop")(x.astype(self.dtype), train)
    return dense(self.num_classes, dtype=self.dtype, name="head")(x).astype(jnp.float32)

  def _trunk(self, x, train: TrainArg):
    v = self.variant
    x = PatchEmbed(v, self.dtype, name="patch_embed")(x)
    token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, v.hidden), jnp.float32)
    token = jnp.broadcast_to(token.astype(self.dtype), (x.shape[0], 1, v.hidden))
    x = jnp.concatenate([token, x], axis=1)
    pos = self.param("pos_embed", inits.TRUNC_NORMAL_002, (1, *x.shape[1:]), jnp.float32)
    x = Dropout(self.dropout, name="pos_drop")(x + pos.astype(self.dtype), train)
    x = Blocks(v, self.dropout, self.dtype, name="blocks")(x, train)
    return vit.layer_norm(dtype=self.dtype, name="norm")(x)[:, 0]


def build(name: str, num_classes: int, dtype: Any = jnp.float32, init: str = "native"):
  inits.check(init)  # native == torch: timm's init
  return VisionTransformer(num_classes, VARIANTS[name], dtype=dtype)


vit_small_patch16_224 = functools.partial(build, "vit_small_patch16_224")
BLOCKS = block_names(VARIANTS["vit_small_patch16_224"].layers)
# LoRA's default targets: the q/k/v projection, the attention output and both MLP layers.
LORA_TARGETS = (r"blocks/\d+/attn/(?:qkv|proj)/kernel", r"blocks/\d+/mlp/fc[12]/kernel")
# The registered weights (augreg, trained in JAX by the paper's authors): inputs in [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
