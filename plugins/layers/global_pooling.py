"""Global pooling: one value per channel from a whole NHWC image, ``(N, H, W, C) -> (N, C)``.

The usual end of a convolutional network since ResNet: instead of flattening the last
feature maps into a dense layer (whose weights grow with the image), average or take the
maximum of each channel over every position.
"""

import attrs
import numpy as np

from framework import Layer


def image_shape(layer, input_shape):
    if len(input_shape) != 3:
        raise ValueError(
            f"{layer.name} expects images shaped (height, width, channels), got input shape "
            f"(None, {', '.join(map(str, input_shape))})"
        )
    return tuple(input_shape)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class GlobalAvgPool2D(Layer):
    """yₙ꜀ = (1/HW) Σᵢⱼ xₙᵢⱼ꜀;  backward: dL/dxₙᵢⱼ꜀ = (1/HW) · dL/dyₙ꜀ at every position."""

    splits_batch = True  # no batch statistics, no random draws

    check_cases = [{"params": {}, "input_shape": (3, 2, 4)}]

    def build(self, input_shape):
        height, width, channels = image_shape(self, input_shape)
        self.positions = height * width
        return (channels,)

    def forward(self, x, training=False):
        self.image = x.shape[1:]
        return x.mean(axis=(1, 2))

    def backward(self, grad_y):
        if not self.needs_input_grad:
            return None
        share = grad_y / grad_y.dtype.type(self.positions)
        return np.broadcast_to(share[:, None, None, :], (len(grad_y), *self.image)).copy()

    def to_onnx(self, builder, x):
        """ONNX: ReduceMean over the height and width axes of the NHWC batch."""
        return builder.add("ReduceMean", [x], axes=[1, 2], keepdims=0)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class GlobalMaxPool2D(Layer):
    """yₙ꜀ = maxᵢⱼ xₙᵢⱼ꜀;  backward: the whole of dL/dyₙ꜀ goes to the position of the
    maximum (the first one, in row-major order, where several tie), zero elsewhere."""

    splits_batch = True  # no batch statistics, no random draws

    check_cases = [{"params": {}, "input_shape": (3, 2, 4)}]

    def build(self, input_shape):
        image_shape(self, input_shape)
        return (input_shape[-1],)

    def forward(self, x, training=False):
        n, height, width, channels = x.shape
        flat = x.reshape(n, height * width, channels)
        self.winners = flat.argmax(axis=1)  # (N, C): the position of each maximum
        self.image = x.shape[1:]
        return np.take_along_axis(flat, self.winners[:, None, :], axis=1)[:, 0, :]

    def backward(self, grad_y):
        if not self.needs_input_grad:
            return None
        n, channels = grad_y.shape
        height, width, _ = self.image
        grad = np.zeros((n, height * width, channels), dtype=grad_y.dtype)
        np.put_along_axis(grad, self.winners[:, None, :], grad_y[:, None, :], axis=1)
        return grad.reshape(n, height, width, channels)

    def to_onnx(self, builder, x):
        """ONNX: ReduceMax over the height and width axes of the NHWC batch."""
        return builder.add("ReduceMax", [x], axes=[1, 2], keepdims=0)
