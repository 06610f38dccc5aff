"""The end of a run: the best checkpoint on the held-out splits, the ridge probe, results.json.

The training loop hands over a `TrainOutcome` (`trainer.Trainer.outcome`);
this module reads nothing else of the loop.
"""
import dataclasses
import os
import resource
from typing import Callable, Dict, Optional, Tuple

import jax
import numpy as np

from ftlab.configuration.files import write_json_atomic
from ftlab.data import datasets
from ftlab.evaluation import evaluator, probe
from ftlab.training import feature_cache
from ftlab.training import ema as ema_lib
from ftlab.training.compile_stats import CompileStats
from ftlab.training.meta import RunMeta
from ftlab.training.run import Run
from ftlab.training.state import TrainState
from ftlab.training.steps import make_trunk_step


@dataclasses.dataclass
class TrainOutcome:
  """What the training loop leaves for the end of the run."""
  state: TrainState  # after the last step
  meta: RunMeta
  eval_fn: Callable  # the jitted eval step on images, for the held-out splits
  # the head-only feature cache: 'train'/'minival' -> (features, labels); None without one
  cached_features: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]]
  boundary_block: int  # the block freeze_shallow's activation cache cut at (0: none)
  phase_inputs: Dict[int, str]  # phase -> what its steps trained on (phase_cache)
  compiles: Optional[CompileStats]  # this process's compilations (summarised at the end)


def count_bytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree)))


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def selected_weights(config) -> str:
  """'ema' or 'raw': the weights selection and the held-out splits use (config.train.select_ema)."""
  return "ema" if config.train.select_ema else "raw"


def evaluate_best(run: Run, eval_fn, split_name: str, weights: str = "") -> dict:
  """Evaluates the best checkpoint on `split_name`; writes its predictions and confusion CSVs.

  `weights`: 'raw' or 'ema' ('' = the selected ones, `selected_weights`); only
  the selected weights write the CSVs.
  """
  best = run.ckpts.restore_best(run.template)
  if best is None:
    raise FileNotFoundError(f"no best checkpoint in {run.workdir}/checkpoints/best")
  selected = selected_weights(run.config)
  weights = weights or selected
  state = ema_lib.weights(best[0]) if weights == "ema" else best[0]
  outputs = evaluator.evaluate(eval_fn, state, run.loaders[split_name], run.devices)
  if jax.process_index() == 0 and weights == selected:
    suffix = "" if split_name == "test" else f"_{split_name}"
    evaluator.write_predictions(os.path.join(run.workdir, f"predictions{suffix}.csv"),
                                 getattr(run.data, split_name).paths, outputs, run.data.classes)
    evaluator.write_confusion(os.path.join(run.workdir, f"confusion{suffix}.csv"), outputs,
                               run.data.classes)
  return evaluator.summarize(outputs, run.setup.num_classes)


def ridge_baseline(run: Run, outcome: TrainOutcome, with_test: bool = True) -> dict:
  """The closed-form probe on the cached features (test features extracted once here)."""
  trunk = jax.jit(make_trunk_step(run.setup))
  test = None
  if "test" in run.loaders and with_test:
    test = (feature_cache.extract(trunk, outcome.state, run.loaders["test"], run.devices),
            run.data.test.labels)
  cached = outcome.cached_features
  return probe.ridge_probe(cached["train"], cached["minival"], test, run.setup.num_classes)


def selection_split(data: datasets.Data) -> str:
  """The split checkpoints were selected on: 'minival', or 'val' when no minival was carved.

  With 'val', the `val` score in results.json is the one the checkpoint was
  chosen on, not a held-out score (the report says so).
  """
  return "val" if data.minival is data.val else "minival"


