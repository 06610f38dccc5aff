"""Tests for ftlab.report, ftlab.reports.stats and ftlab.reports.plots on hand-written fixtures.

tests/fixtures/report_sweep holds a 2 model x 3 strategy x 3 seed sweep
(strategy order linear_probe, freeze_shallow, full_ft; not alphabetical):

  resnet18:   linear_probe 50/52/54, freeze_shallow 80/82/84, full_ft 78/79/80 (% top-1)
  mnv3_small: linear_probe seed 0 48.66, seed 1 failed.json, seed 2 corrupt results.json;
              freeze_shallow seeds 0-1 absent (missing), seed 2 status 'running' (running);
              full_ft 88/90, seed 2 results.json without `test` (failed).
"""
import csv
import io
import json
import math
import shutil
import subprocess
import sys

from PIL import Image
import numpy as np
import pytest

from ftlab.reports import (collect, csv_format, json_format, latex, markdown, outputs, pivot, plots,
                           stats)
from tests.helpers import REPORT_FIXTURE, write_predictions


T_975_DF2 = 4.302653  # Student t 97.5% quantile, 2 degrees of freedom (tables).
T_975_DF1 = 12.706205  # ... 1 degree of freedom.

EXPECTED_MD = """\
# Fine-tuning report: WORKDIR

Untuned (every strategy at one shared recipe): model=resnet18, **freeze_shallow** wins \
(test.top1 82.00 ± 4.97 over 3 seeds). Tied with it after Holm correction: none. \
Beaten: full_ft (−3.00 [−5.48, −0.52]). Not tested: linear_probe (−30.00; the same \
difference on every seed, no predictions.csv).

Untuned (every strategy at one shared recipe): model=mnv3_small, **full_ft** wins \
(test.top1 89.00 ± 12.71 over 2 seeds). Tied with it after Holm correction: none. \
Beaten: none. Not tested: linear_probe (−39.34; one shared seed, no predictions.csv). \
Separating full_ft from linear_probe needs a second seed. \
Not compared yet: freeze_shallow (running).

Metric `test.top1`, in %, higher is better; rows `model`, columns `strategy`. \
Runs: 12 finished, 3 failed, 2 missing, 1 running.

## test.top1 (%): mean ± std over seeds

| model | linear_probe | freeze_shallow | full_ft |
|---|---|---|---|
| resnet18 | 52.00 ± 2.00 (n=3) | **82.00 ± 2.00 (n=3)** | 79.00 ± 1.00 (n=3) |
| mnv3_small | 48.66 (n=1, failed 2) | running | **89.00 ± 1.41 (n=2, failed 1)** |

Bold: the highest mean in its row (ties all bold).
± is the sample standard deviation over seeds (ddof=1); n counts finished seeds; \
failed/missing/running runs never contribute a number.

## test.top1 (%): mean ± 95% CI

| model | linear_probe | freeze_shallow | full_ft |
|---|---|---|---|
| resnet18 | 52.00 ± 4.97 (n=3) | **82.00 ± 4.97 (n=3)** | 79.00 ± 2.48 (n=3) |
| mnv3_small | 48.66 (n=1, failed 2) | running | **89.00 ± 12.71 (n=2, failed 1)** |

Bold: the highest mean in its row (ties all bold).
± is the 95% confidence-interval half-width of the mean, t(0.975, n-1)·s/√n \
(Student t over seeds); n=1 cells have no interval.

## Δ test.top1 vs full_ft (percentage points)

| model | linear_probe | freeze_shallow |
|---|---|---|
| resnet18 | -27.00 ± 2.48 (n=3, p<0.001, Holm p<0.001) * | \
+3.00 ± 2.48 (n=3, p=0.035, Holm p=0.035) * |
| mnv3_small | -39.34 (n=1, no test) | running |

Δ is the mean over shared seeds of (column − full_ft) ± the 95% t half-width of that mean.
Test: two-sided paired t-test over shared seeds (scipy.stats.ttest_rel); p-values get \
Holm's step-down correction across the table's 2 tested comparisons (Holm p), and * marks \
Holm p < 0.05; fewer than 2 shared seeds, or differences equal up to float32 rounding: no test.

## Untuned, paired with each model's winner

| model | strategy | vs | Δ (points) | image-level interval (level) | P(strategy > winner) | \
seed-level paired t-test | Holm p | verdict |
|---|---|---|---|---|---|---|---|---|
| resnet18 | linear_probe | freeze_shallow | −30.00 | - | - | \
−30.00 ± 0.00 (n=3, no test: equal differences) | - | not tested |
| resnet18 | full_ft | freeze_shallow | −3.00 | - | - | −3.00 ± 2.48 (n=3, p=0.035) | p=0.035 \
| beaten |
| mnv3_small | linear_probe | full_ft | −39.34 | - | - | −39.34 (n=1, no test) | - | not tested |

Differences are strategy − winner in points, with the wider of two intervals: image-level \
(hierarchical bootstrap over seeds, then test images (10,000 seeded resamples of per-image \
correctness from predictions.csv)) where every shared seed has predictions.csv, and the \
seed-level paired t-test's, each at the level Holm's procedure tested it at (the j-th smallest \
of m p-values at 1 − alpha/(m − j + 1); those after the first not significant at that one's \
level): a tied strategy's interval holds 0, a beaten one's does not; they are not simultaneous \
intervals, and untested ones are 95%. Beaten: both tests separate it (the larger p-value decides) after \
Holm's step-down correction across the table's 1 tested comparison at alpha=0.05; else tied \
(one shared seed: not tested). Seeds needed: two-sided test at alpha/1 with 80% power, the seed \
variance shrinking with more seeds and the test set's not.
Holm p: of the larger of the two tests' p-values (the t-test's alone without predictions.csv for \
every shared seed, '-' in the image-level columns; the bootstrap's alone when the seeds' \
differences are all equal).

## Cost (mean over seeds)

| model | strategy | n | trainable params | optimizer state | fine-tuning | probe | images/s | \
peak RSS |
|---|---|---|---|---|---|---|---|---|
| resnet18 | linear_probe | 3 | 100.00K (0.9%) | 781.2 KiB | 300 steps, 110.0 s | - | 50.0 | 2000 MB |
| resnet18 | freeze_shallow | 3 | 8.00M (72.7%) | 61.0 MiB | 300 steps, 3.3 min | - | 40.0 | 2500 MB |
| resnet18 | full_ft | 3 | 11.00M (100.0%) | 83.9 MiB | 300 steps, 5.0 min | - | 30.0 | 3000 MB |
| mnv3_small | linear_probe | 1 | 50.00K (2.5%) | 390.6 KiB | 300 steps, 100.0 s | - | 50.0 | 2000 MB |
| mnv3_small | freeze_shallow | 0 | running | running | running | running | running | running |
| mnv3_small | full_ft | 2 | 2.00M (100.0%) | 15.3 MiB | 300 steps, 5.0 min | - | 30.0 | 3000 MB |

Means over the finished seeds of each cell.
Fine-tuning: a run's steps, images (steps x batch) and train time, less those of the linear probe \
that lp_ft and gradual_unfreeze run first; probe: that probe's ('-': the strategy has none; a \
results.json from before the probe was recorded counts it in fine-tuning). Train time excludes \
evaluation, compilation, caches and BatchNorm re-estimation (model.bn=reestimate: results.json's \
bn_stats_s) as measured by the run.
images/s: every train image of the run over its train time and caches.

## Problems

- WORKDIR/model=mnv3_small,strategy=linear_probe,seed=1/failed.json: exit code 1 \
(log: RuntimeError: out of memory)
- WORKDIR/model=mnv3_small,strategy=linear_probe,seed=2/results.json: does not parse \
(Expecting ',' delimiter: line 2 column 1 (char 44))
- WORKDIR/model=mnv3_small,strategy=freeze_shallow,seed=0: no results.json or failed.json
- WORKDIR/model=mnv3_small,strategy=freeze_shallow,seed=1: no results.json or failed.json
- WORKDIR/model=mnv3_small,strategy=freeze_shallow,seed=2/results.json: status is \
'running', not finished
- WORKDIR/model=mnv3_small,strategy=full_ft,seed=2/results.json: no numeric 'test.top1'
"""

