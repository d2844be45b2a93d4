"""``maxpool2d`` and ``avgpool2d`` over NHWC images.

Both reduce a window in two passes, first across its columns and then across its rows (a
maximum or a sum over a rectangle is one over rows of per-row results).  Each pass loops
over the window's offsets along one axis (``pw`` then ``ph``: 2 and 2 for a 2×2 pool), each
offset taking every window at once through a strided slice — never a loop over pixels or
samples.  Two short passes beat ``ph·pw`` slices of the whole input because a row slice
keeps whole image rows contiguous.  On several cores max pooling shares the batch out over
threads (`framework.threads.split_batch`).  The layers have no parameters.
"""

import attrs
import numpy as np

from framework import Layer, kernels
from framework.kernels import kernel
from framework.threads import split_batch
from framework.windows import crop_images, pad_images, padding_name, pair, window_geometry


def default_strides(layer):
    return layer.pool_size


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Pool2D(Layer):
    """What the pooling layers share: windows of ``pool_size`` every ``strides`` pixels
    (by default ``pool_size``: windows side by side), ``padding`` 'valid' or 'same'."""

    splits_batch = True  # no batch statistics, no random draws

    # What `framework.testing.check_plugin` checks the gradients on (defaults need images).
    check_cases = [
        {"params": {"pool_size": 3, "strides": 2, "padding": "same"}, "input_shape": (5, 5, 2)}
    ]

    pool_size: tuple = attrs.field(default=2, converter=pair)
    strides: tuple = attrs.field(
        default=attrs.Factory(default_strides, takes_self=True), converter=pair
    )
    padding: str = attrs.field(default="valid", validator=lambda _s, _a, v: padding_name(v))

    def build(self, input_shape):
        self.out_size, self.pads = window_geometry(
            self, input_shape, self.pool_size, self.strides, self.padding, "pool_size"
        )
        self.input_shape = tuple(input_shape)
        return (*self.out_size, input_shape[2])

    def slab(self, axis, offset):
        """Index of what window offset ``offset`` along ``axis`` (1: rows, 2: columns) reads
        of every window: one strided slice."""
        stride, count = self.strides[axis - 1], self.out_size[axis - 1]
        return (slice(None),) * axis + (slice(offset, offset + stride * (count - 1) + 1, stride),)

    def slabs(self, array, axis):
        return [array[self.slab(axis, k)] for k in range(self.pool_size[axis - 1])]

    def spread(self, grad, axis, grad_in, weights=None):
        """The reverse of a pass along ``axis``: a gradient shaped like the pass's output,
        sent back into ``grad_in`` at the positions each offset read (times that offset's
        ``weights``, e.g. where it won the maximum) and summed where windows overlap.

        Where the windows tile the axis (stride = window, no remainder: the usual 2×2 pool)
        each input position is read by exactly one window, so each offset's share is
        written straight into place instead of multiplied into a temporary and added onto
        zeros (max-pool backward on the Deep MNIST net's first pool: 1.26 ms against 2.19 ms)."""
        window, stride = self.pool_size[axis - 1], self.strides[axis - 1]
        if stride == window and grad_in.shape[axis] == window * grad.shape[axis]:
            for k in range(window):
                np.multiply(
                    grad, 1 if weights is None else weights(k), out=grad_in[self.slab(axis, k)]
                )
            return grad_in
        grad_in[...] = 0
        for k in range(window):
            grad_in[self.slab(axis, k)] += grad if weights is None else grad * weights(k)
        return grad_in

    def finish_backward(self, grad_padded):
        height, width, _ = self.input_shape
        return crop_images(grad_padded, self.pads, height, width)


def winner_dtype(window):
    return np.uint8 if window < 256 else np.int32


def running_max(slabs, best, winner):
    """Element-wise maximum of ``slabs`` into ``best`` and which slab held it into
    ``winner`` (the first one where they tie: only a strictly larger value takes over)."""
    if len(slabs) == 2:  # a 2-wide window: the winner is the one comparison, 0 or 1
        np.maximum(slabs[0], slabs[1], out=best)
        np.greater(slabs[1], slabs[0], out=winner.view(bool))
        return
    np.copyto(best, slabs[0])
    winner[...] = 0
    for k, slab in enumerate(slabs[1:], start=1):
        larger = slab > best
        np.maximum(best, slab, out=best)
        # winner = where(larger, k, winner), as arithmetic: masked writes are far slower.
        winner += larger.astype(winner.dtype) * (winner.dtype.type(k) - winner)


