"""Built-in activations.

Each keeps its derivative next to its definition.  ``backward(z, a, grad_a)`` receives the
net input ``z``, the output ``a = f(z)`` and ``dL/da``, and returns ``dL/dz``; where the
derivative is cheaper in terms of ``a`` (sigmoid, tanh, softmax) it uses ``a``.
"""

import functools
import threading

import attrs
import numpy as np

from framework import Activation, hookimpl
from framework.threads import split


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
    only the density term, not erf again.  erf is scipy's in float64; in float32 it is the
    rational function `erf_into` (within 4.5e-7 of erf), and the ten-odd passes over the
    array run block by block (`in_blocks`), so each block stays in the cache throughout.
    """

    approximate: str = attrs.field(default="none", validator=approximation)
    _kept: tuple = attrs.field(default=(None, None), init=False, repr=False, eq=False)

    def forward(self, z):
        a, kept = np.empty_like(z), np.empty_like(z)
        if self.approximate == "tanh":
            in_blocks(gelu_tanh_forward, z, kept, a)
        elif z.dtype == np.float32:
            in_blocks(gelu_forward, z, kept, a)
        else:  # float64: scipy's erf, exact
            np.multiply(z, SQRT_HALF, out=kept)
            load_erf()(kept, out=kept)
            kept += 1
            kept *= 0.5  # Φ(z)
            np.multiply(z, kept, out=a)
        self._kept = (z, kept)
        return a

    def backward(self, z, a, grad_a):
        held, kept = self._kept
        if held is not z:  # not the z of the last forward: compute what it kept
            self.forward(z)
            kept = self._kept[1]
        grad_z = np.empty_like(grad_a)
        backward = gelu_tanh_backward if self.approximate == "tanh" else gelu_backward
        in_blocks(backward, z, kept, grad_a, grad_z)
        return grad_z

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
INV_SQRT_2PI = float(1 / np.sqrt(2 * np.pi))


@functools.cache
def load_erf():
    """scipy's erf, imported when a GELU first runs (as `load_expit`)."""
    from scipy.special import erf

    return erf


# erf(x) ≈ x·P(x²)/Q(x²) on [−4, 4] (±1 beyond): the float32 approximation of Eigen and
# XLA, within 4.5e-7 of erf everywhere (float32's spacing near 1: 6e-8).  scipy's erf is
# exact but evaluates each element on its own, 4x slower on a GPT's MLP.
ERF_NUMERATOR = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
ERF_DENOMINATOR = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)


def erf_into(x, out, scratch):
    """erf(x) into ``out`` (float32 blocks; ``out`` may be ``x``) by Horner's rule, with
    three scratch blocks of x's size."""
    t = x.dtype.type
    square, numerator, denominator = scratch
    np.clip(x, t(-4), t(4), out=out)
    np.multiply(out, out, out=square)
    np.multiply(square, t(ERF_NUMERATOR[0]), out=numerator)
    numerator += t(ERF_NUMERATOR[1])
    for coefficient in ERF_NUMERATOR[2:]:
        numerator *= square
        numerator += t(coefficient)
    np.multiply(square, t(ERF_DENOMINATOR[0]), out=denominator)
    denominator += t(ERF_DENOMINATOR[1])
    for coefficient in ERF_DENOMINATOR[2:]:
        denominator *= square
        denominator += t(coefficient)
    out *= numerator
    out /= denominator


def gelu_forward(z, cdf, a, scratch):
    t = z.dtype.type
    np.multiply(z, t(SQRT_HALF), out=cdf)
    erf_into(cdf, cdf, scratch)
    cdf += 1
    cdf *= t(0.5)  # Φ(z)
    np.multiply(z, cdf, out=a)  # z·Φ(z)


def gelu_backward(z, cdf, grad_a, grad_z, scratch):
    t = z.dtype.type
    np.multiply(z, z, out=grad_z)
    grad_z *= t(-0.5)
    np.exp(grad_z, out=grad_z)
    grad_z *= t(INV_SQRT_2PI)  # φ(z)
    grad_z *= z
    grad_z += cdf  # Φ(z) + z·φ(z)
    grad_z *= grad_a


def gelu_tanh_forward(z, tanh_u, a, scratch):
    t = z.dtype.type
    np.multiply(z, z, out=tanh_u)  # u = √(2/π)·z·(1 + 0.044715·z²)
    tanh_u *= t(0.044715)
    tanh_u += 1
    tanh_u *= z
    tanh_u *= t(SQRT_2_OVER_PI)
    np.tanh(tanh_u, out=tanh_u)
    np.add(tanh_u, 1, out=a)
    a *= t(0.5)
    a *= z


def gelu_tanh_backward(z, tanh_u, grad_a, grad_z, scratch):
    t = z.dtype.type
    (slope, _, _) = scratch
    np.multiply(z, z, out=slope)  # √(2/π)(1 + 3·0.044715·z²)·z
    slope *= t(3 * 0.044715)
    slope += 1
    slope *= t(SQRT_2_OVER_PI)
    slope *= z
    np.multiply(tanh_u, tanh_u, out=grad_z)
    np.subtract(1, grad_z, out=grad_z)  # 1 − T²
    grad_z *= slope
    grad_z += tanh_u
    grad_z += 1
    grad_z *= t(0.5)
    grad_z *= grad_a


# Elements per block of `in_blocks`: 64k float32 blocks measured fastest for GELU's passes
# (1.3 ms against 4.4 ms whole-array for erf over a (768, 512) batch, one core).
BLOCK = 65536
_scratch = threading.local()


def in_blocks(function, *arrays):
    """``function(*blocks, scratch)`` on consecutive blocks of the flattened (contiguous,
    same-sized) ``arrays``, shared out over `framework.threads.split`'s threads; scratch is
    three blocks of this thread's own."""
    flat = [a.reshape(-1) for a in arrays]
    size = flat[0].size

    def part(start, stop):
        held = getattr(_scratch, "blocks", None)
        if held is None or held[0].dtype != flat[0].dtype:
            held = _scratch.blocks = [np.empty(BLOCK, flat[0].dtype) for _ in range(3)]
        for low in range(start, stop, BLOCK):
            high = min(low + BLOCK, stop)
            function(*(a[low:high] for a in flat), [b[: high - low] for b in held])

    split(part, size, minimum=BLOCK)


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
