"""Fully connected layers, and activation as a layer of its own."""

import attrs
import numpy as np

from framework import (
    ConfigError,
    Layer,
    activate,
    activation_spec,
    component,
    kind_of,
    preactivation_grad,
)
from framework.validators import positive_int


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Dense(Layer):
    """z = x · W + b;  a = f(z).

    Backward, from g = dL/da:  δ = dL/dz = f'(z) ⊙ g (the activation's backward);
    dL/dW = xᵀ · δ;  dL/db = Σ_batch δ;  dL/dx = δ · Wᵀ.
    ``weights`` is (in_features, units), ``bias`` (units,).

    On inputs of more axes (a sequence ``(N, T, F)``) it applies to the last axis, as in
    Keras: every leading axis is a batch axis, ``(N, T, F) → (N, T, units)``, and the sums
    above run over all of them (x and δ seen as ``(N·T, ·)`` matrices).

    ``tied_to = "NAME"`` shares the ``embedding`` NAME's matrix E (units, in_features) as
    W = Eᵀ (GPT-2's weight tying): the layer has no ``weights`` of its own, z = x · Eᵀ + b,
    and its gradient δᵀ · x (E's layout) is added to the embedding's own by the model, so
    the one parameter E gets dL/dE = (lookup's gradient) + δᵀ · x.  The model ties the two
    when it is built (`tie`); E is saved and exported once.
    """

    splits_batch = True  # no batch statistics, no random draws

    position_wise = True  # each position on its own (framework.generate steps it)

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"params": {"units": 3, "activation": "tanh"}, "input_shape": (4,)}]

    units: int = attrs.field(validator=positive_int)
    activation: object = attrs.field(default=None, converter=activation_spec)
    use_bias: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))
    tied_to: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    tied = None  # the embedding layer whose matrix this layer shares (set by `tie`)

    def tie(self, layer):
        """Share ``layer``'s matrix (the layer named ``tied_to``, built before this one)."""
        matrix = layer.params.get("weights") if layer is not None else None
        if layer is None or kind_of(layer) != "embedding" or matrix is None:
            what = "no layer before it" if layer is None else f"a {kind_of(layer)} layer"
            raise ConfigError(
                f"layer {self.name}: tied_to = '{self.tied_to}' names {what}; it must name an "
                "embedding layer that comes before it"
            )
        self.tied = layer

    def twin(self):
        """As `framework.Layer.twin`, with its own ``tied_grad`` (the model points the copy's
        ``tied`` at the embedding's copy)."""
        other = super().twin()
        if self.tied is not None:
            other.tied_grad = np.zeros_like(self.tied_grad)
        return other

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError("dense expects inputs with a feature axis, (None, features)")
        if self.tied_to is not None:
            if self.tied is None:
                raise ConfigError(
                    f"layer {self.name}: tied_to = '{self.tied_to}' is tied when a model is built"
                )
            vocab, features = self.tied.params["weights"].shape
            if (features, vocab) != (input_shape[-1], self.units):
                raise ValueError(
                    f"tied_to = '{self.tied_to}' shares a ({vocab}, {features}) embedding, "
                    f"used transposed, which needs {features} input features and units = "
                    f"{vocab}; got {input_shape[-1]} features and units = {self.units}"
                )
            self.tied_grad = np.zeros((vocab, features), dtype=self.dtype)
        else:
            self.add_param("weights", (input_shape[-1], self.units), self.weight_init)
        if self.use_bias:
            self.add_param("bias", (self.units,), self.bias_init)
        return (*input_shape[:-1], self.units)

    def forward(self, x, training=False):
        leading = x.shape[:-1] if x.ndim > 2 else None  # None: the plain (N, F) case
        if leading is not None:
            x = x.reshape(-1, x.shape[-1])
        self.inputs = x
        # W written out, not the `weights` property: per-sample steps of a small net feel a call
        z = x @ (self.params["weights"] if self.tied is None else self.tied.params["weights"].T)
        if self.use_bias:
            z += self.params["bias"]
        if leading is not None:
            z = z.reshape(*leading, self.units)
        return activate(self, z)

    @property
    def weights(self):
        """W: its own ``weights``, or the tied embedding's matrix transposed (a view)."""
        return self.params["weights"] if self.tied is None else self.tied.params["weights"].T

    def backward(self, grad_y):
        return self.backward_preactivation(preactivation_grad(self, grad_y))

    def backward_preactivation(self, grad_z):
        """Backward from δ = dL/dz (a loss fused with this layer's activation gives it)."""
        shape = grad_z.shape
        if grad_z.ndim > 2:
            grad_z = grad_z.reshape(-1, self.units)
        if self.tied is not None:
            weights = self.tied.params["weights"].T
            np.matmul(grad_z.T, self.inputs, out=self.tied_grad)  # δᵀ·x, the model adds it
        else:
            weights = self.params["weights"]
            np.matmul(self.inputs.T, grad_z, out=self.grads["weights"])
        if self.use_bias:
            # The ufunc's own reduce: np.sum's Python wrapper costs as much as the sum of
            # a per-sample step's one-row gradient (benchmarks/b3_xor_step.py).
            np.add.reduce(grad_z, axis=0, out=self.grads["bias"])
        if not self.needs_input_grad:
            return None
        grad_x = grad_z @ weights.T
        return grad_x if len(shape) == 2 else grad_x.reshape(*shape[:-1], -1)

    def to_onnx(self, builder, x):
        """ONNX: MatMul by ``weights`` (tied: by the embedding's matrix, exported once, through
        a Transpose), Add ``bias``, then the activation's nodes."""
        if self.tied is not None:
            matrix = builder.add("Transpose", [builder.param(self.tied, "weights")], perm=[1, 0])
        else:
            matrix = builder.param(self, "weights")
        z = builder.add("MatMul", [x, matrix])
        if self.use_bias:
            z = builder.add("Add", [z, builder.param(self, "bias")])
        return builder.activation(self.activation, z)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class ActivationLayer(Layer):
    """a = f(z) element-wise (softmax: over the last axis), with no parameters."""

    splits_batch = True  # no batch statistics, no random draws

    position_wise = True  # each position on its own (framework.generate steps it)

    activation: object = attrs.field(default="relu", converter=activation_spec)

    def forward(self, x, training=False):
        self.preactivations, self.activations = x, self.activation.forward(x)
        return self.activations

    def backward(self, grad_y):
        return self.activation.backward(self.preactivations, self.activations, grad_y)

    def backward_preactivation(self, grad_z):
        return grad_z

    def to_onnx(self, builder, x):
        """ONNX: the activation's nodes."""
        return builder.activation(self.activation, x)
