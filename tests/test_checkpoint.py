"""Checkpoints' bookkeeping (`meta.RunMeta`): saved as JSON, read back, older checkpoints too."""
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ftlab.training import checkpoint
from ftlab.training.meta import RunMeta

HISTORY = [{"step": 7, "minival_top1": 0.5, "minival_loss": 1.25, "train_loss": 1.5,
            "train_top1": 0.375, "elapsed_s": 2.5}]


def _template(step):
  del step
  return {"w": np.zeros(3, np.float32)}


def _save_raw(workdir, step, meta: dict):
  """A checkpoint whose meta is the dict `meta`, as ftlab wrote it before RunMeta."""
  ckpts = checkpoint.Checkpoints(workdir)
  ckpts.latest.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave({"w": np.arange(3, dtype=np.float32)}),
      meta=ocp.args.JsonSave(meta)), force=True)
  ckpts.close()


def _restore(workdir):
  ckpts = checkpoint.Checkpoints(workdir)
  try:
    return ckpts.restore_latest(_template)
  finally:
    ckpts.close()


def test_meta_round_trips_through_a_checkpoint(tmp_path):
  meta = RunMeta(history=HISTORY, best_top1=0.5, best_step=7, train_time_s=2.5,
                 compile_time_s=1.75, feature_cache_s=0.5, probe_train_time_s=1.0)
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  ckpts.save_latest(7, {"w": np.arange(3, dtype=np.float32)}, meta)
  ckpts.close()
  state, restored = _restore(str(tmp_path))
  assert restored == meta
  np.testing.assert_array_equal(state["w"], [0.0, 1.0, 2.0])


def test_a_fresh_run_has_no_best_step_and_no_time():
  assert RunMeta().to_json() == {"history": [], "best_top1": -1.0, "best_step": -1,
                                 "train_time_s": 0.0, "compile_time_s": 0.0,
                                 "feature_cache_s": 0.0, "probe_train_time_s": 0.0,
                                 "bn_stats_s": 0.0}


def test_a_checkpoint_from_before_the_newer_meta_keys_resumes_with_zero_for_them(tmp_path):
  old = {"history": HISTORY, "best_top1": 0.5, "best_step": 7, "train_time_s": 2.5,
         "compile_time_s": 1.75}  # before feature_cache_s and probe_train_time_s
  _save_raw(str(tmp_path), 7, old)
  _, meta = _restore(str(tmp_path))
  assert meta == RunMeta(history=HISTORY, best_top1=0.5, best_step=7, train_time_s=2.5,
                         compile_time_s=1.75, feature_cache_s=0.0, probe_train_time_s=0.0)


def test_a_meta_with_an_unknown_or_missing_key_is_a_one_line_error_naming_it(tmp_path):
  full = RunMeta(history=HISTORY, best_top1=0.5, best_step=7).to_json()
  _save_raw(str(tmp_path / "a"), 7, {**full, "epochs_done": 3})
  with pytest.raises(ValueError, match=r"latest/7/meta: unknown key 'epochs_done' \(known: "
                                       r"history, best_top1, .*\); was it written by a newer"):
    _restore(str(tmp_path / "a"))
  _save_raw(str(tmp_path / "b"), 7, {k: v for k, v in full.items() if k != "best_step"})
  with pytest.raises(ValueError, match=r"latest/7/meta: lacks the key 'best_step'$"):
    _restore(str(tmp_path / "b"))
