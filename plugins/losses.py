"""Built-in losses.

``forward(y_pred, y_true)`` is a mean over the batch (unless a reduction says otherwise) and
``backward`` its gradient with respect to ``y_pred``.  Where a loss is the natural partner of
the output activation (cross-entropy after softmax, binary cross-entropy after sigmoid),
``backward_fused`` gives the gradient with respect to the net input directly: ``ŷ − y``
scaled by the reduction.  It is exact and stable where the chained form divides by
probabilities that underflow to 0.
"""

import functools

import attrs
import numpy as np

from framework import DataError, Loss, hookimpl, targets_like

REDUCTIONS = ("mean", "sum", "half_sum")


@functools.cache
def load_expit():
    """scipy's logistic function, imported on first use (see `plugins.activations.load_expit`)."""
    from scipy.special import expit

    return expit


@attrs.define
class MeanSquaredError(Loss):
    """``mean``: L = mean((ŷ − y)²) over every element;  dL/dŷ = 2(ŷ − y) / size.
    ``half_sum`` is the cost of the hours-studied network of *Neural Networks Demystified*,
    L = ½ Σ (ŷ − y)², with dL/dŷ = ŷ − y; ``sum`` is Σ."""

    reduction: str = attrs.field(default="mean", validator=attrs.validators.in_(REDUCTIONS))

    def forward(self, y_pred, y_true):
        diff = y_pred - targets_like(y_true, y_pred)
        total = float(np.vdot(diff, diff))
        return {"mean": total / diff.size, "sum": total, "half_sum": 0.5 * total}[self.reduction]

    def backward(self, y_pred, y_true):
        diff = y_pred - targets_like(y_true, y_pred)
        scale = {"mean": 2.0 / diff.size, "sum": 2.0, "half_sum": 1.0}[self.reduction]
        return diff * scale


@attrs.define
class BinaryCrossEntropy(Loss):
    """L = −mean(y log p + (1 − y) log(1 − p)) over every element.

    From probabilities ``p`` (clipped to [ε, 1 − ε] so the log stays finite), or with
    ``from_logits`` from net inputs ``z``, as max(z, 0) − z·y + log(1 + e^(−|z|)), which is
    the same quantity without ever forming p.  The gradient with respect to z is (p − y) / size
    either way: fused after a sigmoid output, direct from logits.
    """

    from_logits: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    epsilon: float = attrs.field(default=1e-7, converter=float, validator=attrs.validators.gt(0))

    def forward(self, y_pred, y_true):
        y = targets_like(y_true, y_pred)
        if self.from_logits:
            z = y_pred
            return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
        # The same quantity as −mean(y log p + (1 − y) log(1 − p)) with p clipped, written with
        # ufuncs and dot products: np.clip and np.mean cost ~10 µs of Python around a tiny
        # array, half a per-sample step's time (benchmarks/b3_xor_step.py).
        p = np.minimum(np.maximum(y_pred, self.epsilon), 1 - self.epsilon)
        return -(float(np.vdot(y, np.log(p))) + float(np.vdot(1 - y, np.log1p(-p)))) / p.size

    def backward(self, y_pred, y_true):
        y = targets_like(y_true, y_pred)
        if self.from_logits:
            return (load_expit()(y_pred) - y) / y.size
        p = np.clip(y_pred, self.epsilon, 1 - self.epsilon)
        return (p - y) / (p * (1 - p)) / y.size

    def fuses_with(self, link):
        return link == "sigmoid" and not self.from_logits

    def backward_fused(self, y_pred, y_true):
        return (y_pred - targets_like(y_true, y_pred)) / y_pred.size

    def check_targets(self, y_true, output_shape):
        super().check_targets(y_true, output_shape)
        y = np.asarray(y_true)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise DataError(
                f"binary_cross_entropy needs targets in [0, 1]; labels range from {y.min()} to {y.max()}"
            )


