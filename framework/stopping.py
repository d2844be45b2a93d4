"""Stopping a run at a step boundary: on SIGINT or SIGTERM, or when other code asks.

Clusters and tools stop a process with SIGTERM (Slurm, Kubernetes, systemd, ``timeout``)
and people with Ctrl-C (SIGINT).  While `GracefulStop` handles them, the first signal only
asks the trainer to stop (``trainer.stop_training``, with a ``stop_reason``): the step under
way finishes, training ends as after any stop (``on_train_end``: the checkpoint callback
writes that step, the tensorboard callback flushes and closes its files), and
`framework.run.Experiment.fit` then raises `Interrupted`.  A second signal raises
`Interrupted` at once, wherever the run is.

Code that stops a run for its own reasons (a sweep passing a stop on to its workers) calls
`GracefulStop.request` on the run's ``experiment.stop``: from any thread, or from its own
signal handler.
"""

import os
import shlex
import signal
import threading

from framework.hookspecs import hookimpl

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal.  A `KeyboardInterrupt`, so code that handles Ctrl-C
    handles it; ``exit_status`` is the shell's 128 + the signal's number (130, 143).

    ``step``: the steps done; ``checkpoint``: the path of the checkpoint of that step, when
    one was written; ``at_once``: a second signal cut the run short, not at a step boundary.
    """

    def __init__(self, signum, *, step=None, logdir=None, checkpoint=None, at_once=False):
        self.signum = int(signum)
        self.step = step
        self.logdir = logdir
        self.checkpoint = checkpoint
        self.at_once = at_once
        super().__init__(self.message())

    @property
    def signal_name(self):
        return signal_name(self.signum)

    @property
    def exit_status(self):
        return 128 + self.signum

    def message(self):
        """One line for the user: where the run stopped, what was kept, how to go on."""
        how = "interrupted again, stopped at once" if self.at_once else "interrupted"
        parts = [
            f"{how} ({self.signal_name})" + ("" if self.step is None else f" at step {self.step}")
        ]
        if self.checkpoint:  # at once: the newest one, from before the step it stopped in
            parts.append(
                f"{'newest checkpoint' if self.at_once else 'checkpoint'} {self.checkpoint}"
            )
        elif self.logdir is not None and not self.at_once:
            parts.append("no checkpoint (the run has no checkpoint callback)")
        if self.checkpoint and self.logdir is not None:
            parts.append(
                f"resume with: plugnet train --resume {shlex.quote(os.fspath(self.logdir))}"
            )
        return "; ".join(parts)


class GracefulStop:
    """A callback that stops its trainer at the next step boundary once `request` is called,
    and, as a context manager, the SIGINT and SIGTERM handlers that call it.

    A request that comes before training starts (while the data are checked) stops the run
    before its first step, as ``fit`` clears ``stop_training`` when it starts.
    """

    kind = "graceful_stop"

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.signum = None  # the signal (number) of the first request, once there is one
        self.trainer = None
        self._previous = {}

    @property
    def requested(self):
        return self.signum is not None

    def request(self, signum=signal.SIGTERM):
        """Stop at the next step boundary (the current step finishes).  Safe to call from a
        signal handler or another thread; later calls change nothing."""
        if self.signum is None:
            self.signum = int(signum)
        if self.trainer is not None:
            self._stop(self.trainer)

    def _stop(self, trainer):
        trainer.stop_reason = f"interrupted ({signal_name(self.signum)})"
        trainer.stop_training = True

    @hookimpl
    def on_train_begin(self, trainer):
        self.trainer = trainer
        if self.signum is not None:
            self._stop(trainer)

    # --- signal handlers -------------------------------------------------------------------

    def handle(self, signum, frame):
        if self.signum is None:
            self.request(signum)
            return
        # The second signal: the user does not want to wait.
        trainer = self.trainer
        if trainer is None:
            raise Interrupted(signum, at_once=True)
        # Which checkpoint is newest, the run's owner knows (`framework.run.Experiment.fit`
        # names it): stopping knows no run directory.
        raise Interrupted(signum, step=trainer.step, logdir=trainer.logdir, at_once=True)

    def __enter__(self):
        # Python lets only the main thread set signal handlers; elsewhere (a sweep's worker
        # thread) whoever runs the thread decides, and may call `request`.
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def interrupted_by(trainer):
    """The name of the signal stopping ``trainer``'s run (``"SIGTERM"``), or None when no
    `GracefulStop` of it has been asked to stop: lets a callback tell a run cut short by a
    signal from one that ended (TensorBoard's session status ``unknown`` vs ``success``)."""
    for callback in getattr(trainer, "callbacks", ()):
        if isinstance(callback, GracefulStop) and callback.signum is not None:
            return signal_name(callback.signum)
    return None
