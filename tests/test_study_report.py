"""ftlab.report on a study's workdir, from hand-written trial files: the tables exactly."""
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from ftlab.reports import provenance, results_md, study_output, study_results
from ftlab.studies import space

ROOT = pathlib.Path(__file__).parent.parent


def _write(path: pathlib.Path, data: dict) -> None:
  path.mkdir(parents=True, exist_ok=True)
  (path / "results.json").write_text(json.dumps(data))


def _results(strategy: str, lr: float, seed: int, minival: float, test_correct: int | None,
             steps: int = 90) -> dict:
  config = {"train": {"batch_size": 10}, "strategy": {"name": strategy}, "seed": seed,
            "optimizer": {"lr": lr}}
  out = {"status": "finished", "num_steps": steps, "config": config,
         "best": {"step": steps, "minival_top1": minival, "minival_loss": 0.5},
         "held_out_evaluated": test_correct is not None}
  if test_correct is not None:
    out["test"] = {"top1": test_correct / 359, "correct": test_correct, "count": 359}
  return out


def make_study(workdir: pathlib.Path) -> None:
  """Two strategies of two LRs each (fewer than eta: one rung, the full run), search seed 1000,
  final seeds 0 and 1."""
  study = space.Study("cfg.py", {"linear_probe": [{"optimizer.lr": 0.1}, {"optimizer.lr": 1.0}],
                                 "full_ft": [{"optimizer.lr": 0.01}, {"optimizer.lr": 0.1}]},
                      (0, 1), 1000, {"all": {}}, 3, 3, False, "top1",
                      {"linear_probe": (1.0,), "full_ft": (1.0,)}, {})
  workdir.mkdir(parents=True)
  (workdir / space.STUDY_FILE).write_text(json.dumps(space.to_json(study)))
  search = workdir / "search" / "all"
  _write(search / "linear_probe" / "optimizer.lr=0.1", _results("linear_probe", 0.1, 1000, 0.90, None))   # chosen
  _write(search / "linear_probe" / "optimizer.lr=1.0", _results("linear_probe", 1.0, 1000, 0.80, None))
  _write(search / "full_ft" / "optimizer.lr=0.01", _results("full_ft", 0.01, 1000, 0.85, None))
  _write(search / "full_ft" / "optimizer.lr=0.1", _results("full_ft", 0.1, 1000, 0.95, None))        # chosen
  final = workdir / "final" / "all"
  _write(final / "linear_probe" / "seed=0", _results("linear_probe", 0.1, 0, 0.90, 300))
  _write(final / "linear_probe" / "seed=1", _results("linear_probe", 0.1, 1, 0.91, 310))
  _write(final / "full_ft" / "seed=0", _results("full_ft", 0.1, 0, 0.95, 340))
  _write(final / "full_ft" / "seed=1", _results("full_ft", 0.1, 1, 0.96, 345))


def test_tuned_tables_from_hand_written_trials(tmp_path):
  make_study(tmp_path / "st")
  text = study_output.to_markdown(study_results.load(tmp_path / "st"))
  # linear_probe: 300/359 = 83.565%, 310/359 = 86.351%: mean 84.958, 95% CI 12.706 * 1.393
  # full_ft: 340/359 = 94.708%, 345/359 = 96.100%: mean 95.404, CI 12.706 * 0.696
  # the test set's binomial half-width (Wilson) at each mean, 359 test images
  assert ("| all | 84.96 ± 17.70 (n=2, test set ±3.70) @ lr=0.1 | **95.40 ± 8.85 (n=2, test set "
          "±2.21) @ lr=0.1** |") in text, text
  # the paired delta: -11.14 and -9.75 points on seeds 0, 1; no predictions.csv here, so the
  # seed-level t-test decides (one comparison: Holm leaves its p as it is)
  assert ("| all | linear_probe | full_ft | −10.45 | - | - | −10.45 ± 8.85 (n=2, p=0.042) | "
          "p=0.042 | beaten |") in text, text
  # the verdict opens the report
  assert text.split("\n")[2] == (
      "On the whole train split, **full_ft** wins (test top-1 95.40 ± 8.85 over 2 seeds; the "
      "test set's own 95% half-width ±2.21). Tied with it after Holm correction: none. Beaten: "
      "linear_probe (−10.45 [−19.29, −1.60]).")
  assert ("with the search seed 1000, then retrained from scratch with the final seeds 0, 1; the "
          "search seed is none of them") in text
  assert "| all | linear_probe | lr=0.1 | 90.00 chosen |" in text
  assert "| all | full_ft | lr=0.01 | 85.00 |" in text
  # two trials per strategy, fewer than eta: no halving, so the full grid's cost
  assert "| search + final | 7,200 (1.00x of a full grid) |" in text
  report = study_output.to_json(study_results.load(tmp_path / "st"))
  lp = report["strategies"][0]
  assert lp["chosen"] == {"optimizer.lr": 0.1} and lp["final_seeds"] == [0, 1]
  assert lp["test_top1"] == {"0": 300 / 359, "1": 310 / 359}
  assert report["images"] == {"search": 3600, "final": 3600, "untuned": 0, "total": 7200,
                              "full_grid": 7200}


