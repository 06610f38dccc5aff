"""Helpers shared by the parity tests against PyTorch originals."""
import torch


def randomise_(net: torch.nn.Module, seed: int = 1) -> None:
  """Random BN statistics/affine, linear weights and conv biases at scales keeping activations O(1).

  Freshly constructed PyTorch models have BN mean 0 / var 1 / scale 1 / shift 0,
  which would hide a mistake in how statistics or affine parameters convert.
  """
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.2, generator=gen)
        m.running_var.uniform_(0.5, 2.0, generator=gen)
        m.weight.uniform_(0.2, 0.6, generator=gen)
        m.bias.normal_(0, 0.2, generator=gen)
      elif isinstance(m, torch.nn.Linear):
        m.weight.normal_(0, m.in_features**-0.5, generator=gen)
        m.bias.normal_(0, 0.1, generator=gen)
      elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
        m.bias.normal_(0, 0.1, generator=gen)


def randomise_transformer_(net: torch.nn.Module, is_norm, is_embedding) -> None:
  """Random weights at scales keeping a ViT's activations O(1), from torch's global generator.

  Biases N(0, 0.1^2); the LayerNorm affine parameters (`is_norm(name)`) U(0.5, 1.5); matrices
  N(0, 1 / fan_in) except the class token and position embedding (`is_embedding(name)`),
  which, like the remaining tensors, get N(0, 0.5^2).
  """
  with torch.no_grad():
    for name, p in net.named_parameters():
      if name.endswith("bias"):
        p.normal_(0, 0.1)
      elif is_norm(name):
        p.uniform_(0.5, 1.5)
      elif p.ndim >= 2 and not is_embedding(name):
        p.normal_(0, p[0].numel() ** -0.5)
      else:
        p.normal_(0, 0.5)
