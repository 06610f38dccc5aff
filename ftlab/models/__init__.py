"""The model registry: an explicit dict from name to `ModelSpec`.

Contract for every architecture module (see `tiny.py` for the smallest one):

* `spec.build(num_classes, dtype, init='native')` returns a `flax.linen.Module`
  whose `__call__(x, train=False, part='all')` takes NHWC float images and
  returns logits. `part='trunk'` returns the pooled features that enter the
  head, `part='head'` maps such features to logits; `all` == head(trunk(x)).
* `init` (`config.model.init`) picks the random initialisation from `inits`:
  'native' is what the framework that trained the published weights used,
  'torch' each layer type as PyTorch initialises it in the PyTorch original
  (the same for torchvision models); any other value is a ValueError naming
  `config.model.init`. Pretrained weights replace it, except for a
  re-initialised head.
* `train` is a bool or a `layers.Mode`; BatchNorm and Dropout come from
  `layers.py` so per-module freezing works everywhere.
* Parameter paths mirror the PyTorch original's module names with '.'
  replaced by '/' (torchvision `layer1.0.conv1.weight` -> Flax
  `layer1/0/conv1/kernel`), so converted weights drop in.
* `spec.blocks` lists the trunk's blocks from shallow to deep, each a regex
  that fully matches a '/'-joined *module* path prefix (e.g. 'layer1',
  'conv1|bn1') or a whole parameter path (ViT's 'class_token',
  'encoder/pos_embedding', timm ViT's 'cls_token', 'pos_embed', which sit
  directly in a module with other children); `spec.head` likewise names the
  classifier. Together they must cover every parameter: strategies such as
  freeze_shallow(n) cut on them.
* A model with a `drop_path_rate` attribute (ConvNeXt) takes
  `config.model.drop_path_rate` through `with_drop_path`.
* `spec.lora_targets` (optional) are the regexes over parameter paths that
  the `lora` strategy adapts by default (ViT: attention and MLP kernels);
  without them it adapts every convolution kernel (1x1 or kxk, not
  depthwise) and Dense kernel outside the head (`training/lora.py`).
* `spec.bn_momentum` is the architecture's own BatchNorm momentum (PyTorch
  convention), which `config.model.bn_momentum` may override.
* `spec.freeze_blocks` is freeze_shallow's default depth for the model (used
  when `config.strategy.freeze_blocks` is 0): the leading blocks frozen, about
  the share of MobileNetV3-small's that the MindCV fine-tuning guide freezes
  (features.0-6 of 13: through its first stride-16 stage), cut at a stage
  boundary where the blocks have stages.
"""
import dataclasses
from typing import Callable

import flax.linen as nn

from ftlab.models import (convnext, densenet, efficientnet_lite, mobilenet, resnest, resnet, tiny,
                          vit, vit_timm)
from ftlab.models.layers import BatchNorm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  build: Callable[..., nn.Module]  # (num_classes, dtype, init='native')
  blocks: tuple
  head: str
  freeze_blocks: int  # freeze_shallow's default: leading blocks frozen (config.strategy.freeze_blocks=0)
  input_size: int = 224
  mean: tuple = IMAGENET_MEAN
  std: tuple = IMAGENET_STD
  bn_momentum: float = BatchNorm.momentum
  lora_targets: tuple = ()  # LoRA's default targets; () = conv (not depthwise) and Dense kernels
  boundaries: bool = False  # __call__ also takes part=('upto', n) / ('from', n) (models/parts.py)


def _lite(name: str, build, freeze_blocks: int) -> ModelSpec:
  """EfficientNet-Lite: TF-trained weights expecting mean 0.498 / std 0.502."""
  return ModelSpec(build=build, blocks=efficientnet_lite.block_names(name),
                   head=efficientnet_lite.HEAD, freeze_blocks=freeze_blocks,
                   input_size=efficientnet_lite.VARIANTS[name].image_size,
                   mean=efficientnet_lite.MEAN, std=efficientnet_lite.STD,
                   bn_momentum=efficientnet_lite.BN_MOMENTUM)


