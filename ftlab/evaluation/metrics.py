"""Losses and classification metrics (device side and host side)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax


def cross_entropy(logits, labels, num_classes: int, label_smoothing: float = 0.0):
  """Per-example softmax cross-entropy with optional label smoothing.

  `label_smoothing` may be a traced value (the train state's hparams); a Python 0 skips it.
  """
  targets = jax.nn.one_hot(labels, num_classes)
  if not isinstance(label_smoothing, (int, float)) or label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def topk_correct(logits, labels, k: int):
  """1.0 where the label is among the k highest logits (k capped at #classes)."""
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """Rows: true class, columns: predicted class."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, preds), 1)
  return cm


def macro_prf(cm: np.ndarray) -> dict:
  """Macro precision/recall/F1 over the classes present in the true labels."""
  tp = np.diag(cm).astype(np.float64)
  predicted = cm.sum(0)
  actual = cm.sum(1)
  present = actual > 0
  precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
  recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
  denom = precision + recall
  f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
  return {"macro_precision": float(precision[present].mean()),
          "macro_recall": float(recall[present].mean()),
          "macro_f1": float(f1[present].mean())}
