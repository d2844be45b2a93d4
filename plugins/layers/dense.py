"""Fully connected layers, and activation as a layer of its own."""

import attrs
import numpy as np

from framework import Layer, component, resolve
from framework.validators import positive_int


def activation_spec(spec):
    """The activation object for a layer's ``activation`` parameter (None: the identity)."""
    return resolve("activations", "identity" if spec is None else spec)


def is_identity(activation):
    return getattr(activation, "kind", None) == "identity"


def activate(layer, z):
    """``a = f(z)`` with the layer's activation, keeping ``z`` (unless f is the identity) and
    ``a`` as its ``preactivations`` and ``activations`` for backward and TensorBoard."""
    if is_identity(layer.activation):
        layer.preactivations, layer.activations = None, z
    else:
        layer.preactivations, layer.activations = z, layer.activation.forward(z)
    return layer.activations


def preactivation_grad(layer, grad_a):
    """dL/dz from dL/da through the layer's activation."""
    if layer.preactivations is None:
        return grad_a
    return layer.activation.backward(layer.preactivations, layer.activations, grad_a)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Dense(Layer):
    """z = x · W + b;  a = f(z).

    Backward, from g = dL/da:  δ = dL/dz = f'(z) ⊙ g (the activation's backward);
    dL/dW = xᵀ · δ;  dL/db = Σ_batch δ;  dL/dx = δ · Wᵀ.
    ``weights`` is (in_features, units), ``bias`` (units,).
    """

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"params": {"units": 3, "activation": "tanh"}, "input_shape": (4,)}]

    units: int = attrs.field(validator=positive_int)
    activation: object = attrs.field(default=None, converter=activation_spec)
    use_bias: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"dense expects flat inputs (None, features), got {len(input_shape)} axes; "
                "put a flatten layer before it"
            )
        self.add_param("weights", (input_shape[0], self.units), self.weight_init)
        if self.use_bias:
            self.add_param("bias", (self.units,), self.bias_init)
        return (self.units,)

    def forward(self, x, training=False):
        self.inputs = x
        z = x @ self.params["weights"]
        if self.use_bias:
            z += self.params["bias"]
        return activate(self, z)

    def backward(self, grad_y):
        return self.backward_preactivation(preactivation_grad(self, grad_y))

    def backward_preactivation(self, grad_z):
        """Backward from δ = dL/dz (a loss fused with this layer's activation gives it)."""
        np.matmul(self.inputs.T, grad_z, out=self.grads["weights"])
        if self.use_bias:
            np.sum(grad_z, axis=0, out=self.grads["bias"])
        if not self.needs_input_grad:
            return None
        return grad_z @ self.params["weights"].T


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class ActivationLayer(Layer):
    """a = f(z) element-wise (softmax: over the last axis), with no parameters."""

    activation: object = attrs.field(default="relu", converter=activation_spec)

    def forward(self, x, training=False):
        self.preactivations, self.activations = x, self.activation.forward(x)
        return self.activations

    def backward(self, grad_y):
        return self.activation.backward(self.preactivations, self.activations, grad_y)

    def backward_preactivation(self, grad_z):
        return grad_z
