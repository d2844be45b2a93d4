"""`terminate_on_nan`: end a diverging run cleanly at the first non-finite loss."""

import math
from typing import ClassVar

import attrs
import numpy as np

from framework import Callback, hookimpl, report


@attrs.define(eq=False)
class TerminateOnNaN(Callback):
    """Stops training after the first step whose loss is NaN or infinite.

    The run then ends as after any stop: ``on_train_end`` is called, summaries and
    ``summary.json`` are written, and ``plugnet train`` exits with status 0.  A message on
    standard error names the step (counted from 0, as the hooks and TensorBoard count) and the
    value, e.g. ``plugnet: training stopped at step 41: loss is nan (epoch 3)``; the same
    text (without ``plugnet:``) is left in ``trainer.stop_reason``, and the step in
    ``stopped_step``.

    While it watches, numpy's overflow and invalid-value warnings are off: they would
    announce the same divergence a few steps early, from deep inside a layer, in a way a user
    can do nothing with.
    """

    kind: ClassVar[str] = "terminate_on_nan"

    stopped_step: int | None = attrs.field(init=False, default=None, repr=False)
    _numpy_errors: dict | None = attrs.field(init=False, default=None, repr=False)

    @hookimpl
    def on_train_begin(self):
        self.stopped_step = None
        self._numpy_errors = np.seterr(over="ignore", invalid="ignore", divide="ignore")

    @hookimpl
    def on_train_end(self):
        self._restore_numpy_errors()

    @hookimpl
    def on_exception(self):
        self._restore_numpy_errors()

    def _restore_numpy_errors(self):
        if self._numpy_errors is not None:
            np.seterr(**self._numpy_errors)
            self._numpy_errors = None

    @hookimpl
    def on_batch_end(self, trainer, step, logs):
        loss = logs["loss"]
        if math.isfinite(loss):  # the whole per-step cost
            return
        trainer.stop_training = True
        self.stopped_step = step
        reason = f"training stopped at step {step}: loss is {loss} (epoch {trainer.epoch + 1})"
        trainer.stop_reason = reason
        report(f"plugnet: {reason}")
