"""The pure train and eval steps (jitted by the caller).

`train_step(state, batch, rng) -> (state, metrics)`: the per-step rng is
`fold_in(rng, state.step)`; the gradient is taken with respect to the
trainable parameters only, so frozen layers cost no backward pass and the
optimizer never sees them. With `on_features=True` the step trains the head
on cached trunk features (`batch['features']`) instead of images.
"""
import jax
import jax.numpy as jnp
import optax

from ftlab.evaluation import metrics
from ftlab.models import ModelSpec
from ftlab.training import strategy
from ftlab.training.state import Setup, TrainState, unflatten, variables_of


def normalize(images, spec: ModelSpec):
  """uint8 NHWC -> float32 normalised with the model's own mean/std."""
  mean = jnp.asarray(spec.mean, jnp.float32) * 255.0
  std = jnp.asarray(spec.std, jnp.float32) * 255.0
  return (images.astype(jnp.float32) - mean) / std


def _inputs(batch, setup: Setup, on_features: bool, from_block: int = 0):
  if from_block:
    return batch["features"], ("from", from_block)
  if on_features:
    return batch["features"], "head"
  return normalize(batch["image"], setup.spec), "all"


def make_train_step(setup: Setup, phase_index: int = 0, on_features: bool = False,
                    from_block: int = 0):
  """Returns the pure `train_step(state, batch, rng) -> (state, metrics)` of one phase.

  `from_block` > 0: `batch['features']` holds the activations after that many
  frozen blocks (training/boundary_cache.py), run through the rest of the model.
  """
  phase = setup.phases[phase_index]

  def loss_fn(trainable, state, inputs, part, labels, rng):
    variables = {"params": unflatten({**state.frozen, **trainable}), "batch_stats": state.batch_stats}
    logits, updates = setup.model.apply(variables, inputs, train=phase.mode, part=part,
                                        mutable=["batch_stats"], rngs={"dropout": rng})
    hp = state.hparams  # values, not constants: one program for every value (optim.py)
    smoothing = hp["label_smoothing"] if setup.label_smoothing else 0.0
    loss = metrics.cross_entropy(logits, labels, setup.num_classes, smoothing).mean()
    if setup.l2sp:
      loss = loss + strategy.l2sp_penalty(trainable, state.anchor, hp["l2sp_alpha"],
                                          hp["l2sp_beta"])
    return loss, (logits, updates.get("batch_stats", state.batch_stats))

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    inputs, part = _inputs(batch, setup, on_features, from_block)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.trainable, state, inputs, part,
                                                   batch["label"], rng)
    tx = phase.transform(state.hparams)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    step_metrics = {
        "loss": loss,
        "top1": metrics.topk_correct(logits, batch["label"], 1).mean(),
        "top5": metrics.topk_correct(logits, batch["label"], 5).mean(),
        "grad_norm": optax.tree.norm(grads),
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(trainable),
    }
    new_state = state.replace(step=state.step + 1, trainable=trainable,
                              batch_stats=batch_stats, opt_state=opt_state)
    return new_state, step_metrics

  return train_step


def make_eval_step(setup: Setup, on_features: bool = False):
  """Returns `eval_step(state, batch) -> per-example outputs`."""

  def eval_step(state: TrainState, batch):
    inputs, part = _inputs(batch, setup, on_features)
    logits = setup.model.apply(variables_of(state), inputs, train=False, part=part)
    return {
        "loss": metrics.cross_entropy(logits, batch["label"], setup.num_classes),
        "top1": metrics.topk_correct(logits, batch["label"], 1),
        "top5": metrics.topk_correct(logits, batch["label"], 5),
        "pred": jnp.argmax(logits, -1),
        "confidence": jnp.max(jax.nn.softmax(logits), -1),
        "label": batch["label"],
        "mask": batch["mask"],
    }

  return eval_step


def make_trunk_step(setup: Setup):
  """Returns `trunk_step(state, batch) -> pooled features` (inference mode), for the cache."""

  def trunk_step(state: TrainState, batch):
    return setup.model.apply(variables_of(state), normalize(batch["image"], setup.spec),
                             train=False, part="trunk").astype(jnp.float32)

  return trunk_step
