"""Studies: every strategy tuned on minival by successive halving, then re-run over seeds.

`space` (a config's `get_study()`: strategies, search grids, final seeds,
data sizes), `halving` (rungs and promotions, pure), `trials` (a trial's
state read from its run dir), `planner` (from the files on disk to the runs
still to do, and the decisions taken), `driver` (rounds of runs through
`ftlab.sweeps.runner`), `slurm` (rungs as array jobs with a dependent
promotion job), `cost` (images trained against a full grid's).
"""
