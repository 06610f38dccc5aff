"""Evaluation over a loader, summary metrics, and the CSVs a run writes."""
import csv
import json
from typing import Any, Dict

import jax
from jax.experimental import multihost_utils
import numpy as np

from ftlab.evaluation import metrics
from ftlab.parallel.devices import Devices


def fetch(tree):
  """Device arrays -> numpy on this host; sharded across processes, gathered from all."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def evaluate(eval_fn, state, loader, devices: Devices) -> Dict[str, Any]:
  """Runs `loader` once; every image counts once (padding is masked out)."""
  outs = {}
  for batch in loader.epoch(0):
    for k, v in fetch(eval_fn(state, devices.shard_batch(batch))).items():
      outs.setdefault(k, []).append(np.asarray(v))
  cat = {k: np.concatenate(v) for k, v in outs.items()}
  keep = cat.pop("mask") > 0
  return {k: v[keep] for k, v in cat.items()}


def _fraction(k: int, n: int) -> float:
  return k / n if n else float("nan")


def summarize(outputs: Dict[str, np.ndarray], num_classes: int) -> Dict[str, float]:
  """Loss, accuracies and macro P/R/F1 of `evaluate`'s outputs.

  Accuracies are float64 fractions of integer counts (`correct`,
  `correct_top5` of `count`), not float32 means: rounded to float32, the same
  one-image gain on two seeds gives differences a few ulps apart. The report
  reads them back with ftlab.reports.stats.counted_fraction. An empty split gives NaN
  accuracies.
  """
  cm = metrics.confusion_matrix(outputs["label"], outputs["pred"], num_classes)
  count = int(len(outputs["label"]))
  correct = int(np.count_nonzero(outputs["top1"]))
  correct_top5 = int(np.count_nonzero(outputs["top5"]))
  return {"loss": float(outputs["loss"].mean()), "top1": _fraction(correct, count),
          "top5": _fraction(correct_top5, count), "correct": correct,
          "correct_top5": correct_top5, "count": count, **metrics.macro_prf(cm)}


def write_predictions(path: str, paths, outputs: dict, classes) -> None:
  """CSV of image, true, predicted (class names) and confidence, in split order."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f)
    out.writerow(["image", "true", "predicted", "confidence"])
    for image, true, pred, conf in zip(paths, outputs["label"], outputs["pred"], outputs["confidence"]):
      out.writerow([image, classes[true], classes[pred], f"{conf:.6f}"])


def write_confusion(path: str, outputs: dict, classes) -> None:
  cm = metrics.confusion_matrix(outputs["label"], outputs["pred"], len(classes))
  with open(path, "w", encoding="utf-8") as f:
    f.write("true\\predicted," + ",".join(json.dumps(c) for c in classes) + "\n")
    for name, row in zip(classes, cm):
      f.write(json.dumps(name) + "," + ",".join(str(int(v)) for v in row) + "\n")
