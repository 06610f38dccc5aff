"""Helpers the test files share; test files import them from here, never from each other.

Generated image folders and tiny configs; the report fixture; the fake runners' configs of
the sweep and study tests. Nothing here imports torch (a subprocess that imported
TensorFlow first must not load it: see conftest.py); the PyTorch side is tests/torch_reference.py.
"""
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

from configs import default

TESTS_DIR = pathlib.Path(__file__).parent
REPORT_FIXTURE = TESTS_DIR / "fixtures" / "report_sweep"

COLORS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


def write_image(path: str, color, rng: np.random.Generator, size: int = 20) -> None:
  noise = rng.integers(-30, 30, (size, size, 3))
  pixels = np.clip(np.asarray(color)[None, None] + noise, 0, 255).astype(np.uint8)
  Image.fromarray(pixels).save(path)


def make_image_folder(root: str, counts=None, classes=("cat", "dog", "wolf"), seed: int = 0) -> str:
  """root/<split>/<class>/<i>.png with one dominant colour per class (separable)."""
  counts = counts or {"train": 24, "val": 6, "test": 6}
  rng = np.random.default_rng(seed)
  for split, n in counts.items():
    for c, name in enumerate(classes):
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      for i in range(n):
        write_image(os.path.join(folder, f"{i:03d}.png"), COLORS[c % len(COLORS)], rng)
  return root


def tiny_config(root: str, **overrides):
  """A config that trains tiny_cnn on a generated folder in seconds."""
  config = default.get_config()
  config.model.name = "tiny_cnn"
  config.data.kind = "imagefolder"
  config.data.root = root
  config.data.image_size = 16
  config.data.num_workers = 2
  config.data.minival_fraction = 0.125
  config.optimizer.lr = 0.05
  config.optimizer.weight_decay = 0.0
  config.train.batch_size = 8
  config.train.compilation_cache_dir = ""  # tests/test_runtime.py covers the cache
  config.train.eval_batch_size = 8
  config.train.num_epochs = 2.0
  config.train.log_every_steps = 4
  config.train.checkpoint_every_steps = 1000
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


# --- ftlab.report (tests/test_report*.py)


def write_predictions(run_dir, image_dir):
  """A predictions.csv of five generated images (two wrong) and one missing image file."""
  image_dir.mkdir()
  rng = np.random.default_rng(0)
  lines = ["image,true,predicted,confidence"]
  for i in range(5):
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
        image_dir / f"{i}.png")
    lines.append(f"{image_dir / f'{i}.png'},A320,{'A320' if i % 2 else 'B737'},0.9")
  lines.append(f"{image_dir / 'gone.png'},A380,A320,0.5")
  (run_dir / "predictions.csv").write_text("\n".join(lines) + "\n")


# --- ftlab.sweep with a fake runner (tests/test_sweep.py, tests/test_terminal.py)

FAKE_RUNNER = textwrap.dedent("""\
  # Stands in for `python -m ftlab.main`: behaviour comes from --config.fake.
  import json, os, pathlib, sys, time
  args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))
  workdir = pathlib.Path(args["workdir"])
  overrides = {k[len("config."):]: v for k, v in args.items() if k.startswith("config.")}
  with open(workdir.parent / "invocations.txt", "a") as f:
    f.write(workdir.name + "\\n")
  print("fake run", workdir.name, flush=True)
  mode = overrides.get("fake", "ok")
  resumed = (workdir / "ckpt").exists()
  if mode == "fail":
    print("boom: simulated failure", file=sys.stderr)
    sys.exit(3)
  if mode == "no_results":
    sys.exit(0)
  if mode == "sleep_once" and not resumed:
    (workdir / "ckpt").write_text("step 5")
    time.sleep(60)
  env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "XLA_FLAGS")}
  results = {"status": "finished", "argv": sys.argv[1:], "overrides": overrides,
             "resumed": resumed, "env": env,
             "affinity": sorted(os.sched_getaffinity(0))}
  if mode == "ok":
    results["test"] = {"top1": 0.9554}
  (workdir / "results.json").write_text(json.dumps(results))
""")

