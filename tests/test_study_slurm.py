"""A study through a real single-node SLURM: each round an array job, promotion a dependent job."""
import json
import subprocess
import sys
import time

import pytest

from tests import slurm_cluster
from tests.helpers import STUDY_CONFIG, TESTS_DIR

pytestmark = pytest.mark.skipif(bool(slurm_cluster.unavailable()),
                                reason=slurm_cluster.unavailable() or "available")


@pytest.fixture
def cluster(tmp_path):
  c = slurm_cluster.Cluster(tmp_path / "slurm")
  c.start()
  yield c
  c.stop()


@pytest.mark.slow
def test_study_runs_through_slurm_rounds(cluster, tmp_path):
  (tmp_path / "study_cfg.py").write_text(STUDY_CONFIG)
  workdir = tmp_path / "st"
  cmd = [sys.executable, "-m", "ftlab.study",
         f"--config={tmp_path / 'study_cfg.py'}:sizes_finished",
         f"--workdir={workdir}", f"--runner={sys.executable} {TESTS_DIR / 'study_fake.py'}",
         f"--slurm={tmp_path / 'study.sh'}"]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=TESTS_DIR.parent, env=cluster.env,
                       timeout=120)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "submitted array job" in out.stdout
  script = (tmp_path / "study.sh").read_text()
  assert "#SBATCH --array=0-7" in script and "--round_file=" in script
  deadline = time.monotonic() + 240
  while True:
    done = (workdir / "decisions.json").exists() and not json.loads(
        (workdir / "decisions.json").read_text())["pending_runs"]
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=cluster.env)
    if done and not queue.stdout.strip():
      break
    assert time.monotonic() < deadline, (queue.stdout, sorted(p.name for p in
                                                               (workdir / "slurm").iterdir()))
    time.sleep(1)
  # three rounds (rung 1: 8 trials, rung 2: 2, final: 4), each followed by a planning job
  rounds = sorted((workdir / "slurm").glob("round-*.json"))
  assert [len(json.loads(r.read_text())["tasks"]) for r in rounds] == [8, 2, 4]
  decisions = json.loads((workdir / "decisions.json").read_text())
  assert [s["chosen"]["hparams"] for s in decisions["strategies"]] == [{"optimizer.lr": 0.01}] * 2
  report = subprocess.run([sys.executable, "-m", "ftlab.report", f"--workdir={workdir}"],
                          capture_output=True, text=True, cwd=TESTS_DIR.parent, timeout=120)
  assert report.returncode == 0, report.stderr
  assert ("| 4 images per class (data.train_per_class=5) | **93.04 ± 0.00 (n=2, test set ±2.66) "
          "@ lr=0.01** |") in report.stdout
  runs = json.loads((workdir / "runs.json").read_text())["runs"]
  # one entry per run dir: 8 trials, 2 sizes x 2 retrained final seeds
  assert len(runs) == 12 and {r["status"] for r in runs} == {"finished"}
