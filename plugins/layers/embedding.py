"""Layers for token sequences: ``embedding`` (ids to vectors), ``positional_embedding``
(a learned vector per position, added) and ``global_avgpool1d`` (the mean over time)."""

import attrs
import numpy as np

from framework import DataError, Layer, component
from framework.validators import positive_int


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Embedding(Layer):
    """A lookup table: token ids ``(N, T)`` → vectors ``(N, T, output_dim)``.

    Forward: y[n, t] = W[x[n, t]], the row of ``weights`` (input_dim, output_dim) for that id.
    Backward: dL/dW[k] = Σ over the positions where x = k of dL/dy there (the rows sorted by
    id and summed per id with ``np.add.reduceat``, in their order, as ``np.add.at`` would
    but eight times faster); ids are not differentiable, so nothing is returned for the
    input.  An id outside [0, input_dim), or a float id, is a
    `framework.DataError` naming it.  ``integer_input`` tells the model to keep this layer's
    input as integers.
    """

    splits_batch = True  # no batch statistics, no random draws

    position_wise = True  # each position on its own (framework.generate steps it)

    integer_input = True
    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"params": {"input_dim": 7, "output_dim": 3}, "input_shape": (12,)}]

    input_dim: int = attrs.field(validator=positive_int)
    output_dim: int = attrs.field(validator=positive_int)
    weight_init: object = attrs.field(
        default={"type": "uniform", "low": -0.05, "high": 0.05}, validator=component("initializers")
    )

    def build(self, input_shape):
        self.add_param("weights", (self.input_dim, self.output_dim), self.weight_init)
        return (*input_shape, self.output_dim)

    def check_ids(self, x):
        x = np.asarray(x)
        name = self.name or "embedding"
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
            raise DataError(
                f"layer {name} takes integer token ids, got {x.dtype} values; give the ids as "
                "integers (e.g. x.astype(int))"
            )
        if x.size:
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= self.input_dim:
                bad = low if low < 0 else high
                raise DataError(
                    f"layer {name}: token id {bad} is outside [0, {self.input_dim}) "
                    f"(input_dim = {self.input_dim}); raise input_dim or fix the data"
                )
        return x.astype(np.intp, copy=False)

    def forward(self, x, training=False):
        self.ids = self.check_ids(x)
        self.activations = self.params["weights"][self.ids]
        return self.activations

    def backward(self, grad_y):
        ids, rows = self.ids.ravel(), grad_y.reshape(-1, self.output_dim)
        order = np.argsort(ids, kind="stable")  # positions grouped by id, in their order
        grouped = ids[order]
        starts = np.flatnonzero(np.diff(grouped, prepend=-1))  # where each id's group begins
        grad = self.grads["weights"]
        grad[...] = 0
        grad[grouped[starts]] = np.add.reduceat(rows[order], starts, axis=0)  # Σ per id
        return None

    def to_onnx(self, builder, x):
        """ONNX: Gather of the ids' rows of ``weights``."""
        return builder.add("Gather", [builder.param(self, "weights"), x], axis=0)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class PositionalEmbedding(Layer):
    """A learned vector per position, added to a sequence ``(N, T, D)``: y[:, t] = x[:, t] + W[t].

    ``weights`` is (max_length, D); sequences up to ``max_length`` long fit, a longer one is an
    error at build.  Backward: dL/dx = dL/dy; dL/dW[t] = Σ_batch dL/dy[:, t] for t < T (rows
    beyond T get 0).
    """

    splits_batch = True  # no batch statistics, no random draws

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"params": {"max_length": 6}, "input_shape": (5, 3)}]

    max_length: int = attrs.field(validator=positive_int)
    weight_init: object = attrs.field(
        default={"type": "uniform", "low": -0.05, "high": 0.05}, validator=component("initializers")
    )

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"positional_embedding needs sequences (None, timesteps, features), got "
                f"{len(input_shape) + 1}-D input"
            )
        steps = input_shape[0]
        if steps > self.max_length:
            raise ValueError(
                f"sequences are {steps} steps long but positional_embedding has max_length "
                f"{self.max_length}; set max_length to at least {steps}"
            )
        self.add_param("weights", (self.max_length, input_shape[1]), self.weight_init)
        return tuple(input_shape)

    def forward(self, x, training=False):
        steps = x.shape[1]
        if steps > self.max_length:
            raise DataError(
                f"layer {self.name}: sequences of {steps} steps are longer than its max_length {self.max_length}"
            )
        self.steps = steps
        self.activations = x + self.params["weights"][:steps]
        return self.activations

    def backward(self, grad_y):
        grad = self.grads["weights"]
        grad[self.steps :] = 0
        np.sum(grad_y, axis=0, out=grad[: self.steps])
        return grad_y

    def to_onnx(self, builder, x):
        """ONNX: Add of the first T rows of ``weights`` (T, the model's sequence length)."""
        steps = self.input_shape[0]
        return builder.add("Add", [x, builder.param(self, "weights", lambda w: w[:steps])])


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class GlobalAvgPool1D(Layer):
    """The mean over time: ``(N, T, F)`` → ``(N, F)``, y = (1/T) Σₜ xₜ; dL/dxₜ = dL/dy / T."""

    splits_batch = True  # no batch statistics, no random draws

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"input_shape": (5, 3)}]

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"global_avgpool1d needs sequences (None, timesteps, features), got "
                f"{len(input_shape) + 1}-D input"
            )
        return (input_shape[1],)

    def forward(self, x, training=False):
        self.input_batch_shape = x.shape
        self.activations = x.mean(axis=1)
        return self.activations

    def backward(self, grad_y):
        n, steps, features = self.input_batch_shape
        return np.broadcast_to((grad_y / steps)[:, None, :], (n, steps, features)).copy()

    def to_onnx(self, builder, x):
        """ONNX: ReduceMean over the time axis."""
        return builder.add("ReduceMean", [x], axes=[1], keepdims=0)
