"""Layers that only rearrange their input: flatten and reshape."""

import math

import attrs

from framework import Layer


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Flatten(Layer):
    """(N, d₁, d₂, …) → (N, d₁·d₂·…); backward reshapes the gradient back."""

    splits_batch = True  # no batch statistics, no random draws

    def build(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self.input_batch_shape = x.shape
        self.activations = x.reshape(len(x), -1)
        return self.activations

    def backward(self, grad_y):
        return grad_y.reshape(self.input_batch_shape)

    def to_onnx(self, builder, x):
        """ONNX: Flatten from axis 1; values stay NHWC, so the order is numpy's here."""
        return builder.add("Flatten", [x], axis=1)


def shape_tuple(value):
    shape = tuple(value)
    if not shape or any(
        isinstance(n, bool) or not isinstance(n, int) or (n < 1 and n != -1) for n in shape
    ):
        raise ValueError(
            f"target_shape must be a list of positive integers (one may be -1), got {value!r}"
        )
    if shape.count(-1) > 1:
        raise ValueError(f"target_shape may have at most one -1, got {value!r}")
    return shape


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Reshape(Layer):
    """(N, …) → (N, *target_shape), the batch axis untouched; one axis may be -1."""

    splits_batch = True  # no batch statistics, no random draws

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"params": {"target_shape": (3, -1)}, "input_shape": (2, 6)}]

    target_shape: tuple = attrs.field(converter=shape_tuple)

    def build(self, input_shape):
        size, known = math.prod(input_shape), math.prod(n for n in self.target_shape if n != -1)
        shape = tuple(size // known if n == -1 else n for n in self.target_shape)
        if math.prod(shape) != size:
            raise ValueError(
                f"cannot reshape {math.prod(input_shape)} values per sample into {self.target_shape}"
            )
        self.resolved_shape = shape
        return shape

    def forward(self, x, training=False):
        self.input_batch_shape = x.shape
        self.activations = x.reshape((len(x), *self.resolved_shape))
        return self.activations

    def backward(self, grad_y):
        return grad_y.reshape(self.input_batch_shape)

    def to_onnx(self, builder, x):
        """ONNX: Reshape to (batch, *target_shape), the batch axis left to ONNX (-1)."""
        shape = builder.constant([-1, *self.resolved_shape], "shape")
        return builder.add("Reshape", [x, shape])
