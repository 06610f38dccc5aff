"""EMA weights: the closed-form average, frozen parts left out, phases, resume, results.json."""
import json
import os

from flax import traverse_util
import jax
import numpy as np
import pytest

from ftlab.training import checkpoint, ema as ema_lib
from ftlab.training.meta import RunMeta
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training import steps, trainer
from tests.helpers import tiny_config


def _run(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  run.ckpts.close()
  return run


def _flat(tree):
  return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


@pytest.mark.slow
def test_ema_after_n_steps_is_the_closed_form_average(image_folder, tmp_path):
  decay, n = 0.8, 5
  config = tiny_config(image_folder, **{"train.ema_decay": decay, "strategy.name": "freeze_shallow",
                                        "strategy.freeze_blocks": 1})
  run = _run(config, str(tmp_path / "run"))
  state = state_lib.initial_state(run.setup, config, jax.random.key(0))
  # Frozen parameters (conv1, bn1) and frozen BatchNorm statistics have no EMA copy.
  assert set(state.ema["params"]) == set(state.trainable)
  assert not any(k.startswith(("conv1", "bn1")) for k in state.ema["params"])
  assert {k.rsplit("/", 1)[0] for k in state.ema["batch_stats"]} == {"layer1/bn", "layer2/bn"}
  history = [(jax.device_get(state.trainable), _flat(state.batch_stats))]
  step = jax.jit(steps.make_train_step(run.setup))
  batches = run.loaders["train"].epoch(0)
  for _ in range(n):
    state, _ = step(state, next(batches), jax.random.key(1))
    history.append((jax.device_get(state.trainable), _flat(state.batch_stats)))
  weights = [decay ** n] + [(1 - decay) * decay ** (n - i) for i in range(1, n + 1)]
  for part, index in (("params", 0), ("batch_stats", 1)):
    for key, value in jax.device_get(state.ema[part]).items():
      expected = sum(w * np.asarray(h[index][key], np.float64) for w, h in zip(weights, history))
      np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=key)
      assert not np.allclose(value, history[-1][index][key])  # an average, not the last value
  swapped = ema_lib.weights(state)
  np.testing.assert_array_equal(swapped.frozen["conv1/kernel"], state.frozen["conv1/kernel"])
  np.testing.assert_array_equal(swapped.trainable["fc/kernel"], state.ema["params"]["fc/kernel"])
  np.testing.assert_array_equal(_flat(swapped.batch_stats)["bn1/mean"],
                                _flat(state.batch_stats)["bn1/mean"])


@pytest.mark.slow
def test_a_parameter_unfrozen_at_a_phase_boundary_starts_its_ema_at_its_value(image_folder,
                                                                              tmp_path):
  config = tiny_config(image_folder, **{"train.ema_decay": 0.9, "strategy.name": "lp_ft"})
  run = _run(config, str(tmp_path / "run"))
  assert len(run.setup.phases) == 2
  state = state_lib.initial_state(run.setup, config, jax.random.key(0))
  assert set(state.ema["params"]) == {"fc/kernel", "fc/bias"}
  state, _ = jax.jit(steps.make_train_step(run.setup))(state, next(run.loaders["train"].epoch(0)),
                                                      jax.random.key(1))
  head = jax.device_get(state.ema["params"]["fc/kernel"])
  assert not np.array_equal(head, jax.device_get(state.trainable["fc/kernel"]))
  state = state_lib.regroup(state, run.setup.phases[1])
  assert set(state.ema["params"]) == set(state.trainable) and len(state.trainable) > 2
  np.testing.assert_array_equal(state.ema["params"]["fc/kernel"], head)  # the average goes on
  np.testing.assert_array_equal(state.ema["params"]["conv1/kernel"],
                                state.trainable["conv1/kernel"])


def _latest(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  restored = run.ckpts.restore_latest(run.template)
  run.ckpts.close()
  return restored[0]


@pytest.mark.slow
def test_killed_and_resumed_run_has_bit_identical_ema(image_folder, tmp_path):
  common = {"train.num_epochs": 1.5, "train.ema_decay": 0.9}  # 10 steps, evaluated at 7 and 10
  config = tiny_config(image_folder, **common)
  full = trainer.train_and_evaluate(config, str(tmp_path / "full"))
  resumed_dir = str(tmp_path / "resumed")
  assert trainer.train_and_evaluate(tiny_config(image_folder, **common,
                                                **{"train.stop_after_steps": 5}),
                                    resumed_dir) is None
  assert int(_latest(config, resumed_dir).step) == 5 and _latest(config, resumed_dir).ema
  resumed = trainer.train_and_evaluate(config, resumed_dir)
  a, b = _latest(config, str(tmp_path / "full")), _latest(config, resumed_dir)
  assert int(a.step) == int(b.step) == full["num_steps"]
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(a.ema),
                         jax.device_get(b.ema))
  assert full["ema"] == resumed["ema"]
  assert [h["minival_ema_top1"] for h in full["history"]] == [
      h["minival_ema_top1"] for h in resumed["history"]]


