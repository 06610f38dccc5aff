"""config.model.bn (batch | frozen | reestimate) and config.model.head_init, end to end on tiny_cnn."""
import json
import os

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.data.pipeline import Augment, Loader
from ftlab.models import get_spec
from ftlab.models.layers import Mode
from ftlab.pretrained import load as load_lib
from ftlab.training import bn_stats, trainer
from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training.steps import normalize
from tests.helpers import tiny_config


def _latest(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_latest(run.template)
  start = run.template(0, load_weights=True)
  run.ckpts.close()
  return run, start, state


@pytest.mark.parametrize("key, value, choices", [
    ("model.bn", "precise", "['batch', 'frozen', 'reestimate']"),
    ("model.head_init", "xavier", "['torch', 'zero', 'native']"),
])
def test_an_unknown_policy_or_head_init_is_a_one_line_error(key, value, choices):
  config = tiny_config("unused", **{key: value})
  with pytest.raises(ValueError) as error:
    state_lib.build_setup(config, 3, 10, 0, 5)
  assert str(error.value) == f"config.{key}={value!r}; use one of {choices}"


@pytest.mark.slow
def test_frozen_normalises_with_running_statistics_it_never_updates(image_folder, tmp_path):
  config = tiny_config(image_folder, **{"model.bn": "frozen", "train.num_epochs": 1.0})
  trainer.train_and_evaluate(config, str(tmp_path / "run"))
  run, start, end = _latest(config, str(tmp_path / "run"))
  assert run.setup.phases[0].frozen_bn == run.setup.batch_norms == {
      "bn1", "layer1/bn", "layer2/bn"}
  assert not run.setup.phases[0].updated_bn
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.device_get(end.batch_stats),
                         jax.device_get(start.batch_stats))
  assert not np.allclose(end.trainable["conv1/kernel"], start.trainable["conv1/kernel"])


def _setup_state(image_folder, **overrides):
  config = tiny_config(image_folder, **overrides)
  run = run_lib.prepare(config, "/tmp/unused_bn_policy", for_training=False)
  return run, run.template(0, load_weights=True)


def test_reestimated_statistics_make_eval_mode_compute_what_batch_mode_does(image_folder):
  """On one batch holding every train image, eval mode with the re-estimated statistics
  normalises as batch mode does (up to the unbiased variance's n/(n-1)); with the initial
  statistics it does not."""
  run, state = _setup_state(image_folder)
  setup = run.setup
  split = run.data.train
  eval_aug = Augment(setup.image_size, train=False)
  whole = Loader(split, len(split), eval_aug, True, seed=0, num_workers=1)
  batch = next(whole.epoch(0))
  x = normalize(jnp.asarray(batch["image"]), setup.spec)
  stats_fn = jax.jit(bn_stats.make_stats_step(setup, setup.batch_norms))
  new = bn_stats.average_stats(stats_fn, state, whole, 0, 1, run.devices)
  assert set(new) == {f"{m}/{s}" for m in setup.batch_norms for s in ("mean", "var")}
  batch_mode = Mode(True, stochastic=False)
  want, _ = setup.model.apply(state_lib.variables_of(state), x, train=batch_mode,
                              mutable=["batch_stats"])

  def eval_logits(batch_stats):
    return setup.model.apply({"params": state_lib.params_of(state), "batch_stats": batch_stats},
                             x, train=False)

  after = eval_logits(bn_stats.replace_stats(state.batch_stats, new))
  before = eval_logits(state.batch_stats)
  scale = float(jnp.max(jnp.abs(want)))
  assert float(jnp.max(jnp.abs(after - want))) < 0.05 * scale
  assert float(jnp.max(jnp.abs(before - want))) > 0.3 * scale


@pytest.mark.slow
def test_reestimation_is_a_pure_function_of_seed_and_step(image_folder):
  run, state = _setup_state(image_folder)
  loader = run.loaders["bn_stats"]
  assert loader.augment == Augment(run.setup.image_size, train=False)  # no random augmentation
  stats_fn = jax.jit(bn_stats.make_stats_step(run.setup, run.setup.batch_norms))
  first = bn_stats.average_stats(stats_fn, state, loader, 5, 2, run.devices)
  again = bn_stats.average_stats(stats_fn, state, loader, 5, 2, run.devices)
  other = bn_stats.average_stats(stats_fn, state, loader, 6, 2, run.devices)
  for key in first:
    np.testing.assert_array_equal(first[key], again[key], err_msg=key)
  assert any(not np.array_equal(first[k], other[k]) for k in first)


