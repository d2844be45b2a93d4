"""``conv2d``: 2-D convolution over NHWC images, by im2col and large matrix products.

Shapes: input ``(N, H, W, C)``, weights ``(kh, kw, C, F)``, output ``(N, Ho, Wo, F)``.

The geometry helpers here (`pair`, `padding_name`, `window_geometry`, `pad_images`,
`crop_images`) are shared with the pooling layers, which slide windows the same way.
"""

import math

import attrs
import numpy as np
from numpy.lib.stride_tricks import as_strided

from framework import Layer, ShapeError, component
from framework.validators import positive_int
from plugins.layers.dense import activate, activation_spec, preactivation_grad

PADDINGS = ("same", "valid")


def pair(value):
    """``3`` -> ``(3, 3)``; ``[3, 2]`` -> ``(3, 2)``; each a positive integer."""
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"expected an integer or a pair of integers, got {value!r}") from None
    if len(items) != 2 or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in items
    ):
        raise TypeError(f"expected an integer or a pair of integers, got {value!r}")
    if min(items) < 1:
        raise ValueError(f"expected positive sizes, got {value!r}")
    return int(items[0]), int(items[1])


def padding_name(value):
    if value not in PADDINGS:
        raise ValueError(f"padding must be 'same' or 'valid', got {value!r}")
    return value


