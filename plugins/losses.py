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
    ``half_sum`` is seed 000's cost, L = ½ Σ (ŷ − y)², with dL/dŷ = ŷ − y; ``sum`` is Σ."""

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


def ignored_targets(values, y_true):
    """Where class-index labels are −1 (targets to skip: padding past a ``lines`` item's stop
    token), as a boolean mask; None when there are none (the common case, checked once)."""
    if y_true.ndim == values.ndim or not np.issubdtype(y_true.dtype, np.integer) or not y_true.size:
        return None
    if y_true.min() >= 0:
        return None
    return y_true < 0


@attrs.define
class CrossEntropy(Loss):
    """L = −mean over samples of log p[label], for class-index labels (shape ``(N,)``) or
    one-hot / probability targets (shape ``(N, C)``).  Per-token predictions ``(N, T, C)``
    take labels ``(N, T)`` (or one-hot ``(N, T, C)``), and the mean runs over all N·T tokens.

    A label of −1 is skipped (PyTorch's ``ignore_index=-1``): the mean runs over the other
    labels only, and the gradient at a skipped position is exactly 0 (a batch with no label
    left has loss 0).

    From probabilities (a softmax output; clipped at ε so a confident mistake costs a large
    finite loss) or, with ``from_logits``, from net inputs through log-softmax.  The gradient
    with respect to the net input is (p − y) / n, n the labels counted: fused after a softmax
    output, direct from logits.
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
        ignored = ignored_targets(y_pred, y_true)
        if ignored is not None:
            return self._forward_kept(y_pred, y_true, ignored)
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

    def _forward_kept(self, y_pred, y_true, ignored):
        """The loss over the labels that are not −1 (any skipped label picks class 0, then
        drops out of the sum)."""
        kept = ~ignored
        count = int(np.count_nonzero(kept))
        if not count:
            return 0.0
        labels = np.where(ignored, 0, y_true)
        if self.from_logits:
            shifted = y_pred - y_pred.max(axis=-1, keepdims=True)
            log_p = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
            picked = self._picked(log_p, labels)
        else:
            picked = np.log(np.clip(self._picked(y_pred, labels), self.epsilon, 1.0))
        return float(-np.sum(picked[kept], dtype=np.float64) / count)

    def count(self, y_pred, y_true):
        """How many labels the batch's mean runs over: samples, or tokens of (N, T, C), less
        the skipped ones (evaluation weighs each batch's loss by it)."""
        ignored = ignored_targets(y_pred, np.asarray(y_true))
        n = self._count(y_pred)
        return n if ignored is None else int(n - np.count_nonzero(ignored))

    @staticmethod
    def _count(y_pred):
        """How many predictions the mean runs over: samples, or tokens of (N, T, C)."""
        return y_pred.size // y_pred.shape[-1] if y_pred.ndim > 2 else len(y_pred)

    @staticmethod
    def _zero_ignored(grad, ignored):
        """The gradient divided by the labels counted, exactly 0 at skipped positions."""
        count = int(np.count_nonzero(~ignored))
        grad[ignored] = 0
        return grad / max(count, 1)

    def backward(self, y_pred, y_true):
        ignored = ignored_targets(y_pred, y_true)
        labels = y_true if ignored is None else np.where(ignored, 0, y_true)
        n = self._count(y_pred)
        if self.from_logits:
            e = np.exp(y_pred - y_pred.max(axis=-1, keepdims=True))
            grad = self._one_hot_minus(e / e.sum(axis=-1, keepdims=True), labels)
        else:
            p = np.clip(y_pred, self.epsilon, 1.0)
            grad = np.zeros_like(y_pred)
            if labels.ndim == y_pred.ndim:
                grad -= labels / p
            else:
                index = labels.astype(np.intp)[..., None]
                np.put_along_axis(
                    grad, index, -1.0 / np.take_along_axis(p, index, axis=-1), axis=-1
                )
        return grad / n if ignored is None else self._zero_ignored(grad, ignored)

    def fuses_with(self, link):
        return link == "softmax" and not self.from_logits

    def backward_fused(self, y_pred, y_true):
        ignored = ignored_targets(y_pred, y_true)
        if ignored is None:
            return self._one_hot_minus(y_pred, y_true) / self._count(y_pred)
        grad = self._one_hot_minus(y_pred, np.where(ignored, 0, y_true))
        return self._zero_ignored(grad, ignored)

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
        if low < -1 or high >= classes:
            raise DataError(
                f"label {high if high >= classes else low} is out of range for a model with "
                f"{classes} outputs (labels must be 0 to {classes - 1}, or -1 to skip one)"
            )


@hookimpl
def register_losses():
    return {
        "mse": MeanSquaredError,
        "binary_cross_entropy": BinaryCrossEntropy,
        "cross_entropy": CrossEntropy,
    }
