"""An example third-party plugnet plugin.

It registers a ``swish`` activation and a ``gaussian_noise`` layer through the same hooks the
built-ins use.  Install it (``pip install examples/plugin``) and both names work in any config:

    layers = [{ type = "dense", units = 16, activation = "swish" }, ...]

Each also has a ``to_onnx`` method, so models using them export with ``plugnet export``.
"""

import attrs
import numpy as np

from framework import Activation, Layer, hookimpl


@attrs.define
class Swish(Activation):
    """``a = z · σ(βz)``; ``da/dz = σ(βz) + βz · σ(βz)(1 − σ(βz))``."""

    beta: float = attrs.field(default=1.0, converter=float)

    def _sigmoid(self, z):
        # exp of a non-positive number never overflows, whatever the sign of z
        e = np.exp(-np.abs(self.beta * z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))

    def forward(self, z):
        return z * self._sigmoid(z)

    def backward(self, z, a, grad_a):
        s = self._sigmoid(z)
        return grad_a * (s + self.beta * z * s * (1 - s))

    def to_onnx(self, builder, x):
        """ONNX (for ``plugnet export``): x · Sigmoid(β·x), three nodes."""
        scaled = builder.add("Mul", [x, builder.constant(self.beta, "beta")])
        return builder.add("Mul", [x, builder.add("Sigmoid", [scaled])])


@attrs.define
class GaussianNoise(Layer):
    """Adds ``N(0, stddev²)`` noise while training; the identity in evaluation."""

    stddev: float = attrs.field(default=0.1, converter=float)

    def build(self, input_shape):
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.stddev == 0:
            return x
        return x + self.rng.normal(0.0, self.stddev, size=x.shape).astype(x.dtype)

    def backward(self, grad_y):
        return grad_y

    def to_onnx(self, builder, x):
        """ONNX (for ``plugnet export``): an exported model predicts, so no noise: Identity."""
        return builder.add("Identity", [x])


@hookimpl
def register_activations():
    return {"swish": Swish}


@hookimpl
def register_layers():
    return {"gaussian_noise": GaussianNoise}
