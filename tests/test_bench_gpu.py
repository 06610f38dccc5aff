"""bench_gpu.py's plan and budget, gpu_table.py's table: on fake worker results, no models."""
import json

import pytest

import bench_gpu  # experiments/ is on the path: pytest.ini's pythonpath
from bench_gpu import Job
import gpu_table


MODELS = ("resnet50", "efficientnet_lite0")
PREP = {"weight_errors": {}, "jax_backend": "gpu", "torch_backend": "gpu"}


class FakeClock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self) -> float:
    return self.now


def test_plan_puts_ftlab_and_eager_of_every_row_before_any_compile():
  jobs = bench_gpu.plan(MODELS, ("bfloat16", "float32"), ("eager", "compile"))
  sides = [j.side for j in jobs]
  assert len(jobs) == 12
  assert sides.index("torch_compile") == 8 and set(sides[8:]) == {"torch_compile"}
  assert [j.dtype for j in jobs[:4]] == ["bfloat16"] * 4
  assert jobs[:2] == [Job("resnet50", "bfloat16", "ftlab"), Job("resnet50", "bfloat16",
                                                                  "torch_eager")]
  assert jobs[8] == Job("resnet50", "bfloat16", "torch_compile")


def test_plan_without_eager_or_compile():
  assert {j.side for j in bench_gpu.plan(MODELS, ("float32",), ("compile",))} == {
      "ftlab", "torch_compile"}
  assert {j.side for j in bench_gpu.plan(MODELS, ("float32",), ())} == {"ftlab"}


def test_run_jobs_limits_each_job_to_what_is_left_and_skips_the_rest():
  clock = FakeClock()
  budget = bench_gpu.Budget(200.0, clock)
  jobs = bench_gpu.plan(("resnet50",), ("bfloat16",), ("eager", "compile"))
  calls = []

  def run(job, timeout_s):
    calls.append((job.side, timeout_s))
    clock.now += {"ftlab": 90.0, "torch_eager": 95.0}.get(job.side, 0.0)
    return {"images_per_s": 100.0}

  results = bench_gpu.run_jobs(jobs, run, budget, compile_limit_s=150.0)
  assert calls == [("ftlab", 200.0), ("torch_eager", 110.0)]  # 200 - 90 left for eager
  assert results[jobs[2]] == {"skipped": "budget: 15 s of 200 s left"}  # under MIN_JOB_S


def test_run_jobs_caps_compile_variants_and_honours_skips():
  budget = bench_gpu.Budget(1000.0, FakeClock())
  jobs = bench_gpu.plan(MODELS, ("float32",), ("eager", "compile"))
  calls, seen = [], []
  results = bench_gpu.run_jobs(
      jobs, lambda job, t: calls.append((job, t)) or {"images_per_s": 1.0}, budget,
      compile_limit_s=150.0,
      skip=lambda job: "no lite0" if job.model == "efficientnet_lite0" else "",
      after_each=lambda r: seen.append(len(r)))
  assert [(j.side, t) for j, t in calls] == [("ftlab", bench_gpu.JOB_LIMIT_S),
                                             ("torch_eager", bench_gpu.JOB_LIMIT_S),
                                             ("torch_compile", 150.0)]
  assert all(results[j] == {"skipped": "no lite0"} for j in jobs if j.model != "resnet50")
  assert seen == list(range(1, len(jobs) + 1))  # outputs rewritten after every job


def test_skip_reason_from_the_probe():
  prep = {**PREP, "weight_errors": {"efficientnet_lite0": "ModuleNotFoundError: x"}}
  why = bench_gpu.skip_reason(prep, "gpu")
  assert why(Job("efficientnet_lite0", "float32", "torch_eager")).startswith("no shared weights")
  assert why(Job("resnet50", "float32", "ftlab")) == ""
  cpu_jax = bench_gpu.skip_reason({**PREP, "jax_backend": "cpu"}, "gpu")
  assert cpu_jax(Job("resnet50", "float32", "ftlab")) == "--device_check=gpu: jax_backend is 'cpu'"
  assert cpu_jax(Job("resnet50", "float32", "torch_eager")) == ""
  assert bench_gpu.skip_reason({**PREP, "jax_backend": "cpu"}, "none")(
      Job("resnet50", "float32", "ftlab")) == ""
  no_ftlab = bench_gpu.skip_reason({**PREP, "ftlab_import_error": "ImportError: ml_collections"},
                                   "gpu")
  assert "ml_collections" in no_ftlab(Job("resnet50", "bfloat16", "ftlab"))