SWEEP_CONFIG = textwrap.dedent("""\
  import ml_collections
  from ftlab.sweeps import grid

  STRATEGY_ORDER = ["freeze_all", "full_ft"]

  def get_config(arg=None):
    return ml_collections.ConfigDict({
        "model": {"name": "tiny_cnn"}, "strategy": {"name": "full_ft"},
        "seed": 0, "fake": "ok", "optimizer": {"lr": 0.1}})

  def get_sweep(arg=None):
    if arg == "fail":
      return grid.zip_(**{"strategy.name": ["full_ft", "freeze_all", "linear"],
                           "fake": ["ok", "fail", "ok"]})
    if arg == "resume":
      return grid.zip_(**{"strategy.name": ["full_ft", "freeze_all", "linear"],
                           "fake": ["ok", "sleep_once", "ok"]})
    if arg == "no_results":
      return [{"fake": "no_results"}]
    return grid.product(**{"model.name": ["tiny_cnn", "big/net"],
                            "strategy.name": ["full_ft", "freeze_all"],
                            "optimizer.lr": [0.001]})
""")


def sweep_cmd(tmp, arg, *extra):
  spec = f"{tmp / 'cfg.py'}:{arg}" if arg else str(tmp / "cfg.py")
  return [sys.executable, "-m", "ftlab.sweep", f"--config={spec}",
          f"--workdir={tmp / 'runs'}", f"--runner={sys.executable} {tmp / 'fake_runner.py'}",
          *extra]


def run_sweep(tmp, arg=None, *extra):
  return subprocess.run(sweep_cmd(tmp, arg, *extra), capture_output=True, text=True,
                        timeout=60)


# --- ftlab.study with tests/study_fake.py (tests/test_study*.py)


STUDY_LRS = [0.001, 0.01, 0.1, 1.0]
STUDY_CONFIG = textwrap.dedent("""\
  import ml_collections
  from ftlab.studies import space

  def get_config(arg=None):
    config = ml_collections.ConfigDict({
        "strategy": {"name": "full_ft"}, "seed": 0, "fake": "ok",
        "optimizer": {"lr": 0.01, "weight_decay": 0.0},
        "train": {"stop_at_fraction": 0.0, "evaluate_held_out": True,
                  "compilation_cache_dir": "", "num_epochs": 3.0, "eval_every_epochs": 1.0},
        "data": {"train_per_class": 0, "train_fraction": 1.0, "minival_fraction": 0.1,
                 "minival_from": "subset", "val_split": "", "test_split": "test"}})
    if arg == "select_on_test":
      config.data.val_split, config.data.minival_fraction = "test", 0.0
    if arg == "nested_full":
      config.data.minival_from = "full"
    if arg in ("epochs2", "epochs2_ideal", "epochs_grid"):
      config.train.num_epochs = 2.0
    return config

  def get_study(arg=None):
    lrs = LRS_VALUE
    if arg == "collide":
      return space.study({"full_ft": {"fake": ["a/b", "a_b"]}})
    if arg == "seed_clash":
      return space.study({"full_ft": {"optimizer.lr": lrs}}, final_seeds=[0, 1000])
    if arg == "epochs2_ideal":
      return space.study({"full_ft": {"optimizer.lr": lrs}}, rungs_at_evaluations=False)
    if arg == "epochs_grid":
      return space.study({"full_ft": {"optimizer.lr": lrs, "train.num_epochs": [2.0, 4.0]}})
    if arg == "by_loss":
      return space.study({"full_ft": {"optimizer.lr": lrs}}, score="loss", final_seeds=[0])
    if arg in ("whole_and_subset", "nested_full"):
      return space.study({"full_ft": {"optimizer.lr": lrs}},
                         sizes=[{"data.train_per_class": 5}, {}])
    if arg == "unknown_key":
      return space.study({"full_ft": {"optimizer.lrr": lrs}})
    if arg == "empty":
      return space.study({"full_ft": {"optimizer.lr": []}})
    if arg == "eta1":
      return space.study({"full_ft": {"optimizer.lr": lrs}}, eta=1)
    if arg == "finish_text":
      return space.study({"full_ft": {"optimizer.lr": lrs}}, finish_winner="yes")
    if arg in ("sizes", "sizes_finished"):  # the second: the survivor trains on to the end
      return space.study({"full_ft": {"optimizer.lr": lrs}}, final_seeds=[0, 1],
                         sizes=[{"data.train_per_class": 5}, {"data.train_per_class": 10}],
                         finish_winner=arg == "sizes_finished")
    if arg == "until_one":  # the default: the search ends at the rung that keeps one trial
      return space.study({"linear_probe": {"optimizer.lr": lrs},
                          "full_ft": {"optimizer.lr": lrs}}, final_seeds=[0, 1])
    return space.study({"linear_probe": {"optimizer.lr": lrs},
                        "full_ft": {"optimizer.lr": lrs}}, final_seeds=[0, 1],
                       finish_winner=True)
""").replace("LRS_VALUE", repr(STUDY_LRS))
