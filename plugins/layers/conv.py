"""``conv2d``: 2-D convolution over NHWC images, by im2col and large matrix products, or
through the Fourier transform where that takes fewer operations.

Shapes: input ``(N, H, W, C)``, weights ``(kh, kw, C, F)``, output ``(N, Ho, Wo, F)``.

The window geometry (output size, TensorFlow's "same" padding) comes from `framework.windows`,
which the pooling layers use too.
"""

import attrs
import numpy as np

from framework import (
    Layer,
    ShapeError,
    activate,
    activation_spec,
    component,
    kernels,
    preactivation_grad,
    winograd,
)
from framework.kernels import kernel
from framework.threads import split_batch, workers
from framework.validators import positive_int
from framework.windows import (
    crop_images,
    pad_images,
    padding_name,
    pair,
    window_geometry,
    window_slice,
    windows,
)

ALGORITHMS = ("auto", "im2col", "fft", "winograd")


def spectrum2d(a, frame):
    """``rfft2`` over axes 0 and 1 of ``a`` zero-padded to ``frame``, on
    `framework.threads.workers` threads.

    Two passes: the real transform along axis 1 over ``a``'s own rows only, then the
    complex one along axis 0; the same values as ``scipy.fft.rfft2(a, s=frame, axes=(0,
    1))``, which transforms the padding rows too (a 5×5 kernel in an 18×18 frame takes half
    the time)."""
    import scipy.fft  # here, not at the top: a fifth of a second that only Fourier layers need

    rows, cols = frame
    threads = workers()
    return scipy.fft.fft(
        scipy.fft.rfft(a, n=cols, axis=1, workers=threads), n=rows, axis=0, workers=threads
    )


def inverse2d(spectrum, frame, rows, cols):
    """``irfft2(spectrum, s=frame, axes=(0, 1))[rows, cols]``, computing only those
    ``rows`` in the second (real) pass: a kernel's 5 rows of an 18-row frame, say."""
    import scipy.fft

    threads = workers()
    half = scipy.fft.ifft(spectrum, axis=0, workers=threads)[rows]
    return scipy.fft.irfft(half, n=frame[1], axis=1, workers=threads)[:, cols]


