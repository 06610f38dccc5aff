"""Replays successive-halving rules on a finished full grid: which point each rule would have
chosen, at what cost, and the regret of that choice where final runs of it exist.

  python experiments/halving_replay.py --grid=runs/bench_fmnist/full_grid \
      --finals=runs/bench_fmnist/study,runs/bench_fmnist/full_grid --etas=2,3,4

`--grid` is a study workdir whose search trials all ran to the end (bench_study.py --full_grid
writes one): each trial's results.json holds its minival at every scheduled evaluation, which is
what a rung placed there (`halving.at_evaluations`) scores, and its best checkpoint's, which the
last rung scores. So each rule is replayed with the study's own ranking code, without training.
`--finals` are workdirs whose final/ (and stale/final/) runs give a point's test top-1 over the
final seeds; a choice without final runs shows '-'. Cost is in full runs per strategy: the search
(`halving.search_equivalents`) plus the final seeds; the full grid is every trial to the end plus
the same final seeds; the untuned sweep the final seeds alone.
"""
import argparse
import json
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from ftlab.reports import stats, study_results  # pylint: disable=wrong-import-position
from ftlab.studies import halving, space, trials  # pylint: disable=wrong-import-position
from ftlab.training import rungs  # pylint: disable=wrong-import-position


def _results(run_dir: pathlib.Path) -> dict | None:
  """A finished run's results.json, else None."""
  files = trials.read(run_dir)
  return files.results if files.finished else None


def _score_at(results: dict, order: int, fraction: float) -> halving.Score:
  """What a rung at `fraction` scores: the scheduled evaluation there, or at the end the best
  checkpoint's minival (as trials.at_rung reads a finished trial)."""
  if fraction >= 1:
    best = results["best"]
    return halving.Score(order, best["minival_top1"], best["minival_loss"])
  step = rungs.rung_step(fraction, results["num_steps"])
  [entry] = [h for h in results["history"] if h["step"] == step and "minival_top1" in h]
  return halving.Score(order, entry["minival_top1"], entry.get("minival_loss"))


def _minival_count(results: dict) -> int | None:
  """Minival images of a run (results.json's `data_subset`), None when it does not say."""
  return (results.get("data_subset") or {}).get("minival_images")


def replay(curves: list, fractions: tuple, eta: int, by: str) -> int:
  """The order of the trial the rule chooses (`curves`: each trial's results.json, grid order)."""
  alive = list(range(len(curves)))
  for i, f in enumerate(fractions):
    scores = [_score_at(curves[k], k, f) for k in alive]
    last = i + 1 == len(fractions)
    alive = halving.best(scores, by) if last else halving.promote(scores, eta, by)
  return alive[0]


def final_tests(workdirs: list, size: str, strategy: str) -> dict:
  """json of the hparams -> {seed: test top-1 %} over every final run found (stale ones too)."""
  out = {}
  for w in workdirs:
    for base in (w / trials.FINAL, w / trials.STALE / trials.FINAL):
      for run in sorted((base / size / strategy).glob("seed=*")):
        files = trials.read(run)
        if not trials.held_out_done(files) or "test" not in files.results:
          continue
        key = json.dumps(files.results["config"]["optimizer"]["lr"])
        out.setdefault(key, {})[files.results["seed"]] = 100.0 * study_results.test_top1(
            files.results["test"])
  return out


def rules(etas: list, max_rungs: int, n: int, evaluations: tuple) -> list:
  """(name, eta, fractions) of each rule: eta, rungs at the scheduled evaluations, until one."""
  out = [("full grid", space.DEFAULT_ETA, (1.0,))]  # one rung: eta plays no part
  for eta in etas:
    fractions = halving.at_evaluations(halving.rung_fractions(n, eta, max_rungs), evaluations)
    ended = halving.until_one(fractions, n, eta)
    out.append((f"eta {eta}: " + ", ".join(halving.fraction_text(f) for f in ended), eta, ended))
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--grid", required=True)
  parser.add_argument("--finals", default="")
  parser.add_argument("--etas", default="2,3,4")
  parser.add_argument("--max_rungs", type=int, default=space.DEFAULT_MAX_RUNGS)
  args = parser.parse_args(argv)
  grid = pathlib.Path(args.grid)
  study = space.from_json(json.loads((grid / space.STUDY_FILE).read_text()))
  finals = [pathlib.Path(w) for w in args.finals.split(",") if w] or [grid]
  seeds = len(study.final_seeds)
  totals = {}
  print("| size | strategy | rule | chosen | = grid | test top-1 (seeds) | regret | "
        "grid's minival lead (±95%) |")
  print("|---|---|---|---|---|---|---|---|")
  for size in study.sizes:
    for strategy in study.strategies:
      members = study.trials(size, strategy)
      curves = [_results(trials.trial_dir(grid, size, strategy, t.name)) for t in members]
      if any(c is None for c in curves):
        print(f"{size} {strategy}: a trial has not finished; not a finished grid")
        continue
      config = curves[0]["config"]["train"]
      evaluations = halving.evaluation_fractions(config["num_epochs"], config["eval_every_epochs"])
      tests = final_tests(finals, size, strategy)
      chosen_grid = None
      for name, eta, fractions in rules([int(e) for e in args.etas.split(",")], args.max_rungs,
                                        len(members), evaluations):
        choice = members[replay(curves, fractions, eta, study.score)]
        chosen_grid = chosen_grid or choice
        lr = json.dumps(choice.hparams["optimizer.lr"])
        got = tests.get(lr, {})
        mean = statistics.mean(got.values()) if got else None
        grid_tests = tests.get(json.dumps(chosen_grid.hparams["optimizer.lr"]), {})
        regret = (statistics.mean(grid_tests.values()) - mean
                  if mean is not None and grid_tests else None)
        # how far the grid's choice led this one on minival at the end, against minival's own
        # binomial half-width: a lead inside it is one the grid itself could not trust
        ends = [curves[t.order]["best"]["minival_top1"] for t in (chosen_grid, choice)]
        count = _minival_count(curves[choice.order])
        lead = (f"{100 * (ends[0] - ends[1]):+.2f} "
                f"(±{100 * stats.binomial_halfwidth(ends[0], count):.2f})" if count else "-")
        search = halving.search_equivalents(len(members), fractions, eta)
        cost = totals.setdefault(name, [0.0, 0.0, 0.0, 0])
        cost[0] += search + seeds
        cost[1] += len(members) + seeds
        cost[2] += seeds
        cost[3] += choice == chosen_grid
        print(f"| {size} | {strategy} | {name} | {choice.name} | "
              f"{'yes' if choice == chosen_grid else 'no'} | "
              f"{'-' if mean is None else f'{mean:.2f} ({len(got)})'} | "
              f"{'-' if regret is None else f'{regret:+.2f}'} | {lead} |")
  print("\n| rule | same choice as the grid | cost, full runs | × grid | × untuned |")
  print("|---|---|---|---|---|")
  count = len(study.sizes) * len(study.strategies)
  for name, (study_cost, grid_cost, untuned, same) in totals.items():
    print(f"| {name} | {same}/{count} | {study_cost:.2f} | {study_cost / grid_cost:.2f} | "
          f"{study_cost / untuned:.2f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
