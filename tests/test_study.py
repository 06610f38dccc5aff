"""ftlab.study: successive halving decisions, the study's files, resuming, bad input.

The end-to-end tests run the real study driver with `tests/study_fake.py` in
place of `python -m ftlab.main` (a deterministic score per LR, no JAX);
tests/test_study_train.py checks the training side (rungs, held-out) for real.
"""
import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from ftlab.studies import halving, space
from ftlab.sweeps.grid import SweepError
from tests.helpers import STUDY_CONFIG, STUDY_LRS

HERE = pathlib.Path(__file__).parent


@pytest.fixture
def setup(tmp_path):
  (tmp_path / "study_cfg.py").write_text(STUDY_CONFIG)
  return tmp_path


def study_cmd(setup, arg=None, *extra):
  spec = str(setup / "study_cfg.py") + (f":{arg}" if arg else "")
  return [sys.executable, "-m", "ftlab.study", f"--config={spec}", f"--workdir={setup / 'st'}",
          f"--runner={sys.executable} {HERE / 'study_fake.py'}", *extra]


def run_study(setup, arg=None, *extra):
  return subprocess.run(study_cmd(setup, arg, *extra), capture_output=True, text=True,
                        cwd=HERE.parent, timeout=300)


def invocations(setup):
  path = setup / "st" / "invocations.jsonl"
  return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


# --- halving, pure -------------------------------------------------------------------------

def test_rungs_keep_at_least_one_trial():
  assert halving.rung_fractions(4, 3, 3) == (1 / 3, 1.0)
  assert halving.rung_fractions(9, 3, 3) == (1 / 9, 1 / 3, 1.0)
  assert halving.rung_fractions(27, 3, 3) == (1 / 9, 1 / 3, 1.0)  # capped at max_rungs
  assert halving.rung_fractions(2, 3, 3) == (1.0,)  # fewer trials than eta: no halving
  assert halving.rung_fractions(1, 2, 3) == (1.0,)
  assert halving.search_equivalents(4, 3, 3) == pytest.approx(4 / 3 + 2 / 3)
  assert halving.search_equivalents(9, 3, 3) == pytest.approx(1 + 2 / 9 * 3 + 2 / 3)


def test_promotion_ties_failures_and_few_trials():
  s = halving.Score
  # ties on top-1 go to the lower loss, then to the earlier trial in the grid
  scores = [s(0, 0.5, 1.0), s(1, 0.7, 0.9), s(2, 0.7, 0.8), s(3, 0.7, 0.8), s(4, 0.1), s(5, None)]
  assert [x.order for x in halving.rank(scores)] == [2, 3, 1, 0, 4, 5]
  assert halving.promote(scores, 3) == [2, 3]
  # a failed trial is ranked last and never promoted, even when few are left
  assert halving.promote([s(0, None), s(1, 0.2)], 2) == [1]
  assert halving.promote([s(0, None), s(1, None)], 2) == []
  assert halving.best([s(0, None), s(1, 0.2), s(2, 0.3)]) == [2]
  assert halving.best([s(0, None)]) == []
  # fewer trials than eta: one goes on
  assert halving.promote([s(0, 0.1), s(1, 0.4)], 3) == [1]


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("arg, message", [
    ("unknown_key", "study key 'optimizer.lrr' is not a field of get_config()"),
    ("empty", "'optimizer.lr' has an empty grid"),
    ("eta1", "eta=1: successive halving needs an integer eta >= 2"),
])
def test_bad_study_is_one_line_error_and_writes_nothing(setup, arg, message):
  out = run_study(setup, arg)
  assert out.returncode == 101, out.stderr
  error = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(error) == 1 and message in error[0], out.stderr
  assert not (setup / "st").exists()


def test_other_study_in_workdir_is_refused_unchanged(setup):
  assert run_study(setup).returncode == 0
  before = sorted((p, p.stat().st_mtime_ns) for p in (setup / "st").rglob("*"))
  out = run_study(setup, "sizes")
  assert out.returncode == 101 and "holds another study" in out.stderr
  assert sorted((p, p.stat().st_mtime_ns) for p in (setup / "st").rglob("*")) == before


def test_log_grid_and_declaration_checks():
  assert space.log_grid(0.001, 0.1, 3) == [0.001, 0.01, 0.1]
  with pytest.raises(SweepError, match="0 < low < high"):
    space.log_grid(0.1, 0.01, 3)


# --- the study end to end -----------------------------------------------------------------------