@kernel
def add_windows(grad_cols, strides, grad_x):
    """col2im, compiled (`framework.kernels`): each window's gradient added onto the input
    pixels it read, ``grad_x[n, i·sh + di, j·sw + dj, :] += grad_cols[n, i, j, di, dj, :]``
    for ``grad_cols`` (N, Ho, Wo, kh, kw, C) and the padded ``grad_x`` (N, Hp, Wp, C)."""
    n, rows, cols, kh, kw, channels = grad_cols.shape
    sh, sw = strides
    for image in range(n):
        for row in range(rows):
            for col in range(cols):
                for di in range(kh):
                    for dj in range(kw):
                        source = grad_cols[image, row, col, di, dj]
                        target = grad_x[image, row * sh + di, col * sw + dj]
                        for c in range(channels):
                            target[c] += source[c]


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

    In numpy only the kh·kw kernel offsets are looped over, never pixels or samples; the
    compiled kernels (col2im, Winograd's transforms) loop over pixels in machine code.
    ``padding="same"`` follows TensorFlow (the extra row or column of an odd padding goes
    after), so weights trained there give the same outputs here.

    ``algorithm`` picks how the same sums are computed: ``"im2col"`` as above, ``"fft"``
    through the Fourier transform (`fft_forward`; stride 1 only), ``"winograd"`` by
    Winograd's F(2×2, 3×3) (`framework.winograd`; 3×3 kernels, stride 1, compiled
    transforms: with `framework.kernels` off it is im2col), or ``"auto"``: the Fourier
    transform where it needs fewer operations (a stride of 1, a kernel of 5×5 or more, 8 or
    more input channels: the Deep MNIST net's second convolution), Winograd for 3×3 kernels
    at stride 1 over 16 or more channels (the residual net's convolutions), im2col elsewhere.
    All give the same values to float rounding.
    """

    splits_batch = True  # no batch statistics, no random draws

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [
        {"params": {"filters": 3, "strides": 2, "padding": "same"}, "input_shape": (5, 5, 2)},
        {
            "params": {"filters": 3, "kernel_size": [3, 2], "algorithm": "fft"},
            "input_shape": (5, 6, 2),
        },
        {
            "params": {"filters": 2, "padding": "valid", "algorithm": "fft"},
            "input_shape": (5, 4, 3),
        },
        {"params": {"filters": 3, "algorithm": "winograd"}, "input_shape": (5, 4, 2)},
        {
            "params": {"filters": 2, "padding": "valid", "algorithm": "winograd"},
            "input_shape": (6, 5, 3),
        },
    ]

    filters: int = attrs.field(validator=positive_int)
    kernel_size: tuple = attrs.field(default=3, converter=pair)
    strides: tuple = attrs.field(default=1, converter=pair)
    padding: str = attrs.field(default="same", validator=lambda _s, _a, v: padding_name(v))
    activation: object = attrs.field(default=None, converter=activation_spec)
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))
    use_bias: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    algorithm: str = attrs.field(default="auto", validator=attrs.validators.in_(ALGORITHMS))

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
        self.uses_fft = self.choose_fft(channels)
        self.winograd_fits = self.choose_winograd(channels)
        return (*out_size, self.filters)

    def choose_winograd(self, channels):
        """Whether passes go by Winograd's F(2×2, 3×3) while kernels are on.

        Measured on one thread, 32 images into 32 filters, forward + backward, im2col
        against Winograd: 14×14×32 (the residual net's wide layers) 2.0 + 4.1 against
        1.4 + 2.4 ms, its 7×7×32 ones 0.49 + 0.89 against 0.47 + 0.78, 14×14×64 4.3 + 8.5
        against 2.2 + 4.5, 28×28×16 4.9 + 10.4 against 4.8 + 7.7; but 28×28×8 2.4 + 4.9
        against 3.5 + 5.3 and 28×28×3 1.4 + 2.6 against 2.7 + 4.8: Winograd's 16 products
        are thinner than im2col's one (BLAS: 65 against 76 GFLOP/s at 32 channels), and its
        transforms cost the same whatever the channels, so it pays from 16 channels on."""
        fits = self.kernel_size == (3, 3) and self.strides == (1, 1)
        if self.algorithm == "winograd" and not fits:
            raise ShapeError(
                f"layer {self.name}: algorithm 'winograd' needs a 3x3 kernel and strides 1, "
                f"got {self.kernel_size} and {self.strides}; use algorithm 'im2col' or 'auto'"
            )
        if self.algorithm == "auto":
            return fits and channels >= 16 and not self.uses_fft
        return self.algorithm == "winograd"

    def choose_fft(self, channels):
        if self.algorithm == "im2col":
            return False
        if self.strides != (1, 1):
            if self.algorithm == "fft":
                raise ShapeError(
                    f"layer {self.name}: algorithm 'fft' needs strides 1, got {self.strides}; "
                    "use algorithm 'im2col' or 'auto'"
                )
            return False
        if self.algorithm == "fft":
            return True
        # Per output pixel, im2col costs kh·kw·C·F multiply-adds; the Fourier path costs
        # about 4·C·F (complex) plus its transforms.  Measured on one thread (forward and
        # backward, im2col's time over the FFT's, median of 10 paired rounds): 5×5 kernels
        # 2.2× over 32 channels and 1.5× over 8, but 0.5× over one channel (the Deep MNIST net's
        # first layer); 3×3 kernels 0.84× over 32 channels at 14×14 and 0.69× at 7×7.
        kh, kw = self.kernel_size
        return kh * kw >= 25 and channels >= 8

    def buffer(self, key, shape, dtype):
        """A reusable ``np.empty`` for ``key``: the im2col matrix is the biggest array of a
        pass, and reallocating it each step costs page faults (one buffer for training and
        one for evaluation, so alternating batch sizes do not thrash)."""
        held = self.scratch.get(key)
        if held is None or held.shape != shape or held.dtype != dtype:
            held = self.scratch[key] = np.empty(shape, dtype=dtype)
        return held

    def forward(self, x, training=False):
        self.batch = x.shape[0]
        self.by_winograd = self.winograd_fits and kernels.enabled()
        if self.uses_fft:
            z = self.fft_forward(x)
            if self.use_bias:
                z += self.params["bias"]
        elif self.by_winograd:
            z = self.winograd_forward(x, training)
        else:
            z = self.im2col_forward(x, training)  # the bias added there, thread by thread
        return activate(self, z)

    def backward(self, grad_y):
        grad_z = preactivation_grad(self, grad_y)
        weights = self.params["weights"]
        grad_z = np.ascontiguousarray(grad_z, dtype=weights.dtype)
        if self.by_winograd:
            return self.winograd_backward(grad_z)
        if not self.uses_fft:
            return self.im2col_backward(grad_z)
        if self.use_bias:
            rows = grad_z.reshape(-1, self.filters)
            np.dot(np.ones(len(rows), rows.dtype), rows, out=self.grads["bias"])
        return self.fft_backward(grad_z)

    def winograd_forward(self, x, training):
        """``z`` by Winograd's F(2×2, 3×3) (`framework.winograd`): each thread
        transforms its images' 4×4 tiles, runs the 16 products and transforms them back
        (the bias added there); the tiles ``V`` and filters ``U`` are kept for backward."""
        (top, _), (left, _) = self.pads
        rows, cols = winograd.tile_counts(self.out_size)
        per_image, dtype = rows * cols, np.result_type(x, self.params["weights"])
        count = x.shape[0] * per_image
        tiles = self.buffer(("tiles", training), (16, count, x.shape[3]), dtype)
        products = self.buffer(("products", training), (16, count, self.filters), dtype)
        transformed = winograd.filter_transform(self.params["weights"])
        bias = self.params["bias"] if self.use_bias else np.zeros(self.filters, dtype)
        z = np.empty((x.shape[0], *self.out_size, self.filters), dtype=dtype)

        def images(start, stop):
            first, part = start * per_image, slice(start * per_image, stop * per_image)
            winograd.input_transform(x[start:stop], top, left, rows, cols, first, tiles)
            np.matmul(tiles[:, part], transformed, out=products[:, part])
            winograd.output_transform(products, first, bias, z[start:stop])

        split_batch(images, z)
        self.tiles, self.transformed = tiles, transformed
        return z

    def winograd_backward(self, grad_z):
        """dL/db, dL/dW and dL/dx of `winograd_forward`, each thread over its images: ∇M
        of its tiles, its shares of ∇U = Vᵀ·∇M (then added up, and ∇W = Gᵀ ∇U G) and of
        dL/db, and ∇V = ∇M·Uᵀ transformed back onto its images' input pixels."""
        (top, _), (left, _) = self.pads
        rows, cols = winograd.tile_counts(self.out_size)
        per_image, n = rows * cols, self.batch
        tiles, transformed = self.tiles, self.transformed
        # the training forward's products are spent: their buffer takes ∇M
        shape = (16, n * per_image, self.filters)
        grad_products = self.buffer(("products", True), shape, grad_z.dtype)
        grad_tiles = grad_x = None
        if self.needs_input_grad:
            grad_tiles = self.buffer("grad_tiles", tiles.shape, grad_z.dtype)
            grad_x = np.zeros((n, *self.input_size, tiles.shape[2]), grad_z.dtype)
        transposed = transformed.transpose(0, 2, 1)
        shares = {}  # the first image of each part -> its shares of ∇U and dL/db

        def images(start, stop):
            first, part = start * per_image, slice(start * per_image, stop * per_image)
            winograd.output_grad_transform(grad_z[start:stop], first, grad_products)
            grad_u = np.matmul(tiles[:, part].transpose(0, 2, 1), grad_products[:, part])
            bias_share = None
            if self.use_bias:
                rows_z = grad_z[start:stop].reshape(-1, self.filters)
                bias_share = np.dot(np.ones(len(rows_z), rows_z.dtype), rows_z)
            shares[start] = grad_u, bias_share
            if grad_tiles is not None:
                np.matmul(grad_products[:, part], transposed, out=grad_tiles[:, part])
                winograd.input_grad_transform(
                    grad_tiles, top, left, rows, cols, first, grad_x[start:stop]
                )

        split_batch(images, grad_z)
        ordered = [shares[start] for start in sorted(shares)]
        self.grads["weights"][...] = winograd.filter_grad(sum(u for u, _ in ordered))
        if self.use_bias:
            self.grads["bias"][...] = sum(b for _, b in ordered)
        return grad_x  # None for the model's first layer while training

    def im2col_backward(self, grad_z):
        """dL/db, dL/dW and (unless this is the model's first layer) dL/dx, each thread
        over its share of the images (`split_batch`), each adding up its own images' share
        of dL/db and dL/dW, which are then added together.

        dL/db is Σ over every pixel of every image as one matrix-vector product: numpy's
        sum over axis 0 walks rows of `filters` values at a time, about ten times slower
        (the Deep MNIST net's first layer: 0.52 ms against 0.06 ms on one thread).  Shared
        out with the rest rather than left to BLAS's threads: a product this thin, 9 × 25,088
        by 25,088 × 32 for the residual net's first layer, ran slower on BLAS's two threads
        than on one (0.46 against 0.40 ms), and that layer's backward took 1.31 ms on two
        threads against 0.77 ms on one."""
        grad_z = grad_z.reshape(-1, self.filters)
        pixels = self.out_size[0] * self.out_size[1]
        compiled, grad_x, rows_buffer = kernels.enabled(), None, None
        if self.needs_input_grad:  # made here, not in the parts: each would make its own
            (top, bottom), (left, right) = self.pads
            height, width = self.input_size
            channels = self.params["weights"].shape[2]
            shape = (self.batch, height + top + bottom, width + left + right, channels)
            grad_x = np.zeros(shape, dtype=grad_z.dtype)  # the padded input's gradient
            if compiled:
                rows_buffer = self.buffer("grad_cols", self.cols.shape, grad_z.dtype)
            else:
                rows_buffer = self.buffer("share", (grad_z.shape[0], channels), grad_z.dtype)
        shares = {}  # the first image of each part -> its shares of dL/dW and dL/db

        def images(start, stop):
            rows = slice(start * pixels, stop * pixels)
            part = grad_z[rows]
            # np.dot rather than matmul: numpy's matmul keeps the interpreter lock through
            # a product whose result is small (9 × 32 here, or a vector), so the other
            # thread's part waited for it (two threads each doing such products took 2.1x
            # one thread's time with matmul, 1.03x with np.dot, whose BLAS call lets go).
            weights_share = np.dot(self.cols[rows].T, part)
            bias_share = np.dot(np.ones(len(part), part.dtype), part) if self.use_bias else None
            shares[start] = weights_share, bias_share
            if grad_x is not None:
                self.add_input_grad(grad_z, grad_x, rows_buffer, compiled, start, stop)

        split_batch(images, grad_z.reshape(self.batch, -1))
        ordered = [shares[start] for start in sorted(shares)]  # added in the same order always
        self.grads["weights"][...] = sum(w for w, _ in ordered).reshape(self.grads["weights"].shape)
        if self.use_bias:
            self.grads["bias"][...] = sum(b for _, b in ordered)
        if grad_x is None:  # the model's first layer while training
            return None
        return crop_images(grad_x, self.pads, *self.input_size)

    def im2col_forward(self, x, training):
        """``z = cols · W + b``: every window copied out as a row, then one matrix product
        and the bias (one of each per thread, over its share of the images, on several
        cores: the bias added right after the product, not in a pass of its own on one
        core, 0.3 ms of the residual net's first layer).

        Windows of one channel are copied offset by offset, ``kh·kw`` copies of whole
        image rows, instead of window by window: numpy's copy of the window view moves
        one float at a time there (the first layer of an MNIST net, 32 images: 0.53 ms
        against 0.17 ms on one thread; with 3 channels or more the window view's copy is
        the faster, 0.55 ms against 1.7 ms)."""
        weights = self.params["weights"]
        n = x.shape[0]
        padded = pad_images(x, self.pads)
        view = windows(padded, self.kernel_size, self.strides, self.out_size)
        cols = self.buffer(training, view.shape, x.dtype)
        self.cols = cols.reshape(-1, weights[..., 0].size)
        kernel = weights.reshape(-1, self.filters)
        z = np.empty((n, *self.out_size, self.filters), dtype=np.result_type(x, weights))
        pixels = self.out_size[0] * self.out_size[1]
        kh, kw = self.kernel_size
        one_channel = x.shape[3] == 1

        def images(start, stop):  # the copies too are shared out over the cores
            if one_channel:
                for di in range(kh):
                    for dj in range(kw):
                        offset = window_slice((di, dj), self.strides, self.out_size)
                        cols[start:stop, :, :, di, dj] = padded[start:stop][offset]
            else:
                np.copyto(cols[start:stop], view[start:stop])
            rows = slice(start * pixels, stop * pixels)
            part = z.reshape(-1, self.filters)[rows]
            np.matmul(self.cols[rows], kernel, out=part)
            if self.use_bias:
                part += self.params["bias"]

        split_batch(images, cols)
        return z

    def add_input_grad(self, grad_z, grad_x, rows_buffer, compiled, start, stop):
        """dL/dx of images ``start:stop``, added onto the padded ``grad_x``.

        With kernels (``compiled``): one product ``dL/dz · Wᵀ`` into the window layout
        (``rows_buffer``, shaped as ``cols``) and a compiled col2im, `add_windows`, that adds
        each window's row onto the pixels it read (a 14×14×32 layer of 32 images: 1.53 ms of
        product and 0.32 ms of additions, against 1.75 and 0.67 ms below).

        The numpy reference: one matrix product per kernel offset, ``dL/dz · W[di, dj]ᵀ``
        into ``rows_buffer`` (N·Ho·Wo × C), added onto the pixels that offset read: each
        lands contiguous, so the addition streams long runs instead of the ``C``-float
        fragments of a col2im in numpy (measured: about 30% less time for the seed-002 net's
        second layer), and the ``N·Ho·Wo × kh·kw·C`` matrix is never made.

        Either way shared out over threads by images with the rest of `im2col_backward`:
        the products are small (32 × 32 weights per offset in resnet_mnist), which BLAS's
        own threads split poorly, and the additions would otherwise run on one core.
        """
        kh, kw, channels, _ = self.params["weights"].shape
        pixels = self.out_size[0] * self.out_size[1]
        rows = slice(start * pixels, stop * pixels)
        if compiled:
            weights = self.params["weights"].reshape(-1, self.filters)
            np.matmul(grad_z[rows], weights.T, out=rows_buffer[rows])
            window_grads = rows_buffer.reshape(self.batch, *self.out_size, kh, kw, channels)
            add_windows(window_grads[start:stop], self.strides, grad_x[start:stop])
            return
        weights_t = self.params["weights"].transpose(0, 1, 3, 2)  # (kh, kw, F, C)
        part, grad_part = rows_buffer[rows], grad_x[start:stop]
        for di in range(kh):
            for dj in range(kw):
                np.matmul(grad_z[rows], weights_t[di, dj], out=part)
                grad_part[window_slice((di, dj), self.strides, self.out_size)] += part.reshape(
                    stop - start, *self.out_size, channels
                )

    def fft_forward(self, x):
        """``z`` by the convolution theorem, for stride 1.

        On the padded images (size ``Hp × Wp``), the output is a correlation with the kernel,
        ``z[i, j, f] = Σ_{di, dj, c} x_p[i + di, j + dj, c] · W[di, dj, c, f]``, and no window
        of an output pixel wraps around the ``Hp × Wp`` frame.  So, with ``X̂ = rfft2(x_p)``
        and ``Ŵ = rfft2(W zero-padded to Hp × Wp)`` per channel pair::

            ẑ[u, v, n, f] = Σ_c X̂[u, v, n, c] · conj(Ŵ[u, v, c, f])      z = irfft2(ẑ)[:Ho, :Wo]

        one complex (N × C)·(C × F) matrix product per frequency ``(u, v)``: ``C·F``
        complex multiply-adds per pixel in place of im2col's ``kh·kw·C·F`` real ones, plus
        the transforms.  The frequency axes go first, so each product is one contiguous
        BLAS call.  On several cores the batch is shared out over threads
        (`framework.threads.split_batch`), each transforming, multiplying and transforming back
        its own images, matrix products included: on two cores the Deep MNIST net's second
        convolution's forward and backward take 22 ms against 28 ms with only pocketfft and
        BLAS splitting each call.
        """
        padded = pad_images(x, self.pads)
        self.frame = frame = padded.shape[1:3]
        kernel = spectrum2d(self.params["weights"], frame)
        kernel_conj = kernel.conj()
        n, rows, cols = x.shape[0], *self.out_size
        spectrum = np.empty((*kernel.shape[:2], n, x.shape[3]), dtype=kernel.dtype)
        z = np.empty((n, rows, cols, self.filters), dtype=x.dtype)

        def images(start, stop):
            part = spectrum2d(padded[start:stop].transpose(1, 2, 0, 3), frame)
            spectrum[:, :, start:stop] = part
            z[start:stop] = inverse2d(
                part @ kernel_conj, frame, slice(0, rows), slice(0, cols)
            ).transpose(2, 0, 1, 3)

        split_batch(images, padded)
        self.spectra = spectrum, kernel  # (u, v, N, C) and (u, v, C, F): backward reuses both
        return z

    def fft_backward(self, grad_z):
        """dL/dW and dL/dx of `fft_forward`, with ``Ĝ = rfft2(dL/dz zero-padded to Hp × Wp)``::

            dL/dW = irfft2(Σ_n conj(X̂[n, c]) · Ĝ[n, f])* [:kh, :kw]      (a correlation of x with G)
            dL/dx = irfft2(Σ_f Ĝ[n, f] · Ŵ[c, f]), cropped to the unpadded pixels  (a convolution)

        each again one complex matrix product per frequency; the images are shared out
        over threads as in `fft_forward`, each part adding up its own images' share of
        the sum over ``n``."""
        spectrum, kernel = self.spectra
        frame = self.frame
        kernel_t = kernel.transpose(0, 1, 3, 2)
        (top, _), (left, _) = self.pads
        height, width = self.input_size
        n, channels = grad_z.shape[0], spectrum.shape[3]
        grad_x = (
            np.empty((n, height, width, channels), dtype=grad_z.dtype)
            if self.needs_input_grad
            else None
        )
        weight_products = {}  # the first image of each part -> its share of the sum over n

        def images(start, stop):
            grad = spectrum2d(grad_z[start:stop].transpose(1, 2, 0, 3), frame)
            weight_products[start] = spectrum[:, :, start:stop].conj().transpose(0, 1, 3, 2) @ grad
            if grad_x is not None:
                grad_x[start:stop] = inverse2d(
                    grad @ kernel_t, frame, slice(top, top + height), slice(left, left + width)
                ).transpose(2, 0, 1, 3)

        split_batch(images, grad_z)
        weight_product = sum(weight_products[start] for start in sorted(weight_products)).conj()
        kh, kw = self.kernel_size
        self.grads["weights"][...] = inverse2d(weight_product, frame, slice(0, kh), slice(0, kw))
        return grad_x

    def to_onnx(self, builder, x):
        """ONNX: Conv on the NCHW transpose (weights as (F, C, kh, kw)), with "same" padding
        as explicit, possibly asymmetric, pads; the activation after transposing back."""
        inputs = [
            builder.to_nchw(x),
            builder.param(self, "weights", lambda w: w.transpose(3, 2, 0, 1)),
        ]
        if self.use_bias:
            inputs.append(builder.param(self, "bias"))
        y = builder.add("Conv", inputs, **builder.window_attributes(self, self.kernel_size))
        return builder.activation(self.activation, builder.to_nhwc(y))
