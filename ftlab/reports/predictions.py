"""A run's predictions.csv (ftlab.evaluation.evaluator.write_predictions): its rows, and which test
images it got right, aligned across runs for image-level paired comparisons."""
import csv
import pathlib
from typing import Mapping

import numpy as np


PREDICTIONS_FILE = "predictions.csv"


def read_predictions(path: pathlib.Path) -> list[dict]:
  """Rows of a predictions.csv (image, true, predicted, confidence)."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  needed = {"image", "true", "predicted"}
  if rows and not needed <= set(rows[0]):
    raise ValueError(f"{path}: needs columns {sorted(needed)}, has {sorted(rows[0])}")
  return rows


def correctness(run_dir: pathlib.Path) -> dict | None:
  """{image: predicted == true} of a run's test predictions, or None without a readable file."""
  path = pathlib.Path(run_dir) / PREDICTIONS_FILE
  try:
    rows = read_predictions(path)
  except (OSError, ValueError):
    return None
  return {r["image"]: r["predicted"] == r["true"] for r in rows}


def paired_matrices(a: Mapping, b: Mapping) -> tuple:
  """(A, B, seeds): 0/1 arrays (seeds x images) over the seeds both have predictions for and the
  images all of them share, rows in seed order; (None, None, why) when there is nothing to pair.

  Args:
    a, b: seed -> run dir of the two strategies.
  """
  seeds = sorted(set(a) & set(b), key=str)
  tables = {}
  for side, dirs in (("a", a), ("b", b)):
    for s in seeds:
      tables[side, s] = correctness(dirs[s])
  if not seeds or all(t is None for t in tables.values()):
    return None, None, "no predictions.csv"
  if any(t is None for t in tables.values()):
    return None, None, "not every shared seed has predictions.csv"
  images = sorted(set.intersection(*(set(t) for t in tables.values())))
  if not images or any(len(t) != len(images) for t in tables.values()):
    return None, None, "the runs' predictions.csv hold different test images"
  stack = lambda side: np.array([[tables[side, s][i] for i in images] for s in seeds], np.int8)  # pylint: disable=unnecessary-lambda-assignment
  return stack("a"), stack("b"), tuple(seeds)