EXPECTED_CSV = """\
model,strategy,metric,status,n,n_failed,n_missing,n_running,mean,std,ci95,best,delta_vs_full_ft,\
delta_ci95,delta_n,p_value,p_holm,significant,test_note,n_selected_on_val,num_trainable_params,optimizer_state_bytes,\
train_time_s,train_images_per_s,peak_rss_mb,finetune_steps,finetune_images,finetune_train_time_s,\
probe_steps,probe_images,probe_train_time_s,problems
resnet18,linear_probe,test.top1,ok,3,0,0,0,52.00,2.00,4.97,0,-27.00,2.48,3,0.0004569,0.0009139,1,,0,\
100000,800000,110.0,50.0,2000,300,,110.0,,,,
resnet18,freeze_shallow,test.top1,ok,3,0,0,0,82.00,2.00,4.97,1,3.00,2.48,3,0.0351,0.0351,1,,0,\
8000000,64000000,200.0,40.0,2500,300,,200.0,,,,
resnet18,full_ft,test.top1,ok,3,0,0,0,79.00,1.00,2.48,0,,,,,,,,0,11000000,88000000,300.0,30.0,3000,300,,300.0,,,,
mnv3_small,linear_probe,test.top1,ok,1,2,0,0,48.66,,,0,-39.34,,1,,,,no test,0,50000,400000,100.0,50.0,2000,300,,100.0,,,,\
"WORKDIR/model=mnv3_small,strategy=linear_probe,seed=1/failed.json: exit code 1 \
(log: RuntimeError: out of memory); WORKDIR/model=mnv3_small,strategy=linear_probe,seed=2/results.json: \
does not parse (Expecting ',' delimiter: line 2 column 1 (char 44))"
mnv3_small,freeze_shallow,test.top1,running,0,0,2,1,,,,0,,,,,,,,0,,,,,,,,,,,,\
"WORKDIR/model=mnv3_small,strategy=freeze_shallow,seed=0: no results.json or failed.json; \
WORKDIR/model=mnv3_small,strategy=freeze_shallow,seed=1: no results.json or failed.json; \
WORKDIR/model=mnv3_small,strategy=freeze_shallow,seed=2/results.json: status is 'running', not finished"
mnv3_small,full_ft,test.top1,ok,2,1,0,0,89.00,1.41,12.71,1,,,,,,,,0,2000000,16000000,300.0,30.0,3000,300,,300.0,,,,\
"WORKDIR/model=mnv3_small,strategy=full_ft,seed=2/results.json: no numeric 'test.top1'"
"""


