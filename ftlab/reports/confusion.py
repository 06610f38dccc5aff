"""A run's confusion matrix (confusion.csv) read back and drawn as a heat map.

confusion.csv is what `ftlab.evaluation.evaluator.write_confusion` writes for
the test split: a header `true\\predicted,"class",...` (names JSON-quoted),
then one row per true class, `"class",count,...`.
"""
import csv
import dataclasses
import json
import pathlib

from matplotlib.figure import Figure
import numpy as np


CONFUSION_FILE = "confusion.csv"
CORNER = "true\\predicted"
LABELLED_CLASSES = 30  # tick labels up to this many classes
ANNOTATED_CLASSES = 12  # counts written into the cells up to this many classes


@dataclasses.dataclass(frozen=True)
class Confusion:
  """Counts of (true, predicted) class pairs.

  Attributes:
    classes: the class names, in the file's order.
    counts: int array [true, predicted].
  """
  classes: list
  counts: np.ndarray

  @property
  def accuracy(self) -> float | None:
    total = int(self.counts.sum())
    return float(np.trace(self.counts)) / total if total else None


def _name(field: str) -> str:
  """A class name as written (csv unquotes it; JSON escapes such as \\u00e9 stay)."""
  try:
    return json.loads(f'"{field}"')
  except ValueError:
    return field


def read_confusion(path: str | pathlib.Path) -> Confusion:
  """Parses a confusion.csv.

  Raises:
    OSError: the file cannot be read.
    ValueError: it is not a square matrix of non-negative counts with matching class names.
  """
  with open(path, newline="", encoding="utf-8") as f:
    rows = [row for row in csv.reader(f) if row]
  if not rows or rows[0][0] != CORNER:
    raise ValueError(f"{path}: does not start with {CORNER!r}")
  classes = [_name(c) for c in rows[0][1:]]
  body = rows[1:]
  if not classes or len(body) != len(classes):
    raise ValueError(f"{path}: {len(classes)} predicted classes but {len(body)} rows")
  counts = []
  for i, row in enumerate(body):
    if len(row) != len(classes) + 1 or _name(row[0]) != classes[i]:
      raise ValueError(f"{path}: row {i + 2} is not {len(classes)} counts for {classes[i]!r}")
    try:
      counts.append([int(v) for v in row[1:]])
    except ValueError as e:
      raise ValueError(f"{path}: row {i + 2}: {e}") from None
  counts = np.array(counts, dtype=np.int64)
  if (counts < 0).any():
    raise ValueError(f"{path}: negative counts")
  return Confusion(classes, counts)


def confusion_figure(confusion: Confusion, title: str) -> Figure:
  """A heat map: colour is the share of each true class's images, counts written when few.

  Class names label the axes up to LABELLED_CLASSES classes, counts fill the
  cells up to ANNOTATED_CLASSES.
  """
  n = len(confusion.classes)
  side = min(9.0, max(3.4, 0.32 * n + 2.0))
  fig = Figure(figsize=(side + 1.2, side), layout="constrained")
  ax = fig.subplots()
  totals = confusion.counts.sum(axis=1, keepdims=True)
  share = np.divide(confusion.counts, totals, out=np.zeros(confusion.counts.shape),
                    where=totals > 0)
  image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
  if n <= LABELLED_CLASSES:
    ax.set_xticks(range(n), confusion.classes, rotation=90, fontsize="x-small")
    ax.set_yticks(range(n), confusion.classes, fontsize="x-small")
  else:
    ax.set(xticks=[], yticks=[])
  if n <= ANNOTATED_CLASSES:
    for (i, j), count in np.ndenumerate(confusion.counts):
      ax.text(j, i, str(count), ha="center", va="center", fontsize="small",
              color="white" if share[i, j] > 0.5 else "black")
  ax.set_xlabel("predicted" + ("" if n <= LABELLED_CLASSES else f" ({n} classes)"))
  ax.set_ylabel("true")
  ax.set_title(title, fontsize="small")
  return fig
