"""Closed-form ridge-regression probe on cached features (a seconds-long baseline).

Least squares from standardised features to centred one-hot targets with an
L2 penalty; the penalty is chosen on minival from a small log-spaced sweep,
then the chosen probe is scored once on the held-out split. One eigen-
decomposition of the Gram matrix serves every penalty.
"""
import time
from typing import Optional, Sequence

import numpy as np


LAMBDAS = tuple(10.0 ** e for e in range(-3, 5))


def _standardize(train: np.ndarray, *others: np.ndarray):
  mean, std = train.mean(0), train.std(0) + 1e-6
  return [(x - mean) / std for x in (train,) + others]


def fit_ridge(x: np.ndarray, y: np.ndarray, num_classes: int, lambdas: Sequence[float]):
  """Weights (with bias row) for every lambda, via one eigendecomposition."""
  x1 = np.concatenate([x, np.ones((len(x), 1))], 1).astype(np.float64)
  targets = np.eye(num_classes)[y]
  targets = targets - targets.mean(0)
  evals, evecs = np.linalg.eigh(x1.T @ x1)
  proj = evecs.T @ (x1.T @ targets)
  return [evecs @ (proj / (evals + lam * len(x))[:, None]) for lam in lambdas]


def _top1(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
  x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
  return float(np.mean(np.argmax(x1 @ w, 1) == y))


def ridge_probe(train, minival, test: Optional[tuple], num_classes: int,
                lambdas: Sequence[float] = LAMBDAS) -> dict:
  """Each split is (features, labels). Returns the chosen lambda and accuracies."""
  t0 = time.perf_counter()
  sets = [train, minival] + ([test] if test is not None else [])
  xs = _standardize(*(s[0] for s in sets))
  weights = fit_ridge(xs[0], train[1], num_classes, lambdas)
  scores = [_top1(w, xs[1], minival[1]) for w in weights]
  best = int(np.argmax(scores))
  out = {"lambda": lambdas[best], "minival_top1": scores[best],
         "sweep": {f"{lam:g}": s for lam, s in zip(lambdas, scores)}}
  if test is not None:
    out["test_top1"] = _top1(weights[best], xs[2], test[1])
  out["time_s"] = time.perf_counter() - t0
  return out
