"""End-to-end behaviour of the training loop on a tiny model and generated data."""
import csv
import json
import os

import jax
import numpy as np
import pytest

from ftlab import evaluate
from ftlab.configuration import files
from ftlab.training import checkpoint
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training import steps, trainer
from tests.helpers import tiny_config


def _latest_state(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, meta = run.ckpts.restore_latest(run.template)
  run.ckpts.close()
  return state, meta


def _initial(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  return run.template(0, load_weights=True)


def test_short_run_learns_separable_data(image_folder, tmp_path):
  out = trainer.train_and_evaluate(tiny_config(image_folder, **{"train.num_epochs": 4.0}),
                                 str(tmp_path / "run"))
  assert out["test"]["top1"] >= 0.9
  assert out["test"]["count"] == 18  # every test image counted once despite the ragged last batch
  saved = json.load(open(tmp_path / "run" / "results.json"))
  assert saved["test"]["top1"] == out["test"]["top1"]
  assert saved["best"]["step"] in [h["step"] for h in saved["history"]]
  assert saved["selection_split"] == "minival"
  assert saved["test"]["top1"] == saved["test"]["correct"] / 18
  for name in ("predictions.csv", "confusion.csv", "label_map.json", "config.json", "metrics.jsonl"):
    assert os.path.getsize(tmp_path / "run" / name) > 0
  assert json.load(open(tmp_path / "run" / "label_map.json"))["classes"] == ["cat", "dog", "wolf"]


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["batch", "frozen", "reestimate"])
def test_linear_probe_leaves_backbone_bit_identical(image_folder, tmp_path, bn):
  config = tiny_config(image_folder, **{"strategy.name": "linear_probe", "train.num_epochs": 1.0,
                                        "model.bn": bn})
  workdir = str(tmp_path / "run")
  start = _initial(config, workdir)
  trainer.train_and_evaluate(config, workdir)
  end, _ = _latest_state(config, workdir)
  assert int(end.step) > 3
  assert set(end.trainable) == {"fc/kernel", "fc/bias"}
  for path, value in start.frozen.items():
    np.testing.assert_array_equal(np.asarray(end.frozen[path]), np.asarray(value), err_msg=path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(end.batch_stats),
                         jax.device_get(start.batch_stats))
  assert not np.allclose(end.trainable["fc/kernel"], start.trainable["fc/kernel"])


def _one_step(config, root, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state = state_lib.initial_state(run.setup, config, jax.random.key(0))
  batch = next(run.loaders["train"].epoch(0))
  step = jax.jit(steps.make_train_step(run.setup))
  new_state, _ = step(state, batch, jax.random.key(1))
  return state, new_state


@pytest.mark.slow
def test_lr_multiplier_scales_sgd_updates(image_folder, tmp_path):
  common = {"optimizer.momentum": 0.0, "optimizer.schedule": "constant", "strategy.name": "custom"}
  k = 7.0
  base = tiny_config(image_folder, **common, **{"strategy.rules": ((".*", 1.0),)})
  mult = tiny_config(image_folder, **common, **{"strategy.rules": (("fc/.*", k), (".*", 1.0))})
  s0, s1 = _one_step(base, image_folder, str(tmp_path / "a"))
  _, m1 = _one_step(mult, image_folder, str(tmp_path / "b"))
  for path in s0.trainable:
    delta_base = np.asarray(s1.trainable[path] - s0.trainable[path])
    delta_mult = np.asarray(m1.trainable[path] - s0.trainable[path])
    factor = k if path.startswith("fc/") else 1.0
    np.testing.assert_allclose(delta_mult, factor * delta_base, rtol=1e-4, atol=1e-7, err_msg=path)
  assert np.abs(np.asarray(s1.trainable["fc/kernel"] - s0.trainable["fc/kernel"])).max() > 0


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"train.num_epochs": 3.0})
  full = trainer.train_and_evaluate(config, str(tmp_path / "full"))
  resumed_dir = str(tmp_path / "resumed")
  stop_at = 5  # mid-epoch: the pipeline must resume at batch 5, not restart the epoch
  partial = trainer.train_and_evaluate(tiny_config(image_folder, **{"train.num_epochs": 3.0,
                                                                  "train.stop_after_steps": stop_at}),
                                     resumed_dir)
  assert partial is None
  _, meta = _latest_state(config, resumed_dir)
  assert not os.path.exists(os.path.join(resumed_dir, "results.json"))
  resumed = trainer.train_and_evaluate(config, resumed_dir)
  assert resumed["num_steps"] == full["num_steps"]
  a, _ = _latest_state(config, str(tmp_path / "full"))
  b, _ = _latest_state(config, resumed_dir)
  assert int(a.step) == int(b.step) == full["num_steps"]
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                         jax.device_get(state_lib.variables_of(a)), jax.device_get(state_lib.variables_of(b)))
  assert [h["minival_top1"] for h in full["history"]] == pytest.approx(
      [h["minival_top1"] for h in resumed["history"]])


