"""Normalisation layers: ``batch_norm`` and ``layer_norm``, with PyTorch's semantics.

Both standardise values to zero mean and unit variance and then scale and shift them by
learnt ``gamma`` and ``beta``; they differ in what the statistics are taken over.  Batch
norm takes them per channel over the batch (and every spatial position), so in training a
sample's output depends on the rest of its batch, and at evaluation it uses running averages
kept as layer ``state``.  Layer norm takes them per sample over its features, so training and
evaluation are the same.
"""

import attrs
import numpy as np

from framework import DataError, Layer, batch_split, kernels
from framework.kernels import kernel
from framework.validators import fraction

# How the normalised value's gradient folds back through the statistics it was made with
# (both layers share it).  With x̂ = (x − μ)/σ over n values and g = dL/dx̂:
#   dL/dx = (1/σ) · (g − mean(g) − x̂ · mean(g ⊙ x̂))
# since μ and σ depend on every x: d x̂ᵢ/d xⱼ = (δᵢⱼ − 1/n − x̂ᵢ x̂ⱼ / n) / σ.


def column_sums(matrix):
    """Σ over the rows of an ``(n, channels)`` matrix, as one matrix-vector product: numpy's
    own sum over axis 0 walks rows of a few channels at a time, about ten times slower for
    a batch of 14×14 images of 32 channels (0.45 ms against 0.03 ms, one thread).  np.dot,
    whose BLAS call lets go of the interpreter lock, where matmul keeps it for a small
    result (`framework.batch_split` runs two of these at once)."""
    return np.dot(np.ones(len(matrix), matrix.dtype), matrix)


