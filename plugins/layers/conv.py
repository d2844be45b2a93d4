"""``conv2d``: 2-D convolution over NHWC images, by im2col and large matrix products.

Shapes: input ``(N, H, W, C)``, weights ``(kh, kw, C, F)``, output ``(N, Ho, Wo, F)``.

The window geometry (output size, TensorFlow's "same" padding) comes from `framework.windows`,
which the pooling layers use too.
"""

import attrs
import numpy as np

from framework import Layer, ShapeError, activate, activation_spec, component, preactivation_grad
from framework.parallel import elementwise, split_rows
from framework.validators import positive_int
from framework.windows import crop_images, pad_images, padding_name, pair, window_geometry, window_slice, windows

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
        # The im2col copy, a block of images per core (BLAS has the cores for the product).
        split_rows(lambda start, stop: np.copyto(cols[start:stop], view[start:stop]), cols)
        self.cols = cols.reshape(-1, weights[..., 0].size)
        z = self.cols @ weights.reshape(-1, self.filters)
        if self.use_bias:
            elementwise(np.add, z, self.params["bias"], out=z)
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
        shares = share.reshape(n, *self.out_size, channels)
        for di in range(kh):
            for dj in range(kw):
                np.matmul(grad_z, weights_t[di, dj], out=share)
                pixels = window_slice((di, dj), self.strides, self.out_size)

                def add(start, stop):  # a block of images per core
                    grad_x[start:stop][pixels] += shares[start:stop]

                split_rows(add, shares)
        return crop_images(grad_x, self.pads, height, width)
