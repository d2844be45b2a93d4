"""Training steps with the batch shared out over two threads.

BLAS spreads each matrix product over the cores, but the rest of a step — softmax, layer
norm, GELU, the many small products of attention's heads — runs on one thread, and handing
one such pass to another thread costs about as much as it saves here (waking a sleeping
thread takes 60–100 µs on this project's machines).  So on two threads a step can instead
be split once: each thread runs the whole forward pass on half the batch, through its own
copy of the model (`framework.Model.twin`: the same parameter arrays, its own gradients and
working memory), with BLAS held to one thread; the loss and its gradient are computed once,
on the whole batch, as before; each thread runs backward on its half; and the copy's
gradients are added to the model's.  Two hand-offs a step instead of hundreds.

The result is the unsplit step's up to rounding: the loss sees the whole batch, and a
parameter's gradient is the sum of the halves' sums over samples (a different order of
addition).  Only models whose samples never meet in forward qualify (`Model.splits_batch`:
no batch norm, no dropout draws, which would come in another order), and only where the
work on the samples outweighs the cost of adding the gradients (`worth_splitting`).

Measured on nanoGPT's Shakespeare GPT (batch 12, 4 layers, 128 channels, two threads,
forward and backward, median of 7 paired rounds): 47.7 ms unsplit, 39.7 ms split (1.20x).
"""

import math

import numpy as np

from framework.threads import split, workers

PARTS = 2
MIN_SPLIT_BATCH = 2 * PARTS  # a smaller batch (an epoch's last) runs unsplit
# The least work worth splitting, in activation elements a step: each of a step's two
# hand-offs costs about 0.1 ms, a pass over a million float32 elements about as much.
MIN_ACTIVATIONS = 1_000_000


def worth_splitting(model, batch_size):
    """Whether a batch of ``batch_size`` is worth splitting for ``model`` on this many
    threads: two threads or more, the model allows it (a model object of another kind,
    without ``splits_batch``, never splits), each part has two samples or more, and the
    activations a step makes (the work that grows with the batch) are a million or more and
    outnumber the parameters (whose gradients the split adds up once more).  A wide MLP's
    matrix products, which BLAS already splits well, fail the last test; a transformer's
    many per-sample passes pass."""
    if batch_size < MIN_SPLIT_BATCH or not getattr(model, "splits_batch", False):
        return False
    if workers() < PARTS:
        return False
    activations = sum(
        math.prod(shape)
        for layer in model.layers
        for shape in [getattr(layer, "output_shape", None)]
        if shape
    )
    per_step = activations * batch_size
    return per_step >= MIN_ACTIVATIONS and per_step > model.num_params


class BatchSplit:
    """A model's training forward and backward passes shared out over `PARTS` threads."""

    def __init__(self, model):
        self.models = [model, model.twin()]
        self.bounds = None

    def forward(self, x, training=True):
        """The training forward pass of ``x``: each part through its own copy of the model."""
        n = len(x)
        self.bounds = bounds = [n * i // PARTS for i in range(PARTS + 1)]
        outputs = [None] * PARTS

        def run(first, last):
            for part in range(first, last):
                rows = slice(bounds[part], bounds[part + 1])
                outputs[part] = self.models[part].forward(x[rows], True)

        split(run, PARTS)
        return np.concatenate(outputs)

    def backward_preactivation(self, grad, input_grad=False):
        self.backward(grad, input_grad, preactivation=True)

    def backward(self, grad, input_grad=False, preactivation=False):
        """Backward from the whole batch's ``grad`` (dL/d output, or dL/dz of the output
        layer with ``preactivation``), each part through the copy that ran its forward;
        then the copies' gradients are added to the model's."""
        if input_grad:
            raise ValueError("a split batch gives the parameters' gradients only")
        bounds = self.bounds

        def run(first, last):
            for part in range(first, last):
                rows = slice(bounds[part], bounds[part + 1])
                self.models[part].backward(grad[rows], False, preactivation)

        split(run, PARTS)
        model = self.models[0]
        for twin in self.models[1:]:
            for total, part in zip(model.grads_list(), twin.grads_list(), strict=True):
                total += part
