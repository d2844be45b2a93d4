"""Recurrent layers: ``simple_rnn``, ``lstm`` and ``gru``, with backpropagation through time
written out.

Shapes: input ``(N, T, F)``; output ``(N, H)``, the last hidden state, or with
``return_sequences`` every hidden state ``(N, T, H)``.  Parameters are ``weights`` (F, k·H),
``recurrent_weights`` (H, k·H) and ``bias`` (k·H,), the k gates side by side along the last
axis in PyTorch's order (LSTM i, f, g, o; GRU r, z, n), so PyTorch's ``weight_ih_l0`` is
``weights.T`` and ``weight_hh_l0`` is ``recurrent_weights.T``.

How the work is laid out (the same in all three):

- forward multiplies the inputs of every step by ``weights`` in one matrix product,
  ``X·W + b`` for all ``N·T`` rows at once; only ``h·U`` must wait for the previous step;
- states are kept time-major, ``(T, N, ·)``, so a step's slice is one contiguous block;
- the loop over time steps is the only loop, each step whole-batch matrix products;
- a step's gates are computed in one pass over its gate block, the parameters' columns
  scaled to suit: the GRU takes σ(a) = ½·tanh(a/2) + ½ (the ½ folded into ``scaled``), so
  one ``tanh`` serves every gate; the LSTM takes one ``exp``, σ(a) =
  1 / (1 + e^(−a)) and tanh(a) = 1 − 2 / (1 + e^(2a)), since numpy's float32 ``tanh`` is not
  vectorised on every CPU (2.7 ns a number against ``exp``'s 1.3 on this project's AMD
  machines: see `LSTM.forward`);
- backward walks time in reverse carrying ``dh_next`` (and the LSTM's ``dc_next``), and
  what does not depend on the carried gradient (the gates' local derivatives) is computed
  for all steps at once before the loop, so each step is a handful of array operations;
- the parameter gradients are then one matrix product each over all steps:
  ``dL/dW = Xᵀ·dG``, ``dL/dU = H_prevᵀ·dG``, ``dL/db = Σ dG``, and ``dL/dx = dG·Wᵀ``.

``activations`` is the hidden-state sequence ``(N, T, H)`` whatever ``return_sequences`` is,
so TensorBoard shows every step's state.

ONNX export (``to_onnx``): ONNX's own RNN / LSTM / GRU operator, one forward direction,
with the gate blocks re-ordered to ONNX's (LSTM i, o, f, c; GRU z, r, h with
``linear_before_reset=1``, which is PyTorch's GRU), ``W = weightsᵀ``, ``R =
recurrent_weightsᵀ`` and ``B = [bias, recurrent bias or 0]``; Transposes around it, since
ONNX Runtime runs only the time-major layout (``layout=1`` is refused).  Where ONNX Runtime
has no kernel for the operator — float64 models (its recurrent kernels are float32 only),
a ``simple_rnn`` activation that ONNX's RNN cannot name (softmax, a plugin's) — the steps
are unrolled into MatMul and element-wise nodes over the model's fixed T instead.
"""

import attrs
import numpy as np

from framework import Layer, activation_spec, component, kernels, kind_of
from framework.kernels import exp, kernel
from framework.validators import boolean, positive_int


def sigmoid(a):
    """σ(a) as ½·tanh(a/2) + ½: no overflow for large |a|."""
    return 0.5 * np.tanh(0.5 * a) + 0.5