def ema_results(run: Run, outcome: TrainOutcome, best: dict) -> dict:
  """results.json's `ema` block: both weights on minival (best and last evaluation) and on the
  held-out splits when they are evaluated (the selected ones are also the top-level
  `test`/`val`; a study's search trial, `train.evaluate_held_out=False`, evaluates none)."""
  keys = ("minival_raw_top1", "minival_raw_loss", "minival_ema_top1", "minival_ema_loss")
  last = outcome.meta.history[-1]
  selected = selected_weights(run.config)
  other = "raw" if selected == "ema" else "ema"
  held_out = [name for name in ("val", "test")
              if name in run.loaders and run.config.train.evaluate_held_out]
  return {"decay": run.setup.ema_decay, "selected": selected,
          "best": {"step": best["step"], **{k: best[k] for k in keys}},
          "final": {"step": last["step"], **{k: last[k] for k in keys}},
          other: {name: evaluate_best(run, outcome.eval_fn, name, other) for name in held_out},
          "state_bytes": count_bytes(outcome.state.ema)}


def results(run: Run, outcome: TrainOutcome, held_out: dict) -> dict:
  meta, cfg, state = outcome.meta, run.config, outcome.state
  history = meta.history
  best = next(h for h in history if h["step"] == meta.best_step)
  if run.setup.ema_decay:
    held_out = {**held_out, "ema": ema_results(run, outcome, best)}
  images = run.schedule.total_steps * cfg.train.batch_size
  return {
      "status": "finished", "config": cfg.to_dict(), "model": cfg.model.name,
      "strategy": cfg.strategy.name, "seed": cfg.seed, "dataset": run.data.name,
      "selection_split": selection_split(run.data), "data_subset": run.data.subset,
      "split_layout": run.data.layout.describe() if run.data.layout else None,
      "held_out_evaluated": bool(cfg.train.evaluate_held_out), "weights": selected_weights(cfg),
      "num_classes": run.setup.num_classes,
      "num_params": sum(int(v.size) for v in {**state.trainable, **state.frozen}.values()),
      "num_trainable_params": sum(int(v.size) for v in state.trainable.values()),
      "optimizer_state_bytes": count_bytes(state.opt_state),
      "best": {"step": best["step"], "minival_top1": best["minival_top1"],
               "minival_loss": best["minival_loss"]},
      "final": {"step": history[-1]["step"], "minival_top1": history[-1]["minival_top1"],
                "minival_loss": history[-1]["minival_loss"]},
      **held_out,
      "history": history, "num_steps": run.schedule.total_steps,
      "bn": run.setup.bn_policy, "head_init": cfg.model.head_init,
      "probe": {"steps": run.schedule.probe_steps,
                "images": run.schedule.probe_steps * cfg.train.batch_size,
                "train_time_s": meta.probe_train_time_s},
      "num_phases": len(run.setup.phases),
      "feature_cache": outcome.cached_features is not None,
      "boundary_cache_block": outcome.boundary_block,
      "phase_inputs": {str(k): v for k, v in sorted(outcome.phase_inputs.items())},
      "train_time_s": meta.train_time_s, "compile_time_s": meta.compile_time_s,
      "feature_cache_s": meta.feature_cache_s, "bn_stats_s": meta.bn_stats_s,
      "compile": outcome.compiles.summary() if outcome.compiles is not None else None,
      "train_images_per_s": images / max(meta.train_time_s + meta.feature_cache_s, 1e-9),
      "peak_rss_mb": peak_rss_mb(), "skipped_images": len(run.data.skipped),
      "num_devices": run.devices.count,
  }


def finish(run: Run, outcome: TrainOutcome) -> dict:
  """Held-out evaluation of the best checkpoint (and the ridge probe), then results.json."""
  evaluate = run.config.train.evaluate_held_out
  held_out = {name: evaluate_best(run, outcome.eval_fn, name)
              for name in ("val", "test") if name in run.loaders and evaluate}
  if outcome.cached_features is not None:
    held_out["ridge_probe"] = ridge_baseline(run, outcome, with_test=evaluate)
  out = results(run, outcome, held_out)
  if jax.process_index() == 0:
    write_json_atomic(os.path.join(run.workdir, "results.json"), out)
  return out