@pytest.fixture
def workdir(tmp_path):
  dst = tmp_path / "sweep"
  shutil.copytree(REPORT_FIXTURE, dst)
  return dst


def _build(workdir, **spec):
  return pivot.build(collect.collect(workdir), pivot.Spec(**spec))


def test_markdown_is_exactly_as_expected(workdir):
  assert markdown.to_markdown(_build(workdir)) == EXPECTED_MD.replace("WORKDIR", str(workdir))


def test_csv_is_exactly_as_expected(workdir):
  text = csv_format.to_csv(_build(workdir))
  assert text == EXPECTED_CSV.replace("WORKDIR", str(workdir))
  rows = list(csv.DictReader(io.StringIO(text)))
  assert [r["strategy"] for r in rows[:3]] == ["linear_probe", "freeze_shallow", "full_ft"]


def test_confidence_intervals_match_hand_computation(workdir):
  cells = _build(workdir).cells
  # 80, 82, 84: mean 82, s = 2, half-width t(.975, 2) * 2 / sqrt(3).
  s = cells["resnet18", "freeze_shallow"].summary
  assert (s.n, s.mean, s.std) == (3, pytest.approx(82.0), pytest.approx(2.0))
  assert s.ci == pytest.approx(T_975_DF2 * 2 / math.sqrt(3), abs=1e-5)
  # 88, 90: s = sqrt(2), half-width t(.975, 1) * sqrt(2) / sqrt(2).
  s = cells["mnv3_small", "full_ft"].summary
  assert s.std == pytest.approx(math.sqrt(2)) and s.ci == pytest.approx(T_975_DF1, abs=1e-5)
  s = cells["mnv3_small", "linear_probe"].summary
  assert (s.n, s.std, s.ci) == (1, None, None)


