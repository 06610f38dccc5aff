"""LoRA's default adapters per registered model: how many kernels, how many parameters.

  python experiments/lora_targets.py [--rank=8] [--num_classes=10]

For every model in `ftlab.models.MODELS`, with `config.strategy.lora_targets`
empty (the model's default: ViT's attention and MLP kernels, every other
model's convolution and Dense kernels outside the head, depthwise ones
excepted; `ftlab/training/lora.py`), prints a markdown row: the adapted
kernels, the adapter parameters, the head's, and what trains in all (with
its share of the model). Shapes come from
`jax.eval_shape`: nothing is initialised or downloaded.
"""
import argparse
import math
import re
import sys

from configs import default
from ftlab.models import MODELS
from ftlab.training import lora
from ftlab.training import state as state_lib
from ftlab.training import strategy


def row(name: str, rank: int, num_classes: int) -> str:
  spec = MODELS[name]
  shapes, _ = state_lib.variable_shapes(spec.build(num_classes), spec.input_size)
  cfg = default.get_config().strategy
  cfg.lora_rank = rank
  adapters = lora.resolve(spec, cfg, shapes)
  head = [p for p in shapes if re.fullmatch(strategy.under(spec.head), p)]
  adapter_params = sum(math.prod(s) for s in adapters.shapes.values())
  head_params = sum(math.prod(shapes[p]) for p in head)
  total = sum(math.prod(s) for s in shapes.values())
  trains = adapter_params + head_params
  return (f"| {name} | {len(adapters.targets)} | {adapter_params:,} | {head_params:,} | "
          f"{trains:,} ({100 * trains / total:.1f}% of {total:,}) |")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rank", type=int, default=8)
  parser.add_argument("--num_classes", type=int, default=10)
  args = parser.parse_args(argv)
  print(f"rank {args.rank}, a {args.num_classes}-class head\n")
  print("| model | adapted kernels | adapter parameters | head parameters | trainable |")
  print("|---|---|---|---|---|")
  for name in MODELS:
    print(row(name, args.rank, args.num_classes), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
