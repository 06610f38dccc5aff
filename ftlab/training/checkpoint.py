"""Orbax checkpoints of a run: the latest (for resuming) and the best (by minival top-1).

Layout: `workdir/checkpoints/latest/<step>/` and `workdir/checkpoints/best/<step>/`,
each holding the train state (`state`) and the run's bookkeeping (`meta`, a
`meta.RunMeta` as JSON: history, best score, accumulated times) so a resumed run continues
exactly where the interrupted one stopped. Orbax writes to a temporary
directory and renames it, so an interrupted save never corrupts the last
good checkpoint.
"""
import dataclasses
import json
import os
from typing import Any, Callable, List, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from ftlab.configuration.files import read_config
from ftlab.training import ema as ema_lib
from ftlab.training import state as state_lib
from ftlab.training.meta import RunMeta


def _manager(path: str) -> ocp.CheckpointManager:
  # Synchronous saves: the train step donates its input buffers, so a background
  # save could read arrays that the next step already reused.
  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(path, options=options, item_names=("state", "meta"))


def _restore_step(manager, step: int, abstract_state) -> dict:
  return manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))


# TrainState's fields by when they came, the newest last: checkpoints written
# before `hparams` lack both, those written between lack `ema`.
_NEWER_FIELDS = (("ema",), ("ema", "hparams"))


def _restore_older(manager, step: int, template, abstract) -> dict:
  """Restores a checkpoint written before TrainState had its newer fields (no EMA in this
  run either; missing hyperparameter values are the config's, which the same-run check kept)."""
  error = None
  for missing in _NEWER_FIELDS:
    fields = {f.name: getattr(abstract, f.name) for f in dataclasses.fields(abstract)
              if f.name not in missing and f.metadata.get("pytree_node", True)}
    try:
      out = _restore_step(manager, step, fields)
    except ValueError as e:
      error = e
      continue
    state = dict(out["state"], ema={}, lora_scale=template.lora_scale)
    state.setdefault("hparams", template.hparams)
    return {"state": type(template)(**state), "meta": out["meta"]}
  raise error


class Checkpoints:
  """The run's two checkpoint managers."""

  def __init__(self, workdir: str):
    root = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.latest = _manager(os.path.join(root, "latest"))
    self.best = _manager(os.path.join(root, "best"))

  @staticmethod
  def _save(manager, step: int, state, meta: RunMeta) -> None:
    """Saves `step`, replacing a checkpoint of the same step (orbax refuses to overwrite).

    A run interrupted after `save_best(S)` but before `save_latest(S)` resumes
    from an earlier step and reaches S again: that replay saves S anew.
    """
    if step in manager.all_steps():
      manager.delete(step)
    items = ocp.args.Composite(state=ocp.args.StandardSave(state),
                               meta=ocp.args.JsonSave(meta.to_json()))
    manager.save(step, args=items, force=True)

  def save_latest(self, step: int, state, meta: RunMeta) -> None:
    self._save(self.latest, step, state, meta)

  def save_best(self, step: int, state, meta: RunMeta) -> None:
    self._save(self.best, step, state, meta)

  @staticmethod
  def _restore(manager, target_fn: Callable[[int], Any]) -> Optional[tuple]:
    step = manager.latest_step()
    if step is None:
      return None
    template = target_fn(step)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    try:
      out = _restore_step(manager, step, abstract)
    except ValueError:
      if template.ema:
        raise
      out = _restore_older(manager, step, template, abstract)
    where = os.path.join(manager.directory, str(step), "meta")
    return out["state"], RunMeta.from_json(dict(out["meta"]), where)

  def restore_latest(self, target_fn: Callable[[int], Any]) -> Optional[tuple]:
    """(state, RunMeta) of the latest checkpoint, or None.

    `target_fn(step)` returns a state laid out as the checkpoint of `step`
    is (phased strategies change the layout), used as the restore target.
    """
    return self._restore(self.latest, target_fn)

  def restore_best(self, target_fn: Callable[[int], Any]) -> Optional[tuple]:
    return self._restore(self.best, target_fn)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def read_classes(workdir: str) -> List[str]:
  with open(os.path.join(workdir, "label_map.json"), encoding="utf-8") as f:
    return json.load(f)["classes"]


@dataclasses.dataclass
class BestModel:
  """A trained run's best checkpoint, ready for inference."""
  config: ml_collections.ConfigDict
  spec: Any
  model: Any
  variables: dict
  class_names: List[str]
  step: int


def load_best(workdir: str) -> BestModel:
  """Loads `workdir`'s best checkpoint (for evaluate/predict): its EMA weights if selected."""
  config = read_config(workdir)
  classes = read_classes(workdir)
  with open(os.path.join(workdir, "schedule.json"), encoding="utf-8") as f:
    schedule = json.load(f)
  setup = state_lib.build_setup(config, len(classes), schedule["total_steps"],
                                schedule["warmup_steps"], schedule["steps_per_epoch"])
  restored = Checkpoints(workdir).restore_best(
      lambda step: state_lib.initial_state(setup, config, jax.random.key(0), load_weights=False,
                                           phase=setup.structure_index(step)))
  if restored is None:
    raise FileNotFoundError(f"no best checkpoint under {workdir}/checkpoints/best")
  state, _ = restored
  if config.train.select_ema:  # the weights the run selected and tested with
    state = ema_lib.weights(state)
  return BestModel(config, setup.spec, setup.model, state_lib.variables_of(state), classes,
             int(state.step))
