"""ftlab's LoRA on a PyTorch original, for bench_step.py's lora rows.

The same adapters as ftlab's (`ftlab.training.lora.resolve`: its targets,
rank and alpha from `configs/default.py`), each a `torch.nn.utils.parametrize`
parametrization W + (alpha / r) * B @ A of the frozen weight, with PEFT's
layout (A (r, in), B (out, r)) and init (A Kaiming-uniform a=sqrt(5), B = 0).
"""
import benchlib


def add_lora(net, model: str, image_size: int, head: str) -> None:
  """Freezes `net` and parametrizes ftlab's LoRA targets as W + (alpha / r) * B @ A (PEFT's)."""
  import math  # pylint: disable=import-outside-toplevel

  import torch  # pylint: disable=import-outside-toplevel
  from torch.nn.utils import parametrize  # pylint: disable=import-outside-toplevel

  from ftlab.models import get_spec  # pylint: disable=import-outside-toplevel
  from ftlab.training import lora  # pylint: disable=import-outside-toplevel
  from ftlab.training import state as state_lib  # pylint: disable=import-outside-toplevel
  config = benchlib.ftlab_config(model, image_size, "lora")
  spec = get_spec(model)
  shapes = state_lib.param_shapes(spec.build(benchlib.NUM_CLASSES), image_size)
  adapters = lora.resolve(spec, config.strategy, shapes)

  class LoRA(torch.nn.Module):
    def __init__(self, out_features: int, in_features: int):
      super().__init__()
      self.a = torch.nn.Parameter(torch.empty(adapters.rank, in_features))
      torch.nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
      self.b = torch.nn.Parameter(torch.zeros(out_features, adapters.rank))

    def forward(self, weight):
      return weight + adapters.scale * (self.b @ self.a)

  for p in net.parameters():
    p.requires_grad_(False)
  for path in adapters.targets:
    module_path, leaf = path.rsplit("/", 1)
    name = "weight" if leaf == lora.KERNEL else leaf  # ViT's in_proj_weight keeps its name
    module = net.get_submodule(module_path.replace("/", "."))
    weight = getattr(module, name)
    if weight.ndim != 2:
      raise ValueError(f"the PyTorch LoRA here adapts Linear weights only, not {path}")
    parametrize.register_parametrization(module, name, LoRA(*weight.shape))
  for p in getattr(net, head).parameters():
    p.requires_grad_(True)
