"""Sweeps: many trainings of one config that differ in hyper-parameters, on Optuna.

`sweep` is the entry point (``framework.sweep`` and ``plugnet sweep`` call it).  The modules:
`space` parses the ``[sweep]`` table and ``--grid`` options, `storage` opens the study's
storage, `study` hands trials to workers so each runs once, `trial` runs one trial as a run
directory, `stopping` stops them on SIGINT and SIGTERM, `output` writes ``sweep.csv``, the
table and the HParams experiment, and `runner` ties them together with worker processes or
Ray.
"""

from framework.sweeps.runner import summary_lines, sweep
from framework.sweeps.stopping import SweepStopped

__all__ = ["SweepStopped", "summary_lines", "sweep"]
