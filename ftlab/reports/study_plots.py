"""A study's figures: minival top-1 against the searched value per strategy (one line per rung),
and test top-1 against the data size (one line per strategy, 95% CI band)."""
from matplotlib.figure import Figure

from ftlab.reports.study_results import StudyResults
from ftlab.studies.halving import fraction_text


PREFERRED_AXIS = "optimizer.lr"


def _axis(grid: list) -> str | None:
  """The searched key the x axis shows: the LR when it varies, else the first numeric that does."""
  varying = [k for k in dict.fromkeys(k for hp in grid for k in hp)
             if len({hp.get(k) for hp in grid}) > 1
             and all(isinstance(hp.get(k), (int, float)) for hp in grid)]
  if PREFERRED_AXIS in varying:
    return PREFERRED_AXIS
  return varying[0] if varying else None


def _log_scale(values: list) -> bool:
  return all(v > 0 for v in values) and max(values) / min(values) >= 10


def sensitivity_figure(results: StudyResults, size: str) -> Figure:
  plans = [sp for sp in results.plan.strategies if sp.size == size]
  fig = Figure(figsize=(3.2 * len(plans), 3.0))
  for k, sp in enumerate(plans):
    ax = fig.add_subplot(1, len(plans), k + 1)
    axis = _axis(results.study.strategies[sp.strategy])
    for i, rung in enumerate(sp.rungs):
      groups = {}
      for e in rung:
        if e.result.top1 is None:
          continue
        others = tuple((key, v) for key, v in e.trial.hparams.items() if key != axis)
        x = e.trial.hparams[axis] if axis else e.trial.order
        groups.setdefault(others, []).append((x, 100 * e.result.top1))
      for others, points in groups.items():
        points.sort()
        label = f"rung {fraction_text(sp.fractions[i])}" + (
            " " + ",".join(f"{key.rsplit('.', 1)[-1]}={v}" for key, v in others) if others else "")
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=f"C{i}",
                label=label)
    xs = [hp[axis] for hp in results.study.strategies[sp.strategy]] if axis else []
    if xs and _log_scale(xs):
      ax.set_xscale("log")
    ax.set_title(sp.strategy, fontsize=9)
    ax.set_xlabel(axis.rsplit(".", 1)[-1] if axis else "trial")
    if k == 0:
      ax.set_ylabel("minival top-1 (%)")
    ax.legend(fontsize=7)
  fig.suptitle(f"Sensitivity ({size})", fontsize=10)
  return fig


def size_figure(results: StudyResults) -> Figure:
  """Test top-1 vs the images per class trained on, one line per strategy with its 95% CI band
  (a size whose runs do not tell what they trained on is left out)."""
  fig = Figure(figsize=(5.5, 3.6))
  ax = fig.add_subplot(1, 1, 1)
  for j, strategy in enumerate(results.study.strategies):
    points = []
    for name in results.study.sizes:
      row = next(r for r in results.tuned if r.size == name and r.strategy == strategy)
      x = results.sizes[name].mean_per_class
      if row.summary is not None and x is not None:
        points.append((x, row.summary.mean, row.summary.ci or 0.0))
    points.sort()
    if points:
      xs, ys, ci = ([p[i] for p in points] for i in range(3))
      ax.plot(xs, ys, marker="o", color=f"C{j}", label=strategy)
      ax.fill_between(xs, [y - c for y, c in zip(ys, ci)], [y + c for y, c in zip(ys, ci)],
                      color=f"C{j}", alpha=0.15)
  values = [s.mean_per_class for s in results.sizes.values() if s.mean_per_class]
  if values and _log_scale(values):
    ax.set_xscale("log")
  ax.set_xlabel("train images per class (minival excluded)")
  ax.set_ylabel("test top-1 (%), tuned")
  ax.legend(fontsize=7)
  return fig


def figures(results: StudyResults) -> list:
  """(stem, title, Figure) for every figure of the study."""
  out = [(f"sensitivity_{size}", f"Sensitivity ({size})", sensitivity_figure(results, size))
         for size in results.study.sizes]
  if len(results.study.sizes) > 1:
    out.append(("data_size", "Test top-1 vs data size", size_figure(results)))
  return out