# The fewest numbers each part of a compiled pass must have for it to be shared out over
# the threads: handing a part to another thread costs 60-100 µs.  The residual net's second
# pool (32 images of 14×14×32, 200k numbers) on two threads: backward 0.46-0.61 ms split,
# 0.10 ms not; its first (800k numbers) is faster split.
KERNEL_SPLIT_MIN = 2**18


@kernel
def max_pool_kernel(padded, pool, strides, out, winner):
    """`MaxPool2D`'s forward over images ``padded`` (N, H, W, C), compiled
    (`framework.kernels`): each window's largest value per channel into ``out``, and the
    offset that held it (i·pw + j; the first in row-major order where values tie) into
    ``winner``.  A NaN wins and stays, as with ``np.maximum``."""
    (ph, pw), (sh, sw) = pool, strides
    n, rows, cols, channels = out.shape
    for image in range(n):
        for row in range(rows):
            for col in range(cols):
                best, won = out[image, row, col], winner[image, row, col]
                first = padded[image, row * sh, col * sw]
                for c in range(channels):
                    best[c] = first[c]
                    won[c] = 0
                for i in range(ph):
                    for j in range(pw):
                        value, offset = padded[image, row * sh + i, col * sw + j], i * pw + j
                        for c in range(channels):
                            larger = value[c] > best[c] or value[c] != value[c]
                            best[c] = value[c] if larger else best[c]
                            won[c] = offset if larger else won[c]


