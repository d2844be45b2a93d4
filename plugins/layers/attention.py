"""``multi_head_attention``: scaled dot-product self-attention over a sequence ``(N, T, D)``,
written as nanoGPT's attention reads: project, split heads, scale, mask, softmax, merge,
project out — each step one line with its shape beside it."""

import attrs
import numpy as np

from framework import Layer, component
from framework.validators import boolean, positive_int

PROJECTIONS = ("query", "key", "value", "output")


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class MultiHeadAttention(Layer):
    """Self-attention with ``num_heads`` heads, PyTorch's ``nn.MultiheadAttention`` maths.

    Forward, with h = ``num_heads``, d = D / h, heads the contiguous blocks of d features::

        Q = x·W_q + b_q,  K = x·W_k + b_k,  V = x·W_v + b_v      (N, T, D) → (N, h, T, d)
        S = Q·Kᵀ / √d                                            (N, h, T, T)
        P = softmax(S) over the last axis    (causal: S[t, s] = −∞ for s > t, so a position
                                              sees itself and earlier ones only)
        O = P·V                                                  (N, h, T, d) → (N, T, D)
        y = O·W_o + b_o

    Backward, from dL/dy::

        dL/dW_o = Oᵀ·dy,  dL/db_o = Σ dy,  dO = dy·W_oᵀ
        dP = dO·Vᵀ,  dV = Pᵀ·dO
        dS = P ⊙ (dP − Σ_s dP ⊙ P) / √d          (softmax's backward; masked entries have P = 0)
        dQ = dS·K,   dK = dSᵀ·Q
        dL/dW_q = xᵀ·dQ, dL/db_q = Σ dQ (K, V alike),  dL/dx = dQ·W_qᵀ + dK·W_kᵀ + dV·W_vᵀ

    Kept from forward: x, Q, K, V, P (``attention_weights``, which TensorBoard draws) and O.
    PyTorch's ``in_proj_weight`` is ``[W_qᵀ; W_kᵀ; W_vᵀ]`` and ``out_proj.weight`` is ``W_oᵀ``.

    ONNX export: the same steps as MatMul, Add, Reshape / Transpose, Mul, Softmax; the causal
    mask an additive constant (T, T) of 0 and −∞ (T, the model's sequence length).
    """

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [
        {"params": {"num_heads": 2}, "input_shape": (5, 4)},
        {"params": {"num_heads": 2, "causal": True}, "input_shape": (5, 4)},
    ]

    attention_weights = None  # P of the last forward, (N, h, T, T)

    num_heads: int = attrs.field(validator=positive_int)
    causal: bool = attrs.field(default=False, validator=boolean)
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))

    def build(self, input_shape):
        if len(input_shape) != 2:
            mask = "a causal mask needs a sequence: " if self.causal else ""
            raise ValueError(
                f"{mask}multi_head_attention needs sequences (None, timesteps, features), got "
                f"{len(input_shape) + 1}-D input"
            )
        size = input_shape[1]
        if size % self.num_heads:
            raise ValueError(
                f"num_heads = {self.num_heads} does not divide the feature size {size}; "
                f"choose num_heads among {[k for k in range(1, size + 1) if size % k == 0]}"
            )
        for name in PROJECTIONS:
            self.add_param(f"{name}_weights", (size, size), self.weight_init)
            self.add_param(f"{name}_bias", (size,), self.bias_init)
        return tuple(input_shape)

    def split_heads(self, a):
        n, steps, size = a.shape
        return a.reshape(n, steps, self.num_heads, size // self.num_heads).transpose(0, 2, 1, 3)

    def project(self, name, x):
        return x @ self.params[f"{name}_weights"] + self.params[f"{name}_bias"]

    def forward(self, x, training=False):
        n, steps, size = x.shape
        scale = 1.0 / np.sqrt(size // self.num_heads)
        self.inputs = x.reshape(n * steps, size)
        q, k, v = (
            self.split_heads(self.project(name, x)) for name in PROJECTIONS[:3]
        )  # (N, h, T, d)
        scores = q @ k.transpose(0, 1, 3, 2)  # (N, h, T, T)
        scores *= x.dtype.type(scale)
        if self.causal:
            scores[..., np.triu(np.ones((steps, steps), bool), 1)] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores, out=scores)
        weights /= weights.sum(axis=-1, keepdims=True)  # P, (N, h, T, T)
        heads = (weights @ v).transpose(0, 2, 1, 3).reshape(n * steps, size)  # O, (N·T, D)
        self.q, self.k, self.v, self.attention_weights, self.heads, self.scale = (
            q,
            k,
            v,
            weights,
            heads,
            scale,
        )
        self.activations = (
            heads @ self.params["output_weights"] + self.params["output_bias"]
        ).reshape(n, steps, size)
        return self.activations

    def backward(self, grad_y):
        n, steps, size = grad_y.shape
        grad_y = grad_y.reshape(n * steps, size)
        np.matmul(self.heads.T, grad_y, out=self.grads["output_weights"])
        np.sum(grad_y, axis=0, out=self.grads["output_bias"])
        grad_heads = self.split_heads(
            (grad_y @ self.params["output_weights"].T).reshape(n, steps, size)
        )
        weights = self.attention_weights
        grad_weights = grad_heads @ self.v.transpose(0, 1, 3, 2)  # dP, (N, h, T, T)
        grad_v = weights.transpose(0, 1, 3, 2) @ grad_heads  # (N, h, T, d)
        grad_scores = grad_weights
        grad_scores -= np.sum(grad_weights * weights, axis=-1, keepdims=True)
        grad_scores *= weights
        grad_scores *= grad_y.dtype.type(self.scale)
        grad_q = grad_scores @ self.k
        grad_k = grad_scores.transpose(0, 1, 3, 2) @ self.q
        grad_x = None
        for name, grad in zip(PROJECTIONS[:3], (grad_q, grad_k, grad_v), strict=True):
            grad = grad.transpose(0, 2, 1, 3).reshape(n * steps, size)
            np.matmul(self.inputs.T, grad, out=self.grads[f"{name}_weights"])
            np.sum(grad, axis=0, out=self.grads[f"{name}_bias"])
            if self.needs_input_grad:
                part = grad @ self.params[f"{name}_weights"].T
                if grad_x is None:
                    grad_x = part
                else:
                    grad_x += part
        return None if grad_x is None else grad_x.reshape(n, steps, size)

    def to_onnx(self, builder, x):
        """ONNX: the forward equations, heads split by Reshape (N, T, h, d) and Transpose."""
        steps, size = self.input_shape
        heads_shape = builder.constant(
            [0, 0, self.num_heads, size // self.num_heads], "heads_shape"
        )

        def projected(name, perm):
            y = builder.add("MatMul", [x, builder.param(self, f"{name}_weights")])
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
        return builder.add("Add", [y, builder.param(self, "output_bias")])
