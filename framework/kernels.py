"""Compiled kernels: loops over numbers, written in Python and compiled by numba, for the
work that numpy can only do as many short calls or many passes over memory.

A layer keeps its numpy form as the readable reference and adds a kernel for the hot path
where one measured faster; tests hold the two equal.  The recurrent step is the case in
point: an LSTM step at 32 units is a few thousand numbers, and numpy spends its time on a
dozen calls per step, not on arithmetic.  A kernel runs the whole loop over time steps in
one call, each step one matrix product (BLAS, through numba's ``np.dot``) and one pass that
forms every gate, the cell and the state.

`kernel` makes a function a kernel.  It stays plain Python until its first call, so that
importing a plugin costs nothing (numba itself takes half a second to import); then numba
compiles it with these options, and why:

- ``nogil``: a kernel releases the interpreter's lock, so the trainer's batch split
  (`framework.batch_split`) runs two of them side by side on two cores;
- ``error_model="numpy"``: Python's model checks every division for a zero divisor, and
  that branch keeps the compiler from vectorising the loop (an LSTM's gates: 4 ns a number
  with the check, under 1 without);
- ``fastmath`` in part: contractions into fused multiply-adds, the sign of zero ignored;
  not reassociation (sums stay in the order the
  code writes them, so a result does not depend on the vector width of the machine), nor
  "no NaN" (a NaN must reach the loss, where `terminate_on_nan` sees it);
- ``cache=True``: the machine code is kept on disk (``__pycache__`` beside the source, or
  numba's cache directory where that is read-only; ``NUMBA_CACHE_DIR`` moves it), so only a
  first run compiles, a second or two per kernel.  numba checks a cached kernel against
  its own source file only: after editing `exp` below, delete the ``*.nbi`` / ``*.nbc``
  files (installing a new version replaces every file, so users never meet this).

Inside a kernel, `exp` is e^x: for float32 a polynomial the compiler vectorises, as numpy's
own ``exp`` is (Cephes' ``expf``: Cody and Waite's reduction x = n·ln 2 + r, a degree-7
polynomial for e^r, 2^n set in the exponent bits; within 2 ulp, arguments clamped to
[−87, 88] so the result is always a normal number, a NaN kept); for float64 the C
library's ``exp``.  numba's own ``math.exp`` on float32 is a scalar call: 2.7 ns a number against 0.35 ns for
this form and 1.3 ns for numpy's ``exp`` (2-core AMD EPYC).

``PLUGNET_KERNELS=0`` in the environment (or `use_kernels(False)`) runs every layer's numpy
reference instead; so does a machine without numba.  `enabled` says which applies.
"""

import contextlib
import functools
import importlib.util
import math
import os
import threading

__all__ = ["enabled", "exp", "kernel", "use_kernels"]

OPTIONS = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "fastmath": {"contract", "nsz"},
}

_switched = None  # use_kernels' setting, None: the environment decides
_loading = threading.Lock()  # numba is loaded, and `exp` registered, once


def enabled():
    """Whether kernels run: numba importable and not switched off."""
    if _switched is not None:
        return _switched and _numba_available()
    return os.environ.get("PLUGNET_KERNELS", "1") != "0" and _numba_available()


@contextlib.contextmanager
def use_kernels(on):
    """Within the block, run kernels (true) or every layer's numpy reference (false)."""
    global _switched
    before, _switched = _switched, bool(on)
    try:
        yield
    finally:
        _switched = before


@functools.cache
def _numba_available():
    """Whether numba is installed, without importing it: a layer asks before deciding, and
    numba loads only when a kernel first runs."""
    return importlib.util.find_spec("numba") is not None


def exp(x):
    """e^x; inside a kernel, the vectorisable form for float32 (see the module)."""
    return math.exp(x)


class Kernel:
    """A function compiled by numba on its first call (see the module for the options)."""

    def __init__(self, function, reordered_sums=False):
        self.function = function
        self.options = dict(OPTIONS)
        if reordered_sums:
            self.options["fastmath"] = OPTIONS["fastmath"] | {"reassoc"}
        self.compiled = None
        self.lock = threading.Lock()
        functools.update_wrapper(self, function)

    def __call__(self, *args):
        compiled = self.compiled
        if compiled is None:
            compiled = self.compile()
        return compiled(*args)

    def compile(self):
        with self.lock:  # two batch-split threads may call first at once
            if self.compiled is None:
                with _loading:
                    numba = _load_numba()
                self.compiled = numba.njit(**self.options)(self.function)
        return self.compiled


def kernel(function=None, *, reordered_sums=False):
    """Make ``function`` a kernel: compiled by numba when first called.

    ``reordered_sums=True`` lets the compiler add a loop's terms in the order that suits
    the vector registers (8 partial sums on AVX2, 16 on AVX-512): the only way it
    vectorises a sum, which otherwise costs a dependent addition per term (a row of 128
    float32 numbers: 0.09 µs in order, 0.013 µs reordered).  The result then depends on
    the machine's vector width (on nothing else: the same machine gives the same result,
    so resume stays exact)."""
    if function is None:
        return functools.partial(kernel, reordered_sums=reordered_sums)
    return Kernel(function, reordered_sums)


@functools.cache
def _load_numba():
    """numba, with `exp`'s compiled forms registered (once, before the first kernel)."""
    import numba
    import numpy as np
    from llvmlite import ir
    from numba.extending import intrinsic, overload

    @intrinsic
    def float_from_bits(typingctx, bits):
        """The float32 whose bits are the int32 ``bits`` (a reinterpretation, no conversion)."""

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return numba.types.float32(numba.types.int32), codegen

    f32 = np.float32
    log2e, ln2_high, ln2_low = f32(1.4426950408889634), f32(0.693359375), f32(-2.12194440e-4)
    low, high, rounding = f32(-87.0), f32(88.0), f32(12582912.0)  # 1.5·2²³
    # Cephes expf's polynomial for (e^r − 1 − r) / r², highest power first.
    coefficients = tuple(
        f32(c)
        for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                  1.6666665459e-1, 5.0000001201e-1)
    )  # fmt: skip
    c5, c4, c3, c2, c1, c0 = coefficients
    one = f32(1.0)

    def exp_float32(x):
        x = high if x > high else x  # comparisons that a NaN fails: it passes through
        x = low if x < low else x
        # n = round(x / ln 2) by adding and subtracting 1.5·2²³ (no reassociation undoes it)
        n = (x * log2e + rounding) - rounding
        r = x - n * ln2_high - n * ln2_low  # ln 2 in two parts: r exact to float32
        p = ((((c5 * r + c4) * r + c3) * r + c2) * r + c1) * r + c0
        return (p * r * r + r + one) * float_from_bits((numba.int32(n) + 127) << 23)

    @overload(exp, jit_options={"fastmath": OPTIONS["fastmath"]})
    def exp_overload(x):
        if x == numba.types.float32:
            return exp_float32
        return lambda x: math.exp(x)

    return numba
