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


def approximation(instance, attribute, value):
    if value not in ("none", "tanh"):
        raise ValueError(f'\'approximate\' must be "none" or "tanh", got {value!r}')


@attrs.define
class GELU(Activation):
    """The Gaussian error linear unit, PyTorch's ``nn.GELU(approximate=...)``.

    ``approximate="none"``:  a = z·Φ(z),  Φ(z) = ½(1 + erf(z/√2)) the normal CDF;
        da/dz = Φ(z) + z·φ(z),  φ(z) = e^(−z²/2)/√(2π) the normal density.
    ``approximate="tanh"``:  a = ½z(1 + tanh u),  u = √(2/π)·(z + 0.044715·z³);
        da/dz = ½(1 + tanh u) + ½z·(1 − tanh² u)·√(2/π)·(1 + 3·0.044715·z²).

    Forward keeps Φ(z) (or tanh u) for the z it was given, so backward on that z computes
    only the density term, not erf again.
    """

    approximate: str = attrs.field(default="none", validator=approximation)
    _kept: tuple = attrs.field(default=(None, None), init=False, repr=False, eq=False)

    def forward(self, z):
        t = z.dtype.type
        if self.approximate == "tanh":
            kept = z * z  # u = √(2/π)·z·(1 + 0.044715·z²)
            kept *= t(0.044715)
            kept += 1
            kept *= z
            kept *= t(SQRT_2_OVER_PI)
            np.tanh(kept, out=kept)  # tanh u
            a = kept + 1
            a *= t(0.5)
        else:
            kept = z * t(SQRT_HALF)
            load_erf()(kept, out=kept)
            kept += 1
            kept *= t(0.5)  # Φ(z)
            a = kept.copy()
        a *= z
        self._kept = (z, kept)
        return a

    def backward(self, z, a, grad_a):
        held, kept = self._kept
        if held is not z:
            self.forward(z)
            kept = self._kept[1]
        t = z.dtype.type
        if self.approximate == "tanh":
            # ½(1 + T) + ½z(1 − T²)·√(2/π)(1 + 0.134145 z²), T = tanh u
            slope = z * z
            slope *= t(3 * 0.044715)
            slope += 1
            slope *= t(SQRT_2_OVER_PI)
            slope *= z
            square = kept * kept
            np.subtract(1, square, out=square)
            slope *= square
            slope += kept
            slope += 1
            slope *= t(0.5)
        else:
            slope = z * z  # Φ(z) + z·φ(z)
            slope *= t(-0.5)
            np.exp(slope, out=slope)
            slope *= t(1 / np.sqrt(2 * np.pi))
            slope *= z
            slope += kept
        slope *= grad_a
        return slope

    def to_onnx(self, builder, x):
        """ONNX (opset 17 has no Gelu): x·½(1 + erf(x/√2)) as Mul, Erf, Add, Mul; the tanh
        form as its formula in Mul, Add, Tanh."""
        half = builder.constant(0.5, "half")
        one = builder.constant(1.0, "one")
        if self.approximate == "tanh":
            cube = builder.add("Mul", [builder.add("Mul", [x, x]), x])
            inner = builder.add(
                "Add", [x, builder.add("Mul", [cube, builder.constant(0.044715, "c")])]
            )
            u = builder.add("Mul", [inner, builder.constant(SQRT_2_OVER_PI, "sqrt_2_over_pi")])
            cdf = builder.add("Mul", [builder.add("Add", [builder.add("Tanh", [u]), one]), half])
        else:
            scaled = builder.add("Mul", [x, builder.constant(SQRT_HALF, "sqrt_half")])
            cdf = builder.add(
                "Mul", [builder.add("Add", [builder.add("Erf", [scaled]), one]), half]
            )
        return builder.add("Mul", [x, cdf])


SQRT_HALF = float(np.sqrt(0.5))
SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))


@functools.cache
def load_erf():
    """scipy's erf, imported when a GELU first runs (as `load_expit`)."""
    from scipy.special import erf

    return erf


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
        "gelu": GELU,
    }
