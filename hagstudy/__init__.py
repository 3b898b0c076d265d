"""hagstudy: a notebook-first study of Hyperparameter Aware Generation (arXiv 2402.11251)."""

from hagstudy import runlog as _runlog

# Some harmless third-party warnings fire while the notebook's first cell imports this package,
# before ``study.start`` can set up the run's log: filter them now (runlog.HARMLESS says which and why).
_runlog.quiet_harmless_warnings()