@pytest.mark.slow
@pytest.mark.parametrize("select_ema", [False, True])
def test_results_report_both_weights_and_select_the_configured_ones(image_folder, tmp_path,
                                                                    select_ema):
  config = tiny_config(image_folder, **{"train.ema_decay": 0.7, "train.select_ema": select_ema,
                                        "train.num_epochs": 2.0})
  workdir = str(tmp_path / "run")
  out = trainer.train_and_evaluate(config, workdir)
  saved = json.load(open(os.path.join(workdir, "results.json")))
  selected, other = ("ema", "raw") if select_ema else ("raw", "ema")
  assert saved["weights"] == selected and saved["ema"]["selected"] == selected
  for h in saved["history"]:
    assert h["minival_top1"] == h[f"minival_{selected}_top1"]
  best = max(saved["history"], key=lambda h: h[f"minival_{selected}_top1"])
  assert saved["best"]["step"] == best["step"]
  assert saved["ema"]["best"]["minival_ema_top1"] == best["minival_ema_top1"]
  assert set(saved["ema"][other]) == {"val", "test"}
  assert saved["ema"][other]["test"]["count"] == saved["test"]["count"] == 18
  # The test score is the selected weights' on the best checkpoint (also what load_best serves).
  run = _run(config, workdir)
  state = run.ckpts.restore_best(run.template)[0]
  served = checkpoint.load_best(workdir).variables
  expected = ema_lib.weights(state) if select_ema else state
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(served),
                         jax.device_get(state_lib.variables_of(expected)))
  assert out["test"] == saved["test"]


def test_bad_ema_keys_are_one_line_errors(image_folder, tmp_path):
  with pytest.raises(ValueError, match=r"config.train.select_ema=True needs EMA weights"):
    _run(tiny_config(image_folder, **{"train.select_ema": True}), str(tmp_path / "a"))
  with pytest.raises(ValueError, match=r"config.train.ema_decay=1.0 must be in \[0, 1\)"):
    _run(tiny_config(image_folder, **{"train.ema_decay": 1.0}), str(tmp_path / "b"))


@pytest.mark.slow
def test_a_checkpoint_from_before_the_ema_and_hparams_fields_still_restores(image_folder, tmp_path):
  config = tiny_config(image_folder)
  run = _run(config, str(tmp_path / "run"))
  state = run.template(0, load_weights=True)
  old = {f: getattr(state, f) for f in ("step", "trainable", "frozen", "batch_stats",
                                         "opt_state", "anchor")}  # TrainState's fields until now
  ckpts = checkpoint.Checkpoints(str(tmp_path / "run"))
  ckpts.save_latest(3, old, RunMeta())
  restored, _ = ckpts.restore_latest(run.template)
  ckpts.close()
  assert restored.ema == {} and isinstance(restored, state_lib.TrainState)
  # TrainState.hparams came later too: the config's values (the same-run check keeps them)
  assert {k: float(v) for k, v in restored.hparams.items()} == {
      k: float(v) for k, v in state.hparams.items()} and restored.hparams
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(restored.trainable),
                         jax.device_get(state.trainable))
  # and one written between the two fields (hparams, no ema) restores its own hparams
  between = dict(old, hparams={k: v * 2 for k, v in state.hparams.items()})
  ckpts = checkpoint.Checkpoints(str(tmp_path / "run"))
  ckpts.save_latest(4, between, RunMeta())
  restored, _ = ckpts.restore_latest(run.template)
  ckpts.close()
  assert restored.ema == {} and int(restored.step) == int(state.step)
  assert {k: float(v) for k, v in restored.hparams.items()} == {
      k: 2 * float(v) for k, v in state.hparams.items()}
  with_ema = _run(tiny_config(image_folder, **{"train.ema_decay": 0.9}), str(tmp_path / "run"))
  with pytest.raises(ValueError, match="do not match"):  # an EMA run cannot resume without one
    with_ema.ckpts.restore_latest(with_ema.template)
