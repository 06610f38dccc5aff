"""The pure train and eval steps (jitted by the caller).

`train_step(state, batch, rng) -> (state, metrics)`: the per-step rng is
`fold_in(rng, state.step)`; the gradient is taken with respect to the
trainable parameters only, so frozen layers cost no backward pass and the
optimizer never sees them. With `on_features=True` the step trains the head
on cached trunk features (`batch['features']`) instead of images.

With `setup.mixup` enabled (config.train.mixup_alpha / cutmix_alpha), each
batch is mixed inside the step (`mixup.py`) from the stream
`fold_in(step rng, MIXUP_STREAM)` (dropout keeps the step rng itself, so a
run without mixup draws exactly what it drew before), the loss is the
cross-entropy against the mixed, smoothed targets, and train top-1/top-5
count the dominant label. Mixup of cached features is not defined: such a
step is refused (the trainer does not cache features when mixup is on).
With `setup.ema_decay` > 0 the step also updates the EMA weights (`ema.py`).
"""
import jax
import jax.numpy as jnp
import optax

from ftlab.evaluation import metrics
from ftlab.models import ModelSpec
from ftlab.training import ema as ema_lib
from ftlab.training import mixup as mixup_lib
from ftlab.training import strategy
from ftlab.training.state import Setup, TrainState, model_params, variables_of


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


MIXUP_STREAM = 1  # fold_in(step rng, MIXUP_STREAM): mixup's draws, apart from dropout's


def _smoothing(setup: Setup, hparams):
  """The label smoothing: a state value (one program for every value), 0 when the config has none."""
  return hparams["label_smoothing"] if setup.label_smoothing else 0.0


def _targets(setup: Setup, inputs, labels, rng, mixing: bool, smoothing) -> tuple:
  """(inputs, targets for the loss, labels top-1 is counted against, extra metrics)."""
  if not mixing:
    return inputs, labels, labels, {}
  inputs, targets, dominant, lam = mixup_lib.apply(
      setup.mixup, jax.random.fold_in(rng, MIXUP_STREAM), inputs, labels, setup.num_classes,
      smoothing)
  return inputs, targets, dominant, {"mixup_lam": lam}


def _loss(setup: Setup, logits, targets, mixing: bool, smoothing):
  if mixing:  # soft targets, smoothing already applied (timm's SoftTargetCrossEntropy)
    return optax.softmax_cross_entropy(logits, targets).mean()
  return metrics.cross_entropy(logits, targets, setup.num_classes, smoothing).mean()


def make_train_step(setup: Setup, phase_index: int = 0, on_features: bool = False,
                    from_block: int = 0):
  """Returns the pure `train_step(state, batch, rng) -> (state, metrics)` of one phase.

  `from_block` > 0: `batch['features']` holds the activations after that many
  frozen blocks (training/boundary_cache.py), run through the rest of the model.
  """
  phase = setup.phases[phase_index]
  mixing = setup.mixup is not None and setup.mixup.enabled
  if mixing and (on_features or from_block):
    raise ValueError("mixup/CutMix (config.train.mixup_alpha, cutmix_alpha) mixes images; it is "
                     "not defined on cached trunk features or boundary activations "
                     "(config.strategy.cache_features)")

  def loss_fn(trainable, state, inputs, part, targets, rng):
    params = model_params({**state.frozen, **trainable}, state.lora_scale)  # LoRA merged in
    variables = {"params": params, "batch_stats": state.batch_stats}
    logits, updates = setup.model.apply(variables, inputs, train=phase.mode, part=part,
                                        mutable=["batch_stats"], rngs={"dropout": rng})
    hp = state.hparams  # values, not constants: one program for every value (optim.py)
    loss = _loss(setup, logits, targets, mixing, _smoothing(setup, hp))
    if setup.l2sp:
      loss = loss + strategy.l2sp_penalty(trainable, state.anchor, hp["l2sp_alpha"],
                                          hp["l2sp_beta"])
    return loss, (logits, updates.get("batch_stats", state.batch_stats))

  def train_step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    inputs, part = _inputs(batch, setup, on_features, from_block)
    inputs, targets, counted, extra = _targets(setup, inputs, batch["label"], rng, mixing,
                                               _smoothing(setup, state.hparams))
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, batch_stats)), grads = grad_fn(state.trainable, state, inputs, part,
                                                   targets, rng)
    tx = phase.transform(state.hparams)
    updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
    trainable = optax.apply_updates(state.trainable, updates)
    step_metrics = {
        "loss": loss,
        "top1": metrics.topk_correct(logits, counted, 1).mean(),
        "top5": metrics.topk_correct(logits, counted, 5).mean(),
        "grad_norm": optax.tree.norm(grads),
        "update_norm": optax.tree.norm(updates),
        "param_norm": optax.tree.norm(trainable),
        **extra,
    }
    new_state = state.replace(step=state.step + 1, trainable=trainable,
                              batch_stats=batch_stats, opt_state=opt_state)
    if setup.ema_decay:
      new_state = new_state.replace(ema=ema_lib.update(state.ema, trainable, batch_stats,
                                                       setup.ema_decay))
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
