"""Built-in metrics: ``metric(y_pred, y_true) -> float``."""

import attrs
import numpy as np

from framework import Metric, hookimpl, targets_like


@attrs.define
class Accuracy(Metric):
    """Fraction of samples classified right.

    Several outputs: the arg-max is the predicted class, and targets are class indices or
    one-hot rows.  One output (a sigmoid): the class is 1 where the output exceeds
    ``threshold`` (use 0 for logits).  Per-token predictions ``(N, T, C)`` with labels
    ``(N, T)``: the fraction of all N·T tokens classified right.
    """

    threshold: float = attrs.field(default=0.5, converter=float)

    def __call__(self, y_pred, y_true):
        y_true = np.asarray(y_true)
        if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
            predicted = (y_pred.reshape(len(y_pred), -1) > self.threshold).ravel()
            return float(np.mean(predicted == (y_true.reshape(predicted.shape) > 0.5)))
        predicted = y_pred.argmax(axis=-1)
        if y_true.ndim == y_pred.ndim:
            y_true = y_true.argmax(axis=-1)
        return float(np.mean(predicted == y_true))


def residuals(y_pred, y_true):
    return y_pred - targets_like(y_true, y_pred)


@attrs.define
class MeanSquaredError(Metric):
    """mean((ŷ − y)²) over every element."""

    higher_is_better = False

    def __call__(self, y_pred, y_true):
        diff = residuals(y_pred, y_true)
        return float(np.vdot(diff, diff) / diff.size)


@attrs.define
class MeanAbsoluteError(Metric):
    """mean(|ŷ − y|) over every element."""

    higher_is_better = False

    def __call__(self, y_pred, y_true):
        return float(np.mean(np.abs(residuals(y_pred, y_true))))


@hookimpl
def register_metrics():
    return {"accuracy": Accuracy, "mse": MeanSquaredError, "mae": MeanAbsoluteError}
