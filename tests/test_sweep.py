"""Tests for ftlab.sweep, with a fake runner instead of real training."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ftlab.sweeps import cli
from ftlab.sweeps import filters as sweep_filters
from ftlab.sweeps import grid, naming, placement, runner
from ftlab.sweeps import spec as sweep_spec
from tests.helpers import FAKE_RUNNER, SWEEP_CONFIG, run_sweep, sweep_cmd


@pytest.fixture
def setup(tmp_path):
  (tmp_path / "fake_runner.py").write_text(FAKE_RUNNER)
  (tmp_path / "cfg.py").write_text(SWEEP_CONFIG)
  return tmp_path


def _results(run_dir):
  return json.loads((run_dir / "results.json").read_text())


def _invocations(tmp):
  return (tmp / "runs" / "invocations.txt").read_text().split()


def test_grid_helpers():
  assert grid.product(a=[1, 2], b=["x", "y"]) == [
      {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
  assert grid.zip_(a=[1, 2], b=["x", "y"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
  with pytest.raises(grid.SweepError, match="equal length"):
    grid.zip_(a=[1], b=[1, 2])
  assert grid.chain(grid.product(a=[1]), [{"b": 2}]) == [{"a": 1}, {"b": 2}]
  assert grid.cross(grid.zip_(a=[1, 2]), [{"s": 0}, {"s": 1}]) == [
      {"a": 1, "s": 0}, {"a": 1, "s": 1}, {"a": 2, "s": 0}, {"a": 2, "s": 1}]


def test_run_names_are_readable_sanitised_and_ordered():
  assert naming.run_name({"model.name": "resnet18", "strategy.name": "full_ft",
                         "seed": 0}) == "model=resnet18,strategy=full_ft,seed=0"
  assert naming.run_name({"seed": 0, "model.name": "resnet18"}) == "seed=0,model=resnet18"
  assert naming.run_name({"optimizer.lr": 1e-3, "data.root": "/a b/c"}) == (
      "optimizer.lr=0.001,data.root=_a_b_c")
  long = naming.run_name({"x": "y" * 500})
  assert len(long) == naming.MAX_NAME_LEN and long == naming.run_name({"x": "y" * 500})
  with pytest.raises(grid.SweepError, match="both get the run name"):
    naming.unique_names([{"m": "a/b"}, {"m": "a b"}])


def test_filters_accept_unambiguous_short_keys():
  keys = ["model.name", "strategy.name", "seed", "optimizer.lr", "head.lr"]
  filters = sweep_filters.parse_filters(["strategy=full_ft", "seed=0", "seed=2"], keys)
  assert filters == {"strategy.name": {"full_ft"}, "seed": {"0", "2"}}
  assert sweep_filters.matches({"strategy.name": "full_ft", "seed": 2}, filters)
  assert not sweep_filters.matches({"strategy.name": "full_ft", "seed": 1}, filters)
  lr = sweep_filters.parse_filters(["optimizer.lr=1e-3"], keys)
  assert sweep_filters.matches({"optimizer.lr": 0.001}, lr)
  assert not sweep_filters.matches({"optimizer.lr": 0.01}, lr)
  with pytest.raises(grid.SweepError, match="ambiguous"):
    sweep_filters.parse_filters(["lr=0.1"], keys)
  with pytest.raises(grid.SweepError, match="matches no"):
    sweep_filters.parse_filters(["dataset=x"], keys)


def test_placement_splits_threads_and_gpus():
  place = placement.placement(1, 2, cpus=[0, 1, 2, 3], gpus=["0", "1", "2", "3"])
  assert place.cpus == (2, 3)
  assert place.env["OMP_NUM_THREADS"] == "2" and "XLA_FLAGS" not in place.env
  assert place.env["CUDA_VISIBLE_DEVICES"] == "1,3"
  shared = placement.placement(2, 3, cpus=[0, 1], gpus=["7"])
  assert shared.cpus == (0,) and shared.env["OMP_NUM_THREADS"] == "1"
  assert shared.env["XLA_FLAGS"].endswith(
      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
  assert shared.env["CUDA_VISIBLE_DEVICES"] == "7"
  assert shared.env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.30"
  assert "CUDA_VISIBLE_DEVICES" not in placement.placement(0, 1, cpus=[0]).env


def test_load_sweep_checks_keys(setup):
  loaded = sweep_spec.load_sweep(str(setup / "cfg.py"))
  assert len(loaded.grid) == 4 and loaded.strategy_order == ("freeze_all", "full_ft")
  (setup / "bad.py").write_text(SWEEP_CONFIG.replace('"optimizer.lr"', '"optimiser.lr"'))
  with pytest.raises(grid.SweepError, match=r"bad.py: sweep key 'optimiser.lr'"):
    sweep_spec.load_sweep(str(setup / "bad.py"))
  assert runner.build_command(runner.DEFAULT_RUNNER, "c.py:x", "w", {"seed": 1})[:3] == [
      sys.executable, "-m", "ftlab.main"]


def test_dry_run_prints_commands_and_launches_nothing(setup):
  out = run_sweep(setup, None, "--dry_run", "--only=model=tiny_cnn")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert lines[-1] == "dry run: 2 to launch, 0 already finished"
  assert "--config.model.name=tiny_cnn --config.strategy.name=full_ft" in lines[0]
  assert not (setup / "runs").exists()


def test_sweep_runs_grid_and_overrides_reach_the_runs(setup):
  out = run_sweep(setup, None, "--parallel=2", "--cpus=2")
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip().splitlines()[-1] == "4 finished, 0 failed"
  runs = setup / "runs"
  name = "model=big_net,strategy=freeze_all,optimizer.lr=0.001"
  res = _results(runs / name)
  assert res["overrides"] == {"model.name": "big/net", "strategy.name": "freeze_all",
                              "optimizer.lr": "0.001"}
  assert f"--workdir={runs / name}" in res["argv"]
  assert res["env"]["OMP_NUM_THREADS"] == "1" and len(res["affinity"]) == 1
  assert "--xla_cpu_multi_thread_eigen=false" in res["env"]["XLA_FLAGS"]
  assert "fake run" in (runs / name / "log.txt").read_text()
  index = json.loads((runs / "sweep.json").read_text())
  assert index["strategy_order"] == ["freeze_all", "full_ft"]
  assert [r["status"] for r in index["runs"]] == ["finished"] * 4
  assert index["runs"][3]["name"] == name and len(index["grid"]) == 4


def test_failing_run_does_not_stop_the_others(setup):
  out = run_sweep(setup, "fail")
  assert out.returncode == 1, out.stderr
  assert out.stdout.strip().splitlines()[-1] == "2 finished, 1 failed"
  runs = setup / "runs"
  failed = json.loads((runs / "strategy=freeze_all,fake=fail" / "failed.json").read_text())
  assert failed["exit_code"] == 3 and "boom: simulated failure" in failed["log_tail"]
  assert failed["overrides"] == {"strategy.name": "freeze_all", "fake": "fail"}
  assert (runs / "strategy=linear,fake=ok" / "results.json").exists()
  statuses = {r["name"]: r["status"]
              for r in json.loads((runs / "sweep.json").read_text())["runs"]}
  assert statuses["strategy=freeze_all,fake=fail"] == "failed"
  # Re-running retries only the failed run.
  again = run_sweep(setup, "fail")
  assert again.returncode == 1 and _invocations(setup).count("strategy=full_ft,fake=ok") == 1


def test_exit_zero_without_results_counts_as_failed(setup):
  out = run_sweep(setup, "no_results")
  assert out.returncode == 1
  failed = json.loads((setup / "runs" / "fake=no_results" / "failed.json").read_text())
  assert "missing or not finished" in failed["reason"]


def _wait_for(path, timeout=30.0):
  deadline = time.monotonic() + timeout
  while not path.exists():
    assert time.monotonic() < deadline, f"{path} never appeared"
    time.sleep(0.05)


def test_resume_after_killed_sweep(setup):
  runs = setup / "runs"
  first = runs / "strategy=full_ft,fake=ok"
  slow = runs / "strategy=freeze_all,fake=sleep_once"
  proc = subprocess.Popen(sweep_cmd(setup, "resume"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  _wait_for(slow / "ckpt")
  proc.send_signal(signal.SIGTERM)
  stdout, _ = proc.communicate(timeout=30)
  assert proc.returncode == 128 + signal.SIGTERM
  assert stdout.strip().splitlines()[-1] == "1 finished, 0 failed"
  statuses = [r["status"] for r in json.loads((runs / "sweep.json").read_text())["runs"]]
  assert statuses == ["finished", "interrupted", "pending"]
  before = (first / "results.json").stat().st_mtime_ns, (first / "results.json").read_bytes()

  out = run_sweep(setup, "resume")
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip().splitlines()[-1] == "3 finished, 0 failed"
  assert ((first / "results.json").stat().st_mtime_ns,
          (first / "results.json").read_bytes()) == before
  assert _invocations(setup).count(first.name) == 1
  assert _invocations(setup).count(slow.name) == 2
  assert _results(slow)["resumed"] is True
  assert (slow / "log.txt").read_text().count("=== ") == 2


def test_refuses_to_start_while_an_orphaned_run_still_runs(setup):
  slow = setup / "runs" / "strategy=freeze_all,fake=sleep_once"
  proc = subprocess.Popen(sweep_cmd(setup, "resume"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  _wait_for(slow / "ckpt")
  index = setup / "runs" / "sweep.json"
  deadline = time.monotonic() + 30
  while json.loads(index.read_text())["runs"][1].get("pid") is None:
    assert time.monotonic() < deadline, "the sweep never recorded the run's pid"
    time.sleep(0.05)
  proc.kill()
  proc.wait()
  entry = json.loads(index.read_text())["runs"][1]
  try:
    out = run_sweep(setup, "resume")
    assert out.returncode == cli.ERROR_EXIT
    assert "still running" in out.stderr and slow.name in out.stderr
  finally:
    os.killpg(entry["pid"], signal.SIGKILL)


def test_slurm_script_runs_one_task(setup):
  script = setup / "sweep.sbatch"
  out = run_sweep(setup, "fail", f"--slurm={script}", "--sbatch=--time=1:00:00",
                   "--config.optimizer.lr=0.5")
  assert out.returncode == 0, out.stderr
  text = script.read_text()
  assert "#SBATCH --array=0,1,2\n" in text and "#SBATCH --time=1:00:00\n" in text
  assert "--override=optimizer.lr=0.5" in text
  env = {**os.environ, "SLURM_ARRAY_TASK_ID": "2"}
  task = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                        timeout=60)
  assert task.returncode == 0, task.stderr
  assert task.stdout.strip().splitlines()[-1] == "1 finished, 0 failed"
  assert _invocations(setup) == ["strategy=linear,fake=ok"]
  assert _results(setup / "runs" / "strategy=linear,fake=ok")["overrides"]["optimizer.lr"] == "0.5"
  index = json.loads((setup / "runs" / "sweep.json").read_text())
  assert [r["status"] for r in index["runs"]] == ["pending", "pending", "finished"]


def test_sweep_wide_overrides_reach_every_run_but_not_the_names(setup):
  out = run_sweep(setup, "fail", "--config.optimizer.lr=0.5", "--only=fake=ok")
  assert out.returncode == 0, out.stderr
  res = _results(setup / "runs" / "strategy=linear,fake=ok")
  assert res["overrides"]["optimizer.lr"] == "0.5"
  index = json.loads((setup / "runs" / "sweep.json").read_text())
  assert index["fixed_overrides"] == {"optimizer.lr": "0.5"}
  clash = run_sweep(setup, "fail", "--config.fake=ok", "--dry_run")
  assert clash.returncode == cli.ERROR_EXIT and "also a sweep axis" in clash.stderr
  unknown = run_sweep(setup, "fail", "--config.optimizer.lrr=1", "--dry_run")
  assert "sweep key 'optimizer.lrr' is not a field" in unknown.stderr
