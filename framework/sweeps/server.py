"""The server a sweep's worker processes are forked from.

Kept apart from the rest of the sweep (and from Optuna), so that ``plugnet sweep --jobs N``
can start the server first thing, before its own imports: the server's imports then run
beside the sweep's set-up instead of after it.
"""

import contextlib
import multiprocessing
import os
from multiprocessing import forkserver

from framework.registry import BUILTIN_PLUGINS

# What the worker server imports once, so that every worker forked from it starts warm;
# scipy.special is what a sigmoid imports on first use (`plugins.activations.load_expit`).
WARM_MODULES = (
    "framework.cli",
    "framework.run",
    "framework.sweeps.runner",
    *BUILTIN_PLUGINS,
    "scipy.special",
)
# The worker server forks, so it must hold no thread but its own: numpy's BLAS would start
# its thread pool as the server imports numpy.  Each worker sets its own BLAS threads
# (threadpoolctl, `Plan.threads`) once forked.
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def environment(values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def worker_context():
    """Where worker processes come from: Python's fork server, started here (once per
    process) with plugnet imported (not the config's plugins: one that fails to import is
    reported by the sweep's checks, not by a server's traceback).

    Never a fork of this process: it holds threads (BLAS, event writers, a progress bar's
    monitor, a caller's own), and a child forked from it could inherit a lock one of them
    held, and hang.  The fork server is a fresh interpreter, single-threaded when it forks;
    its children start warm, as forked ones did.  Started before the sweep's own set-up, so
    its imports run beside it.  Where there is no fork server (not POSIX), workers spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WARM_MODULES))  # a server already running keeps its own
    with environment(ONE_THREAD):
        forkserver.ensure_running()
    return context
