"""experiments/halving_replay.py: a finished grid's curves replayed under halving rules, with the
study's own ranking; the choices and costs it prints."""
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
import halving_replay  # pylint: disable=wrong-import-position

from ftlab.studies import halving, space, trials  # pylint: disable=wrong-import-position

# minival top-1 at each of 10 evaluations (3 steps apart, 30 steps): lr 0.1 leads early, 0.03
# overtakes it at the 4th evaluation; 0.01 and 0.003 trail throughout
CURVES = {0.003: [0.1 + 0.02 * k for k in range(10)],
          0.01: [0.2 + 0.03 * k for k in range(10)],
          0.03: [min(0.2 + 0.1 * k, 0.95) for k in range(10)],
          0.1: [0.5 + 0.01 * k for k in range(10)]}


def _grid(tmp_path) -> pathlib.Path:
  grid = tmp_path / "grid"
  study = space.Study("cfg.py", {"full_ft": [{"optimizer.lr": lr} for lr in CURVES]}, (0, 1),
                      1000, {"all": {}}, 3, 3, False, "top1", {"full_ft": (1.0,)}, {})
  grid.mkdir()
  (grid / space.STUDY_FILE).write_text(json.dumps(space.to_json(study)))
  for t in study.trials("all", "full_ft"):
    run = trials.trial_dir(grid, "all", "full_ft", t.name)
    run.mkdir(parents=True)
    curve = CURVES[t.hparams["optimizer.lr"]]
    history = [{"step": 3 * (k + 1), "minival_top1": v, "minival_loss": 1 - v}
               for k, v in enumerate(curve)]
    best = max(history, key=lambda h: h["minival_top1"])
    (run / "results.json").write_text(json.dumps({
        "status": "finished", "best": best, "history": history, "num_steps": 30,
        "config": {"train": {"num_epochs": 10.0, "eval_every_epochs": 1.0}},
        "data_subset": {"minival_images": 300}}))
  return grid


def test_replay_chooses_what_each_rule_would_have(tmp_path, capsys):
  grid = _grid(tmp_path)
  curves = [json.loads((trials.trial_dir(grid, "all", "full_ft", f"optimizer.lr={lr!r}")
                        / "results.json").read_text()) for lr in CURVES]
  evaluations = halving.evaluation_fractions(10.0, 1.0)
  named = {name: (eta, f) for name, eta, f in halving_replay.rules([2, 3], 3, 4, evaluations)}
  assert named["full grid"][1] == (1.0,) and named["eta 3: 0.3"] == (3, (0.3,))
  assert named["eta 2: 0.3, 1/2"] == (2, (0.3, 0.5))
  # the grid picks the best at the end (0.03); eta 3 ends at 0.3, where 0.1 leads; eta 2 keeps
  # 0.1 and 0.03 at 0.3 and 0.03 has overtaken by 1/2
  assert halving_replay.replay(curves, (1.0,), 3, "top1") == 2
  assert halving_replay.replay(curves, (0.3,), 3, "top1") == 3
  assert halving_replay.replay(curves, (0.3, 0.5), 2, "top1") == 2
  assert halving_replay.main([f"--grid={grid}", "--etas=2,3"]) == 0
  out = capsys.readouterr().out
  assert "| all | full_ft | eta 3: 0.3 | optimizer.lr=0.1 | no | - | - | +36.00 (±" in out
  # cost in full runs: 4/3 x 0.3 ... the search plus 2 final seeds, against 4 + 2 for the grid
  assert f"| eta 3: 0.3 | 0/1 | {1.2 + 2:.2f} | {3.2 / 6:.2f} | {3.2 / 2:.2f} |" in out
  assert "| full grid | 1/1 | 6.00 | 1.00 | 3.00 |" in out
  assert pytest.approx(halving.search_equivalents(4, (0.3, 0.5), 2)) == 4 * 0.3 + 2 * 0.2
