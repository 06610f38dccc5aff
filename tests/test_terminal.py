"""What a user sees at the terminal: `python -m ftlab.main` and `python -m ftlab.sweep`."""
import json
import os
import re
import subprocess
import sys

import ml_collections
import pytest

from configs import default
from ftlab.sweeps import runner
from ftlab.training import progress
from tests.helpers import FAKE_RUNNER, SWEEP_CONFIG, make_image_folder, run_sweep, tiny_config


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's and JAX's start-up banners ("oneDNN custom operations" is TF's; ftlab's own line
# on its oneDNN convolutions is not noise).
PROBING_NOISE = ("Unable to initialize backend", "libtpu", "TPU", "CUDA", "InitializeLog",
                 "oneDNN custom operations")


def _differences(config, base, prefix=""):
  """`--config.key=value` flags that turn `base` into `config`."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _differences(value, base[key], f"{prefix}{key}.")
    elif value != base[key]:
      yield f"--config.{prefix}{key}={value}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{"quiet"|"verbose": (workdir, terminal text)} of two `python -m ftlab.main` runs of
  tiny_config for one epoch without a val split, at once (each is mostly imports and one
  compilation): as it is, and with `-v 0` stopping after a step. The config goes as flags: a
  config file importing tests.conftest would import pytest, whose plugins crash a process that
  imported TensorFlow."""
  tmp = tmp_path_factory.mktemp("terminal")
  config = tiny_config(make_image_folder(str(tmp / "data")),
                       **{"train.num_epochs": 1.0, "data.val_split": ""})
  base = [sys.executable, "-m", "ftlab.main", f"--config={REPO}/configs/default.py",
          *_differences(config, default.get_config())]
  extra = {"quiet": [], "verbose": ["-v", "0", "--config.train.stop_after_steps=1"]}
  procs = {}
  for name, flags in extra.items():
    with open(tmp / f"{name}.txt", "w") as terminal:  # a file: a full pipe would stall the run
      procs[name] = subprocess.Popen([*base, f"--workdir={tmp / name}", *flags], cwd=REPO,
                                     stdout=terminal, stderr=subprocess.STDOUT)
  out = {}
  for name, proc in procs.items():
    proc.wait(timeout=180)
    text = (tmp / f"{name}.txt").read_text()
    assert proc.returncode == 0, text[-3000:]
    out[name] = (str(tmp / name), text)
  return out


@pytest.mark.slow
def test_a_run_shows_its_plan_progress_and_results_without_library_noise(runs):
  workdir, text = runs["quiet"]
  lines = text.splitlines()
  assert "strategy full_ft, phase 0 from step 0:" in lines
  assert any(line.startswith("group    rule") for line in lines)
  assert any(re.fullmatch(r"tiny_cnn at 16px, [\d,]+ of [\d,]+ parameters trainable \| data: "
                          r"3 classes, train 63, minival 9, val -, test 18 \| 7 steps \(7 per "
                          r"epoch, batch 8\), minival every 7 \| 1 cpu device", line)
             for line in lines), text
  progress = [line for line in lines if re.fullmatch(
      r"step \d/7  epoch 1/1  loss \d+\.\d{4}  [\d,]+\.\d images/s  ETA \d+\.\ds", line)]
  assert len(progress) >= 2 and progress[-1].startswith("step 7/7  "), text
  assert "step 7/7  minival top-1" in text
  assert "evaluating the best checkpoint (step 7) on test" in lines
  results = json.load(open(os.path.join(workdir, "results.json")))
  test = results["test"]
  assert (f"  test        top-1 {100 * test['top1']:.2f}%  ({test['correct']}/{test['count']} "
          "correct)") in lines
  assert f"  results     {workdir}/results.json" in lines
  assert f"  predictions {workdir}/predictions.csv" in lines
  assert f"  metrics     {workdir}/metrics.jsonl" in lines
  assert f"  tensorboard tensorboard --logdir {workdir}" in lines
  # ftlab's own warnings still show: full_ft on tiny_cnn without pretrained weights
  assert ("config.strategy.name='full_ft' adapts pretrained weights, but "
          "config.model.pretrained is empty: tiny_cnn starts from random init") in text
  for noise in PROBING_NOISE:
    assert noise not in text, noise
  assert not any(re.match(r"I\d{4} ", line) for line in lines), "absl prefix on an INFO line"
  assert "steps_per_sec" not in text and "[process=0]" not in text  # clu's and orbax's INFO


@pytest.mark.slow
def test_verbosity_flag_brings_the_library_lines_back(runs):
  _, text = runs["verbose"]
  assert "Unable to initialize backend 'tpu'" in text
  assert "stopped at step 1 of 7 (config.train.stop_after_steps)" in text


def test_progress_rate_excludes_compilation_and_eta_counts_the_rest():
  now = [100.0]
  lines = progress.Progress(total_steps=100, steps_per_epoch=10, batch_size=8, every_s=10.0,
                           clock=lambda: now[0])
  lines.start(0, train_s=0.0, compile_s=0.0)
  now[0] += 5.0  # 3 s compiling, 2 s for 10 steps
  assert lines.line(10, train_s=2.0, compile_s=3.0, loss=None) is None  # no loss yet
  now[0] += 2.0  # 1 s for 10 more steps, 1 s evaluating
  assert lines.line(20, train_s=3.0, compile_s=3.0, loss=0.5) == (
      "step 20/100  epoch 2/10  loss 0.5000  53.3 images/s  ETA 16s")
  now[0] += 1.0
  assert lines.line(25, train_s=3.5, compile_s=3.0, loss=0.4) is None  # not due for 10 s
  assert lines.line(26, train_s=3.6, compile_s=3.0, loss=0.4, last=True).startswith(
      "step 26/100  epoch 3/10  loss 0.4000  80.0 images/s")


@pytest.mark.parametrize("seconds,text", [(0.42, "0.4s"), (42, "42s"), (63, "1m03s"),
                                          (7500, "2h05m")])
def test_durations_read_as_people_read_them(seconds, text):
  assert progress.duration(seconds) == text


def test_sweep_prints_each_run_start_end_score_time_and_eta(tmp_path):
  (tmp_path / "fake_runner.py").write_text(FAKE_RUNNER)
  (tmp_path / "cfg.py").write_text(SWEEP_CONFIG)
  out = run_sweep(tmp_path, "fail")
  assert out.returncode == 1, out.stderr
  lines = out.stdout.splitlines()
  log = tmp_path / "runs" / "strategy=freeze_all,fake=fail" / "log.txt"
  assert lines[0] == "[1/3] start strategy=full_ft,fake=ok"
  assert re.fullmatch(r"\[1/3\] finished strategy=full_ft,fake=ok  test top-1 95\.54%  "
                      r"\d+\.\ds  ETA \d+\.\ds for 2 more", lines[1]), lines[1]
  assert lines[2] == "[2/3] start strategy=freeze_all,fake=fail"
  assert re.fullmatch(rf"\[2/3\] failed strategy=freeze_all,fake=fail  \(exit 3; see "
                      rf"{re.escape(str(log))}\)  \d+\.\ds", lines[3]), lines[3]
  assert re.fullmatch(r"\[3/3\] finished strategy=linear,fake=ok  test top-1 95\.54%  \d+\.\ds",
                      lines[5]), lines[5]
  assert lines[-1] == "2 finished, 1 failed"
  (tmp_path / "bare").mkdir()
  (tmp_path / "bare" / "results.json").write_text('{"status": "finished"}')
  assert runner.held_out_top1(tmp_path / "bare") == "-"
