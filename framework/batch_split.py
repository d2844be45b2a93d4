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
addition).  Where samples meet inside the model — batch norm's statistics over the batch —
the halves run at the same time and add up their partial sums (`Part.sum`: each half waits
for the other there, and both get the same totals).  Only models whose layers all allow it
qualify (`Model.splits_batch`: no dropout draws, which would come in another order), and
only where the work on the samples outweighs the cost of adding the gradients
(`worth_splitting`).

Measured on nanoGPT's Shakespeare GPT (batch 12, 4 layers, 128 channels, two threads,
forward and backward, median of 7 paired rounds): 47.7 ms unsplit, 39.7 ms split (1.20x).
On examples/resnet_mnist.toml's network (batch 32, four batch norms: eight exchanges a
step, each costing the waiting thread ~35 µs to be woken), a training step 15.8 ms unsplit
against 14.2 ms split, and 15.6 against 14.2 with the import orders swapped (paired rounds
of `benchmarks/model_speed.py`'s workers, 9 each).
"""

import math
import threading

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


_running = threading.local()  # .part: the `Part` this thread runs, while it runs one


def current_part():
    """The `Part` of a split training step this thread is running, or None outside one (an
    unsplit step, evaluation, prediction).  A layer whose samples meet (batch norm) sums
    its statistics over the parts with it."""
    return getattr(_running, "part", None)


class Part:
    """One thread's share of a split step, ``index`` 0 for the model's own share (whose
    layers keep any running state), the others for its copies, all running at once."""

    def __init__(self, index, exchange):
        self.index, self._exchange = index, exchange

    def gather(self, *values):
        """Every part's ``values``, in part order: each part calls this at the same point
        of its pass with its own, waits for the others, and gets the same list (the
        caller's own values included).  Each exchange costs a wait of about 35 µs for
        the thread that arrives last to wake the other (70 µs round trips measured)."""
        return self._exchange.gather(self.index, values)

    def sum(self, *values):
        """Each of ``values`` (arrays or numbers) added up over every part, in part order,
        so every part gets the same totals to the last bit."""
        shares = self.gather(*values)
        totals = list(shares[0])
        for share in shares[1:]:
            totals = [total + value for total, value in zip(totals, share, strict=True)]
        return totals


class Exchange:
    """Where the parts of one split pass leave their values and pick up everyone's.  Two
    sets of slots used in turn: a part can be at most one exchange ahead of another (it
    waits at each for all of them), so the set it writes next is one every part has
    finished reading."""

    def __init__(self, parts):
        self.barrier = threading.Barrier(parts)
        self.slots = [[None] * parts, [None] * parts]
        self.calls = [0] * parts

    def gather(self, index, values):
        slots = self.slots[self.calls[index] % 2]
        self.calls[index] += 1
        slots[index] = values
        self.barrier.wait()
        return list(slots)

    def run(self, index, work):
        """``work()`` as part ``index``; if it fails, the other parts' waits end at once
        (`threading.BrokenBarrierError`) instead of waiting for a share that never comes."""
        before, _running.part = current_part(), Part(index, self)
        try:
            return work()
        except BaseException:
            self.barrier.abort()
            raise
        finally:
            _running.part = before


def run_parts(work):
    """``work(part)`` for each of the `PARTS` parts at once, each on its own thread; the
    first part's real error is raised rather than another part's broken wait."""
    exchange = Exchange(PARTS)
    errors = [None] * PARTS

    def run(part, _last):
        try:
            exchange.run(part, lambda: work(part))
        except BaseException as error:  # noqa: BLE001  raised below, the cause first
            errors[part] = error

    split(run, PARTS, together=True)
    raised = [error for error in errors if error is not None]
    if raised:  # a part's own error rather than the broken waits it caused in the others
        broken = threading.BrokenBarrierError
        raise next((e for e in raised if not isinstance(e, broken)), raised[0])


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

        def run(part):
            rows = slice(bounds[part], bounds[part + 1])
            outputs[part] = self.models[part].forward(x[rows], True)

        run_parts(run)
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

        def run(part):
            rows = slice(bounds[part], bounds[part + 1])
            self.models[part].backward(grad[rows], False, preactivation)

        run_parts(run)
        model = self.models[0]
        for twin in self.models[1:]:
            for total, part in zip(model.grads_list(), twin.grads_list(), strict=True):
                total += part