def _features(setup, state, images, mode):
  out = setup.model.apply(state_lib.variables_of(state), images, train=mode, part="trunk",
                          mutable=["batch_stats"])
  return np.asarray(out[0])


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["reestimate", "batch"])
def test_lp_ft_switch_keeps_the_features_the_head_was_fit_on(image_folder, tmp_path, bn):
  """At LP-FT's switch the trunk moves from running to batch statistics: with re-estimated
  running statistics the head reads (nearly) the same features and keeps its accuracy.
  Compared on one batch of every train image, whose statistics are the population's."""
  over = {"strategy.name": "lp_ft", "strategy.lp_epochs": 2.0, "train.num_epochs": 1.0,
          "model.bn": bn, "train.batch_size": 9}
  workdir = str(tmp_path / bn)
  trainer.train_and_evaluate(tiny_config(image_folder, **over, **{"train.stop_after_steps": 14}),
                             workdir)
  run, _, state = _latest(tiny_config(image_folder, **over), workdir)
  assert int(state.step) == run.schedule.probe_steps == run.setup.phases[1].start == 14
  setup = run.setup
  train = run.data.train
  batch = next(Loader(train, len(train), Augment(setup.image_size, train=False), True,
                      seed=1, num_workers=1).epoch(0))
  images = normalize(jnp.asarray(batch["image"]), setup.spec)
  probe_mode = Mode(True, setup.phases[0].frozen_bn, stochastic=False)
  tune_mode = Mode(True, setup.phases[1].frozen_bn, stochastic=False)
  a, b = _features(setup, state, images, probe_mode), _features(setup, state, images, tune_mode)
  cosine = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  if bn == "reestimate":
    assert cosine.min() > 0.97
    head = lambda f: np.argmax(setup.model.apply(  # pylint: disable=unnecessary-lambda-assignment
        {"params": state_lib.params_of(state)}, f, part="head"), -1)
    assert np.mean(head(a) == head(b)) >= 0.99
  else:
    assert cosine.min() < 0.9


def _write_converted(directory, num_classes: int, seed: int = 0) -> str:
  """A tiny_cnn checkpoint with a `num_classes` head, as `ftlab.convert` writes one."""
  spec = get_spec("tiny_cnn")
  variables = state_lib.init_variables(spec.build(num_classes, jnp.float32), spec.input_size,
                                       jax.random.key(seed))
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, load_lib.VARIABLES_FILE), "wb") as f:
    f.write(serialization.msgpack_serialize(jax.device_get(variables)))
  return directory


@pytest.mark.slow
@pytest.mark.parametrize("head_init", ["torch", "zero", "native"])
def test_head_init_draws_only_what_the_checkpoint_did_not_provide(image_folder, tmp_path,
                                                                  head_init):
  weights = _write_converted(str(tmp_path / "weights"), num_classes=10)
  config = tiny_config(image_folder, **{"model.pretrained": weights, "model.head_init": head_init})
  run = run_lib.prepare(config, str(tmp_path / "run"), for_training=False)
  params = {**run.template(0, load_weights=True).trainable}
  scratch = {**run.template(0, load_weights=False).trainable}
  source = state_lib.flatten(serialization.msgpack_restore(
      open(os.path.join(weights, load_lib.VARIABLES_FILE), "rb").read())["params"])
  for path, value in params.items():
    if not path.startswith("fc/"):
      np.testing.assert_array_equal(value, source[path], err_msg=path)  # loaded
  kernel, bias = np.asarray(params["fc/kernel"]), np.asarray(params["fc/bias"])
  assert kernel.shape == (32, 3)
  if head_init == "native":  # the architecture's scratch init, as drawn without weights
    np.testing.assert_array_equal(kernel, scratch["fc/kernel"])
  elif head_init == "zero":
    assert not kernel.any() and not bias.any()
  else:  # PyTorch's Linear default: U(+-1/sqrt(fan_in)) for both, fan_in = 32
    bound = 1 / np.sqrt(32)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert np.abs(kernel).max() > 0.8 * bound and kernel.std() == pytest.approx(
        bound / np.sqrt(3), rel=0.25)
    assert np.abs(bias).max() > 0


@pytest.mark.parametrize("bn", ["reestimate", "batch"])
def test_results_count_the_seconds_spent_re_estimating(image_folder, tmp_path, bn):
  config = tiny_config(image_folder, **{"model.bn": bn, "train.num_epochs": 1.0})
  trainer.train_and_evaluate(config, str(tmp_path / bn))
  with open(tmp_path / bn / "results.json", encoding="utf-8") as f:
    seconds = json.load(f)["bn_stats_s"]
  assert seconds > 0 if bn == "reestimate" else seconds == 0.0
