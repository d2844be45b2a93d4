"""Stopping a sweep with SIGINT or SIGTERM (Ctrl-C; Slurm, Kubernetes, systemd, ``timeout``).

The sweep process passes each signal on to its workers (`framework.sweeps.runner`).  In a
worker (or in the sweep process itself with one job) the first signal asks the running trial
to stop at its next step and the worker to take no more trials; a second stops the trial at
once.  A stopped trial is marked so in the study (``plugnet_stopped``) and shown as
``stopped`` in sweep.csv; it stays RUNNING in Optuna's terms, and whoever next looks for work
in the study (the same command run again, or a worker on another machine) marks it
interrupted and runs its point again from the start, as it does for a trial whose worker
died (`framework.sweeps.study.recover_stale`).  Then `SweepStopped` ends the sweep.
"""

import contextlib
import signal
import threading

from framework.hookspecs import hookimpl
from framework.stopping import SIGNALS, signal_name


@contextlib.contextmanager
def signal_handlers(handler, signals=SIGNALS):
    """``handler`` for SIGINT and SIGTERM inside the block, the earlier ones restored after.
    Python lets only the main thread set them; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, handler_before in previous.items():
            signal.signal(signum, handler_before if handler_before is not None else signal.SIG_DFL)


class StopRequest:
    """A worker's stop: the signal handler, and the callback on each trial that stops its
    trainer at the next step boundary (``trainer.stop_training``) once a signal came."""

    kind = "sweep_stop"

    def __init__(self):
        self.signum = None  # the first signal's number, once one came
        self.trainer = None  # the trainer of the trial under way
        self.stopped = None  # the trainer it stopped

    @property
    def requested(self):
        return self.signum is not None

    def request(self, signum):
        if self.signum is None:
            self.signum = int(signum)
        if self.trainer is not None:
            self._stop(self.trainer)

    def _stop(self, trainer):
        self.stopped = trainer
        trainer.stop_reason = f"sweep stopped ({signal_name(self.signum)})"
        trainer.stop_training = True

    def handle(self, signum, frame):
        if self.signum is not None:  # the second: do not wait for the step to end
            raise KeyboardInterrupt
        self.request(signum)

    def handling(self):
        return signal_handlers(self.handle)

    @hookimpl
    def on_train_begin(self, trainer):
        self.trainer = trainer
        if self.signum is not None:  # came while the trial was being built
            self._stop(trainer)

    @hookimpl
    def on_train_end(self, trainer):
        self.trainer = None

    @hookimpl
    def on_exception(self, trainer, exception):
        self.trainer = None


class SweepStopped(KeyboardInterrupt):
    """A sweep stopped by a signal; ``trials``: the numbers of the trials it stopped.  A
    `KeyboardInterrupt`, so code that handles Ctrl-C handles it; ``exit_status`` is the
    shell's 128 + the signal's number (130, 143)."""

    def __init__(self, signum, trials=()):
        self.signum = int(signum)
        self.trials = sorted(trials)
        super().__init__(self.message())

    @property
    def exit_status(self):
        return 128 + self.signum

    def message(self):
        name = signal_name(self.signum)
        if not self.trials:
            return f"sweep stopped ({name}) between trials; run the same command again to go on"
        listed = ", ".join(f"trial-{number:04d}" for number in self.trials)
        return (
            f"sweep stopped ({name}): {listed} stopped; run the same command again to finish them"
        )