def axis_geometry(size, window, stride, padding):
    """``(out, pad_before, pad_after)`` along one axis.

    ``valid``: only whole windows, ``out = (size - window) // stride + 1``.
    ``same`` (TensorFlow's rule): ``out = ceil(size / stride)`` and just enough zeros to
    reach it, ``pad_total = max((out - 1)·stride + window - size, 0)``, split with the odd one
    after (``pad_before = pad_total // 2``).
    """
    if padding == "valid":
        return (size - window) // stride + 1, 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def window_geometry(layer, input_shape, window, strides, padding, what):
    """Output size and padding of ``layer`` sliding ``window`` over images of
    ``input_shape``; a `ShapeError` naming the layer and shapes when it cannot."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ShapeError(
            f"layer {layer.name} expects images shaped (height, width, channels), got input "
            f"shape (None, {', '.join(map(str, shape))})"
        )
    height, width, _ = shape
    if padding == "valid" and (window[0] > height or window[1] > width):
        raise ShapeError(
            f"layer {layer.name}: {what} {window[0]}x{window[1]} is larger than its input "
            f"(None, {height}, {width}, {shape[2]}) with padding 'valid'; use padding "
            f"'same' or a smaller {what}"
        )
    rows = axis_geometry(height, window[0], strides[0], padding)
    cols = axis_geometry(width, window[1], strides[1], padding)
    return (rows[0], cols[0]), ((rows[1], rows[2]), (cols[1], cols[2]))


def pad_images(x, pads, value=0.0):
    """``x`` with ``pads = ((top, bottom), (left, right))`` of ``value`` around each image."""
    (top, bottom), (left, right) = pads
    if not (top or bottom or left or right):
        return x
    n, h, w, c = x.shape
    padded = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    padded[:, :top] = value
    padded[:, h + top :] = value
    padded[:, top : h + top, :left] = value
    padded[:, top : h + top, w + left :] = value
    padded[:, top : h + top, left : w + left] = x
    return padded


def crop_images(x, pads, height, width):
    (top, _), (left, _) = pads
    return x[:, top : top + height, left : left + width]


def windows(x, window, strides, out_size):
    """Read-only view ``(N, Ho, Wo, kh, kw, C)`` of every window of ``x`` (already padded):
    element ``[n, i, j, di, dj, c]`` is ``x[n, i·sh + di, j·sw + dj, c]``.  No copy."""
    sn, sh, sw, sc = x.strides
    shape = (x.shape[0], *out_size, *window, x.shape[3])
    steps = (sn, sh * strides[0], sw * strides[1], sh, sw, sc)
    return as_strided(x, shape=shape, strides=steps, writeable=False)


def window_slice(offset, strides, out_size):
    """Index of the input pixels that window offset ``(di, dj)`` touches, one per output
    pixel: ``x[window_slice(...)]`` has shape ``(N, Ho, Wo, C)``."""
    (di, dj), (sh, sw), (ho, wo) = offset, strides, out_size
    return (
        slice(None),
        slice(di, di + sh * (ho - 1) + 1, sh),
        slice(dj, dj + sw * (wo - 1) + 1, sw),
    )


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework) over NHWC images.

    Forward, with the input's windows unrolled as rows (im2col)::

        cols[n·Ho·Wo + p, (di, dj, c)] = x_padded[n, p_row·sh + di, p_col·sw + dj, c]
        z = cols · W + b          W reshaped to (kh·kw·C, F)
        a = activation(z)

    Backward, given ``dL/da``::

        dL/dz    = activation'(z) ⊙ dL/da
        dL/dW    = colsᵀ · dL/dz
        dL/db    = Σ_rows dL/dz
        dL/dx    = Σ over kernel offsets (di, dj) of dL/dz · W[di, dj]ᵀ, each added onto the
                   input pixels that offset read (col2im, one strided slab per offset)

    Only the kh·kw kernel offsets are looped over, never pixels or samples.
    ``padding="same"`` follows TensorFlow (the extra row or column of an odd padding goes
    after), so weights trained there give the same outputs here.
    """

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [{"params": {"filters": 3, "strides": 2, "padding": "same"}, "input_shape": (5, 5, 2)}]

    filters: int = attrs.field(validator=positive_int)
    kernel_size: tuple = attrs.field(default=3, converter=pair)
    strides: tuple = attrs.field(default=1, converter=pair)
    padding: str = attrs.field(default="same", validator=lambda _s, _a, v: padding_name(v))
    activation: object = attrs.field(default=None, converter=activation_spec)
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))
    use_bias: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    def build(self, input_shape):
        out_size, self.pads = window_geometry(
            self, input_shape, self.kernel_size, self.strides, self.padding, "kernel"
        )
        self.input_size = tuple(input_shape[:2])
        self.out_size = out_size
        channels = input_shape[2]
        self.add_param("weights", (*self.kernel_size, channels, self.filters), self.weight_init)
        if self.use_bias:
            self.add_param("bias", (self.filters,), self.bias_init)
        self.scratch = {}
        return (*out_size, self.filters)

    def buffer(self, key, shape, dtype):
        """A reusable ``np.empty`` for ``key``: the im2col matrix is the biggest array of a
        pass, and reallocating it each step costs page faults (one buffer for training and
        one for evaluation, so alternating batch sizes do not thrash)."""
        held = self.scratch.get(key)
        if held is None or held.shape != shape or held.dtype != dtype:
            held = self.scratch[key] = np.empty(shape, dtype=dtype)
        return held

    def forward(self, x, training=False):
        weights = self.params["weights"]
        n = x.shape[0]
        padded = pad_images(x, self.pads)
        view = windows(padded, self.kernel_size, self.strides, self.out_size)
        cols = self.buffer(training, view.shape, x.dtype)
        np.copyto(cols, view)
        self.cols = cols.reshape(-1, weights[..., 0].size)
        z = self.cols @ weights.reshape(-1, self.filters)
        if self.use_bias:
            z += self.params["bias"]
        z = z.reshape(n, *self.out_size, self.filters)
        self.batch = n
        return activate(self, z)

    def backward(self, grad_y):
        grad_z = preactivation_grad(self, grad_y)
        weights = self.params["weights"]
        grad_z = np.ascontiguousarray(grad_z, dtype=weights.dtype).reshape(-1, self.filters)
        np.matmul(self.cols.T, grad_z, out=self.grads["weights"].reshape(-1, self.filters))
        if self.use_bias:
            np.sum(grad_z, axis=0, out=self.grads["bias"])
        if not self.needs_input_grad:  # the model's first layer while training
            return None
        return self.input_grad(grad_z)

    def input_grad(self, grad_z):
        """dL/dx: each kernel offset's share, ``dL/dz · W[di, dj]ᵀ``, added onto the input
        pixels that offset read.

        One matrix product per offset (kh·kw of them) rather than one product into the
        im2col layout followed by col2im: the products together cost about what the one
        does, and each lands contiguous, so adding it to the input's gradient streams long
        runs instead of ``C``-float fragments (measured: about 30% less time for the
        seed-002 net's second layer), and the ``N·Ho·Wo × kh·kw·C`` matrix is never made.
        """
        (top, bottom), (left, right) = self.pads
        height, width = self.input_size
        kh, kw, channels, _ = self.params["weights"].shape
        n = self.batch
        grad_x = np.zeros(
            (n, height + top + bottom, width + left + right, channels), dtype=grad_z.dtype
        )
        weights_t = self.params["weights"].transpose(0, 1, 3, 2)  # (kh, kw, F, C)
        share = self.buffer("share", (grad_z.shape[0], channels), grad_z.dtype)
        for di in range(kh):
            for dj in range(kw):
                np.matmul(grad_z, weights_t[di, dj], out=share)
                grad_x[window_slice((di, dj), self.strides, self.out_size)] += share.reshape(
                    n, *self.out_size, channels
                )
        return crop_images(grad_x, self.pads, height, width)