@pytest.mark.slow
def test_non_finite_loss_fails_fast_with_a_clear_message(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"optimizer.lr": 1e30, "optimizer.schedule": "constant"})
  with pytest.raises(FloatingPointError, match=r"step \d+: .* is not finite"):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))


@pytest.mark.slow
def test_evaluate_and_load_best_use_the_selected_checkpoint(image_folder, tmp_path):
  out = trainer.train_and_evaluate(tiny_config(image_folder), str(tmp_path / "run"))
  os.remove(tmp_path / "run" / "predictions.csv")
  again = evaluate.evaluate_run(str(tmp_path / "run"), "test")
  assert again == out["test"]
  assert json.load(open(tmp_path / "run" / "eval_test.json")) == out["test"]
  rows = list(csv.DictReader(open(tmp_path / "run" / "predictions.csv")))
  assert len(rows) == 18 and {r["true"] for r in rows} == {"cat", "dog", "wolf"}
  assert np.mean([r["true"] == r["predicted"] for r in rows]) == pytest.approx(out["test"]["top1"])
  run = checkpoint.load_best(str(tmp_path / "run"))
  assert run.step == out["best"]["step"]
  assert run.class_names == ["cat", "dog", "wolf"]
  logits = run.model.apply(run.variables, np.zeros((2, 16, 16, 3), np.float32))
  assert logits.shape == (2, 3)
  # A run written before a config key was declared still loads (the key takes its default).
  path = tmp_path / "run" / "config.json"
  saved = json.load(open(path))
  del saved["model"]["init"]
  path.write_text(json.dumps(saved))
  assert files.read_config(str(tmp_path / "run")).model.init == "native"
  assert checkpoint.load_best(str(tmp_path / "run")).step == out["best"]["step"]


@pytest.mark.slow
def test_workdir_of_another_config_is_refused_and_left_intact(image_folder, tmp_path):
  workdir = tmp_path / "run"
  trainer.train_and_evaluate(tiny_config(image_folder, **{"train.num_epochs": 1.0}), str(workdir))
  before = {p: p.read_bytes() for p in (workdir / "config.json", workdir / "results.json")}
  with pytest.raises(ValueError, match=r"different config \(optimizer.lr: 0.05 -> 0.5\)"):
    trainer.train_and_evaluate(tiny_config(image_folder, **{"train.num_epochs": 1.0,
                                                          "optimizer.lr": 0.5}), str(workdir))
  assert {p: p.read_bytes() for p in before} == before


class _Killed(Exception):
  pass


@pytest.mark.slow
def test_interruption_between_best_and_latest_saves_resumes(image_folder, tmp_path, monkeypatch):
  config = tiny_config(image_folder, **{"train.num_epochs": 3.0})
  workdir = str(tmp_path / "run")
  first_eval = 7  # 63 training images / batch 8: the first evaluation saves best(7), then latest(7)
  save_latest = checkpoint.Checkpoints.save_latest

  def killed_at_first_eval(self, step, state, meta):
    if step == first_eval:
      raise _Killed(step)
    save_latest(self, step, state, meta)

  monkeypatch.setattr(checkpoint.Checkpoints, "save_latest", killed_at_first_eval)
  with pytest.raises(_Killed):
    trainer.train_and_evaluate(config, workdir)
  monkeypatch.setattr(checkpoint.Checkpoints, "save_latest", save_latest)
  run = run_lib.prepare(config, workdir, for_training=False)
  assert run.ckpts.best.all_steps() == [first_eval] and run.ckpts.latest.all_steps() == []
  run.ckpts.close()
  # Two resumes: the first replays step 7 (best saved again) and stops, the second finishes.
  partial = trainer.train_and_evaluate(
      tiny_config(image_folder, **{"train.num_epochs": 3.0, "train.stop_after_steps": 9}), workdir)
  assert partial is None
  out = trainer.train_and_evaluate(config, workdir)
  assert out["num_steps"] == 21 and [h["step"] for h in out["history"]] == [7, 14, 21]
  assert out["test"]["count"] == 18


@pytest.mark.slow
def test_selection_on_val_is_recorded_and_zero_intervals_mean_never(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"data.minival_fraction": 0.0, "train.num_epochs": 1.0,
                                        "train.log_every_steps": 0, "train.checkpoint_every_steps": 0})
  out = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert out["selection_split"] == "val" and out["num_steps"] == 9  # 72 images / batch 8
  assert [h["step"] for h in out["history"]] == [9]
  with pytest.raises(ValueError, match=r"config.train.log_every_steps=-1 must be >= 0"):
    trainer.train_and_evaluate(tiny_config(image_folder, **{"train.log_every_steps": -1}),
                             str(tmp_path / "bad"))