def sequence_features(layer, input_shape):
    """The feature size of a ``(T, F)`` input shape; anything else is an error that says
    what a recurrent layer needs (the model adds the layer's name and the shape it got)."""
    if len(input_shape) != 2:
        raise ValueError(
            f"{layer.kind or 'a recurrent layer'} needs sequences (None, timesteps, features), "
            f"got {len(input_shape) + 1}-D input; give the data a time axis (e.g. reshape "
            "(N, T) to (N, T, 1))"
        )
    return input_shape[1]


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Recurrent(Layer):
    """What the three recurrent layers share: parameters, shapes and the output rule."""

    gates = 1  # blocks of H columns in weights, recurrent_weights and bias

    units: int = attrs.field(validator=positive_int)
    return_sequences: bool = attrs.field(default=False, validator=boolean)
    weight_init: object = attrs.field(default="glorot_uniform", validator=component("initializers"))
    recurrent_init: object = attrs.field(
        default="glorot_uniform", validator=component("initializers")
    )
    bias_init: object = attrs.field(default="zeros", validator=component("initializers"))

    def build(self, input_shape):
        features = sequence_features(self, input_shape)
        width = self.gates * self.units
        self.add_param("weights", (features, width), self.weight_init)
        self.add_param("recurrent_weights", (self.units, width), self.recurrent_init)
        self.add_param("bias", (width,), self.bias_init)
        steps = input_shape[0]
        return (steps, self.units) if self.return_sequences else (self.units,)

    def input_products(self, x, weights=None, bias=None):
        """``x_t·W + b`` for every step, time-major ``(T, N, k·H)``, in one matrix product;
        keeps the time-major inputs for dL/dW."""
        n, steps, features = x.shape
        self.inputs = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(steps * n, features)
        xw = self.inputs @ (self.params["weights"] if weights is None else weights)
        xw += self.params["bias"] if bias is None else bias
        return xw.reshape(steps, n, -1)

    def scaled(self, name, sigmoid_blocks):
        """Parameter ``name`` with the columns of the sigmoid gates halved: with them,
        tanh of a step's pre-activations gives tanh(a/2) there, and ½·tanh(a/2) + ½ = σ(a)."""
        value = self.params[name].copy()
        for block in sigmoid_blocks:
            value[..., block * self.units : (block + 1) * self.units] *= 0.5
        return value

    def zero_state(self, x):
        return np.zeros((len(x), self.units), dtype=self.params["weights"].dtype)

    def output(self, states):
        """The layer's output from the time-major states ``(T, N, H)``."""
        self.states = states
        self.activations = states.transpose(1, 0, 2)
        return self.activations if self.return_sequences else states[-1]

    def output_grads(self, grad_y):
        """``(gradients of the outputs per step, time-major, or None, the carried gradient
        into the last step)``: without ``return_sequences`` only the last state has one."""
        if self.return_sequences:
            return grad_y.transpose(1, 0, 2), np.zeros_like(self.states[0])
        return None, np.array(grad_y, dtype=self.states.dtype)

    def parameter_grads(self, grad_gates, grad_recurrent=None):
        """Fill ``grads`` from the gradients of the gate pre-activations of every step
        ``(T, N, k·H)`` (for the GRU, the part through ``h·U + c`` comes separately); return
        dL/dx ``(N, T, F)``."""
        steps, n, width = grad_gates.shape
        grad_recurrent = grad_gates if grad_recurrent is None else grad_recurrent
        flat = grad_gates.reshape(steps * n, width)
        np.matmul(self.inputs.T, flat, out=self.grads["weights"])
        np.sum(flat, axis=0, out=self.grads["bias"])
        # h₋₁ = 0 contributes nothing, so dL/dU pairs h₀…h_{T−2} with steps 1…T−1.
        previous = self.states[:-1].reshape(-1, self.units)
        np.matmul(
            previous.T, grad_recurrent[1:].reshape(-1, width), out=self.grads["recurrent_weights"]
        )
        if not self.needs_input_grad:
            return None
        return (flat @ self.params["weights"].T).reshape(steps, n, -1).transpose(1, 0, 2)

    # --- ONNX export -------------------------------------------------------------------------

    onnx_operator = "RNN"  # ONNX's operator for the layer
    onnx_gate_order = (0,)  # plugnet's gate blocks in the order ONNX's operator takes them

    def onnx_layout(self, value):
        """A ``(…, k·H)`` parameter as ONNX's ``(1, k·H, …)``: gate blocks in ONNX's order,
        transposed, with the one direction in front."""
        blocks = np.split(value, self.gates, axis=-1)
        return np.concatenate([blocks[k] for k in self.onnx_gate_order], axis=-1).T[None]

    def onnx_attributes(self, builder):
        """The operator's attributes, or None where ONNX Runtime cannot run it."""
        return {} if builder.dtype == np.float32 else None

    def to_onnx(self, builder, x):
        """ONNX: the layer's own ONNX operator on the time-major input, or its steps unrolled
        where ONNX Runtime has no kernel for it (see the module's docstring)."""
        attributes = self.onnx_attributes(builder)
        if attributes is None:
            return self.unrolled_onnx(builder, x)
        time_major = builder.add(
            "Transpose", [x], perm=[1, 0, 2], name="to_time_major"
        )  # (T, N, F)
        recurrent_bias = self.params.get("recurrent_bias", np.zeros_like(self.params["bias"]))
        bias = np.concatenate(
            [self.onnx_layout(self.params["bias"]), self.onnx_layout(recurrent_bias)], axis=-1
        )
        inputs = [
            time_major,
            builder.param(self, "weights", self.onnx_layout),  # (1, k·H, F)
            builder.param(self, "recurrent_weights", self.onnx_layout),  # (1, k·H, H)
            builder.constant(bias, "bias"),  # (1, 2·k·H)
        ]
        # Y (T, 1, N, H) every step's state, Y_h (1, N, H) the last one.
        states, last = builder.add(
            self.onnx_operator, inputs, outputs=2, hidden_size=self.units, **attributes
        )
        if not self.return_sequences:
            return builder.add("Squeeze", [last, builder.constant([0], "axes")])
        states = builder.add("Squeeze", [states, builder.constant([1], "axes")])
        return builder.add("Transpose", [states], perm=[1, 0, 2], name="to_batch_major")

    def unrolled_onnx(self, builder, x):
        """The forward equations step by step over the model's T steps: one MatMul for every
        step's ``x·W + b``, then per step a Gather of its slice and the layer's ``onnx_step``."""
        products = builder.add("MatMul", [x, builder.param(self, "weights")])
        products = builder.add("Add", [products, builder.param(self, "bias")])  # (N, T, k·H)
        # What every step uses, made once: U, the gates' split sizes (and the GRU's c).
        shared = {
            "recurrent_weights": builder.param(self, "recurrent_weights"),
            "split": builder.constant([self.units] * self.gates, "split"),
        }
        if "recurrent_bias" in self.params:
            shared["recurrent_bias"] = builder.param(self, "recurrent_bias")
        state, cell, states = None, None, []
        for t in range(self.input_shape[0]):
            a = builder.add("Gather", [products, builder.constant(t, "step")], axis=1)  # (N, k·H)
            state, cell = self.onnx_step(builder, a, state, cell, shared)
            states.append(state)
        if not self.return_sequences:
            return state
        axis = builder.constant([1], "axes")
        steps = [builder.add("Unsqueeze", [h, axis]) for h in states]
        return builder.add("Concat", steps, axis=1) if len(steps) > 1 else steps[0]

    def onnx_gates(self, builder, a, shared):
        """``a`` (N, k·H) split into its k gate blocks."""
        return builder.add("Split", [a, shared["split"]], outputs=self.gates, axis=-1)

    def onnx_recurrent_sum(self, builder, a, state, shared):
        """``a + hₜ₋₁·U`` (just ``a`` at the first step, where h₋₁ = 0)."""
        if state is None:
            return a
        return builder.add("Add", [a, builder.add("MatMul", [state, shared["recurrent_weights"]])])


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class SimpleRNN(Recurrent):
    """Elman's recurrent net (PyTorch's ``nn.RNN``, Keras' ``SimpleRNN``).

    Forward, for t = 0 … T−1 with h₋₁ = 0::

        zₜ = xₜ·W + hₜ₋₁·U + b          (N, H)
        hₜ = f(zₜ)                      f = ``activation``, tanh by default

    Backward through time, from gₜ = dL/dhₜ given by the layer above (only g_{T−1} without
    ``return_sequences``), carrying ``dh_next`` = dL/dhₜ through later steps (0 at t = T−1)::

        dhₜ      = gₜ + dh_next
        δₜ       = f'(zₜ) ⊙ dhₜ           (the activation's backward)
        dh_next  = δₜ · Uᵀ                 (into step t−1)

    then dL/dW = Σₜ xₜᵀδₜ, dL/dU = Σₜ hₜ₋₁ᵀδₜ, dL/db = Σₜ,batch δₜ, dL/dxₜ = δₜ·Wᵀ.
    Kept from forward: the inputs, every zₜ (``preactivations``) and hₜ.
    """

    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [
        {"params": {"units": 3, "return_sequences": True}, "input_shape": (12, 2)},
        {"params": {"units": 3}, "input_shape": (5, 2)},
    ]

    activation: object = attrs.field(default="tanh", converter=activation_spec)

    # ONNX's RNN activations that match a plugnet activation: (name, alpha, beta).
    ONNX_ACTIVATIONS = {
        "tanh": ("Tanh",),
        "sigmoid": ("Sigmoid",),
        "relu": ("Relu",),
        "identity": ("Affine", 1.0, 0.0),
    }

    def onnx_attributes(self, builder):
        if builder.dtype != np.float32:
            return None
        kind = kind_of(self.activation)
        if kind == "leaky_relu":
            return {
                "activations": ["LeakyRelu"],
                "activation_alpha": [float(self.activation.alpha)],
            }
        if kind not in self.ONNX_ACTIVATIONS:
            return None  # unrolled, the activation through its own exporter
        name, *coefficients = self.ONNX_ACTIVATIONS[kind]
        attributes = {"activations": [name]}
        if coefficients:
            attributes.update(activation_alpha=[coefficients[0]], activation_beta=[coefficients[1]])
        return attributes

    def onnx_step(self, builder, a, state, cell, shared):
        """hₜ = f(xₜ·W + b + hₜ₋₁·U)."""
        return builder.activation(
            self.activation, self.onnx_recurrent_sum(builder, a, state, shared)
        ), None

    def forward(self, x, training=False):
        z = self.input_products(x)  # (T, N, H), each step's U-term added in the loop
        states = np.empty_like(z)
        recurrent = self.params["recurrent_weights"]
        for t in range(len(z)):
            if t:
                z[t] += states[t - 1] @ recurrent
            states[t] = self.activation.forward(z[t])
        self.pre = z
        self.preactivations = z.transpose(1, 0, 2)
        return self.output(states)

    def step(self, x, state=None):
        """One step of the recurrence: ``(hₜ, state)`` from ``xₜ`` ``(N, F)`` and the state
        the previous step returned (None: h₋₁ = 0).  `framework.generate` samples one id at
        a time with it, carrying the state instead of re-reading a window."""
        h = self.zero_state(x) if state is None else state
        p = self.params
        h = self.activation.forward(x @ p["weights"] + p["bias"] + h @ p["recurrent_weights"])
        return h, h

    def backward(self, grad_y):
        grads_out, dh_next = self.output_grads(grad_y)
        recurrent_t = np.ascontiguousarray(self.params["recurrent_weights"].T)
        delta = np.empty_like(self.pre)
        for t in reversed(range(len(delta))):
            dh = dh_next if grads_out is None else grads_out[t] + dh_next
            delta[t] = self.activation.backward(self.pre[t], self.states[t], dh)
            if t:
                dh_next = delta[t] @ recurrent_t
        return self.parameter_grads(delta)


