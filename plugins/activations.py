"""Built-in activations.

Each keeps its derivative next to its definition.  ``backward(z, a, grad_a)`` receives the
net input ``z``, the output ``a = f(z)`` and ``dL/da``, and returns ``dL/dz``; where the
derivative is cheaper in terms of ``a`` (sigmoid, tanh, softmax) it uses ``a``.
"""

import functools
import threading

import attrs
import numpy as np

from framework import Activation, hookimpl, kernels
from framework.kernels import exp, kernel
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

    Forward keeps da/dz for the z it was given (the exact form; tanh u for the tanh form),
    so backward on that z is one product, dL/dz = da/dz ⊙ dL/da.  Φ is scipy's erf in
    float64; in float32 it is `gelu_forward`'s formula (Abramowitz and Stegun 7.1.26, within
    1.5e-7 of Φ), which shares its e^(−z²/2) with φ, and the passes run block by block
    (`in_blocks`), each block staying in the cache, shared out over `framework.threads`;
    with `framework.kernels` on, the same formula is one compiled pass (`gelu_kernel`):
    0.35 ms against 1.2 ms for the forward pass of a GPT's (768, 512) float32 batch, one
    thread.
    Measured against the earlier float32 path (Eigen's rational erf, 28 passes forward and
    Φ kept; 7 passes backward) on a GPT's (768, 512) float32 batch, forward and backward,
    medians, 2-core AMD EPYC: 2.24–2.32 ms against 1.69–1.83 ms on one thread, 1.95–3.0 ms
    against 1.21–1.70 ms on two.
    """

    approximate: str = attrs.field(default="none", validator=approximation)
    _kept: tuple = attrs.field(default=(None, None), init=False, repr=False, eq=False)

    def forward(self, z):
        a, kept = np.empty_like(z), self._kept[1]
        if kept is None or kept.shape != z.shape or kept.dtype != z.dtype:
            kept = np.empty_like(z)  # else the last forward's, reused: no fresh pages to fault in
        if self.approximate == "tanh":
            in_blocks(gelu_tanh_forward, z, kept, a)
        elif z.dtype == np.float32 and kernels.enabled():
            gelu_kernel(np.ascontiguousarray(z).reshape(-1), a.reshape(-1), kept.reshape(-1))
        elif z.dtype == np.float32:
            in_blocks(gelu_forward, z, kept, a)
        else:  # float64: scipy's erf, exact
            cdf = np.multiply(z, SQRT_HALF)
            load_erf()(cdf, out=cdf)
            cdf += 1
            cdf *= 0.5  # Φ(z)
            np.multiply(z, cdf, out=a)
            np.multiply(z, z, out=kept)
            kept *= -0.5
            np.exp(kept, out=kept)
            kept *= INV_SQRT_2PI  # φ(z)
            kept *= z
            kept += cdf  # da/dz = Φ(z) + z·φ(z)
        self._kept = (z, kept)
        return a

    def twin(self):
        """A copy that keeps its own da/dz (forward writes into the last one's array)."""
        other = super().twin()
        other._kept = (None, None)
        return other

    def backward(self, z, a, grad_a):
        held, kept = self._kept
        if held is not z:  # not the z of the last forward: compute what it kept
            self.forward(z)
            kept = self._kept[1]
        grad_z = np.empty_like(grad_a)
        if self.approximate == "tanh":
            in_blocks(gelu_tanh_backward, z, kept, grad_a, grad_z)
        else:  # one pass, on one thread: split, it measured slower (0.08 ms against 0.25)
            np.multiply(kept, grad_a, out=grad_z)  # da/dz ⊙ dL/da
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


# Abramowitz and Stegun 7.1.26: for x ≥ 0, erf(x) = 1 − (a₁s + a₂s² + … + a₅s⁵)·e^(−x²)
# with s = 1/(1 + p·x), within 1.5e-7 of erf.  With x = |z|/√2 the upper normal tail is
# Q(|z|) = ½(1 − erf x) = ½√(2π)·(a₁s + … + a₅s⁵)·φ(z): the same φ(z) as the derivative's.
TAIL_P = 0.3275911 * SQRT_HALF  # s = 1/(1 + TAIL_P·|z|) = (1/TAIL_P) / (1/TAIL_P + |z|)
TAIL_COEFFICIENTS = tuple(  # a₅ … a₁, times ½√(2π)
    np.float32(c * 0.5 * np.sqrt(2 * np.pi))
    for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
)
SIGN_BIT = np.uint32(0x80000000)  # a float32's sign bit
F32 = {  # gelu_forward's other constants, made float32 once
    "half": np.float32(0.5),
    "minus_half": np.float32(-0.5),
    "inv_sqrt_2pi": np.float32(INV_SQRT_2PI),
    "inv_p": np.float32(1 / TAIL_P),
}


def gelu_forward(z, slope, a, scratch):
    """a = z·Φ(z) and slope = Φ(z) + z·φ(z) for float32 blocks, Φ from the upper tail
    Q(|z|) = Σₖ cₖ sᵏ · φ(z) (Φ = Q for z < 0, 1 − Q otherwise): 23 passes, φ's exponential
    shared by Φ and the slope.  Measured against the earlier float32 form (Eigen's rational
    erf, 28 passes forward, Φ kept and 7 passes backward): see `GELU`."""
    c = F32
    density, s, sign = scratch
    np.multiply(z, z, out=density)
    density *= c["minus_half"]
    np.exp(density, out=density)
    density *= c["inv_sqrt_2pi"]  # φ(z)
    np.abs(z, out=s)
    s += c["inv_p"]
    np.divide(c["inv_p"], s, out=s)  # s = 1/(1 + p·|z|/√2)
    np.multiply(s, TAIL_COEFFICIENTS[0], out=a)
    for coefficient in TAIL_COEFFICIENTS[1:]:
        a += coefficient
        a *= s  # Horner's rule: Σₖ cₖ sᵏ
    a *= density  # Q(|z|), the upper tail
    np.subtract(c["half"], a, out=a)  # ½ − Q(|z|) ≥ 0
    # copysign(a, z) as two integer passes on the float bits (numpy's copysign is not
    # vectorised: 82 µs a 128k block, against 30 µs for the two)
    np.bitwise_and(z.view(np.uint32), SIGN_BIT, out=sign.view(np.uint32))
    np.bitwise_or(a.view(np.uint32), sign.view(np.uint32), out=a.view(np.uint32))
    a += c["half"]  # Φ(z) = ½ + sign(z)·(½ − Q(|z|))
    np.multiply(z, density, out=slope)
    slope += a  # Φ(z) + z·φ(z)
    a *= z  # z·Φ(z)


TAIL_5, TAIL_4, TAIL_3, TAIL_2, TAIL_1 = TAIL_COEFFICIENTS
HALF, MINUS_HALF = np.float32(0.5), np.float32(-0.5)
INV_SQRT_2PI_F32, INV_P = np.float32(INV_SQRT_2PI), np.float32(1 / TAIL_P)


@kernel
def gelu_kernel(z, a, slope):
    """`gelu_forward`'s formula in one compiled pass over flat float32 arrays
    (`framework.kernels`): a = z·Φ(z), slope = Φ(z) + z·φ(z), Φ from the upper tail."""
    one = np.float32(1)
    for k in range(z.size):
        x = z[k]
        density = INV_SQRT_2PI_F32 * exp(MINUS_HALF * x * x)  # φ(z)
        s = INV_P / (INV_P + abs(x))  # 1/(1 + p·|z|/√2)
        tail = (((((TAIL_5 * s + TAIL_4) * s + TAIL_3) * s + TAIL_2) * s + TAIL_1) * s) * density
        cdf = one - tail if x >= 0 else tail  # Φ(z) = 1 − Q(|z|), or Q(|z|) for z < 0
        a[k] = x * cdf
        slope[k] = cdf + x * density


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


# Elements per block of `in_blocks`.  GELU's float32 forward over a GPT's (768, 512) batch,
# by block size (median ms; 2-core AMD EPYC, 1 MiB L2 a core): 8k 2.65, 16k 2.26, 32k 1.88,
# 64k 1.74, 128k 1.68, 192k 1.87 on one thread; split over two, 8k 3.72, 32k 1.63, 64k
# 1.37, 128k 1.20.  Small blocks lose on two threads: each numpy call takes the GIL, and
# two threads making many short calls wait on each other for it.
BLOCK = 131072
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
