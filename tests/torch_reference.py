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
