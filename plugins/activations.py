"""Built-in activations.

Each keeps its derivative next to its definition.  ``backward(z, a, grad_a)`` receives the
net input ``z``, the output ``a = f(z)`` and ``dL/da``, and returns ``dL/dz``; where the
derivative is cheaper in terms of ``a`` (sigmoid, tanh, softmax) it uses ``a``.
"""

import functools

import attrs
import numpy as np

from framework import Activation, hookimpl


@functools.cache
def load_expit():
    """scipy's logistic function, imported when a sigmoid first runs: ``scipy.special``
    takes a tenth of a second to import, which `plugnet plugins` and every run without a
    sigmoid need not pay.  Cached, so a step pays a call (0.05 µs), not an import statement
    (0.6 µs)."""
    from scipy.special import expit

    return expit


@attrs.define
class Identity(Activation):
    """a = z;  da/dz = 1."""

    def forward(self, z):
        return z

    def backward(self, z, a, grad_a):
        return grad_a

    def to_onnx(self, builder, x):
        return x


@attrs.define
class Sigmoid(Activation):
    """a = 1 / (1 + e⁻ᶻ);  da/dz = a (1 − a).

    scipy's ``expit`` evaluates it in one pass without overflow for any z (it never forms
    e^(−z) for large negative z) and keeps full relative precision in both tails.
    """

    link = "sigmoid"

    def forward(self, z):
        return load_expit()(z)

    def backward(self, z, a, grad_a):
        return grad_a * a * (1 - a)

    def to_onnx(self, builder, x):
        return builder.add("Sigmoid", [x])


@attrs.define
class Tanh(Activation):
    """a = tanh z;  da/dz = 1 − a²."""

    def forward(self, z):
        return np.tanh(z)

    def backward(self, z, a, grad_a):
        return grad_a * (1 - a * a)

    def to_onnx(self, builder, x):
        return builder.add("Tanh", [x])


@attrs.define
class ReLU(Activation):
    """a = max(z, 0);  da/dz = 1 where z > 0, else 0 (0 at the kink, as is usual)."""

    def forward(self, z):
        return np.maximum(z, 0)

    def backward(self, z, a, grad_a):
        return grad_a * (z > 0)

    def to_onnx(self, builder, x):
        return builder.add("Relu", [x])


@attrs.define
class LeakyReLU(Activation):
    """a = z where z > 0, else α·z;  da/dz = 1 or α."""

    alpha: float = attrs.field(default=0.01, converter=float, validator=attrs.validators.ge(0))

    def forward(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def backward(self, z, a, grad_a):
        return np.where(z > 0, grad_a, self.alpha * grad_a)

    def to_onnx(self, builder, x):
        return builder.add("LeakyRelu", [x], alpha=self.alpha)


@attrs.define
class Softmax(Activation):
    """aᵢ = e^(zᵢ − max z) / Σⱼ e^(zⱼ − max z) over the last axis.

    Subtracting the maximum changes nothing mathematically and keeps every exponent ≤ 0, so
    nothing overflows (the log-sum-exp trick).  The Jacobian is diag(a) − a aᵀ, so
    dL/dz = a ⊙ (dL/da − Σⱼ aⱼ dL/daⱼ).  With cross-entropy the trainer skips this and uses
    the fused gradient a − y instead, exact even where aᵢ underflows to 0.
    """

    link = "softmax"

    def forward(self, z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        e /= e.sum(axis=-1, keepdims=True)
        return e

    def backward(self, z, a, grad_a):
        return a * (grad_a - np.sum(grad_a * a, axis=-1, keepdims=True))

    def to_onnx(self, builder, x):
        return builder.add("Softmax", [x], axis=-1)


@hookimpl
def register_activations():
    return {
        "identity": Identity,
        "sigmoid": Sigmoid,
        "tanh": Tanh,
        "relu": ReLU,
        "leaky_relu": LeakyReLU,
        "softmax": Softmax,
    }
