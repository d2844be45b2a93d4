"""``multi_head_attention``: scaled dot-product self-attention over a sequence ``(N, T, D)``,
written as nanoGPT's attention reads: project, split heads, scale, mask, softmax, merge,
project out — each step one line with its shape beside it."""

import attrs
import numpy as np

from framework import Layer, component
from framework.threads import split_batch
from framework.validators import boolean, positive_int

PROJECTIONS = ("query", "key", "value", "output")


def dropout_rate(instance, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"'dropout' must be a number in [0, 1), got {value!r}")


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class MultiHeadAttention(Layer):
    """Self-attention with ``num_heads`` heads, PyTorch's ``nn.MultiheadAttention`` maths.

    Forward, with h = ``num_heads``, d = D / h, heads the contiguous blocks of d features::

        Q = x·W_q + b_q,  K = x·W_k + b_k,  V = x·W_v + b_v      (N, T, D) → (N, h, T, d)
        S = Q·Kᵀ / √d                                            (N, h, T, T)
        P = softmax(S) over the last axis    (causal: S[t, s] = −∞ for s > t, so a position
                                              sees itself and earlier ones only)
        P̃ = P ⊙ M / (1 − p)     in training with ``dropout`` p: M keeps each weight with
                                 probability 1 − p (otherwise P̃ = P)
        O = P̃·V                                                  (N, h, T, d) → (N, T, D)
        y = O·W_o + b_o

    Backward, from dL/dy::

        dL/dW_o = Oᵀ·dy,  dL/db_o = Σ dy,  dO = dy·W_oᵀ
        dP̃ = dO·Vᵀ,  dV = P̃ᵀ·dO,  dP = dP̃ ⊙ M / (1 − p)
        dS = P ⊙ (dP − Σ_s dP ⊙ P) / √d          (softmax's backward; masked entries have P = 0)
        dQ = dS·K,   dK = dSᵀ·Q
        dL/dW_q = xᵀ·dQ, dL/db_q = Σ dQ (K, V alike),  dL/dx = dQ·W_qᵀ + dK·W_kᵀ + dV·W_vᵀ

    ``use_bias = False`` drops the four bias vectors (nanoGPT's ``bias=False``).  W_q, W_k and
    W_v are three column blocks of one (D, 3D) matrix, so the three projections are one
    matrix product each way (nanoGPT's ``c_attn``); each is still its own parameter.
    Kept from forward: x, Q, K, V, P (``attention_weights``, which TensorBoard draws), P̃
    and O.  PyTorch's ``in_proj_weight`` is ``[W_qᵀ; W_kᵀ; W_vᵀ]`` and ``out_proj.weight``
    is ``W_oᵀ``.

    ONNX export: the same steps as MatMul, Add, Reshape / Transpose, Mul, Softmax; the causal
    mask an additive constant (T, T) of 0 and −∞ (T, the model's sequence length).

    Threads: the projections are large matrix products, which BLAS spreads over its
    threads; the steps between them (S, softmax, O and their gradients: many small
    products, one per sample and head) are shared out by sample over
    `framework.threads.split_batch`, BLAS held to one thread inside each share, as conv2d
    does; O is written straight into the (N, T, D) layout the output projection reads.
    Measured (nanoGPT's Shakespeare-char shapes, N 12, T 64, D 128, 4 heads, causal,
    float32; forward and backward of one layer, medians of 7 alternating rounds, 2-core
    AMD EPYC): 6.26 ms before against 4.28 ms on two threads, 6.03 ms against 5.77 ms on one.
    """

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [
        {"params": {"num_heads": 2}, "input_shape": (5, 4)},
        {"params": {"num_heads": 2, "causal": True}, "input_shape": (5, 4)},
        {"params": {"num_heads": 2, "causal": True, "use_bias": False}, "input_shape": (5, 4)},
        {"params": {"num_heads": 2, "causal": True, "dropout": 0.3}, "input_shape": (5, 4)},
    ]

    attention_weights = None  # P of the last forward, (N, h, T, T)

    num_heads: int = attrs.field(validator=positive_int)
    causal: bool = attrs.field(default=False, validator=boolean)
    use_bias: bool = attrs.field(default=True, validator=boolean)
    dropout: float = attrs.field(default=0.0, validator=dropout_rate)
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))
    # W_o's initializer where it differs from the others (GPT-2 scales the projections that
    # feed the residual stream, N(0, 0.02/√(2·layers))); None: ``weight_init``.
    output_init: object = attrs.field(
        default=None, validator=attrs.validators.optional(component("initializers"))
    )

    def build(self, input_shape):
        if len(input_shape) != 2:
            mask = "a causal mask needs a sequence: " if self.causal else ""
            raise ValueError(
                f"{mask}multi_head_attention needs sequences (None, timesteps, features), got "
                f"{len(input_shape) + 1}-D input"
            )
        steps, size = input_shape
        if size % self.num_heads:
            raise ValueError(
                f"num_heads = {self.num_heads} does not divide the feature size {size}; "
                f"choose num_heads among {[k for k in range(1, size + 1) if size % k == 0]}"
            )
        for name in PROJECTIONS:
            init = self.output_init if name == "output" and self.output_init else self.weight_init
            self.add_param(f"{name}_weights", (size, size), init)
            if self.use_bias:
                self.add_param(f"{name}_bias", (size,), self.bias_init)
        # One (D, 3D) matrix (and bias) for Q, K and V, their parameters views of it.
        self.qkv_weights = self.join("weights", (size, 3 * size))
        self.qkv_grads = self.join("weights", (size, 3 * size), arrays=self.grads)
        if self.use_bias:
            self.qkv_bias = self.join("bias", (3 * size,))
            self.qkv_bias_grads = self.join("bias", (3 * size,), arrays=self.grads)
        self.mask = np.where(np.triu(np.ones((steps, steps), bool), 1), -np.inf, 0).astype(
            self.dtype
        )  # added to S: −∞ where s > t
        return tuple(input_shape)

    @property
    def splits_batch(self):
        """Only without attention dropout: shared out over threads, the draws would come in
        another order (see `framework.Layer.splits_batch`)."""
        return self.dropout == 0

    def twin(self):
        """As `framework.Layer.twin`, the copy's Q, K, V gradients joined as this layer's."""
        other = super().twin()
        size = self.qkv_grads.shape[0]
        other.qkv_grads = other.join("weights", (size, 3 * size), arrays=other.grads)
        if self.use_bias:
            other.qkv_bias_grads = other.join("bias", (3 * size,), arrays=other.grads)
        return other

    def join(self, what, shape, arrays=None):
        """The Q, K, V arrays ``what`` side by side along the last axis in one array of
        ``shape``, each of them replaced by its view of it (so it stays updated in place)."""
        arrays = self.params if arrays is None else arrays
        joined = np.empty(shape, dtype=self.dtype)
        size = shape[-1] // 3
        for index, name in enumerate(PROJECTIONS[:3]):
            part = joined[..., index * size : (index + 1) * size]
            part[...] = arrays[f"{name}_{what}"]
            arrays[f"{name}_{what}"] = part
        return joined

    def forward(self, x, training=False):
        n, steps, size = x.shape
        h, d = self.num_heads, size // self.num_heads
        t = x.dtype.type
        self.inputs = x.reshape(n * steps, size)
        qkv = self.inputs @ self.qkv_weights  # (N·T, 3D)
        if self.use_bias:
            qkv += self.qkv_bias
        q, k, v = qkv.reshape(n, steps, 3, h, d).transpose(2, 0, 3, 1, 4)  # each (N, h, T, d)
        weights = np.empty((n, h, steps, steps), dtype=x.dtype)  # P, (N, h, T, T)
        kept = self.drop(weights) if training and self.dropout else weights  # P̃
        merged = np.empty((n, steps, size), dtype=x.dtype)  # O, heads side by side
        heads = merged.reshape(n, steps, h, d).transpose(0, 2, 1, 3)  # O's view (N, h, T, d)

        def attend(start, stop):  # samples start:stop, one thread's share
            s = slice(start, stop)
            scores = np.matmul(q[s], k[s].transpose(0, 1, 3, 2), out=weights[s])  # Q·Kᵀ
            scores *= t(1 / np.sqrt(d))  # S
            # P = softmax(S), in place; causal: S + mask, −∞ where s > t
            softmax_rows(scores, self.mask[:steps, :steps] if self.causal else None)
            if kept is not weights:
                np.multiply(scores, self.drop_mask[s], out=kept[s])  # P̃ = P ⊙ M / (1 − p)
            np.matmul(kept[s], v[s], out=heads[s])  # O = P̃·V

        split_batch(attend, weights)
        y = merged.reshape(n * steps, size) @ self.params["output_weights"]  # (N·T, D)
        if self.use_bias:
            y += self.params["output_bias"]
        self.q, self.k, self.v, self.merged = q, k, v, merged.reshape(n * steps, size)
        self.attention_weights, self.kept_weights = weights, kept
        self.activations = y.reshape(n, steps, size)
        return self.activations

    def drop(self, weights):
        """An array for P ⊙ M / (1 − p), the attention weights with dropout; the mask
        M / (1 − p) is drawn here, on the calling thread, and kept for backward."""
        rng = self.rng if self.rng is not None else np.random.default_rng()
        keep = rng.random(weights.shape, dtype=np.float32) >= self.dropout
        self.drop_mask = keep.astype(weights.dtype)
        self.drop_mask *= weights.dtype.type(1 / (1 - self.dropout))
        return np.empty_like(weights)

    def backward(self, grad_y):
        n, steps, size = grad_y.shape
        h, d = self.num_heads, size // self.num_heads
        t = grad_y.dtype.type
        q, k, v, weights, kept = self.q, self.k, self.v, self.attention_weights, self.kept_weights
        dy = grad_y.reshape(n * steps, size)
        np.matmul(self.merged.T, dy, out=self.grads["output_weights"])  # dW_o = Oᵀ·dy
        if self.use_bias:
            np.add.reduce(dy, axis=0, out=self.grads["output_bias"])
        grad_heads = (dy @ self.params["output_weights"].T).reshape(n, steps, h, d)
        grad_heads = grad_heads.transpose(0, 2, 1, 3)  # dO, (N, h, T, d)
        grad_qkv = np.empty((n, steps, 3, h, d), dtype=grad_y.dtype)
        grad_q, grad_k, grad_v = grad_qkv.transpose(2, 0, 3, 1, 4)  # views, each (N, h, T, d)

        def attend_back(start, stop):  # samples start:stop, one thread's share
            s = slice(start, stop)
            np.matmul(kept[s].transpose(0, 1, 3, 2), grad_heads[s], out=grad_v[s])  # dV = P̃ᵀ·dO
            grad_weights = grad_heads[s] @ v[s].transpose(0, 1, 3, 2)  # dP̃ = dO·Vᵀ
            if kept is not weights:
                grad_weights *= self.drop_mask[s]  # dP = dP̃ ⊙ M / (1 − p)
            softmax_rows_backward(weights[s], grad_weights)  # dL/dS·√d, in place
            grad_weights *= t(1 / np.sqrt(d))  # dS, (n, h, T, T)
            np.matmul(grad_weights, k[s], out=grad_q[s])  # dQ = dS·K
            np.matmul(grad_weights.transpose(0, 1, 3, 2), q[s], out=grad_k[s])  # dK = dSᵀ·Q

        split_batch(attend_back, weights)
        grad_qkv = grad_qkv.reshape(n * steps, 3 * size)  # [dQ dK dV], (N·T, 3D)
        np.matmul(self.inputs.T, grad_qkv, out=self.qkv_grads)  # dW_qkv = xᵀ·[dQ dK dV]
        if self.use_bias:
            np.add.reduce(grad_qkv, axis=0, out=self.qkv_bias_grads)
        if not self.needs_input_grad:
            return None
        return (grad_qkv @ self.qkv_weights.T).reshape(n, steps, size)  # dL/dx

    def to_onnx(self, builder, x):
        """ONNX: the forward equations, heads split by Reshape (N, T, h, d) and Transpose."""
        steps, size = self.input_shape
        heads_shape = builder.constant(
            [0, 0, self.num_heads, size // self.num_heads], "heads_shape"
        )

        def projected(name, perm):
            y = builder.add("MatMul", [x, builder.param(self, f"{name}_weights")])
            if self.use_bias:
                y = builder.add("Add", [y, builder.param(self, f"{name}_bias")])  # (N, T, D)
            return builder.add("Transpose", [builder.add("Reshape", [y, heads_shape])], perm=perm)

        q = projected("query", [0, 2, 1, 3])  # (N, h, T, d)
        k_t = projected("key", [0, 2, 3, 1])  # Kᵀ, (N, h, d, T)
        v = projected("value", [0, 2, 1, 3])  # (N, h, T, d)
        scale = 1.0 / np.sqrt(size // self.num_heads)
        scores = builder.add(
            "Mul", [builder.add("MatMul", [q, k_t]), builder.constant(scale, "scale")]
        )  # (N, h, T, T)
        if self.causal:
            mask = np.where(np.triu(np.ones((steps, steps), bool), 1), -np.inf, 0.0)
            scores = builder.add("Add", [scores, builder.constant(mask, "causal_mask")])
        weights = builder.add("Softmax", [scores], axis=-1)  # P
        heads = builder.add(
            "Transpose", [builder.add("MatMul", [weights, v])], perm=[0, 2, 1, 3]
        )  # (N, T, h, d)
        merged = builder.add(
            "Reshape", [heads, builder.constant([0, 0, size], "merged_shape")]
        )  # O, (N, T, D)
        y = builder.add("MatMul", [merged, builder.param(self, "output_weights")])
        if self.use_bias:
            y = builder.add("Add", [y, builder.param(self, "output_bias")])
        return y


# The widest spread of scores that `softmax_rows` shifts by one number for the whole block.
SHARED_SHIFT_SPREAD = 64.0


def softmax_rows(scores, mask=None):
    """P = softmax(S + mask) over the last axis, in place: e^(S − c) / Σ e^(S − c), the
    shift c any number per row (it cancels), chosen so that no exponent is positive (nothing
    overflows) and each row keeps a term near 1.

    c is the row's maximum, unless every score of the block lies within
    `SHARED_SHIFT_SPREAD` of every other: then c is the block's maximum, each row's largest
    term at least e^−64 ≈ 1.6e−28, far above float32's smallest normal number (1.2e−38), and
    the probabilities the same to rounding.  Why: numpy reduces each 64-score row of a GPT's
    (6, 4, 64, 64) block element by element (163 µs), the whole block at once in 20 µs, and
    the shared c folds into the mask's pass.  A NaN or infinite score takes the row-wise way.
    ``mask``: added to every block of S (−∞ where a position may not look)."""
    top, bottom = float(np.max(scores)), float(np.min(scores))
    if top - bottom <= SHARED_SHIFT_SPREAD:
        scores += (mask - scores.dtype.type(top)) if mask is not None else -scores.dtype.type(top)
    else:
        if mask is not None:
            scores += mask
        scores -= scores.max(axis=-1, keepdims=True)  # every exponent ≤ 0: nothing overflows
    np.exp(scores, out=scores)
    scores /= np.einsum("...s->...", scores)[..., None]


def softmax_rows_backward(weights, grad_weights):
    """dP into P ⊙ (dP − Σ_s dP ⊙ P), softmax's backward over the last axis, in place."""
    grad_weights -= np.einsum("...s,...s->...", grad_weights, weights)[..., None]
    grad_weights *= weights