MODELS = {
    "tiny_cnn": ModelSpec(
        build=tiny.TinyCNN.build,
        blocks=tiny.BLOCKS,
        head=tiny.HEAD,
        freeze_blocks=1,  # conv1 of conv1, layer1, layer2
        input_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        boundaries=True,
    ),
    # ResNets and ResNeSt: the stem, layer1 and layer2 of their 5 blocks
    "resnet18": ModelSpec(build=resnet.resnet18, blocks=resnet.BLOCKS, head=resnet.HEAD,
                          freeze_blocks=3, boundaries=True),
    "resnet34": ModelSpec(build=resnet.resnet34, blocks=resnet.BLOCKS, head=resnet.HEAD,
                          freeze_blocks=3, boundaries=True),
    "resnet50": ModelSpec(build=resnet.resnet50, blocks=resnet.BLOCKS, head=resnet.HEAD,
                          freeze_blocks=3, boundaries=True),
    # features.0-10: through the 64-channel stage (the first at stride 16)
    "mobilenet_v2": ModelSpec(
        build=mobilenet.mobilenet_v2, blocks=mobilenet.V2_BLOCKS, head=mobilenet.HEAD,
        freeze_blocks=11),
    # features.0-6, the MindCV guide's cut
    "mobilenet_v3_small": ModelSpec(
        build=mobilenet.mobilenet_v3_small, blocks=mobilenet.V3_SMALL_BLOCKS,
        head=mobilenet.HEAD, freeze_blocks=7, bn_momentum=mobilenet.V3_BN_MOMENTUM),
    # features.0-8: the guide's share (7 of 13) of 17 blocks
    "mobilenet_v3_large": ModelSpec(
        build=mobilenet.mobilenet_v3_large, blocks=mobilenet.V3_LARGE_BLOCKS,
        head=mobilenet.HEAD, freeze_blocks=9, bn_momentum=mobilenet.V3_BN_MOMENTUM),
    # the stem, denseblock1-2 and their transitions
    "densenet121": ModelSpec(
        build=densenet.densenet121, blocks=densenet.BLOCKS, head=densenet.HEAD, freeze_blocks=5),
    # features.0-3: the stem and the first two stages
    "convnext_tiny": ModelSpec(
        build=convnext.convnext_tiny, blocks=convnext.block_names("convnext_tiny"),
        head=convnext.HEAD, freeze_blocks=7),
    "convnext_small": ModelSpec(
        build=convnext.convnext_small, blocks=convnext.block_names("convnext_small"),
        head=convnext.HEAD, freeze_blocks=7),
    "resnest50d": ModelSpec(build=resnest.resnest50d, blocks=resnest.BLOCKS, head=resnest.HEAD,
                            freeze_blocks=3),
    # the stem and the MBConv stages through the 80-channel one (stride 16): Lite0's first
    # 8 of 16 MBConv blocks, Lite1/2's first 11 of 21
    "efficientnet_lite0": _lite("efficientnet_lite0", efficientnet_lite.efficientnet_lite0, 9),
    "efficientnet_lite1": _lite("efficientnet_lite1", efficientnet_lite.efficientnet_lite1, 12),
    "efficientnet_lite2": _lite("efficientnet_lite2", efficientnet_lite.efficientnet_lite2, 12),
    # ViTs: the patch embedding and the first 6 of 12 encoder layers
    "vit_b_16": ModelSpec(build=vit.vit_b_16, blocks=vit.BLOCKS, head=vit.HEAD, freeze_blocks=7,
                          lora_targets=vit.LORA_TARGETS),
    "vit_s_16": ModelSpec(build=vit.vit_s_16, blocks=vit.BLOCKS, head=vit.HEAD, freeze_blocks=7,
                          lora_targets=vit.LORA_TARGETS),
    "vit_small_patch16_224": ModelSpec(
        build=vit_timm.vit_small_patch16_224, blocks=vit_timm.BLOCKS, head=vit_timm.HEAD,
        freeze_blocks=7, mean=vit_timm.MEAN, std=vit_timm.STD,
        lora_targets=vit_timm.LORA_TARGETS),
}


def get_spec(name: str) -> ModelSpec:
  if name not in MODELS:
    raise ValueError(
        f"config.model.name={name!r} is not a registered model; choose one of "
        f"{sorted(MODELS)}")
  return MODELS[name]


def with_drop_path(model: nn.Module, rate: float) -> nn.Module:
  """`model` with stochastic-depth rate `rate` (`config.model.drop_path_rate`).

  0 keeps the architecture's default (ConvNeXt: torchvision's), a negative
  rate turns drop-path off; a positive rate on a model without drop-path is a
  ValueError naming the key.
  """
  if rate == 0:
    return model
  if not hasattr(model, "drop_path_rate"):
    raise ValueError(f"config.model.drop_path_rate={rate}: {type(model).__name__} has no "
                     "drop-path rate to set; leave it at 0")
  return model.clone(drop_path_rate=max(rate, 0.0))