def test_report_cli_writes_the_study_files(tmp_path):
  make_study(tmp_path / "st")
  (tmp_path / "st" / "final" / "all" / "full_ft" / "seed=1" / "results.json").unlink()
  out = subprocess.run([sys.executable, "-m", "ftlab.report", f"--workdir={tmp_path / 'st'}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "95.40" not in out.stdout and "94.71 (n=1, 1 running, test set ±2.35) @ lr=0.1" in out.stdout
  assert ("Not tested: linear_probe (−11.14; one shared seed, no predictions.csv). Separating "
          "full_ft from linear_probe needs a second seed.") in out.stdout
  for name in ("report.md", "report.json", "report.html", "plots/sensitivity_all.png"):
    assert (tmp_path / "st" / name).exists(), name
  assert "<h1>Study report</h1>" in (tmp_path / "st" / "report.html").read_text()


def test_results_page_is_generated_from_report_json_files(tmp_path):
  make_study(tmp_path / "st")
  shutil.copytree(ROOT / "tests" / "fixtures" / "report_sweep", tmp_path / "sw")
  for run in ("st", "sw"):
    out = subprocess.run([sys.executable, "-m", "ftlab.report", f"--workdir={tmp_path / run}",
                          "--noplots", "--formats=json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
  page = tmp_path / "results.md"
  cmd = [sys.executable, "-m", "ftlab.report", f"--results_md={page}",
         f"--results_from={tmp_path / 'st'},{tmp_path / 'sw'}"]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr
  text = page.read_text()
  commit = provenance.commit()
  assert commit != "unknown" and f"at ftlab commit `{commit}`" in text
  study = json.loads((tmp_path / "st" / "report.json").read_text())
  assert study["verdict"][0]["text"] in text
  assert f"python -m ftlab.study --config=cfg.py --workdir={tmp_path / 'st'}" in text
  assert "search seed 1000, final seeds 0, 1, successive halving at eta 3" in text
  assert "| all | 84.96 ± 17.70 (n=2) @ lr=0.1 | 95.40 ± 8.85 (n=2) @ lr=0.1 |" in text
  assert "## Sweep `configs/fixture.py` (untuned)" in text
  assert "| resnet18 | 52.00 ± 4.97 (n=3) | 82.00 ± 4.97 (n=3) | 79.00 ± 2.48 (n=3) |" in text
  # a workdir without report.json: one line naming it, nothing written
  page.unlink()
  missing = subprocess.run(cmd[:-1] + [f"--results_from={tmp_path / 'st'},{tmp_path}"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert missing.returncode == 1 and not page.exists()
  assert [l for l in missing.stderr.splitlines() if l.startswith("error:")] == [
      l for l in missing.stderr.splitlines() if "report.json" in l]


@pytest.mark.slow
def test_readme_block_is_rewritten_from_the_first_workdir_and_only_between_its_markers(tmp_path):
  shutil.copytree(ROOT / "tests" / "fixtures" / "report_sweep", tmp_path / "sw")
  out = subprocess.run([sys.executable, "-m", "ftlab.report", f"--workdir={tmp_path / 'sw'}",
                        "--noplots", "--formats=json"], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
  assert out.returncode == 0, out.stderr
  readme = tmp_path / "README.md"
  before, after = "# Title\n\nintro\n\n", "\n\n## Next\nkept\n"
  readme.write_text(before + results_md.README_START + "\nstale numbers\n" + results_md.README_END
                    + after)
  cmd = [sys.executable, "-m", "ftlab.report", f"--results_md={tmp_path / 'results.md'}",
         f"--results_from={tmp_path / 'sw'}", f"--readme={readme}"]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr
  text = readme.read_text()
  assert text.startswith(before) and text.endswith(after) and "stale numbers" not in text
  verdict = json.loads((tmp_path / "sw" / "report.json").read_text())["verdict"][0]["text"]
  assert verdict in text
  assert "| resnet18 | 52.00 ± 4.97 (n=3) | 82.00 ± 4.97 (n=3) | 79.00 ± 2.48 (n=3) |" in text
  assert f"--readme={readme}" in text  # the block names the command that wrote it
  # a README without the markers: one error line naming it, neither file written
  readme.write_text("no markers\n")
  (tmp_path / "results.md").unlink()
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 1 and f"error: {readme}: no block between" in out.stderr
  assert readme.read_text() == "no markers\n" and not (tmp_path / "results.md").exists()


def test_cost_of_a_final_run_shows_the_probe_apart_from_fine_tuning(tmp_path):
  make_study(tmp_path / "st")
  final = tmp_path / "st" / "final" / "all"
  for seed, (total, probe) in enumerate(((12.0, 2.0), (14.0, 3.0))):
    path = final / "linear_probe" / f"seed={seed}" / "results.json"
    data = json.loads(path.read_text())  # as if linear_probe had a probe phase: 30 of 90 steps
    data.update(train_time_s=total, probe={"steps": 30, "images": 300, "train_time_s": probe})
    path.write_text(json.dumps(data))
  (final / "full_ft" / "seed=1" / "results.json").unlink()  # one final run left
  results = study_results.load(tmp_path / "st")
  text = study_output.to_markdown(results)
  # linear_probe: fine-tuning 90 - 30 steps x batch 10, (10 + 11) / 2 s; probe (2 + 3) / 2 s.
  # full_ft's results.json has no train time and, as before the probe was recorded, no probe.
  assert "| all | linear_probe | 2 | 60 steps, 600 images, 10.5 s | 30 steps, 300 images, 2.5 s |" \
      in text, text
  assert "| all | full_ft | 1 | 90 steps, 900 images | - |" in text
  assert "<td>60 steps, 600 images, 10.5 s</td><td>30 steps, 300 images, 2.5 s</td>" in \
      study_output.to_html(results)
  cost = study_output.to_json(results)["final_run_cost"]
  assert cost[0] == {"size": "all", "strategy": "linear_probe", "n": 2, "finetune_steps": 60,
                     "finetune_images": 600, "finetune_train_time_s": 10.5, "probe_steps": 30,
                     "probe_images": 300, "probe_train_time_s": 2.5}
  assert (cost[1]["n"], cost[1]["finetune_steps"], cost[1]["probe_steps"]) == (1, 90, None)
