"""ftlab.study: successive halving decisions, the study's files, resuming, bad input.

The end-to-end tests run the real study driver with `tests/study_fake.py` in
place of `python -m ftlab.main` (a deterministic score per LR, no JAX);
tests/test_study_train.py checks the training side (rungs, held-out) for real.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from ftlab.reports import study_output, study_plots, study_results
from ftlab.studies import halving, space, trials
from ftlab.sweeps import naming
from ftlab.sweeps.grid import SweepError
from ftlab.training import rungs
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
  assert halving.search_equivalents(4, (1 / 3, 1.0), 3) == pytest.approx(4 / 3 + 2 / 3)
  assert halving.search_equivalents(9, (1 / 9, 1 / 3, 1.0), 3) == pytest.approx(
      1 + 2 / 9 * 3 + 2 / 3)
  assert halving.search_equivalents(4, (0.5, 1.0), 3) == pytest.approx(2 + 0.5)
  # the search ends at the first rung that keeps one trial
  assert halving.until_one((1 / 3, 1.0), 4, 3) == (1 / 3,)
  assert halving.until_one((1 / 9, 1 / 3, 1.0), 9, 3) == (1 / 9, 1 / 3)
  assert halving.until_one((0.25, 0.5, 1.0), 4, 2) == (0.25, 0.5)
  assert halving.until_one((1.0,), 2, 3) == (1.0,)
  assert halving.search_equivalents(4, (1 / 3,), 3) == pytest.approx(4 / 3)


def test_rungs_move_to_the_runs_scheduled_evaluations():
  assert halving.evaluation_fractions(2.0, 1.0) == (0.5,)
  assert halving.evaluation_fractions(3.0, 1.0) == (1 / 3, 2 / 3)
  assert halving.evaluation_fractions(2.0, 2.0) == ()
  assert halving.at_evaluations((1 / 3, 1.0), (0.5,)) == (0.5, 1.0)
  assert halving.at_evaluations((1 / 3, 1.0), ()) == (1 / 3, 1.0)  # none before the end: kept
  eighths = halving.evaluation_fractions(2.0, 0.25)
  assert halving.at_evaluations((1 / 9, 1 / 3, 1.0), eighths) == (0.125, 0.375, 1.0)
  assert halving.at_evaluations((1 / 9, 1 / 3, 1.0), (0.5,)) == (0.5, 1.0)  # merged
  # the trainer stops a rung at ceil(f x total steps): at f = k x every / epochs that is the
  # k-th scheduled evaluation, round(every x steps per epoch) x k
  for epochs, every, per_epoch in ((2, 1, 40), (3, 0.5, 18), (10, 1, 7), (4, 0.25, 12)):
    total, eval_every = round(epochs * per_epoch), round(every * per_epoch)
    for k, f in enumerate(halving.evaluation_fractions(epochs, every), 1):
      assert rungs.rung_step(f, total) == k * eval_every


@pytest.mark.parametrize("arg, expected", [(None, (1 / 3, 1.0)), ("epochs2", (0.5, 1.0)),
                                           ("epochs2_ideal", (1 / 3,)),
                                           ("epochs_grid", (1 / 3, 1.0)), ("until_one", (1 / 3,))])
def test_a_study_places_its_rungs_where_its_runs_evaluate(setup, arg, expected):
  # 3 epochs evaluated every epoch: 1/3 is an evaluation; 2 epochs: the rung moves to 1/2,
  # unless asked not to or the grid itself changes the epochs (2 or 4: no common evaluations).
  # 4 trials at eta 3 keep one at the first rung: by default the search ends there (None and
  # epochs2 ask finish_winner=True; epochs_grid's 8 trials keep 2 and go on)
  study = space.load_study(f"{setup / 'study_cfg.py'}" + (f":{arg}" if arg else ""))
  assert all(r == pytest.approx(expected) for r in study.rungs.values())


def test_rungs_can_rank_by_minival_loss(setup):
  s = halving.Score
  scores = [s(0, 0.9, 0.5), s(1, 0.8, 0.3), s(2, 0.85, 0.3), s(3, None)]
  assert [x.order for x in halving.rank(scores, "loss")] == [2, 1, 0, 3]
  assert halving.promote(scores, 3, "loss") == [2] and halving.best(scores, "loss") == [2]
  out = run_study(setup, "by_loss")
  assert out.returncode == 0, out.stdout + out.stderr
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  assert "minival loss wins" in decisions["strategies"][0]["rungs"][0]["why"]


def test_a_rung_scores_the_minival_the_trainer_evaluated_at_the_stop(tmp_path):
  # the weights the trial goes on from, not the best of its earlier evaluations
  (tmp_path / "rungs.json").write_text(json.dumps({"rungs": [
      {"fraction": 0.5, "step": 40, "total_steps": 80, "train_images": 1280,
       "minival_top1": 0.7, "minival_loss": 0.9, "best_minival_top1": 0.8}]}))
  r = trials.at_rung(trials.read(tmp_path), 0.5)
  assert (r.status, r.top1, r.loss, r.step) == ("finished", 0.7, 0.9, 40)


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
    ("finish_text", "finish_winner='yes' must be True or False"),
    ("collide", "both get the run name 'fake=a_b'"),
    ("seed_clash", "search_seed=1000 must be an int outside final_seeds=[0, 1000]"),
    ("select_on_test", "its checkpoints would be selected on the test split"),
    ("whole_and_subset", "so the sizes are not nested"),
])
def test_bad_study_is_one_line_error_and_writes_nothing(setup, arg, message):
  out = run_study(setup, arg)
  assert out.returncode == 101, out.stderr
  error = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(error) == 1 and message in error[0], out.stderr
  assert not (setup / "st").exists()


@pytest.mark.parametrize("arg, flag", [
    (None, "--config.seed=0"), (None, "--config.strategy.name=full_ft"),
    (None, "--config.train.stop_at_fraction=0.5"), (None, "--config.train.evaluate_held_out=False"),
    (None, "--config.optimizer.lr=0.5"), ("sizes", "--config.data.train_per_class=3"),
])
def test_overriding_a_key_the_planner_sets_is_refused(setup, arg, flag):
  out = run_study(setup, arg, flag)
  assert out.returncode == 101, out.stdout + out.stderr
  key = flag[len("--config."):].split("=")[0]
  error = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(error) == 1 and f"study sets {key!r} itself" in error[0], out.stderr
  assert not (setup / "st").exists()


def test_with_val_split_equal_to_test_split_and_no_minival_selection_is_on_test(tmp_path):
  # the suspicion the study's refusal above answers: such a run selects checkpoints on test
  from ftlab.data import datasets  # pylint: disable=import-outside-toplevel
  from tests.helpers import make_image_folder, tiny_config  # pylint: disable=import-outside-toplevel
  config = tiny_config(make_image_folder(str(tmp_path / "data")),
                       **{"data.val_split": "test", "data.minival_fraction": 0.0})
  data = datasets.load(config.data)
  assert data.minival.paths == data.test.paths


def test_a_full_size_point_nests_with_one_minival_for_every_size(setup):
  study = space.load_study(f"{setup / 'study_cfg.py'}:nested_full")
  assert list(study.sizes) == ["data.train_per_class=5", "all"]


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
  # every search trial ran to its rung once, with the search seed; the winner resumed from step
  # 30, never from 0, and was never evaluated on the held-out splits
  search = [c for c in calls if c["dir"].startswith("search/")]
  assert {c["seed"] for c in search} == {1000} and not any(c["held_out"] for c in search)
  assert sorted((c["dir"], c["from"], c["to"]) for c in search if c["to"] == 30) == sorted(
      (f"search/all/{s}/optimizer.lr={lr!r}", 0, 30) for s in ("linear_probe", "full_ft")
      for lr in STUDY_LRS)
  for s, lr in (("linear_probe", 0.1), ("full_ft", 0.01)):
    trial = f"search/all/{s}/optimizer.lr={lr!r}"
    assert [(c["from"], c["to"]) for c in calls if c["dir"] == trial] == [(0, 30), (30, 90)]
    # every final seed is a retrained run of the chosen point, evaluated on test
    for seed in (0, 1):
      final = [c for c in calls if c["dir"] == f"final/all/{s}/seed={seed}"]
      assert [(c["from"], c["to"], c["held_out"], c["seed"]) for c in final] == [
          (0, 90, True, seed)]
      config = json.loads((setup / f"st/final/all/{s}/seed={seed}/config.json").read_text())
      assert config["optimizer"]["lr"] == lr
  assert "test" not in json.loads(
      (setup / "st/search/all/full_ft/optimizer.lr=1.0/rungs.json").read_text())
  images = decisions["images"]
  assert images["search"] == 2 * (4 * 300 + 600) and images["final"] == 2 * 2 * 900
  assert images["full_grid"] == 2 * (4 + 2) * 900
  # the terminal summary and the report begin with the verdict, paired image by image over the
  # final seeds' predictions.csv
  results = study_results.load(setup / "st")
  [group] = results.verdict.groups
  [probe] = group.comparisons
  assert group.winner.name == "full_ft" and probe.name == "linear_probe"
  assert (probe.image.n_seeds, probe.image.n_images) == (2, 359)
  lp, ft = (sum(r.values.values()) / 2 for r in results.tuned)
  assert probe.delta == pytest.approx(100 * (lp - ft)) and probe.beaten
  paragraph = study_output.verdict_paragraphs(results)[0]
  assert paragraph.startswith("On the whole train split (100 images per class), **full_ft** "
                              "wins (test top-1 ")
  assert paragraph in out.stdout.splitlines()
  # a second invocation finds everything done and launches nothing
  again = run_study(setup)
  assert again.returncode == 0 and len(invocations(setup)) == len(calls)


def test_by_default_the_search_ends_at_the_rung_that_keeps_one_trial(setup):
  out = run_study(setup, "until_one")
  assert out.returncode == 0, out.stdout + out.stderr
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  chosen = {s["strategy"]: s["chosen"]["hparams"] for s in decisions["strategies"]}
  assert chosen == {"linear_probe": {"optimizer.lr": 0.1}, "full_ft": {"optimizer.lr": 0.01}}
  for s in decisions["strategies"]:
    [rung] = s["rungs"]
    assert rung["budget"] == "1/3" and [t["promoted"] for t in rung["trials"]].count(True) == 1
  calls = invocations(setup)
  # no search trial trains past its rung; the finals retrain the choice from step 0
  search = [c for c in calls if c["dir"].startswith("search/")]
  assert sorted((c["dir"], c["from"], c["to"]) for c in search) == sorted(
      (f"search/all/{s}/optimizer.lr={lr!r}", 0, 30) for s in ("linear_probe", "full_ft")
      for lr in STUDY_LRS)
  finals = sorted((c["dir"], c["from"], c["to"]) for c in calls if c["dir"].startswith("final/"))
  assert finals == sorted((f"final/all/{s}/seed={seed}", 0, 90)
                          for s in ("linear_probe", "full_ft") for seed in (0, 1))
  images = decisions["images"]
  assert images["search"] == 2 * 4 * 300 and images["final"] == 2 * 2 * 900


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
  # sizes are labelled and plotted by the images per class trained on: with the minival carved
  # from the subset (minival_from='subset'), k=5 trains on 4 and k=10 on 9
  results = study_results.load(setup / "st")
  text = study_output.to_markdown(results)
  assert "| 4 images per class (data.train_per_class=5) |" in text, text
  [line] = study_plots.size_figure(results).axes[0].get_lines()
  assert list(line.get_xdata()) == [4, 9]


def test_slurm_rounds_are_written_by_the_sweeps_script_builder(setup):
  script = setup / "study.sh"
  out = run_study(setup, "sizes", f"--slurm={script}", "--nosubmit", "--sbatch=--time=1:00:00")
  assert out.returncode == 0, out.stdout + out.stderr
  array, after = script.read_text(), script.with_name("study.sh.next.sh").read_text()
  assert "#SBATCH --array=0-7\n#SBATCH --output=" in array and "#SBATCH --time=1:00:00" in array
  assert array.rstrip().endswith('--task="${SLURM_ARRAY_TASK_ID}"') and "--round_file=" in array
  assert "--array" not in after and f"--slurm={script}" in after and "--task" not in after
  # array task 0 runs the round's first trial, with a local run's bookkeeping
  task = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"})
  assert task.returncode == 0, task.stdout + task.stderr
  assert [(c["dir"], c["to"]) for c in invocations(setup)] == [
      ("search/data.train_per_class=5/full_ft/optimizer.lr=0.001", 30)]


def test_dry_run_prints_commands_and_cost_and_writes_nothing(setup):
  out = run_study(setup, None, "--dry_run")
  assert out.returncode == 0, out.stderr
  lines = out.stdout.splitlines()
  assert sum("--config.train.stop_at_fraction=0.3333333333333333" in l for l in lines) == 8
  assert ("search + 2 final seeds 8.00 (an untuned sweep of every strategy over 2 seeds: 4; a "
          "full grid: 12)") in out.stdout
  assert not (setup / "st").exists()


# --- a published row mixes no runs ------------------------------------------------------------

def _final_lrs(workdir):
  """{(strategy, seed): the LR its final run was trained with} for every final run on disk."""
  out = {}
  for config in (workdir / "final").rglob("config.json"):
    data = json.loads(config.read_text())
    out[data["strategy"]["name"], data["seed"]] = data["optimizer"]["lr"]
  return out


def test_a_failed_held_out_evaluation_changes_no_decision(setup):
  # The review's reproduction: the winner's held-out evaluation failed, the winner changed and a
  # final seed trained at the old winner's LR was averaged under the new one.
  out = run_study(setup, None, "--config.fake=fail_held_out@0.01")
  assert out.returncode == 2, out.stdout + out.stderr  # full_ft's two final seeds
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  by = {s["strategy"]: s for s in decisions["strategies"]}
  assert by["full_ft"]["chosen"]["hparams"] == {"optimizer.lr": 0.01}
  assert {k: v["status"] for k, v in by["full_ft"]["final_runs"].items()} == {"0": "failed",
                                                                            "1": "failed"}
  rows = {r.strategy: r for r in study_results.load(setup / "st").tuned}
  assert rows["full_ft"].values == {} and rows["full_ft"].status == "failed"
  assert set(rows["linear_probe"].values) == {0, 1}
  assert _final_lrs(setup / "st") == {("full_ft", 0): 0.01, ("full_ft", 1): 0.01,
                                      ("linear_probe", 0): 0.1, ("linear_probe", 1): 0.1}


def test_a_final_trained_at_another_point_is_moved_aside_and_retrained(setup):
  assert run_study(setup).returncode == 0
  run_dir = setup / "st" / "final" / "all" / "full_ft" / "seed=1"
  for name in ("config.json", "results.json"):  # as if trained for an earlier winner, lr=0.1
    data = json.loads((run_dir / name).read_text())
    (data if name == "config.json" else data["config"])["optimizer"]["lr"] = 0.1
    (run_dir / name).write_text(json.dumps(data))
  problems = study_results.load(setup / "st").problems
  assert any(p.startswith(f"{run_dir}: stale, not averaged (trained at optimizer.lr=0.1, "
                          "planned 0.01)") for p in problems), problems
  assert set(next(r for r in study_results.load(setup / "st").tuned
                  if r.strategy == "full_ft").values) == {0}
  out = run_study(setup)
  assert out.returncode == 0, out.stdout + out.stderr
  moved = setup / "st" / "stale" / "final" / "all" / "full_ft" / "seed=1.0"
  assert f"moved {run_dir} aside to {moved}" in out.stdout
  assert json.loads((moved / "config.json").read_text())["optimizer"]["lr"] == 0.1
  assert _final_lrs(setup / "st")["full_ft", 1] == 0.01
  results = study_results.load(setup / "st")
  assert set(next(r for r in results.tuned if r.strategy == "full_ft").values) == {0, 1}
  assert any(p.startswith(f"{moved}: moved aside, not averaged") for p in results.problems)


def test_a_promoted_trial_that_fails_later_changes_no_decision(setup):
  # full_ft's lr=0.01 wins rung 1 and fails when it resumes: rung 1's decision stands (no
  # next-best pulled in), the failed trial's rung-1 training is counted
  out = run_study(setup, None, "--config.fake=fail_resumed@0.01")
  assert out.returncode == 1, out.stdout + out.stderr
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  full_ft = next(s for s in decisions["strategies"] if s["strategy"] == "full_ft")
  first, last = full_ft["rungs"]
  assert [t["trial"] for t in first["trials"] if t["promoted"]] == ["optimizer.lr=0.01"]
  assert [t["status"] for t in last["trials"]] == ["failed"] and full_ft["chosen"] is None
  beyond = {c["dir"] for c in invocations(setup) if c["dir"].startswith("search/all/full_ft/")
            and c["to"] > 30}
  assert beyond == {"search/all/full_ft/optimizer.lr=0.01"}
  # linear_probe: 4 x 300 + 600; full_ft: 4 x 300, the failed trial's included
  assert decisions["images"]["search"] == 1800 + 1200
  # the documented retry: delete failed.json; rung 1 stays decided, the trial resumes and wins
  (setup / "st/search/all/full_ft/optimizer.lr=0.01/failed.json").unlink()
  out = run_study(setup, None, "--config.fake=fail_resumed@0.01")
  assert out.returncode == 0, out.stdout + out.stderr
  decisions = json.loads((setup / "st" / "decisions.json").read_text())
  full_ft = next(s for s in decisions["strategies"] if s["strategy"] == "full_ft")
  assert full_ft["chosen"]["hparams"] == {"optimizer.lr": 0.01}
  assert "taken in an earlier round and kept" in full_ft["rungs"][0]["why"]


def test_final_images_count_under_a_folder_named_search(tmp_path):
  (tmp_path / "search").mkdir()
  (tmp_path / "search" / "study_cfg.py").write_text(STUDY_CONFIG)
  assert run_study(tmp_path / "search").returncode == 0
  images = json.loads((tmp_path / "search" / "st" / "decisions.json").read_text())["images"]
  assert images["final"] == 2 * 2 * 900


def test_a_trial_name_shared_by_two_values_is_refused_in_sweeps_too():
  with pytest.raises(SweepError, match="both get the run name 'x=True'"):
    naming.unique_names([{"x": True}, {"x": "True"}])
