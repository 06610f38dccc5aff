"""Resampling a ViT position embedding to another patch grid.

A ViT trained at one image size has one position embedding per patch of its
grid (plus the class token's). Fine-tuned at another size, the grid's
embeddings are interpolated bicubically over the 2-D grid and the class
token's is kept, as big_vision's `resample_posemb` and timm's
`resample_abs_pos_embed` do. The interpolation is PyTorch's
`F.interpolate(mode='bicubic', align_corners=False)` without antialiasing
(cubic convolution with a = -0.75, half-pixel centres, edge samples
repeated), written in numpy; `jax.image.resize`'s bicubic (a = -0.5, and
antialiased when shrinking) gives slightly different numbers.
"""
import math

import numpy as np

A = -0.75  # PyTorch's bicubic coefficient


def _cubic(t: np.ndarray) -> np.ndarray:
  t = np.abs(t)
  near = ((A + 2) * t - (A + 3)) * t * t + 1
  far = ((A * t - 5 * A) * t + 8 * A) * t - 4 * A
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """(n_out, n_in) weights of PyTorch's 1-D bicubic resampling (align_corners=False)."""
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    x = (i + 0.5) * n_in / n_out - 0.5
    x0 = math.floor(x)
    for j in range(x0 - 1, x0 + 3):
      m[i, min(max(j, 0), n_in - 1)] += _cubic(np.float64(x - j))
  return m


def grid_side(tokens: int) -> int:
  side = math.isqrt(tokens)
  if side * side != tokens:
    raise ValueError(f"{tokens} position embeddings do not form a square grid")
  return side


def resample(posemb: np.ndarray, tokens: int, prefix: int = 1) -> np.ndarray:
  """`posemb` (1, prefix + g*g, D) resampled to (1, `tokens`, D) over the square grid.

  The first `prefix` embeddings (the class token's) are kept unchanged.
  """
  posemb = np.asarray(posemb)
  old = grid_side(posemb.shape[1] - prefix)
  new = grid_side(tokens - prefix)
  if old == new:
    return posemb
  grid = posemb[0, prefix:].reshape(old, old, -1).astype(np.float64)
  m = bicubic_matrix(old, new)
  grid = np.einsum("ai,bj,ijd->abd", m, m, grid).reshape(1, new * new, -1)
  return np.concatenate([posemb[:, :prefix], grid.astype(posemb.dtype)], axis=1)
