"""Data parallelism over devices and processes, bf16 compute, no recompiles."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftlab.training import run as run_lib
from ftlab.training import state as state_lib
from ftlab.training import steps, trainer
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # training runs in subprocesses, up to 8 devices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_in_subprocess(root, workdir, devices, overrides, extra_env=None, args=()):
  code = textwrap.dedent(f"""
      import json, sys
      from ftlab.parallel.devices import initialize
      from ftlab.training import runtime, trainer
      from tests.helpers import tiny_config
      runtime.configure_xla()  # what tests/conftest.py did when this imported tiny_config from it
      if len(sys.argv) > 1:
        initialize(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
      out = trainer.train_and_evaluate(tiny_config({root!r}, **{overrides!r}), sys.argv[4] if len(sys.argv) > 4 else {workdir!r})
      print("RESULT" + json.dumps({{k: out[k] for k in ("test", "num_devices", "history")}}))
  """)
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
         **(extra_env or {})}
  return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc):
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == 0, err[-3000:]
  return json.loads(next(l for l in out.splitlines() if l.startswith("RESULT"))[6:])


def _final_params(config, workdir):
  run = run_lib.prepare(config, workdir, for_training=False)
  state, _ = run.ckpts.restore_latest(run.template)
  run.ckpts.close()
  return jax.device_get(state_lib.variables_of(state))


OVERRIDES = {"train.num_epochs": 2.0, "train.eval_batch_size": 8}


def test_eight_devices_match_one_device(image_folder, tmp_path):
  one = _run_in_subprocess(image_folder, str(tmp_path / "one"), 1, OVERRIDES)
  eight = _run_in_subprocess(image_folder, str(tmp_path / "eight"), 8, OVERRIDES)
  r1, r8 = _result(one), _result(eight)
  assert (r1["num_devices"], r8["num_devices"]) == (1, 8)
  assert r8["test"]["count"] == 18  # 3 eval batches of 8, the last one ragged: every image once
  assert [h["minival_loss"] for h in r8["history"]] == pytest.approx(
      [h["minival_loss"] for h in r1["history"]], rel=1e-4)
  config = tiny_config(image_folder, **OVERRIDES)
  p1, p8 = _final_params(config, str(tmp_path / "one")), _final_params(config, str(tmp_path / "eight"))
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), p1, p8)


def test_batch_that_does_not_divide_over_devices_is_an_error(image_folder, tmp_path):
  proc = _run_in_subprocess(image_folder, str(tmp_path / "run"), 8, {"train.batch_size": 12})
  _, err = proc.communicate(timeout=600)
  assert proc.returncode != 0
  assert "config.train.batch_size=12 does not divide over 8 devices" in err


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_one_consistent_run(image_folder, tmp_path):
  address = f"127.0.0.1:{_free_port()}"
  workdir = str(tmp_path / "multi")
  procs = [_run_in_subprocess(image_folder, workdir, 1, OVERRIDES,
                              args=(address, "2", str(i), workdir)) for i in range(2)]
  results = [_result(p) for p in procs]
  assert results[0]["num_devices"] == results[1]["num_devices"] == 2
  assert results[0]["test"] == results[1]["test"]
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert saved["test"] == results[0]["test"] and saved["test"]["count"] == 18
  single = _result(_run_in_subprocess(image_folder, str(tmp_path / "single"), 2, OVERRIDES))
  assert saved["test"]["top1"] == pytest.approx(single["test"]["top1"])


def test_bfloat16_compute_is_finite_and_close_to_float32(image_folder, tmp_path):
  losses = {}
  for dtype in ("float32", "bfloat16"):
    config = tiny_config(image_folder, **{"model.dtype": dtype})
    run = run_lib.prepare(config, str(tmp_path / dtype), for_training=False)
    state = run.template(0)
    assert all(v.dtype == jnp.float32 for v in state.trainable.values())
    step = jax.jit(steps.make_train_step(run.setup))
    batch = run.devices.shard_batch(next(run.loaders["train"].epoch(0)))
    history = []
    for _ in range(5):
      state, metrics = step(state, batch, jax.random.key(0))
      history.append(float(metrics["loss"]))
    assert all(v.dtype == jnp.float32 for v in state.trainable.values())
    losses[dtype] = np.asarray(history)
  assert np.all(np.isfinite(losses["bfloat16"]))
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.05)


def test_train_step_compiles_once(image_folder, tmp_path, monkeypatch):
  config = tiny_config(image_folder, **{"train.num_epochs": 3.0, "train.eval_every_epochs": 10.0})
  run = run_lib.prepare(config, str(tmp_path / "run"))
  state, meta = run_lib.restore_or_init(run)
  loop = trainer.Trainer(run, state, meta)
  loop.train(2)
  compiles = []

  def on_duration(event, duration, **kw):
    del duration, kw
    if "backend_compile" in event:
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  try:
    loop.train(run.schedule.total_steps - 1)
  finally:
    jax.monitoring.unregister_event_duration_listener(on_duration)
  assert int(loop.state.step) == run.schedule.total_steps - 1
  assert compiles == []