def test_job_spec_uses_the_probed_normalisation_or_the_fallback():
  args = bench_gpu.parse_args(["--batch=8", "--device_check=none"])
  norm = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
  prep = {**PREP, "weights": {"resnet50": "/w/r50.npz", "efficientnet_lite0": "/w/l0.npz"},
          "norms": {"resnet50": None, "efficientnet_lite0": norm}}
  lite = bench_gpu.job_spec(Job("efficientnet_lite0", "bfloat16", "torch_compile"), args, prep)
  assert (lite["kind"], lite["variant"], lite["weights"], lite["batch"]) == (
      "torch", "compile", "/w/l0.npz", 8)
  assert (lite["mean"], lite["std"]) == (norm["mean"], norm["std"])
  r50 = bench_gpu.job_spec(Job("resnet50", "float32", "torch_eager"), args, prep)
  assert (r50["variant"], r50["mean"]) == ("eager", bench_gpu.FALLBACK_NORM["mean"])
  ftlab = bench_gpu.job_spec(Job("resnet50", "float32", "ftlab"), args, prep)
  assert ftlab["kind"] == "ftlab" and "mean" not in ftlab


def fake_results():
  r50, lite = "resnet50", "efficientnet_lite0"
  return {
      Job(r50, "bfloat16", "ftlab"): {"images_per_s": 3000.0, "peak_mb": 20480.0,
                                      "compile_s": 41.0},
      Job(r50, "bfloat16", "torch_eager"): {"images_per_s": 2000.0, "peak_mb": 10240.0,
                                            "first_step_s": 3.0},
      Job(r50, "bfloat16", "torch_compile"): {"images_per_s": 2400.0, "peak_mb": 8192.0,
                                              "first_step_s": 95.0},
      Job(lite, "bfloat16", "ftlab"): {"error": "exit 1: boom"},
      Job(lite, "bfloat16", "torch_eager"): {"images_per_s": 5000.0, "peak_mb": 4096.0},
      Job(lite, "bfloat16", "torch_compile"): {"skipped": "budget: 3 s of 420 s left"},
  }


def test_summarize_ratio_against_the_best_torch_variant():
  rows = gpu_table.summarize(fake_results())
  assert [(r["model"], r["dtype"]) for r in rows] == [("resnet50", "bfloat16"),
                                                      ("efficientnet_lite0", "bfloat16")]
  r50, lite = rows
  assert r50["best_torch"] == "torch_compile" and r50["ratio"] == pytest.approx(1.25)
  assert r50["ftlab_first_s"] == 41.0 and r50["torch_compile_first_s"] == 95.0
  assert r50["notes"] == []
  assert lite["best_torch"] == "torch_eager" and lite["ratio"] is None
  assert lite["notes"] == ["ftlab: exit 1: boom", "torch_compile: budget: 3 s of 420 s left"]


def test_markdown_table_and_notes():
  meta = {"device": "NVIDIA H200", "date": "2026-12-02", "image_size": 224, "batch": 128,
          "steps": 10, "warmup": 3, "jax": "0.11.2", "torch": "2.11.0"}
  text = gpu_table.markdown(meta, gpu_table.summarize(fake_results()))
  lines = text.splitlines()
  assert lines[0].startswith("NVIDIA H200, 2026-12-02: 224x224, batch 128")
  header = [c.strip() for c in lines[2].strip("|").split("|")]
  assert header == [h for _, h, _ in gpu_table.COLUMNS]
  r50 = [c.strip() for c in lines[4].strip("|").split("|")]
  assert r50 == ["resnet50", "bfloat16", "3000", "2000", "2400", "1.25", "20.00", "10.00",
                 "8.00", "41", "95"]
  lite = [c.strip() for c in lines[5].strip("|").split("|")]
  assert lite[2:6] == ["-", "5000", "-", "-"]
  assert "- efficientnet_lite0 bfloat16 ftlab: exit 1: boom" in lines
  assert "- efficientnet_lite0 bfloat16 torch_compile: budget: 3 s of 420 s left" in lines


def test_write_outputs_json_and_markdown(tmp_path):
  meta = {"device": "NVIDIA H200", "image_size": 224, "batch": 128, "steps": 10, "warmup": 3}
  text = gpu_table.write_outputs(str(tmp_path / "b.json"), str(tmp_path / "b.md"), meta,
                                 fake_results())
  assert (tmp_path / "b.md").read_text() == text
  data = json.loads((tmp_path / "b.json").read_text())
  assert data["meta"]["device"] == "NVIDIA H200"
  assert data["rows"][0]["ratio"] == pytest.approx(1.25)
  assert {"model": "efficientnet_lite0", "dtype": "bfloat16", "side": "ftlab",
          "error": "exit 1: boom"} in data["results"]
  assert "| resnet50 | bfloat16 | 3000 |" in (tmp_path / "b.md").read_text()


def test_parse_args_names_a_bad_dtype(capsys):
  with pytest.raises(SystemExit):
    bench_gpu.parse_args(["--dtypes=float16"])
  assert "--dtypes=float16: 'float16' is not one of" in capsys.readouterr().err
  args = bench_gpu.parse_args([])
  assert (args.batch, args.image_size, args.budget_s) == (128, 224, 420.0)
