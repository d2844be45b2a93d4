"""Built-in weight initializers: ``init(shape, rng) -> ndarray``.

Fans come from `framework.fans`: a dense kernel ``(in, out)`` has fan-in ``in``; a conv
kernel ``(kh, kw, in, out)`` has fan-in ``kh·kw·in`` and fan-out ``kh·kw·out``.
"""

import attrs
import numpy as np

from framework import Initializer, fans, hookimpl

positive = attrs.validators.gt(0)


@attrs.define
class Zeros(Initializer):
    def __call__(self, shape, rng):
        return np.zeros(shape)


@attrs.define
class Constant(Initializer):
    """Every value ``value`` (the Deep MNIST network's biases of 0.1, the XOR net's of 0.5)."""

    value: float = attrs.field(default=0.0, converter=float)

    def __call__(self, shape, rng):
        return np.full(shape, self.value)


@attrs.define
class Uniform(Initializer):
    """U(low, high); the default U(0, 1) is numpy's ``rand``, as the hours-studied network of
    *Neural Networks Demystified* draws its weights."""

    low: float = attrs.field(default=0.0, converter=float)
    high: float = attrs.field(default=1.0, converter=float)

    def __attrs_post_init__(self):
        if self.low >= self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")

    def __call__(self, shape, rng):
        return rng.uniform(self.low, self.high, size=shape)


@attrs.define
class Normal(Initializer):
    mean: float = attrs.field(default=0.0, converter=float)
    stddev: float = attrs.field(default=0.05, converter=float, validator=positive)

    def __call__(self, shape, rng):
        return rng.normal(self.mean, self.stddev, size=shape)


def truncated(rng, shape, stddev, mean=0.0):
    """N(mean, stddev²) redrawn wherever a value falls beyond two standard deviations, as
    TensorFlow's ``truncated_normal`` does.  Each round redraws only the rejects (about 5%)."""
    values = rng.standard_normal(size=shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(values) > 2
    return mean + stddev * values


@attrs.define
class TruncatedNormal(Initializer):
    """N(mean, stddev²) cut at ±2 stddev (TensorFlow's Deep MNIST network: ``stddev = 0.1``)."""

    mean: float = attrs.field(default=0.0, converter=float)
    stddev: float = attrs.field(default=0.05, converter=float, validator=positive)

    def __call__(self, shape, rng):
        return truncated(rng, shape, self.stddev, self.mean)


@attrs.define
class GlorotUniform(Initializer):
    """U(±√(6 / (fan_in + fan_out))): keeps activation variance steady forward and back."""

    def __call__(self, shape, rng):
        fan_in, fan_out = fans(shape)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape)


@attrs.define
class GlorotNormal(Initializer):
    """N(0, 2 / (fan_in + fan_out))."""

    def __call__(self, shape, rng):
        fan_in, fan_out = fans(shape)
        return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


@attrs.define
class HeUniform(Initializer):
    """U(±√(6 / fan_in)), for relu layers."""

    def __call__(self, shape, rng):
        fan_in, _ = fans(shape)
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=shape)


@attrs.define
class HeNormal(Initializer):
    """N(0, 2 / fan_in): the XOR net's ``randn · √(2 / n_in)``."""

    def __call__(self, shape, rng):
        fan_in, _ = fans(shape)
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


@hookimpl
def register_initializers():
    return {
        "zeros": Zeros,
        "constant": Constant,
        "uniform": Uniform,
        "normal": Normal,
        "truncated_normal": TruncatedNormal,
        "glorot_uniform": GlorotUniform,
        "glorot_normal": GlorotNormal,
        "he_uniform": HeUniform,
        "he_normal": HeNormal,
    }