@attrs.define
class CrossEntropy(Loss):
    """L = −mean over samples of log p[label], for class-index labels (shape ``(N,)``) or
    one-hot / probability targets (shape ``(N, C)``).  Per-token predictions ``(N, T, C)``
    take labels ``(N, T)`` (or one-hot ``(N, T, C)``), and the mean runs over all N·T tokens.

    From probabilities (a softmax output; clipped at ε so a confident mistake costs a large
    finite loss) or, with ``from_logits``, from net inputs through log-softmax.  The gradient
    with respect to the net input is (p − y) / N: fused after a softmax output, direct from
    logits.
    """

    from_logits: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    epsilon: float = attrs.field(default=1e-7, converter=float, validator=attrs.validators.gt(0))

    @staticmethod
    def _picked(values, y_true):
        """``values[i, y_i]`` for index labels, ``Σ_c y_ic values_ic`` for one-hot."""
        if y_true.ndim == values.ndim:
            return np.sum(values * y_true, axis=-1)
        index = y_true.astype(np.intp, copy=False)
        if values.ndim == 2:  # the usual (batch, classes): plain indexing costs a third as much
            return values[np.arange(len(values)), index]
        return np.take_along_axis(values, index[..., None], axis=-1)[..., 0]

    def _one_hot_minus(self, p, y_true):
        grad = p.copy()
        if y_true.ndim == p.ndim:
            grad -= y_true
        elif p.ndim == 2:
            grad[np.arange(len(p)), y_true.astype(np.intp, copy=False)] -= 1
        else:
            np.put_along_axis(
                grad,
                y_true.astype(np.intp)[..., None],
                self._picked(p, y_true)[..., None] - 1,
                axis=-1,
            )
        return grad

    def forward(self, y_pred, y_true):
        if self.from_logits:
            shifted = y_pred - y_pred.max(axis=-1, keepdims=True)
            log_p = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
            return float(-np.mean(self._picked(log_p, y_true)))
        # ufuncs in place on the picked probabilities (a fresh array): np.clip's and np.mean's
        # Python wrappers cost more than the maths on a batch of 128 (benchmarks/b1_dense.py).
        picked = np.minimum(self._picked(y_pred, y_true), 1.0)
        np.maximum(picked, self.epsilon, out=picked)
        np.log(picked, out=picked)
        return float(-np.add.reduce(picked, axis=None) / picked.size)

    @staticmethod
    def _count(y_pred):
        """How many predictions the mean runs over: samples, or tokens of (N, T, C)."""
        return y_pred.size // y_pred.shape[-1] if y_pred.ndim > 2 else len(y_pred)

    def backward(self, y_pred, y_true):
        n = self._count(y_pred)
        if self.from_logits:
            e = np.exp(y_pred - y_pred.max(axis=-1, keepdims=True))
            return self._one_hot_minus(e / e.sum(axis=-1, keepdims=True), y_true) / n
        p = np.clip(y_pred, self.epsilon, 1.0)
        grad = np.zeros_like(y_pred)
        if y_true.ndim == y_pred.ndim:
            grad -= y_true / p
        else:
            index = y_true.astype(np.intp)[..., None]
            np.put_along_axis(grad, index, -1.0 / np.take_along_axis(p, index, axis=-1), axis=-1)
        return grad / n

    def fuses_with(self, link):
        return link == "softmax" and not self.from_logits

    def backward_fused(self, y_pred, y_true):
        return self._one_hot_minus(y_pred, y_true) / self._count(y_pred)

    def check_targets(self, y_true, output_shape):
        y = np.asarray(y_true)
        classes = output_shape[-1] if output_shape else 1
        if y.ndim >= 2 and tuple(y.shape[1:]) == tuple(output_shape):
            return  # one-hot or probability targets
        if tuple(y.shape[1:]) != tuple(output_shape[:-1]):
            raise DataError(
                f"cross_entropy targets must be class indices of shape (N,) or one-hot of shape "
                f"(N, {classes}); got shape {y.shape}"
            )
        if y.size == 0:
            return
        if not np.issubdtype(y.dtype, np.integer) and not np.array_equal(y, np.round(y)):
            raise DataError("cross_entropy class labels must be whole numbers (class indices)")
        low, high = y.min(), y.max()
        if low < 0 or high >= classes:
            raise DataError(
                f"label {high if high >= classes else low} is out of range for a model with "
                f"{classes} outputs (labels must be 0 to {classes - 1})"
            )


@hookimpl
def register_losses():
    return {
        "mse": MeanSquaredError,
        "binary_cross_entropy": BinaryCrossEntropy,
        "cross_entropy": CrossEntropy,
    }
