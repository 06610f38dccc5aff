"""Config files, config arguments and command-line overrides."""
import json
import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from configs import aircraft, default, demo, imagefolder
from ftlab.configuration import args as config_args
from ftlab.configuration import files
from tests.helpers import make_image_folder


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv):
  """Parses like ftlab.main does (config_flags reads the overrides from sys.argv)."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
  saved = sys.argv
  sys.argv = ["prog"] + argv
  try:
    fv(sys.argv)
  finally:
    sys.argv = saved
  return fv.config


def test_every_config_only_overrides_declared_keys():
  declared = set(_flat(default.get_config().to_dict()))
  for module in (demo, imagefolder, aircraft):
    assert set(_flat(module.get_config().to_dict())) == declared, module.__name__


def _flat(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flat(v, f"{prefix}{k}.")
    else:
      yield prefix + k


def test_command_line_overrides_and_config_arguments():
  config = _parse([f"--config={REPO}/configs/aircraft.py:model=resnet18,strategy=linear_probe",
                   "--config.optimizer.lr=0.123", "--config.data.root=/data/x"])
  assert config.model.name == "resnet18" and config.model.pretrained == "resnet18"
  assert config.strategy.name == "linear_probe"
  assert config.optimizer.lr == 0.123 and config.data.root == "/data/x"


def test_imagefolder_config_uses_the_models_registered_weights_unless_told_otherwise():
  assert imagefolder.get_config().model.pretrained == "resnet18"
  assert imagefolder.get_config("model=densenet121").model.pretrained == "densenet121"
  assert imagefolder.get_config("model=tiny_cnn").model.pretrained == ""  # none registered
  assert imagefolder.get_config("model=vit_s_16").model.pretrained == ""
  assert imagefolder.get_config("model=resnet50,pretrained=").model.pretrained == ""
  assert imagefolder.get_config("pretrained=/w/r18.pth").model.pretrained == "/w/r18.pth"
  config = imagefolder.get_config()
  assert (config.data.val_split, config.data.test_split) == ("val", "test")  # detected: data.layout


def test_unknown_override_key_is_rejected():
  with pytest.raises(Exception, match=r"lrr.*Did you mean \W*lr"):
    _parse([f"--config={REPO}/configs/demo.py", "--config.optimizer.lrr=0.1"])


def test_config_argument_errors_name_the_key():
  with pytest.raises(ValueError, match="unknown config argument 'modle'"):
    config_args.parse("modle=x", model="a")
  with pytest.raises(ValueError, match=r"config argument n='x' is not a int"):
    config_args.parse("n=x", n=1)


@pytest.mark.slow
def test_overrides_reach_the_run(tmp_path):
  root = make_image_folder(str(tmp_path / "data"), counts={"train": 12, "test": 3})
  workdir = tmp_path / "run"
  cmd = [sys.executable, "-m", "ftlab.main", f"--config={REPO}/configs/imagefolder.py:model=tiny_cnn",
         f"--workdir={workdir}", f"--config.data.root={root}", "--config.data.test_split=test",
         "--config.data.image_size=16", "--config.train.batch_size=8", "--config.train.num_epochs=1",
         "--config.optimizer.lr=0.0123", "--config.data.num_workers=1"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.load(open(workdir / "results.json"))
  assert results["config"]["optimizer"]["lr"] == 0.0123
  assert results["config"]["data"]["image_size"] == 16
  assert results["model"] == "tiny_cnn" and results["num_steps"] == 4  # 33 train images after minival


def test_a_run_dir_from_before_a_key_resumes_when_the_key_keeps_its_default(tmp_path):
  config = default.get_config()
  saved = json.loads(config.to_json_best_effort())
  del saved["train"]["ema_decay"]  # keys declared after this run was written
  del saved["strategy"]["lora_targets"]  # a tuple: config.json holds it as a list
  (tmp_path / "config.json").write_text(json.dumps(saved))
  files.check_same_run(config, str(tmp_path))  # the default: the same run
  config.train.ema_decay = 0.5
  with pytest.raises(ValueError, match=r"train.ema_decay: 0.0 -> 0.5"):
    files.check_same_run(config, str(tmp_path))