def test_paired_delta_matches_hand_computation(workdir):
  cells = _build(workdir).cells
  # freeze_shallow - full_ft per seed: 2, 3, 4 -> mean 3, s_d = 1, t = 3 / (1 / sqrt 3).
  # For 2 degrees of freedom the t CDF is 1/2 + t / (2 sqrt(2 + t^2)), so the
  # two-sided p = 1 - t / sqrt(2 + t^2).
  d = cells["resnet18", "freeze_shallow"].delta
  t = 3 * math.sqrt(3)
  assert d.seeds == (0, 1, 2) and d.mean == pytest.approx(3.0)
  assert d.ci == pytest.approx(T_975_DF2 / math.sqrt(3), abs=1e-5)
  assert d.p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
  assert d.significant
  # Only seed 0 is shared: a delta without a test.
  d = cells["mnv3_small", "linear_probe"].delta
  assert (d.n, d.p, d.significant) == (1, None, None)
  assert d.mean == pytest.approx(48.66 - 88.0)


def test_stats_edge_cases():
  assert stats.paired_delta({0: 1.0}, {1: 2.0}).n == 0
  equal = stats.paired_delta({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
  assert (equal.mean, equal.p, equal.significant) == (1.0, None, None)
  not_sig = stats.paired_delta({0: 1.0, 1: 3.0, 2: 2.0}, {0: 2.0, 1: 2.0, 2: 2.0})
  assert not_sig.p == pytest.approx(1.0) and not not_sig.significant
  with pytest.raises(ValueError):
    stats.summarize([])


def test_lower_is_better_metric_and_filters(workdir):
  rep = _build(workdir, metric="final.minival_loss")
  assert not rep.spec.higher_is_better and rep.spec.scale == 1.0
  # Every finished run has minival_loss 1.1: all numeric cells tie and are bold.
  assert [c.best for c in rep.cells.values() if c.summary] == [True] * 5
  only = pivot.build(collect.collect(workdir), pivot.Spec(), only=["seed=0"])
  assert only.cells["resnet18", "full_ft"].summary.n == 1
  flipped = _build(workdir, rows=("strategy",), cols=("model",))
  assert flipped.rows == ["linear_probe", "freeze_shallow", "full_ft"]
  reordered = pivot.build(collect.collect(workdir), pivot.Spec(),
                           strategy_order=["full_ft", "linear_probe"])
  assert reordered.cols == ["full_ft", "linear_probe", "freeze_shallow"]


def test_latex_and_json(workdir):
  rep = _build(workdir)
  tex = latex.to_latex(rep)
  assert tex.count(r"\toprule") == 5 and tex.count(r"\bottomrule") == 5  # the paired table too
  assert r"\textbf{82.00 $\pm$ 2.00 (n=3)}" in tex and r"linear\_probe" in tex
  data = json_format.to_json(rep)
  cell = next(c for c in data["cells"] if c["row"] == "resnet18" and c["col"] == "full_ft")
  assert cell["values"] == {"0": pytest.approx(78.0), "1": pytest.approx(79.0),
                            "2": pytest.approx(80.0)}
  assert data["cols"] == ["linear_probe", "freeze_shallow", "full_ft"]
  json.dumps(data)


def test_cli_writes_all_formats_and_names_bad_files(workdir):
  out = subprocess.run([sys.executable, "-m", "ftlab.report", f"--workdir={workdir}",
                        "--noplots"], capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  assert out.stdout.rstrip("\n") == EXPECTED_MD.replace("WORKDIR", str(workdir)).rstrip("\n")
  bad = workdir / "model=mnv3_small,strategy=linear_probe,seed=2" / "results.json"
  assert f"warning: {bad}: does not parse" in out.stderr
  for fmt in outputs.FORMATS:
    assert (workdir / f"report.{fmt}").stat().st_size > 0


def test_plots_are_written_and_non_empty(workdir, tmp_path):
  write_predictions(workdir / "model=resnet18,strategy=full_ft,seed=1", tmp_path / "img")
  paths = plots.write_all(_build(workdir))
  names = sorted(p.name for p in paths)
  assert names == sorted(f"{stem}.{ext}" for stem in
                         ("curves", "bars", "accuracy_vs_time", "predictions")
                         for ext in ("png", "pdf"))
  for path in paths:
    assert path.parent == workdir / "plots" and path.stat().st_size > 1000
    if path.suffix == ".png":
      with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_plots_skip_the_grid_without_predictions(workdir):
  paths = plots.write_all(_build(workdir))
  assert len(paths) == 6 and not (workdir / "plots" / "predictions.png").exists()


def test_plot_helpers():
  assert plots.pareto_front([(1, 50), (2, 40), (3, 80), (3, 70), (4, 80)]) == [(1, 50), (3, 80)]
  steps, mean, lo, hi = plots.band([{1: 10.0, 2: 20.0}, {1: 30.0}])
  assert steps.tolist() == [1, 2] and mean.tolist() == [20.0, 20.0]
  assert lo.tolist() == [10.0, 20.0] and hi.tolist() == [30.0, 20.0]
  rows = [{"true": "a", "predicted": "a" if i % 3 else "b"} for i in range(12)]
  picked = plots.pick_samples(rows, 4)
  assert sum(r["true"] != r["predicted"] for r in picked) == 2 and len(picked) == 4


def test_reference_table_follows_our_column_order(workdir):
  md = markdown.to_markdown(_build(workdir, reference="mindcv"))
  section = md[md.index("## MindCV"):]
  assert ("| model | linear_probe | freeze_shallow | full_ft | full_ft_head_lr "
          "| full_ft_deep_lr |") in section
  assert "| reference | 48.66 | 76.83 | 88.35 | 88.89 | 88.68 |" in section
  assert "| mnv3_small | 48.66 | running | 89.00 | - | - |" in section


def _write_run(workdir, strategy, seed, split_blocks, **top):
  """A minimal finished results.json for resnet18 / `strategy` / `seed`."""
  run_dir = workdir / f"strategy={strategy},seed={seed}"
  run_dir.mkdir(parents=True)
  results = {"status": "finished", "model": "resnet18", "strategy": strategy, "seed": seed,
             **split_blocks, **top}
  (run_dir / "results.json").write_text(json.dumps(results))


def _one_image_gains(workdir, with_correct: bool):
  """The reviewer's fixture: +1 image of 359 on both seeds, float32-rounded top1."""
  for strategy, counts in (("full_ft", (300, 340)), ("freeze_shallow", (301, 341))):
    for seed, correct in enumerate(counts):
      block = {"top1": float(np.float32(correct / 359)), "count": 359}
      if with_correct:
        block["correct"] = correct
      _write_run(workdir, strategy, seed, {"test": block})


@pytest.mark.parametrize("with_correct", [True, False], ids=["correct_count", "count_only"])
def test_equal_one_image_gains_are_not_significant(tmp_path, with_correct):
  _one_image_gains(tmp_path, with_correct)
  rep = _build(tmp_path)
  cell = rep.cells["resnet18", "freeze_shallow"]
  assert cell.values == {0: 301 / 359 * 100, 1: 341 / 359 * 100}  # exact, not float32
  assert (cell.delta.p, cell.delta.significant) == (None, None)
  md = markdown.to_markdown(rep)
  row = next(line for line in md.splitlines() if line.startswith("| resnet18 | +0.28"))
  assert row == "| resnet18 | +0.28 ± 0.00 (n=2, no test: equal differences) |"
  assert "no test: equal differences" in latex.to_latex(rep)
  csv_row = next(r for r in csv.DictReader(io.StringIO(csv_format.to_csv(rep)))
                 if r["strategy"] == "freeze_shallow")
  assert (csv_row["p_value"], csv_row["significant"]) == ("", "")
  assert csv_row["test_note"] == "no test: equal differences"
  data = json_format.to_json(rep)
  delta = next(c["delta"] for c in data["cells"] if c["col"] == "freeze_shallow")
  assert (delta["p"], delta["significant"], delta["note"]) == (
      None, None, "no test: equal differences")


def test_float_top1_without_count_is_used_as_is(tmp_path):
  _write_run(tmp_path, "full_ft", 0, {"test": {"top1": 0.5}})
  _write_run(tmp_path, "linear_probe", 0, {"test": {"top1": float(np.float32(1 / 3)),
                                                    "count": 3000}})
  cells = _build(tmp_path).cells
  assert cells["resnet18", "full_ft"].values == {0: 50.0}
  # 1/3 as float32 is 0.33333334: 1000.0000x of 3000 is a count, so exactly 1000/3000.
  assert cells["resnet18", "linear_probe"].values == {0: 1000 / 3000 * 100}


def test_runs_selected_on_val_are_named(tmp_path):
  for strategy in ("full_ft", "linear_probe"):
    for seed in (0, 1):
      split = "val" if strategy == "linear_probe" else "minival"
      _write_run(tmp_path, strategy, seed, {"val": {"top1": 0.5 + seed / 10}},
                 selection_split=split)
  rep = _build(tmp_path, metric="val.top1")
  md = markdown.to_markdown(rep)
  note = ("Note: 2 of 4 finished runs selected their checkpoint on `val` "
          "(config.data.minival_fraction=0): their `val` numbers were used for "
          "checkpoint selection and are not held out.")
  assert note in md
  assert "This report's metric `val.top1` is a `val` number: for those runs" in md
  data = json_format.to_json(rep)
  assert data["selected_on_val"] == ["strategy=linear_probe,seed=0",
                                     "strategy=linear_probe,seed=1"]
  assert len(data["notes"]) == 2
  rows = {r["strategy"]: r for r in csv.DictReader(io.StringIO(csv_format.to_csv(rep)))}
  assert rows["linear_probe"]["n_selected_on_val"] == "2"
  assert rows["full_ft"]["n_selected_on_val"] == "0"
  assert "selected their checkpoint on" in latex.to_latex(rep)
  # A test.* metric: the note stays, without the sentence about the metric.
  for strategy in ("full_ft", "linear_probe"):
    for seed in (0, 1):
      path = tmp_path / f"strategy={strategy},seed={seed}" / "results.json"
      data = json.loads(path.read_text())
      path.write_text(json.dumps({**data, "test": {"top1": 0.4}}))
  md = markdown.to_markdown(_build(tmp_path))
  assert note in md and "is a `val` number" not in md


def _probed_sweep(workdir):
  """lp_ft (80 probe + 80 fine-tuning steps, batch 8) and full_ft (80 steps), seeds 0 and 1."""
  for seed, (lp_time, probe_time, ft_time) in enumerate(((12.0, 2.0, 9.0), (14.0, 3.0, 11.0))):
    config = {"train": {"batch_size": 8}}
    _write_run(workdir, "lp_ft", seed, {"test": {"top1": 0.9}}, config=config, num_steps=160,
               train_time_s=lp_time,
               probe={"steps": 80, "images": 640, "train_time_s": probe_time})
    _write_run(workdir, "full_ft", seed, {"test": {"top1": 0.8}}, config=config, num_steps=80,
               train_time_s=ft_time, probe={"steps": 0, "images": 0, "train_time_s": 0.0})


def test_cost_shows_the_probe_apart_from_fine_tuning_in_every_format(tmp_path):
  _probed_sweep(tmp_path)
  rep = _build(tmp_path)
  # lp_ft: fine-tuning 160 - 80 steps, 80 x 8 images, (12 - 2 + 14 - 3) / 2 s; probe (2 + 3) / 2 s
  lp = ("80 steps, 640 images, 10.5 s", "80 steps, 640 images, 2.5 s")
  ft = ("80 steps, 640 images, 10.0 s", "-")
  md = markdown.to_markdown(rep)
  assert f"| resnet18 | lp_ft | 2 | - | - | {lp[0]} | {lp[1]} | - | - |" in md
  assert f"| resnet18 | full_ft | 2 | - | - | {ft[0]} | {ft[1]} | - | - |" in md
  assert f"{lp[0]} & {lp[1]}" in latex.to_latex(rep)
  rows = {r["strategy"]: r for r in csv.DictReader(io.StringIO(csv_format.to_csv(rep)))}
  keys = ("finetune_steps", "finetune_images", "finetune_train_time_s", "probe_steps",
          "probe_images", "probe_train_time_s", "train_time_s")
  assert [rows["lp_ft"][k] for k in keys] == ["80", "640", "10.5", "80", "640", "2.5", "13.0"]
  assert [rows["full_ft"][k] for k in keys] == ["80", "640", "10.0", "", "", "", "10.0"]
  cost = {c["col"]: c["cost"] for c in json_format.to_json(rep)["cells"]}
  assert {k: cost["lp_ft"][k] for k in keys} == {
      "finetune_steps": 80, "finetune_images": 640, "finetune_train_time_s": 10.5,
      "probe_steps": 80, "probe_images": 640, "probe_train_time_s": 2.5, "train_time_s": 13.0}
  assert cost["full_ft"]["probe_steps"] is None and cost["full_ft"]["finetune_steps"] == 80
  outputs.write(rep, ["html"])
  assert f"<td>{lp[0]}</td><td>{lp[1]}</td>" in (tmp_path / "report.html").read_text()
