"""Merge layers: ``add``, ``multiply`` and ``concatenate`` join the outputs of several layers.

They are what makes a model a graph rather than a chain: a residual connection is an
``add`` of a block's input and its output, a two-branch network a ``concatenate``.  Each
takes a list of inputs (``multi_input``), so ``backward`` returns one gradient per input,
and the model adds up the gradients of a tensor that several layers read.  Each takes an
optional ``activation`` applied to the merged value (``add`` with ``relu`` is the usual end
of a residual block).
"""

import attrs
import numpy as np

from framework import Layer, activate, activation_spec, preactivation_grad


def same_shapes(layer, shapes):
    """Element-wise merges need inputs of one shape; name every shape when they differ."""
    shapes = [tuple(s) for s in shapes]
    if len(shapes) < 2:
        raise ValueError(f"{layer.name} merges two or more inputs, got {len(shapes)}")
    if len(set(shapes)) > 1:
        listed = ", ".join("(None" + "".join(f", {n}" for n in s) + ")" for s in shapes)
        raise ValueError(f"inputs of shapes {listed} do not merge: {layer.name} needs equal shapes")
    return shapes[0]


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Add(Layer):
    """z = x₁ + x₂ + … + xₖ;  a = f(z).

    Backward, from g = dL/da:  δ = f'(z) ⊙ g;  dL/dxᵢ = δ for every i (a sum passes its
    gradient unchanged to each term).
    """

    splits_batch = True  # no batch statistics, no random draws

    check_cases = [{"params": {"activation": "tanh"}, "input_shape": [(4,), (4,)]}]
    multi_input = True

    activation: object = attrs.field(default=None, converter=activation_spec)

    def build(self, input_shape):
        self.count = len(input_shape)
        return same_shapes(self, input_shape)

    def forward(self, xs, training=False):
        z = xs[0] + xs[1]
        for x in xs[2:]:
            z += x
        return activate(self, z)

    def backward(self, grad_y):
        return self.backward_preactivation(preactivation_grad(self, grad_y))

    def backward_preactivation(self, grad_z):
        if not self.needs_input_grad:
            return None
        return [grad_z] * self.count

    def to_onnx(self, builder, xs):
        """ONNX: Sum of the inputs, then the activation's nodes."""
        return builder.activation(self.activation, builder.add("Sum", xs))


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Multiply(Layer):
    """z = x₁ ⊙ x₂ ⊙ … ⊙ xₖ (element-wise);  a = f(z).

    Backward, from g = dL/da:  δ = f'(z) ⊙ g;  dL/dxᵢ = δ ⊙ ∏_{j≠i} xⱼ (the product of the
    other factors, computed without dividing by xᵢ, which may be zero).
    """

    splits_batch = True  # no batch statistics, no random draws

    check_cases = [{"params": {}, "input_shape": [(3, 2), (3, 2), (3, 2)]}]
    multi_input = True

    activation: object = attrs.field(default=None, converter=activation_spec)

    def build(self, input_shape):
        return same_shapes(self, input_shape)

    def forward(self, xs, training=False):
        self.inputs = xs
        z = xs[0] * xs[1]
        for x in xs[2:]:
            z *= x
        return activate(self, z)

    def backward(self, grad_y):
        return self.backward_preactivation(preactivation_grad(self, grad_y))

    def backward_preactivation(self, grad_z):
        if not self.needs_input_grad:
            return None
        xs = self.inputs
        # before[i] = x₀⋯xᵢ₋₁ and after[i] = xᵢ₊₁⋯xₖ₋₁, so each product of the others is one
        # multiplication: 3(k−2) products for k inputs instead of k(k−2).
        before = [None] * len(xs)
        running = grad_z
        for i, x in enumerate(xs):
            before[i] = running
            running = running * x
        grads = [None] * len(xs)
        running = None
        for i in range(len(xs) - 1, -1, -1):
            grads[i] = before[i] if running is None else before[i] * running
            running = xs[i] if running is None else running * xs[i]
        return grads

    def to_onnx(self, builder, xs):
        """ONNX: a chain of Mul, then the activation's nodes."""
        z = xs[0]
        for x in xs[1:]:
            z = builder.add("Mul", [z, x])
        return builder.activation(self.activation, z)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Concatenate(Layer):
    """z = [x₁, x₂, …, xₖ] joined along ``axis``;  a = f(z).

    ``axis`` counts the batch axis as PyTorch's ``cat`` and Keras do (``-1``, the default,
    is the features or channels; ``1`` the first axis of a sample); the batch axis itself
    cannot be joined.  Inputs must agree on every other axis.

    Backward, from g = dL/da:  δ = f'(z) ⊙ g;  dL/dxᵢ = the slice of δ where xᵢ was placed.
    """

    splits_batch = True  # no batch statistics, no random draws

    check_cases = [
        {"params": {}, "input_shape": [(3,), (2,)]},
        {"params": {"axis": 1, "activation": "sigmoid"}, "input_shape": [(2, 3), (1, 3)]},
    ]
    multi_input = True

    axis: int = attrs.field(default=-1, validator=attrs.validators.instance_of(int))
    activation: object = attrs.field(default=None, converter=activation_spec)

    def build(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 2:
            raise ValueError(f"{self.name} joins two or more inputs, got {len(shapes)}")
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"inputs of shapes {shapes} have different numbers of axes")
        rank = ranks.pop() + 1  # with the batch axis
        if not -rank <= self.axis < rank or self.axis in (0, -rank):
            raise ValueError(
                f"axis {self.axis} is out of range for inputs (None, ...) of {rank} axes: "
                f"give 1..{rank - 1} or -1..-{rank - 1} (axis 0 is the batch)"
            )
        self.sample_axis = (self.axis % rank) - 1  # the axis within one sample
        others = {s[: self.sample_axis] + s[self.sample_axis + 1 :] for s in shapes}
        if len(others) > 1:
            raise ValueError(f"inputs of shapes {shapes} differ on an axis other than {self.axis}")
        self.splits = np.cumsum([s[self.sample_axis] for s in shapes])[:-1]
        out = list(shapes[0])
        out[self.sample_axis] = sum(s[self.sample_axis] for s in shapes)
        return tuple(out)

    def forward(self, xs, training=False):
        return activate(self, np.concatenate(xs, axis=self.sample_axis + 1))

    def backward(self, grad_y):
        return self.backward_preactivation(preactivation_grad(self, grad_y))

    def backward_preactivation(self, grad_z):
        if not self.needs_input_grad:
            return None
        return np.split(grad_z, self.splits, axis=self.sample_axis + 1)

    def to_onnx(self, builder, xs):
        """ONNX: Concat along the same axis (batch axis counted), then the activation."""
        return builder.activation(
            self.activation, builder.add("Concat", xs, axis=self.sample_axis + 1)
        )
