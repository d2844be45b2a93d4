"""Sweeps: many trainings of one config that differ in hyper-parameters, on Optuna.

`sweep` is the entry point (``framework.sweep`` and ``plugnet sweep`` call it).  The modules:
`space` parses the ``[sweep]`` table and ``--grid`` options, `storage` opens the study's
storage, `study` hands trials to workers so each runs once, `trial` runs one trial as a run
directory, `stopping` stops them on SIGINT and SIGTERM, `output` writes ``sweep.csv``, the
table and the HParams experiment, `server` starts the server worker processes are forked
from, and `runner` ties them together with worker processes or Ray.

`sweep` and `summary_lines` are imported on first use, with Optuna: ``plugnet sweep`` starts
the worker server (`framework.sweeps.server`) before it pays for those imports.
"""

from framework.sweeps.stopping import SweepStopped

__all__ = ["SweepStopped", "summary_lines", "sweep"]


def __getattr__(name):
    if name in ("sweep", "summary_lines"):
        from framework.sweeps import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'framework.sweeps' has no attribute {name!r}")