def test_study_tunes_each_strategy_and_trains_no_step_twice(setup):
  out = run_study(setup)
  assert out.returncode == 0, out.stdout + out.stderr
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  chosen = {s["strategy"]: s["chosen"]["hparams"] for s in decisions["strategies"]}
  assert chosen == {"linear_probe": {"optimizer.lr": 0.1}, "full_ft": {"optimizer.lr": 0.01}}
  for s in decisions["strategies"]:
    first, last = s["rungs"]
    assert first["budget"] == "1/3" and [t["promoted"] for t in first["trials"]].count(True) == 1
    assert len(last["trials"]) == 1 and last["trials"][0]["promoted"]
  calls = invocations(setup)
  # every search trial ran to its rung once; the winner resumed from step 30, never from 0
  search = [c for c in calls if c["dir"].startswith("search/")]
  assert sorted((c["dir"], c["from"], c["to"]) for c in search if c["to"] == 30) == sorted(
      (f"search/all/{s}/optimizer.lr={lr!r}", 0, 30) for s in ("linear_probe", "full_ft")
      for lr in STUDY_LRS)
  for s, lr in (("linear_probe", 0.1), ("full_ft", 0.01)):
    trial = f"search/all/{s}/optimizer.lr={lr!r}"
    assert [(c["from"], c["to"], c["held_out"]) for c in calls if c["dir"] == trial] == [
        (0, 30, False), (30, 90, False), (90, 90, True)]
    assert [(c["from"], c["to"]) for c in calls if c["dir"] == f"final/all/{s}/seed=1"] == [(0, 90)]
  # the test split is evaluated by final runs only
  assert all(not c["held_out"] for c in search if c["to"] < 90 or c["from"] < 90)
  assert "test" not in json.loads(
      (setup / "st/search/all/full_ft/optimizer.lr=1.0/rungs.json").read_text())
  images = decisions["images"]
  assert images["search"] == 2 * (4 * 300 + 600) and images["final"] == 2 * 900
  assert images["full_grid"] == 2 * (4 + 1) * 900
  # a second invocation finds everything done and launches nothing
  again = run_study(setup)
  assert again.returncode == 0 and len(invocations(setup)) == len(calls)


def test_failed_trial_ranks_last_and_the_study_goes_on(setup):
  out = run_study(setup, None, "--config.fake=fail@0.01")
  assert out.returncode == 2, out.stdout  # full_ft's and linear_probe's lr=0.01 trials
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  by = {s["strategy"]: s for s in decisions["strategies"]}
  # 0.001 and 0.1 tie (equally far from the failed best 0.01 in log): the grid's first wins
  assert by["full_ft"]["chosen"]["hparams"] == {"optimizer.lr": 0.001}
  failed = [t for t in by["full_ft"]["rungs"][0]["trials"] if t["status"] == "failed"]
  assert [t["trial"] for t in failed] == ["optimizer.lr=0.01"]
  assert "failed (ranked last)" in by["full_ft"]["rungs"][0]["why"]
  assert (setup / "st/search/all/full_ft/optimizer.lr=0.01/failed.json").exists()


def test_killed_study_resumes_without_rerunning_finished_trials(setup):
  proc = subprocess.Popen(study_cmd(setup, None, "--config.fake=sleep@0.01"), cwd=HERE.parent,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + 120
  while not (setup / "st" / "slept").exists():
    assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=60) == 128 + signal.SIGTERM
  before = invocations(setup)
  out = run_study(setup, None, "--config.fake=sleep@0.01")
  assert out.returncode == 0, out.stdout + out.stderr
  after = invocations(setup)[len(before):]
  # nothing that had reached its rung ran again; the interrupted one resumed from step 30
  assert not [c for c in after if c["to"] == 30]
  resumed = [c for c in after if c["dir"] == "search/all/full_ft/optimizer.lr=0.01"]
  assert resumed[0]["from"] == 30 and resumed[0]["to"] == 90
  runs = json.loads((setup / "st" / "runs.json").read_text())["runs"]
  assert {r["status"] for r in runs} == {"finished"}


def test_sizes_are_separate_searches(setup):
  out = run_study(setup, "sizes")
  assert out.returncode == 0, out.stdout + out.stderr
  calls = invocations(setup)
  assert {c["dir"].split("/")[1] for c in calls} == {"data.train_per_class=5",
                                                      "data.train_per_class=10"}
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  assert [s["size"] for s in decisions["strategies"]] == ["data.train_per_class=5",
                                                          "data.train_per_class=10"]


def test_dry_run_prints_commands_and_cost_and_writes_nothing(setup):
  out = run_study(setup, None, "--dry_run")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert sum("--config.train.stop_at_fraction=0.3333333333333333" in l for l in lines) == 8
  assert "search + final 6.00 (an untuned sweep of every strategy over 2 seeds: 4; a full grid: 10)" in out.stdout
  assert not (setup / "st").exists()