@kernel
def max_pool_backward_kernel(grad_y, winner, pool, strides, grad):
    """`MaxPool2D`'s backward, compiled: each window's gradient to the input that won it.
    Where windows tile the input exactly each input is written once (0 where it lost);
    otherwise ``grad`` comes in zeroed and shares are added."""
    (ph, pw), (sh, sw) = pool, strides
    n, rows, cols, channels = grad_y.shape
    zero = grad.dtype.type(0)
    tiles = sh == ph and sw == pw and grad.shape[1] == rows * ph and grad.shape[2] == cols * pw
    for image in range(n):
        for row in range(rows):
            for col in range(cols):
                g, won = grad_y[image, row, col], winner[image, row, col]
                for i in range(ph):
                    for j in range(pw):
                        target, offset = grad[image, row * sh + i, col * sw + j], i * pw + j
                        for c in range(channels):
                            share = g[c] if won[c] == offset else zero
                            target[c] = share if tiles else target[c] + share


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class MaxPool2D(Pool2D):
    """y = the largest input in each window.

    Backward: the whole of ``dL/dy`` for a window goes to the input that was its maximum,
    nothing to the others; where several inputs tie, the first in row-major order gets it.
    'same' padding pads with -inf, so padding is never a maximum.
    """

    def forward(self, x, training=False):
        """By `max_pool_kernel` where `framework.kernels` are on, else by running maxima
        over strided slices, the readable reference.  The Deep MNIST net's first pool
        (32 images of 28×28×32), one thread: forward 0.75 -> 0.65 ms, backward 0.67 ->
        0.2 ms (1.8 ms inside a training step, its fresh arrays' page faults included)."""
        padded = pad_images(x, self.pads, value=-np.inf)
        self.padded_shape = padded.shape
        self.winner = None
        if kernels.enabled():
            padded = np.ascontiguousarray(padded)
            out = np.empty((len(x), *self.out_size, x.shape[3]), x.dtype)
            winner = self.winner = np.empty(out.shape, np.int32)

            def kernel_images(start, stop):  # the batch shared out over the cores
                part = slice(start, stop)
                max_pool_kernel(padded[part], self.pool_size, self.strides, out[part], winner[part])

            split_batch(kernel_images, padded, KERNEL_SPLIT_MIN)
            self.activations = out
            return out
        (n, height, _, channels), (rows, cols) = padded.shape, self.out_size
        (ph, pw), dtype = self.pool_size, padded.dtype
        row_max = np.empty((n, height, cols, channels), dtype=dtype)
        self.column_winner = np.empty(row_max.shape, dtype=winner_dtype(pw))
        out = np.empty((n, rows, cols, channels), dtype=dtype)
        self.row_winner = np.empty(out.shape, dtype=winner_dtype(ph))

        def images(start, stop):  # the batch shared out over the cores
            part = slice(start, stop)
            # Per row, the maximum of each window's columns; then the maximum of those rows.
            running_max(self.slabs(padded[part], 2), row_max[part], self.column_winner[part])
            running_max(self.slabs(row_max[part], 1), out[part], self.row_winner[part])

        split_batch(images, padded)
        self.row_max_shape = row_max.shape
        self.activations = out
        return out

    def backward(self, grad_y):
        if not self.needs_input_grad:  # the model's first layer while training
            return None
        if self.winner is not None:  # forward by the kernel
            pool, strides, winner = self.pool_size, self.strides, self.winner
            (_, height, width, _), (rows, cols) = self.padded_shape, self.out_size
            tiles = strides == pool and (height, width) == (rows * pool[0], cols * pool[1])
            grad = (np.empty if tiles else np.zeros)(self.padded_shape, dtype=grad_y.dtype)
            grad_y = np.ascontiguousarray(grad_y)

            def kernel_images(start, stop):
                part = slice(start, stop)
                max_pool_backward_kernel(grad_y[part], winner[part], pool, strides, grad[part])

            split_batch(kernel_images, grad, KERNEL_SPLIT_MIN)
            return self.finish_backward(grad)
        grad_row_max = np.empty(self.row_max_shape, dtype=grad_y.dtype)
        grad = np.empty(self.padded_shape, dtype=grad_y.dtype)

        def images(start, stop):
            part = slice(start, stop)
            row_winner, column_winner = self.row_winner[part], self.column_winner[part]
            self.spread(grad_y[part], 1, grad_row_max[part], lambda k: row_winner == k)
            self.spread(grad_row_max[part], 2, grad[part], lambda k: column_winner == k)

        split_batch(images, grad)
        return self.finish_backward(grad)

    def to_onnx(self, builder, x):
        """ONNX: MaxPool on the NCHW transpose (its pads never win the maximum, as -inf here)."""
        y = builder.add(
            "MaxPool", [builder.to_nchw(x)], **builder.window_attributes(self, self.pool_size)
        )
        return builder.to_nhwc(y)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class AvgPool2D(Pool2D):
    """y = the mean of each window's inputs.

    With 'same' padding the mean is over the window's real pixels only, as TensorFlow does
    (a corner window of a 2×2 pool may average fewer than 4).  Backward: each input gets
    ``dL/dy / count`` from every window it belongs to.
    """

    def window_sums(self, padded):
        row_sums = sum(self.slabs(padded, 2))
        return sum(self.slabs(row_sums, 1)), row_sums.shape

    def build(self, input_shape):
        output_shape = super().build(input_shape)
        # How many real (unpadded) pixels each window holds, counted the way the forward
        # pass sums, on one all-ones single-channel image.
        height, width, _ = self.input_shape
        counts, _ = self.window_sums(pad_images(np.ones((1, height, width, 1)), self.pads))
        self.counts = counts.astype(self.dtype)
        return output_shape

    def forward(self, x, training=False):
        padded = pad_images(x, self.pads, value=0.0)
        self.padded_shape = padded.shape
        total, self.row_sums_shape = self.window_sums(padded)
        total /= self.counts
        self.activations = total
        return total

    def backward(self, grad_y):
        if not self.needs_input_grad:  # the model's first layer while training
            return None
        share = grad_y / self.counts
        grad_row_sums = self.spread(share, 1, np.empty(self.row_sums_shape, dtype=share.dtype))
        return self.finish_backward(
            self.spread(grad_row_sums, 2, np.empty(self.padded_shape, dtype=share.dtype))
        )

    def to_onnx(self, builder, x):
        """ONNX: AveragePool on the NCHW transpose, counting real pixels only
        (``count_include_pad=0``), as ``counts`` does here."""
        attributes = builder.window_attributes(self, self.pool_size)
        y = builder.add("AveragePool", [builder.to_nchw(x)], count_include_pad=0, **attributes)
        return builder.to_nhwc(y)
