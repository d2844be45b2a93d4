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
    ``(N, T)``: the fraction of all N·T tokens classified right.  Labels of −1 are skipped
    (as ``cross_entropy`` skips them).

    Over many batches (evaluation) it counts: ``update`` adds a batch's right and counted
    labels, ``result`` is their ratio, ``reset`` starts again, so skipped labels never
    weigh a batch wrongly.
    """

    threshold: float = attrs.field(default=0.5, converter=float)
    _right: int = attrs.field(default=0, init=False, repr=False)
    _counted: int = attrs.field(default=0, init=False, repr=False)

    def counts(self, y_pred, y_true):
        """``(right, counted)`` on one batch."""
        y_true = np.asarray(y_true)
        if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
            predicted = (y_pred.reshape(len(y_pred), -1) > self.threshold).ravel()
            right = predicted == (y_true.reshape(predicted.shape) > 0.5)
            return int(np.count_nonzero(right)), right.size
        predicted = y_pred.argmax(axis=-1)
        if y_true.ndim == y_pred.ndim:
            y_true = y_true.argmax(axis=-1)
        right = predicted == y_true
        if np.issubdtype(y_true.dtype, np.integer) and y_true.size and y_true.min() < 0:
            kept = y_true >= 0
            return int(np.count_nonzero(right & kept)), int(np.count_nonzero(kept))
        return int(np.count_nonzero(right)), right.size

    def __call__(self, y_pred, y_true):
        right, counted = self.counts(y_pred, y_true)
        return right / counted if counted else 0.0

    def update(self, y_pred, y_true):
        right, counted = self.counts(y_pred, y_true)
        self._right += right
        self._counted += counted

    def result(self):
        return self._right / self._counted if self._counted else 0.0

    def reset(self):
        self._right = self._counted = 0


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