def positive_float(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be a number > 0, got {value!r}")


# Rows per block of the batch-norm kernels' sums: each block summed in the data's type, the
# blocks' sums added in float64.  Added one row after another, a float32 sum over 50,000 rows
# would lose digits that numpy's pairwise sums keep; float64 throughout measured 1.8x slower.
SUM_BLOCK = 256


@kernel
def centre_columns(x, mean, centred, squares):
    """x − μ of each column of ``x`` (n, C) into ``centred``, and Σ (x − μ)² per column
    into ``squares`` (float64), in one pass over the rows (compiled: `framework.kernels`)."""
    squares[:] = 0
    block = np.empty(x.shape[1], x.dtype)
    for start in range(0, x.shape[0], SUM_BLOCK):
        block[:] = 0
        for r in range(start, min(start + SUM_BLOCK, x.shape[0])):
            row, out = x[r], centred[r]
            for c in range(x.shape[1]):
                out[c] = row[c] - mean[c]
                block[c] += out[c] * out[c]
        squares += block


@kernel
def scale_columns(x, scale, shift, y):
    """y = x ⊙ scale + shift, per column, one pass."""
    for r in range(x.shape[0]):
        row, out = x[r], y[r]
        for c in range(x.shape[1]):
            out[c] = row[c] * scale[c] + shift[c]


@kernel
def column_products(g, centred, sums, products):
    """Σ g and Σ g ⊙ (x − μ) per column into ``sums`` and ``products`` (float64), in one
    pass over the rows, summed by blocks as `centre_columns`."""
    sums[:] = 0
    products[:] = 0
    block_sums, block_products = np.empty(g.shape[1], g.dtype), np.empty(g.shape[1], g.dtype)
    for start in range(0, g.shape[0], SUM_BLOCK):
        block_sums[:] = 0
        block_products[:] = 0
        for r in range(start, min(start + SUM_BLOCK, g.shape[0])):
            row, other = g[r], centred[r]
            for c in range(g.shape[1]):
                block_sums[c] += row[c]
                block_products[c] += row[c] * other[c]
        sums += block_sums
        products += block_products


@kernel
def batch_norm_input_grad(g, centred, scale, centred_factor, constant, grad_x):
    """dL/dx = g ⊙ scale − (x − μ) ⊙ centred_factor − constant, per column, one pass."""
    for r in range(g.shape[0]):
        row, other, out = g[r], centred[r], grad_x[r]
        for c in range(g.shape[1]):
            out[c] = row[c] * scale[c] - other[c] * centred_factor[c] - constant[c]


def pooled_statistics(shares):
    """``(n, μ, Σ (x − μ)²)`` per channel of a whole batch from its parts' ``(n_k, μ_k,
    Σ (x − μ_k)²)``, in float64: Σ (x − μ)² = Σ_k [Σ (x − μ_k)² + n_k (μ_k − μ)²] (Chan,
    Golub and LeVeque's pairwise update), with no difference of large sums to lose digits
    in."""
    n = sum(count for count, _, _ in shares)
    mean = sum(count * np.asarray(part_mean, np.float64) for count, part_mean, _ in shares) / n
    squares = sum(
        part_squares + count * (np.asarray(part_mean, np.float64) - mean) ** 2
        for count, part_mean, part_squares in shares
    )
    return n, mean, squares


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class BatchNorm(Layer):
    """Batch normalisation over every axis but the last (the features, or an image's
    channels): ``(N, F)``, ``(N, T, F)`` and NHWC ``(N, H, W, C)`` alike, as PyTorch's
    ``BatchNorm1d`` / ``BatchNorm2d``.

    Training, over the n = N·H·W values of each channel:
        μ = mean(x),  σ² = mean((x − μ)²)  (biased),  x̂ = (x − μ) / √(σ² + ε),
        y = γ ⊙ x̂ + β;
        running_mean ← (1 − momentum)·running_mean + momentum·μ,
        running_var  ← (1 − momentum)·running_var + momentum·σ²·n/(n − 1)  (unbiased).
    Evaluation:  y = γ ⊙ (x − running_mean) / √(running_var + ε) + β.

    Backward in training, from g = dL/dy (sums over the n values of a channel):
        dL/dβ = Σ g,  dL/dγ = Σ g ⊙ x̂,
        dL/dx = γ/√(σ² + ε) · (g − (dL/dβ)/n − x̂ ⊙ (dL/dγ)/n).
    In evaluation the statistics are constants: dL/dx = γ/√(running_var + ε) ⊙ g.

    ``gamma`` starts at 1 and ``beta`` at 0; ``running_mean`` at 0 and ``running_var`` at 1
    (the layer's ``state``: saved with the weights and in checkpoints, never trained).
    Training needs at least two values per channel: with one, the variance is undefined
    (PyTorch refuses it too).

    In a training step split over threads (`framework.batch_split`), the parts exchange
    their own counts, means and Σ (x − μ)² (`pooled_statistics` makes the whole batch's
    from them) in forward, and their Σ g and Σ g ⊙ (x − μ) in backward, so every part
    normalises with the whole batch's statistics, as PyTorch's ``SyncBatchNorm`` does
    across processes: two exchanges a layer and step (one where the layer is the model's
    first, whose input needs no gradient).  dL/dγ and dL/dβ stay each part's
    own share (the split adds the copies' gradients), and only the first part moves the
    running averages.
    """

    splits_batch = True  # the batch's statistics are summed over the parts (above)

    check_cases = [
        {"params": {}, "input_shape": (3,)},
        {"params": {"momentum": 0.5}, "input_shape": (2, 2, 3)},
    ]

    momentum: float = attrs.field(default=0.1, validator=fraction)
    epsilon: float = attrs.field(default=1e-5, validator=positive_float)

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError("batch_norm needs inputs with a features or channels axis")
        channels = input_shape[-1]
        self.add_param("gamma", (channels,), {"type": "constant", "value": 1.0})
        self.add_param("beta", (channels,), "zeros")
        self.state = {
            "running_mean": np.zeros(channels, dtype=self.dtype),
            "running_var": np.ones(channels, dtype=self.dtype),
        }
        return tuple(input_shape)

    def forward(self, x, training=False):
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # one row per value of each channel
        gamma, beta = self.params["gamma"], self.params["beta"]
        if not training:
            self.training_pass = False
            self.inv_std = 1.0 / np.sqrt(self.state["running_var"] + self.epsilon)
            self.centred, self.shift = flat - self.state["running_mean"], None
            y = self.centred * (gamma * self.inv_std)
            y += beta
            return y.reshape(shape)
        n = flat.shape[0]
        if n < 2:
            raise DataError(
                f"layer {self.name} got one value per channel in training (a batch of 1 "
                f"sample of shape {shape[1:]}): the batch variance is undefined; use batches "
                "of two or more, or layer_norm"
            )
        mean = column_sums(flat) / n
        compiled = kernels.enabled() and flat.flags.c_contiguous
        if compiled:  # two passes over the batch instead of four (`centre_columns`, below)
            centred, squares = np.empty_like(flat), np.empty(len(mean))  # float64 sums
            centre_columns(flat, mean, centred, squares)
        else:
            centred = flat - mean
            squares = np.einsum("ij,ij->j", centred, centred)
        # `centred` is x − μ with this part's own mean; split over threads, the whole
        # batch's μ is μ_part + shift, and x − μ = centred − shift, which the passes
        # below fold into their per-channel factors (one exchange instead of two).
        shift = None
        part = batch_split.current_part()  # None unless the batch is split over threads
        if part is not None:
            n, whole_mean, squares = pooled_statistics(part.gather(n, mean, squares))
            shift = (whole_mean - mean).astype(flat.dtype)
            mean = whole_mean.astype(flat.dtype)
        var = (squares / n).astype(flat.dtype)
        inv_std = 1.0 / np.sqrt(var + self.epsilon)
        self.centred, self.shift = centred, shift  # for backward: x̂ = (x − μ) ⊙ inv_std
        self.inv_std = inv_std
        self.count = n  # the values each channel's statistics were taken over
        self.training_pass = True
        if part is None or part.index == 0:  # the running averages move once a step
            m = self.momentum
            running_mean, running_var = self.state["running_mean"], self.state["running_var"]
            running_mean *= 1 - m
            running_mean += m * mean
            running_var *= 1 - m
            running_var += (m * n / (n - 1)) * var
        scale = gamma * inv_std  # γ ⊙ x̂ + β = (x − μ) ⊙ scale + β, x̂ never made
        offset = beta if shift is None else beta - shift * scale
        if compiled:
            y = np.empty_like(centred)
            scale_columns(centred, scale.astype(y.dtype), offset.astype(y.dtype), y)
            return y.reshape(shape)
        y = centred * scale
        y += offset
        return y.reshape(shape)

    @property
    def normalised(self):
        """x̂ of the last forward pass (made on request: the passes work from x − μ)."""
        centred = self.centred if self.shift is None else self.centred - self.shift
        return centred * self.inv_std

    def backward(self, grad_y):
        shape = grad_y.shape
        g = grad_y.reshape(-1, shape[-1])
        centred, inv_std = self.centred, self.inv_std
        compiled = kernels.enabled() and self.training_pass and centred.dtype == g.dtype
        if compiled:  # two passes over the batch instead of five (`column_products`)
            g = np.ascontiguousarray(g)
            sums, products = np.empty(g.shape[1]), np.empty(g.shape[1])  # float64 sums
            column_products(g, centred, sums, products)
        else:
            sums, products = column_sums(g), np.einsum("ij,ij->j", g, centred)
        if self.shift is not None:
            products = products - self.shift * sums  # Σ g ⊙ (x − μ), x − μ = centred − shift
        self.grads["beta"][...] = sums  # Σ g
        self.grads["gamma"][...] = products * inv_std  # Σ g ⊙ x̂
        if not self.needs_input_grad:
            return None
        scale = self.params["gamma"] * inv_std
        if not self.training_pass:  # running statistics: constants
            return (g * scale).reshape(shape)
        n = self.count
        part = batch_split.current_part()
        if part is not None:  # dL/dx takes the sums over the whole batch
            sums, products = part.sum(sums, products)
        dbeta, dgamma = sums.astype(g.dtype), products.astype(g.dtype) * inv_std
        # γ/σ ⊙ (g − dβ/n − x̂ ⊙ dγ/n), with x̂ = (x − μ)/σ = (centred − shift)/σ: per
        # channel one factor on g, one on `centred` and one constant, three passes over the
        # batch (one compiled).
        centred_factor = scale * inv_std * dgamma / n
        constant = scale * dbeta / n
        if self.shift is not None:
            constant = constant - self.shift * centred_factor
        if compiled:
            grad_x, t = np.empty_like(g), g.dtype.type
            factors = [scale, centred_factor, constant]
            batch_norm_input_grad(g, centred, *(f.astype(t) for f in factors), grad_x)
            return grad_x.reshape(shape)
        grad_x = g * scale
        correction = centred * centred_factor
        correction += constant
        grad_x -= correction
        return grad_x.reshape(shape)

    def to_onnx(self, builder, x):
        """ONNX, in inference form: the running statistics folded into one scale and shift
        per channel, y = x · γ/√(running_var + ε) + (β − running_mean · γ/√(running_var + ε)),
        a Mul and an Add broadcast over the last axis (any rank, NHWC images included)."""
        scale = self.params["gamma"] / np.sqrt(self.state["running_var"] + self.epsilon)
        shift = self.params["beta"] - self.state["running_mean"] * scale
        return builder.add(
            "Add",
            [
                builder.add("Mul", [x, builder.constant(scale, "scale")]),
                builder.constant(shift, "shift"),
            ],
        )


@kernel(reordered_sums=True)
def layer_norm_rows(x, gamma, beta, epsilon, y, normalised, inv_std):
    """`LayerNorm`'s forward over each row of ``x`` (rows, F), compiled
    (`framework.kernels`): μ and σ² in two sums, then x̂ = (x − μ)/√(σ² + ε) and
    y = γ ⊙ x̂ + β in one pass; x̂ and 1/√(σ² + ε) are written for backward."""
    rows, features = x.shape
    one, scale = x.dtype.type(1), x.dtype.type(1 / features)
    for r in range(rows):
        row, xhat, out = x[r], normalised[r], y[r]
        total = row[0] * 0
        for k in range(features):
            total += row[k]
        mean = total * scale
        squares = total * 0
        for k in range(features):
            squares += (row[k] - mean) * (row[k] - mean)
        inv = one / np.sqrt(squares * scale + epsilon)
        inv_std[r] = inv
        for k in range(features):
            xhat[k] = (row[k] - mean) * inv
            out[k] = xhat[k] * gamma[k] + beta[k]


@kernel(reordered_sums=True)
def layer_norm_rows_backward(grad_y, normalised, inv_std, gamma, grad_x):
    """dL/dx of `LayerNorm` for each row, compiled: with h = γ ⊙ g, the two means
    mean(h) and mean(h ⊙ x̂) in one pass, then (h − mean(h) − x̂ ⊙ mean(h ⊙ x̂)) / √(σ² + ε)."""
    rows, features = grad_y.shape
    scale = grad_y.dtype.type(1 / features)
    for r in range(rows):
        g, xhat, out = grad_y[r], normalised[r], grad_x[r]
        sum_h = g[0] * 0
        sum_hx = g[0] * 0
        for k in range(features):
            h = g[k] * gamma[k]
            sum_h += h
            sum_hx += h * xhat[k]
        mean_h, mean_hx = sum_h * scale, sum_hx * scale
        for k in range(features):
            out[k] = (g[k] * gamma[k] - mean_h - xhat[k] * mean_hx) * inv_std[r]


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class LayerNorm(Layer):
    """Layer normalisation over the last axis of each sample (each token of a sequence), as
    PyTorch's ``LayerNorm(features, bias=use_bias)``: with F features,

        μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / √(σ² + ε),  y = γ ⊙ x̂ + β
        (no β with ``use_bias = False``, nanoGPT's ``bias=False``).

    Backward, from g = dL/dy (means over the F features of one sample):
        dL/dβ = Σ_samples g,  dL/dγ = Σ_samples g ⊙ x̂,
        with h = γ ⊙ g:  dL/dx = (h − mean(h) − x̂ ⊙ mean(h ⊙ x̂)) / √(σ² + ε).
    The same in training and evaluation.
    """

    splits_batch = True  # no batch statistics, no random draws

    position_wise = True  # each position on its own (framework.generate steps it)

    check_cases = [
        {"params": {}, "input_shape": (5,)},
        {"params": {}, "input_shape": (3, 4)},
        {"params": {"use_bias": False}, "input_shape": (3, 4)},
    ]

    epsilon: float = attrs.field(default=1e-5, validator=positive_float)
    use_bias: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError("layer_norm needs inputs with a features axis")
        self.add_param("gamma", (input_shape[-1],), {"type": "constant", "value": 1.0})
        if self.use_bias:
            self.add_param("beta", (input_shape[-1],), "zeros")
        return tuple(input_shape)

    def forward(self, x, training=False):
        """The equations above: by `layer_norm_rows` where `framework.kernels` are on,
        else in numpy, the readable reference."""
        features = x.shape[-1]
        t = x.dtype.type
        rows = x.reshape(-1, features)  # one row per sample (per token)
        if kernels.enabled():
            y = np.empty(rows.shape, np.result_type(x, self.params["gamma"]))
            self.normalised, self.inv_std = np.empty_like(y), np.empty(len(rows), y.dtype)
            beta = self.params["beta"] if self.use_bias else np.zeros_like(self.params["gamma"])
            layer_norm_rows(
                np.ascontiguousarray(rows),
                self.params["gamma"],
                beta,
                t(self.epsilon),
                y,
                self.normalised,
                self.inv_std,
            )
            return y.reshape(x.shape)
        centred = rows - np.einsum("ij->i", rows)[:, None] * t(1 / features)  # x − μ
        var = np.einsum("ij,ij->i", centred, centred)  # F·σ², per row
        var *= t(1 / features)
        var += t(self.epsilon)
        inv_std = np.sqrt(var, out=var)
        np.divide(1, inv_std, out=inv_std)  # 1/√(σ² + ε)
        centred *= inv_std[:, None]
        self.inv_std, self.normalised = inv_std, centred  # x̂, kept for backward
        y = centred * self.params["gamma"]
        if self.use_bias:
            y += self.params["beta"]
        return y.reshape(x.shape)

    def backward(self, grad_y):
        xhat = self.normalised
        features = grad_y.shape[-1]
        t = grad_y.dtype.type
        g = grad_y.reshape(-1, features)
        if self.use_bias:
            np.einsum("ij->j", g, out=self.grads["beta"])
        np.einsum("ij,ij->j", g, xhat, out=self.grads["gamma"])
        if not self.needs_input_grad:
            return None
        if kernels.enabled():
            grad_x = np.empty(g.shape, np.result_type(g, xhat))
            layer_norm_rows_backward(
                np.ascontiguousarray(g), xhat, self.inv_std, self.params["gamma"], grad_x
            )
            return grad_x.reshape(grad_y.shape)
        h = g * self.params["gamma"]  # γ ⊙ g
        mean_h = np.einsum("ij->i", h)  # F·mean(h)
        mean_hx = np.einsum("ij,ij->i", h, xhat)  # F·mean(h ⊙ x̂)
        mean_h *= t(1 / features)
        mean_hx *= t(1 / features)
        h -= mean_h[:, None]
        h -= xhat * mean_hx[:, None]
        h *= self.inv_std[:, None]
        return h.reshape(grad_y.shape)

    def to_onnx(self, builder, x):
        """ONNX: LayerNormalization over the last axis (an operator from opset 17; without
        bias, its optional B input left out)."""
        inputs = [x, builder.param(self, "gamma")]
        if self.use_bias:
            inputs.append(builder.param(self, "beta"))
        return builder.add("LayerNormalization", inputs, axis=-1, epsilon=float(self.epsilon))