@kernel
def lstm_steps(products, recurrent, gates, cells, tanh_cells, states):
    """`LSTM`'s forward equations over all steps, compiled (`framework.kernels`): per step
    the product hₜ₋₁·U (BLAS), then for each of the batch's rows the gates, cₜ, tanh(cₜ)
    and hₜ.  ``products`` (T, N, 4, H) holds xₜ·W + b, gate blocks on the third axis in
    PyTorch's order i, f, g, o; written: ``gates`` (T, N, 4, H), the gates' values, and
    ``cells``, ``tanh_cells``, ``states`` (T, N, H).  σ(a) = 1 / (1 + e^(−a)),
    tanh(a) = 1 − 2 / (1 + e^(2a)).

    Why a row is five short loops and not one: the compiler vectorises a loop only where it
    can check cheaply that what it writes overlaps nothing it reads (8 pairs of arrays at
    most, and never rows of one array a runtime length apart); one loop writing all seven
    quantities measured 3.5× slower (3.8 ms a forward pass at batch 64, T = 50, 32 units,
    against 1.1 ms)."""
    steps, n, _, hidden = products.shape
    one, two = products.dtype.type(1), products.dtype.type(2)
    recurrent_sum = np.zeros((n, 4, hidden), products.dtype)  # hₜ₋₁·U, 0 at t = 0
    no_cells = np.zeros((n, hidden), products.dtype)  # c₋₁
    for t in range(steps):
        if t:
            np.dot(states[t - 1], recurrent, recurrent_sum.reshape(n, 4 * hidden))
        previous_cells = cells[t - 1] if t else no_cells
        for row in range(n):
            a, u, gate = products[t, row], recurrent_sum[row], gates[t, row]  # (4, H) each
            for k in range(hidden):
                gate[0, k] = one / (one + exp(-(a[0, k] + u[0, k])))  # i
            for k in range(hidden):
                gate[1, k] = one / (one + exp(-(a[1, k] + u[1, k])))  # f
            for k in range(hidden):
                gate[2, k] = one - two / (one + exp(two * (a[2, k] + u[2, k])))  # g
            for k in range(hidden):
                gate[3, k] = one / (one + exp(-(a[3, k] + u[3, k])))  # o
            i, f, g, o = gate[0], gate[1], gate[2], gate[3]
            c, tanh_c, h = cells[t, row], tanh_cells[t, row], states[t, row]
            c_previous = previous_cells[row]
            for k in range(hidden):
                c[k] = f[k] * c_previous[k] + i[k] * g[k]
                tanh_c[k] = one - two / (one + exp(two * c[k]))
                h[k] = o[k] * tanh_c[k]


