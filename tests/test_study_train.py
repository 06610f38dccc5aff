"""The training side of a study, for real on tiny_cnn: rungs (train.stop_at_fraction) and
held-out evaluation deferred to the final stage (train.evaluate_held_out)."""
import json
import os

import jax
import numpy as np
import pytest

from ftlab.training import rungs, trainer
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training.meta import RunMeta
from tests.helpers import tiny_config


def _latest(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, meta = run.ckpts.restore_latest(run.template)
  best = run.ckpts.restore_best(run.template)
  run.ckpts.close()
  return state, best[0]


def _same(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(state_lib.variables_of(a)),
                         jax.device_get(state_lib.variables_of(b)))


@pytest.mark.slow
def test_rung_stops_do_not_change_the_run(image_folder, tmp_path):
  base = {"train.num_epochs": 3.0, "train.eval_every_epochs": 1.0}
  full = trainer.train_and_evaluate(tiny_config(image_folder, **base), str(tmp_path / "full"))
  rung_dir = str(tmp_path / "rung")
  for fraction in (1 / 9, 1 / 3):
    assert trainer.train_and_evaluate(
        tiny_config(image_folder, **base, **{"train.stop_at_fraction": fraction}), rung_dir) is None
  stops = rungs.read(rung_dir)
  total = full["num_steps"]
  assert [r["step"] for r in stops.values()] == [rungs.rung_step(1 / 9, total),
                                                 rungs.rung_step(1 / 3, total)]
  assert all(r["total_steps"] == total and r["train_images"] == r["step"] * 8
             for r in stops.values())
  assert not os.path.exists(os.path.join(rung_dir, "results.json"))
  # the 1/3 stop (step 7) is also a scheduled evaluation of the full run: the same score there
  third = stops[rungs.fraction_key(1 / 3)]
  scheduled = next(h for h in full["history"] if h["step"] == third["step"])
  assert (third["minival_top1"], third["minival_loss"]) == (scheduled["minival_top1"],
                                                            scheduled["minival_loss"])
  resumed = trainer.train_and_evaluate(tiny_config(image_folder, **base), rung_dir)
  # the stops' extra minival evaluations changed neither the weights nor the selection (the
  # logged train loss is a window average, and a stop closes a window: it is not compared)
  keys = ("step", "minival_top1", "minival_loss")
  assert [[h[k] for k in keys] for h in resumed["history"]] == [
      [h[k] for k in keys] for h in full["history"]]
  assert resumed["best"] == full["best"] and resumed["test"] == full["test"]
  (a_last, a_best), (b_last, b_best) = _latest(tiny_config(image_folder, **base), str(tmp_path / "full")), \
      _latest(tiny_config(image_folder, **base), rung_dir)
  _same(a_last, b_last)
  _same(a_best, b_best)


def test_rung_score_is_best_so_far(tmp_path):
  history = [{"step": 4, "minival_top1": 0.75}, {"step": 8, "minival_top1": 0.5}]
  meta = RunMeta(history=history, train_time_s=3.0, compile_time_s=4.0)
  entry = rungs.record(str(tmp_path), 0.5, 9, 18, 8, {"top1": 0.625, "loss": 0.9}, meta)
  assert entry["best_minival_top1"] == 0.75 and entry["minival_top1"] == 0.625
  assert json.loads((tmp_path / "rungs.json").read_text())["rungs"] == [entry]
  assert rungs.rung_step(1 / 3, 81) == 27 and rungs.rung_step(0.001, 10) == 1


@pytest.mark.slow
def test_held_out_evaluated_only_when_asked(image_folder, tmp_path):
  workdir = str(tmp_path / "run")
  search = trainer.train_and_evaluate(
      tiny_config(image_folder, **{"train.evaluate_held_out": False}), workdir)
  assert "test" not in search and "val" not in search and not search["held_out_evaluated"]
  assert not os.path.exists(os.path.join(workdir, "predictions.csv"))
  final = trainer.train_and_evaluate(tiny_config(image_folder), workdir)
  assert final["held_out_evaluated"] and 0 <= final["test"]["top1"] <= 1
  # the final stage trained nothing more: same steps, same history, same time
  assert final["history"] == search["history"] and final["train_time_s"] == search["train_time_s"]
  assert os.path.exists(os.path.join(workdir, "predictions.csv"))


@pytest.mark.slow
def test_with_ema_a_search_trial_still_evaluates_no_held_out_split(image_folder, tmp_path):
  workdir = str(tmp_path / "run")
  ema = {"train.ema_decay": 0.7}
  search = trainer.train_and_evaluate(
      tiny_config(image_folder, **ema, **{"train.evaluate_held_out": False}), workdir)
  assert "test" not in search and "val" not in search
  assert search["ema"]["ema"] == {}  # the EMA weights (not selected) on no held-out split
  final = trainer.train_and_evaluate(tiny_config(image_folder, **ema), workdir)
  assert set(final["ema"]["ema"]) == {"val", "test"}


@pytest.mark.slow
def test_bad_stop_fraction_is_an_error(image_folder, tmp_path):
  with pytest.raises(ValueError, match=r"config.train.stop_at_fraction=1.5 must be in \[0, 1\]"):
    trainer.train_and_evaluate(tiny_config(image_folder, **{"train.stop_at_fraction": 1.5}),
                               str(tmp_path / "run"))
