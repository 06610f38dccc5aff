"""Running a model in two pieces at a trunk-block boundary (the boundary cache's contract).

A model whose spec has `boundaries=True` also takes `part=("upto", n)`: the
activation after its first `n` blocks (`spec.blocks[:n]`, inputs as for
'all'), and `part=("from", n)`: that activation through the remaining
blocks, the pooling and the head, to logits; ("from", n) of ("upto", n) ==
'all'. Parameter paths are the same in every piece.
"""
from typing import Callable, Sequence


def is_boundary(part) -> bool:
  return isinstance(part, tuple)


def run(x, part: tuple, stages: Sequence[Callable], finish: Callable):
  """`stages` (one callable per block, shallow to deep) then `finish` (pool + head), cut at `part`."""
  kind, n = part
  if kind not in ("upto", "from") or not 0 < n < len(stages):
    raise ValueError(f"part must be ('upto', n) or ('from', n) with 0 < n < {len(stages)}, "
                     f"got {part!r}")
  for stage in (stages[:n] if kind == "upto" else stages[n:]):
    x = stage(x)
  return x if kind == "upto" else finish(x)