@kernel
def lstm_steps_backward(gates, cells, tanh_cells, grads_out, dh_next, recurrent_t, grad_gates):
    """`LSTM`'s backward equations over all steps in reverse, compiled: per step, for each
    of the batch's rows, daₜ (into ``grad_gates`` (T, N, 4, H)) and dc_next; then
    dh_next = daₜ·Uᵀ (BLAS; ``recurrent_t`` (4H, H)) into ``dh_next`` (N, H), which comes
    in holding dL/dh_{T−1}.  ``gates``, ``cells`` and ``tanh_cells`` are what `lstm_steps`
    wrote; ``grads_out`` (T, N, H) is dL/dhₜ from the layer above, or has no steps where
    only the last state is an output."""
    steps, n, _, hidden = gates.shape
    one = gates.dtype.type(1)
    dc_next = np.zeros((n, hidden), gates.dtype)
    no_cells = np.zeros((n, hidden), gates.dtype)  # c₋₁
    for t in range(steps - 1, -1, -1):
        if len(grads_out):
            dh_next += grads_out[t]
        previous_cells = cells[t - 1] if t else no_cells
        for row in range(n):
            gate, da = gates[t, row], grad_gates[t, row]  # (4, H) each
            i, f, g, o = gate[0], gate[1], gate[2], gate[3]
            da_i, da_f, da_g, da_o = da[0], da[1], da[2], da[3]
            dh, dc_carried = dh_next[row], dc_next[row]
            c_previous, tanh_c = previous_cells[row], tanh_cells[t, row]
            for k in range(hidden):
                dc = dh[k] * o[k] * (one - tanh_c[k] * tanh_c[k]) + dc_carried[k]
                da_i[k] = dc * g[k] * i[k] * (one - i[k])
                da_f[k] = dc * c_previous[k] * f[k] * (one - f[k])
                da_g[k] = dc * i[k] * (one - g[k] * g[k])
                da_o[k] = dh[k] * tanh_c[k] * o[k] * (one - o[k])
                dc_carried[k] = dc * f[k]
        if t:
            np.dot(grad_gates[t].reshape(n, 4 * hidden), recurrent_t, dh_next)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class LSTM(Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber), PyTorch's ``nn.LSTM`` equations.

    Forward, for t = 0 … T−1 with h₋₁ = c₋₁ = 0, the four gates side by side in the order
    i, f, g, o (blocks of H columns)::

        [aᵢ a_f a_g a_o] = xₜ·W + hₜ₋₁·U + b        (N, 4H)
        i = σ(aᵢ)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
        cₜ = f ⊙ cₜ₋₁ + i ⊙ g
        hₜ = o ⊙ tanh(cₜ)

    Backward through time, from gₜ = dL/dhₜ (only g_{T−1} without ``return_sequences``),
    carrying ``dh_next`` and ``dc_next`` (both 0 at t = T−1)::

        dhₜ  = gₜ + dh_next
        dcₜ  = dhₜ ⊙ o ⊙ (1 − tanh²(cₜ)) + dc_next
        daᵢ  = dcₜ ⊙ g ⊙ i(1 − i)          da_f = dcₜ ⊙ cₜ₋₁ ⊙ f(1 − f)
        da_g = dcₜ ⊙ i ⊙ (1 − g²)          da_o = dhₜ ⊙ tanh(cₜ) ⊙ o(1 − o)
        dc_next = dcₜ ⊙ f                  dh_next = daₜ · Uᵀ

    then dL/dW = Σₜ xₜᵀdaₜ, dL/dU = Σₜ hₜ₋₁ᵀdaₜ, dL/db = Σₜ,batch daₜ, dL/dxₜ = daₜ·Wᵀ.
    The factors that multiply dcₜ and dhₜ depend on forward values only, so they are formed
    for all steps at once before the loop.  Kept from forward: the inputs and, per step, the
    gates i, f, g, o, cₜ, tanh(cₜ) and hₜ.

    ``unit_forget_bias`` (default true, as Keras): the forget gate's bias starts at 1, so
    f ≈ σ(1) ≈ 0.73 and the cell keeps its memory from the first step, which lets the
    gradient reach early steps of long sequences (Jozefowicz et al., 2015); false leaves the
    bias as ``bias_init`` made it.
    """

    gates = 4
    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [
        {"params": {"units": 3, "return_sequences": True}, "input_shape": (12, 2)},
        {"params": {"units": 3}, "input_shape": (5, 2)},
    ]

    unit_forget_bias: bool = attrs.field(default=True, validator=boolean)

    onnx_operator = "LSTM"
    onnx_gate_order = (0, 3, 1, 2)  # ONNX's i, o, f, c from plugnet's i, f, g, o

    def onnx_step(self, builder, a, state, cell, shared):
        """cₜ = σ(a_f) ⊙ cₜ₋₁ + σ(aᵢ) ⊙ tanh(a_g),  hₜ = σ(a_o) ⊙ tanh(cₜ)."""
        i, f, g, o = self.onnx_gates(
            builder, self.onnx_recurrent_sum(builder, a, state, shared), shared
        )
        cell_in = builder.add("Mul", [builder.add("Sigmoid", [i]), builder.add("Tanh", [g])])
        if cell is not None:
            cell_in = builder.add(
                "Add", [cell_in, builder.add("Mul", [builder.add("Sigmoid", [f]), cell])]
            )
        state = builder.add("Mul", [builder.add("Sigmoid", [o]), builder.add("Tanh", [cell_in])])
        return state, cell_in

    def build(self, input_shape):
        shape = super().build(input_shape)
        if self.unit_forget_bias:
            self.params["bias"][self.units : 2 * self.units] = 1
        return shape

    # The working layout of a step: one (5H, N) block [c₋ g f i o], the cell state the step
    # starts from followed by the gates in the order (g, f, i, o), each (H, N): the batch
    # last, so that any run of blocks is one contiguous stretch of memory (see `forward`).
    WORK_ORDER = (2, 1, 0, 3)  # PyTorch's gate blocks (i, f, g, o) in the order (g, f, i, o)

    def buffer(self, key, shape, dtype):
        """A reusable ``np.empty`` for ``key`` (as conv2d's): the arrays a pass makes over all
        steps are a megabyte or two each, and fresh ones cost the page faults of memory the
        allocator gave back between steps (the backward pass's local derivatives: 0.8 ms
        for one pass over fresh memory against 0.06 ms over reused)."""
        scratch = self.__dict__.setdefault("scratch", {})
        held = scratch.get(key)
        if held is None or held.shape != shape or held.dtype != dtype:
            held = scratch[key] = np.empty(shape, dtype=dtype)
        return held

    def work_layout(self, value, exponents=True):
        """A ``(…, 4H)`` parameter's gate blocks in the working order (g, f, i, o); with
        ``exponents``, the tanh gate's columns doubled and the sigmoid gates' negated, so the
        products give the exponents of g = 1 − 2 / (1 + e^(2a)) and σ(a) = 1 / (1 + e^(−a))."""
        hidden = self.units
        out = np.concatenate(
            [value[..., k * hidden : (k + 1) * hidden] for k in self.WORK_ORDER], axis=-1
        )
        if exponents:
            out[..., :hidden] *= 2
            out[..., hidden:] *= -1
        return out

    def forward(self, x, training=False):
        """The equations above: all steps in one compiled kernel (`lstm_steps`) where
        `framework.kernels` are on, else `numpy_forward`, the readable reference.

        Measured (benchmarks/model_speed.py's LSTM model, batch 64, T = 50, 32 units, one
        thread, medians): forward 2.2 ms with numpy, 0.9 ms with the kernel; backward
        2.1 against 1.3 ms (its steps' products are the same BLAS calls: what goes is the
        dozen numpy calls a step and their passes over memory)."""
        if not kernels.enabled():
            return self.numpy_forward(x, training)
        products = self.input_products(x)  # (T, N, 4H), keeps the inputs for dL/dW
        steps, n, _ = products.shape
        dtype = products.dtype
        products = products.reshape(steps, n, 4, self.units)  # the gate blocks apart
        gates = self.buffer(("gates", training), products.shape, dtype)
        cells, tanh_cells = (
            self.buffer((name, training), (steps, n, self.units), dtype)
            for name in ("cells", "tanh_cells")
        )
        states = np.empty((steps, n, self.units), dtype)  # the output: never reused
        lstm_steps(products, self.params["recurrent_weights"], gates, cells, tanh_cells, states)
        self.kernel_values = (gates, cells, tanh_cells)
        return self.output(states)

    def numpy_forward(self, x, training=False):
        """The equations above, step by step, in the working layout: per step one (5H, N)
        block ``[c₋ g f i o]``, batch last, so that each pass of a step covers contiguous
        memory: one product ``U'ᵀ·hₜ₋₁`` for all four gates, one ``exp`` over them and
        1 / (1 + e) (the parameters' columns scaled so that this is σ(a) for f, i, o, and
        g = tanh(a) = 1 − 2 / (1 + e^(2a)) after two short passes), ``[f i] ⊙ [c₋ g]`` as
        one product whose halves' sum is written straight into the next step's ``c₋``, then
        ``tanh(cₜ)`` and ``o ⊙ tanh(cₜ)``: twelve numpy calls.  Backward runs in the same
        layout, its local derivatives formed for all steps at once, in contiguous passes.

        Why: at 32 units a step's arrays are a few thousand numbers, so the time goes to
        numpy's calls, to inner loops as short as one gate block's row, and to fresh
        memory, not to arithmetic.  Measured (CPU time of one thread, median of paired
        rounds, benchmarks/model_speed.py's LSTM model, batch 64, T = 50, 32 units):
        PyTorch's layout (N, 4H) with a sigmoid pass per gate block, the local derivatives
        formed on (T, N, H) slices of 32-number rows and fresh arrays each step: 10.6 ms a
        training step; a (N, 5H) row layout [c₋ g f i o] (nine calls a step, but still
        32-number rows: a pass over (50, 64, 32) such slices takes 77 µs against 15 µs
        contiguous): no faster; this batch-last layout with transposed copies in and out:
        1.28x; without them (the input products and the parameters' gradients as batched
        products in this layout) and with the per-pass arrays reused: 6.5 ms, 1.68x.  The
        gates by ``exp`` instead of ``tanh`` (σ(a) = ½·tanh(a/2) + ½ before): numpy's float32
        ``tanh`` is not vectorised on this project's AMD machines (2.7 ns a number against
        1.3 for ``exp``): 24.4 µs against 15.2 µs for a step's four gates, the forward pass
        2.67 → 2.22 ms."""
        self.kernel_values = None  # backward by numpy_backward
        hidden = self.units
        n, steps, _ = x.shape
        dtype = np.result_type(x, self.params["weights"])
        self.inputs = np.ascontiguousarray(x.transpose(1, 0, 2))  # (T, N, F), for dL/dW
        # Kept for backward, one set for training and one for evaluation (which never
        # comes between a training forward and its backward).
        work = self.buffer(("work", training), (steps + 1, 5 * hidden, n), dtype)
        work[0, :hidden] = 0  # c₋₁ = 0
        # xₜ·W + b of every step, (4H, N) each: one batched product, no transposed copy
        gates_in = work[:steps, hidden:]
        np.matmul(
            self.work_layout(self.params["weights"]).T, self.inputs.transpose(0, 2, 1), out=gates_in
        )
        gates_in += self.work_layout(self.params["bias"])[:, None]
        tanh_cells = self.buffer(("tanh_cells", training), (steps, hidden, n), dtype)
        states = np.empty((steps, hidden, n), dtype)  # the output: never reused
        recurrent_t = np.ascontiguousarray(self.work_layout(self.params["recurrent_weights"]).T)
        product = self.buffer("product", (4 * hidden, n), dtype)
        pair = self.buffer("pair", (2 * hidden, n), dtype)
        one, minus_two = dtype.type(1), dtype.type(-2)
        # e^x past x = 88 (float32) is inf, and 1 / inf = 0: the right σ and g, no warning
        with np.errstate(over="ignore"):
            for t in range(steps):
                block = work[t]
                gates = block[hidden:]
                if t:
                    gates += np.matmul(recurrent_t, states[t - 1], out=product)
                np.exp(gates, out=gates)  # e^(2a) for g, e^(−a) for f, i, o
                gates += one
                np.divide(one, gates, out=gates)  # σ(a) for f, i, o
                tanh_gate = block[hidden : 2 * hidden]
                tanh_gate *= minus_two
                tanh_gate += one  # g = tanh(a) = 1 − 2 / (1 + e^(2a))
                np.multiply(block[2 * hidden : 4 * hidden], block[: 2 * hidden], out=pair)
                cell = work[t + 1, :hidden]
                np.add(pair[:hidden], pair[hidden:], out=cell)  # cₜ = f ⊙ c₋ + i ⊙ g
                np.tanh(cell, out=tanh_cells[t])
                np.multiply(block[4 * hidden :], tanh_cells[t], out=states[t])
        self.work, self.tanh_cells, self.states_by_unit = work, tanh_cells, states
        return self.output(states.transpose(0, 2, 1))  # (T, N, H) views, no copy

    @property
    def cells(self):
        """cₜ of every step of the last forward pass, time-major ``(T, N, H)``."""
        if self.kernel_values is not None:
            return self.kernel_values[1]
        return self.work[1:, : self.units].transpose(0, 2, 1)

    def step(self, x, state=None):
        """One step: ``(hₜ, (hₜ, cₜ))`` from ``xₜ`` ``(N, F)`` and the previous step's
        ``(h, c)`` (None: zeros), by the equations above (see `SimpleRNN.step`)."""
        h, c = (self.zero_state(x),) * 2 if state is None else state
        p, hidden = self.params, self.units
        a = x @ p["weights"] + p["bias"] + h @ p["recurrent_weights"]
        i, f, o = (sigmoid(a[:, k * hidden : (k + 1) * hidden]) for k in (0, 1, 3))
        c = f * c + i * np.tanh(a[:, 2 * hidden : 3 * hidden])
        h = o * np.tanh(c)
        return h, (h, c)

    def backward(self, grad_y):
        """The backward equations, by `lstm_steps_backward` after a kernel's forward
        pass, else by `numpy_backward`; the parameters' gradients then come from the gate
        gradients of all steps at once (`Recurrent.parameter_grads`)."""
        if self.kernel_values is None:
            return self.numpy_backward(grad_y)
        gates, cells, tanh_cells = self.kernel_values
        grads_out, dh_next = self.output_grads(grad_y)  # dh_next: a fresh array, written
        grads_out = (
            np.zeros((0, *dh_next.shape), dh_next.dtype)
            if grads_out is None
            else np.ascontiguousarray(grads_out)
        )
        grad_gates = self.buffer("grad_gates", gates.shape, gates.dtype)  # (T, N, 4, H)
        recurrent_t = np.ascontiguousarray(self.params["recurrent_weights"].T)
        lstm_steps_backward(gates, cells, tanh_cells, grads_out, dh_next, recurrent_t, grad_gates)
        return self.parameter_grads(grad_gates.reshape(*gates.shape[:2], -1))

    def numpy_backward(self, grad_y):
        grads_out, dh_next = self.output_grads(grad_y)
        hidden = self.units
        work = self.work
        steps, n = len(work) - 1, work.shape[2]
        dtype = work.dtype
        # The working layout's blocks, all steps: each (T, H, N), contiguous within a step.
        previous_cells, g = work[:steps, :hidden], work[:steps, hidden : 2 * hidden]
        f, i, o = (work[:steps, k * hidden : (k + 1) * hidden] for k in (2, 3, 4))
        tanh_cells = self.tanh_cells
        # Local derivatives, all steps at once, in the working order (g, f, i, o):
        # da_{g,f,i} = dc ⊙ factor, da_o = dh ⊙ factor, from the slopes 1 − g² of the tanh
        # block and σ(1 − σ) of the sigmoid ones (two passes over the gates).
        gates = work[:steps, hidden:]
        factors = self.buffer("factors", gates.shape, dtype)
        sigmoid_gates, sigmoid_factors = gates[:, hidden:], factors[:, hidden:]
        np.subtract(1, sigmoid_gates, out=sigmoid_factors)
        sigmoid_factors *= sigmoid_gates  # σ(1 − σ)
        tanh_factor = factors[:, :hidden]
        np.multiply(g, g, out=tanh_factor)
        np.subtract(1, tanh_factor, out=tanh_factor)  # 1 − g²
        tanh_factor *= i  # i ⊙ (1 − g²)
        factors[:, hidden : 2 * hidden] *= previous_cells  # c₋ ⊙ f(1 − f)
        factors[:, 2 * hidden : 3 * hidden] *= g  # g ⊙ i(1 − i)
        factors[:, 3 * hidden :] *= tanh_cells  # tanh(cₜ) ⊙ o(1 − o)
        cell_factor = self.buffer("cell_factor", tanh_cells.shape, dtype)
        np.multiply(tanh_cells, tanh_cells, out=cell_factor)  # dc from dh: o ⊙ (1 − tanh²(cₜ))
        np.subtract(1, cell_factor, out=cell_factor)
        cell_factor *= o
        if grads_out is not None:
            grads_out = np.ascontiguousarray(grads_out.transpose(0, 2, 1))
        dh_next = np.ascontiguousarray(dh_next.T)
        grad_gates = self.buffer("grad_gates", factors.shape, dtype)  # (T, 4H, N), working order
        recurrent = self.work_layout(self.params["recurrent_weights"], False)  # (H, 4H)
        dc, dc_next = np.empty_like(dh_next), np.zeros_like(dh_next)
        carried = np.empty_like(dh_next)  # dh_next's array from the second step on
        for t in reversed(range(steps)):
            dh = dh_next if grads_out is None else grads_out[t] + dh_next
            np.multiply(dh, cell_factor[t], out=dc)
            dc += dc_next
            step_grads = grad_gates[t]
            np.multiply(
                dc,
                factors[t, : 3 * hidden].reshape(3, hidden, n),
                out=step_grads[: 3 * hidden].reshape(3, hidden, n),
            )
            np.multiply(dh, factors[t, 3 * hidden :], out=step_grads[3 * hidden :])
            if t:
                np.multiply(dc, f[t], out=dc_next)
                dh_next = np.matmul(recurrent, step_grads, out=carried)  # dh is read already
        # The parameters' gradients from the working layout, each a batched product over
        # the steps summed (no transposed copy of the gradients), their gate blocks then
        # put back in PyTorch's order (i, f, g, o):
        # dL/dW = Σₜ xₜᵀ·daₜ, dL/dU = Σₜ hₜ₋₁ᵀ·daₜ, dL/db = Σₜ,batch daₜ, dL/dxₜ = daₜ·Wᵀ.
        order = np.argsort(self.WORK_ORDER)

        def pytorch_order(value):  # (…, 4H) in the working order -> PyTorch's
            blocks = value.reshape(*value.shape[:-1], 4, hidden)[..., order, :]
            return blocks.reshape(value.shape)

        inputs, states = self.inputs, self.states_by_unit  # (T, N, F), (T, H, N)
        self.grads["weights"][...] = pytorch_order(np.matmul(grad_gates, inputs).sum(axis=0).T)
        self.grads["bias"][...] = pytorch_order(grad_gates.sum(axis=(0, 2)))
        recurrent_grad = np.matmul(grad_gates[1:], states[:-1].transpose(0, 2, 1)).sum(axis=0)
        self.grads["recurrent_weights"][...] = pytorch_order(recurrent_grad.T)
        if not self.needs_input_grad:
            return None
        weights = self.work_layout(self.params["weights"], False)  # (F, 4H), working order
        return np.matmul(weights, grad_gates).transpose(2, 0, 1)  # (N, T, F)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class GRU(Recurrent):
    """Gated recurrent unit (Cho et al.), PyTorch's ``nn.GRU`` equations: the reset gate
    multiplies ``h·U_n + c_n``, so the recurrent bias ``c`` is a parameter of its own.

    Forward, for t = 0 … T−1 with h₋₁ = 0, gates r, z, n side by side (blocks of H)::

        [x_r x_z x_n] = xₜ·W + b          [u_r u_z u_n] = hₜ₋₁·U + c        (N, 3H)
        r = σ(x_r + u_r)     z = σ(x_z + u_z)
        n = tanh(x_n + r ⊙ u_n)
        hₜ = (1 − z) ⊙ n + z ⊙ hₜ₋₁

    Backward through time, from gₜ = dL/dhₜ (only g_{T−1} without ``return_sequences``),
    carrying ``dh_next`` (0 at t = T−1)::

        dhₜ  = gₜ + dh_next
        dn   = dhₜ ⊙ (1 − z) ⊙ (1 − n²)                  (through n's tanh)
        dz   = dhₜ ⊙ (hₜ₋₁ − n) ⊙ z(1 − z)
        dr   = dn ⊙ u_n ⊙ r(1 − r)
        dx-part  [dr dz dn]        → dL/dW = Σₜ xₜᵀ[…], dL/db, dL/dxₜ = […]·Wᵀ
        du-part  [dr dz dn ⊙ r]    → dL/dU = Σₜ hₜ₋₁ᵀ[…], dL/dc
        dh_next = dhₜ ⊙ z + [dr dz dn ⊙ r] · Uᵀ

    Every one of dr, dz, dn is dhₜ times a factor of forward values, formed for all steps at
    once before the loop.  Kept from forward: the inputs and, per step, r, z, n, u_n and hₜ.
    ``recurrent_bias`` (3H,) is PyTorch's ``bias_hh_l0``; ``bias`` its ``bias_ih_l0``.
    """

    gates = 3
    # What `framework.testing.check_plugin` checks the gradients on.
    check_cases = [
        {"params": {"units": 3, "return_sequences": True}, "input_shape": (12, 2)},
        {"params": {"units": 3}, "input_shape": (5, 2)},
    ]

    onnx_operator = "GRU"
    onnx_gate_order = (1, 0, 2)  # ONNX's z, r, h from plugnet's r, z, n

    def onnx_attributes(self, builder):
        # The reset gate multiplies h·U_n + c_n, as here and in PyTorch.
        return None if builder.dtype != np.float32 else {"linear_before_reset": 1}

    def onnx_step(self, builder, a, state, cell, shared):
        """r, z = σ(x_{r,z} + u_{r,z}),  n = tanh(x_n + r ⊙ u_n),  hₜ = n + z ⊙ (hₜ₋₁ − n)."""
        c = shared["recurrent_bias"]  # u = hₜ₋₁·U + c, just c at the first step
        u = (
            c
            if state is None
            else builder.add(
                "Add", [builder.add("MatMul", [state, shared["recurrent_weights"]]), c]
            )
        )
        (x_r, x_z, x_n), (u_r, u_z, u_n) = (
            self.onnx_gates(builder, a, shared),
            self.onnx_gates(builder, u, shared),
        )
        r = builder.add("Sigmoid", [builder.add("Add", [x_r, u_r])])
        z = builder.add("Sigmoid", [builder.add("Add", [x_z, u_z])])
        n = builder.add("Tanh", [builder.add("Add", [x_n, builder.add("Mul", [r, u_n])])])
        change = builder.add("Neg", [n]) if state is None else builder.add("Sub", [state, n])
        return builder.add("Add", [n, builder.add("Mul", [z, change])]), None

    def build(self, input_shape):
        shape = super().build(input_shape)
        self.add_param("recurrent_bias", (3 * self.units,), self.bias_init)
        return shape

    def forward(self, x, training=False):
        hidden = self.units
        sigmoids = (0, 1)  # r, z
        xw = self.input_products(
            x, self.scaled("weights", sigmoids), self.scaled("bias", sigmoids)
        )  # (T, N, 3H)
        steps, n, _ = xw.shape
        gates = np.empty((steps, n, 2 * hidden), xw.dtype)  # r, z
        candidates, recurrent_n, states = (np.empty((steps, n, hidden), xw.dtype) for _ in range(3))
        recurrent = self.scaled("recurrent_weights", sigmoids)
        recurrent_bias = self.scaled("recurrent_bias", sigmoids)
        half = xw.dtype.type(0.5)
        for t in range(steps):
            u = (
                states[t - 1] @ recurrent + recurrent_bias
                if t
                else np.broadcast_to(recurrent_bias, (n, 3 * hidden))
            )
            rz = gates[t]
            np.add(xw[t, :, : 2 * hidden], u[:, : 2 * hidden], out=rz)
            np.tanh(rz, out=rz)  # tanh(a/2), then σ(a) = ½·tanh(a/2) + ½
            rz *= half
            rz += half
            recurrent_n[t] = u[:, 2 * hidden :]
            candidate = candidates[t]
            np.multiply(rz[:, :hidden], recurrent_n[t], out=candidate)
            candidate += xw[t, :, 2 * hidden :]
            np.tanh(candidate, out=candidate)
            # hₜ = n + z ⊙ (hₜ₋₁ − n)
            if t:
                np.subtract(states[t - 1], candidate, out=states[t])
                states[t] *= rz[:, hidden:]
            else:
                np.multiply(candidate, -rz[:, hidden:], out=states[t])
            states[t] += candidate
        self.gate_values, self.candidates, self.recurrent_n = gates, candidates, recurrent_n
        return self.output(states)

    def step(self, x, state=None):
        """One step: ``(h', h')`` from ``xₜ`` ``(N, F)`` and the previous state (None: zeros),
        by the equations above (see `SimpleRNN.step`)."""
        h = self.zero_state(x) if state is None else state
        p, hidden = self.params, self.units
        xw = x @ p["weights"] + p["bias"]
        u = h @ p["recurrent_weights"] + p["recurrent_bias"]
        r = sigmoid(xw[:, :hidden] + u[:, :hidden])
        z = sigmoid(xw[:, hidden : 2 * hidden] + u[:, hidden : 2 * hidden])
        n = np.tanh(xw[:, 2 * hidden :] + r * u[:, 2 * hidden :])
        h = (1 - z) * n + z * h
        return h, h

    def backward(self, grad_y):
        grads_out, dh_next = self.output_grads(grad_y)
        hidden = self.units
        steps, n, _ = self.candidates.shape
        r, z = self.gate_values[..., :hidden], self.gate_values[..., hidden:]
        candidate = self.candidates
        previous = np.concatenate([np.zeros_like(self.states[:1]), self.states[:-1]])
        # Per step, du = dhₜ ⊙ factor (r, z, n blocks); dx's n block is du's without the r.
        factors = np.empty((steps, n, 3, hidden), candidate.dtype)
        factor_n = (1 - z) * (1 - candidate * candidate)
        factors[:, :, 0] = factor_n * self.recurrent_n * r * (1 - r)
        factors[:, :, 1] = (previous - candidate) * z * (1 - z)
        factors[:, :, 2] = factor_n * r
        grad_u = np.empty_like(factors)
        grad_h = np.empty_like(candidate)  # dhₜ of each step, for dx's n block after the loop
        recurrent_t = np.ascontiguousarray(self.params["recurrent_weights"].T)
        for t in reversed(range(steps)):
            dh = grad_h[t]
            if grads_out is None:
                dh[...] = dh_next
            else:
                np.add(grads_out[t], dh_next, out=dh)
            np.multiply(dh[:, None, :], factors[t], out=grad_u[t])
            if t:
                dh_next = grad_u[t].reshape(n, 3 * hidden) @ recurrent_t
                dh_next += dh * z[t]
        grad_u = grad_u.reshape(steps, n, 3 * hidden)
        np.sum(grad_u, axis=(0, 1), out=self.grads["recurrent_bias"])
        grad_x = grad_u.copy()
        np.multiply(grad_h, factor_n, out=grad_x[..., 2 * hidden :])
        return self.parameter_grads(grad_x, grad_u)
