"""Built-in optimizers.

Step optimizers update the parameter arrays in place from their gradients, keeping any
per-parameter state (velocities, moment estimates) in lists parallel to the parameters.
``state_dict`` flattens that state to ``{"velocity.0": array, ..., "t": steps}`` — arrays and
numbers only, so a checkpoint stores it without pickle.

Full-batch optimizers (``bfgs``, ``lbfgs``) hand the whole problem to scipy: the trainer gives
them an objective over the model's flat parameter vector, and each of their iterations is one
training step.
"""

import threading

import attrs
import numpy as np

from framework import Optimizer, hookimpl, kernels
from framework.kernels import kernel
from framework.threads import split

positive = attrs.validators.gt(0)
non_negative = attrs.validators.ge(0)
fraction = [attrs.validators.ge(0), attrs.validators.lt(1)]


@attrs.define(on_setattr=attrs.setters.NO_OP)
class StatefulOptimizer(Optimizer):
    """Keeps named per-parameter state lists (``slots``) and a step count ``t``."""

    slots = ()

    def __attrs_post_init__(self):
        self.t = 0
        self.state = {slot: [] for slot in self.slots}

    def ensure_state(self, params):
        for arrays in self.state.values():
            if len(arrays) != len(params):
                arrays[:] = [np.zeros_like(p) for p in params]

    def state_dict(self):
        state = {"t": self.t}
        for slot, arrays in self.state.items():
            state.update({f"{slot}.{i}": a for i, a in enumerate(arrays)})
        return state

    def load_state_dict(self, state):
        state = dict(state)
        self.t = int(state.pop("t", 0))
        for slot in self.state:
            keys = sorted(
                (k for k in state if k.startswith(f"{slot}.")), key=lambda k: int(k.split(".")[1])
            )
            self.state[slot] = [np.array(state.pop(k)) for k in keys]
        if state:
            raise ValueError(f"{type(self).__name__} has no state named {sorted(state)}")


@attrs.define(on_setattr=attrs.setters.NO_OP)
class SGD(StatefulOptimizer):
    """Gradient descent, with momentum as in the circles tutorial: v ← μ·v − lr·g;  θ ← θ + v.

    Nesterov's variant takes the step from the look-ahead point: θ ← θ + μ·v − lr·g.
    """

    lr: float = attrs.field(default=0.01, converter=float, validator=non_negative)
    momentum: float = attrs.field(default=0.0, converter=float, validator=fraction)
    nesterov: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    @property
    def slots(self):
        return ("velocity",) if self.momentum else ()

    def step(self, params, grads):
        self.t += 1
        lr, momentum = self.lr, self.momentum
        if not momentum:
            # strict=False: the lists are the model's, always of one length, and the check
            # costs a per-sample step of a small net measurably
            for param, grad in zip(params, grads, strict=False):
                param -= lr * grad
            return
        # Whole arrays, one pass each, or one compiled pass (`sgd_kernel`) for a parameter
        # of `KERNEL_MIN_SIZE` numbers or more: B1's parameters 118 -> 64 µs a step, one
        # thread.  Measured and dropped (issue 24): the numpy update in cache-sized blocks
        # shared over the threads, as adam's once was, for the 784-2048-2048-10 MLP on two
        # threads: 0.88x and 1.04x this form's step speed in two paired A/B runs.
        self.ensure_state(params)
        compiled = kernels.enabled()
        for param, grad, velocity in zip(params, grads, self.state["velocity"], strict=False):
            if compiled and param.size >= KERNEL_MIN_SIZE:
                t = param.dtype.type
                in_parts(sgd_kernel, (param, grad, velocity), t(lr), t(momentum), self.nesterov)
                continue
            velocity *= momentum
            velocity -= lr * grad
            if self.nesterov:
                param += momentum * velocity - lr * grad
            else:
                param += velocity


@attrs.define(on_setattr=attrs.setters.NO_OP)
class Adam(StatefulOptimizer):
    """Adam in TensorFlow's form: m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
    θ ← θ − lr·√(1−β₂ᵗ)/(1−β₁ᵗ) · m / (√v + ε), the bias correction folded into the step
    size as in the original paper's efficient form and TensorFlow's (the Deep MNIST
    tutorial's optimizer): ε is added to √v *before* the bias correction.

    PyTorch's ``torch.optim.Adam`` adds ε after it: θ ← θ − lr·m̂ / (√v̂ + ε), with
    m̂ = m/(1−β₁ᵗ) and v̂ = v/(1−β₂ᵗ), which is this update with ε·√(1−β₂ᵗ) in place of ε.
    The two agree where √v ≫ ε and differ where gradients are tiny (|g| near ε or below):
    there this form's steps are smaller, by up to √(1−β₂ᵗ) (0.03 at t = 1 with the default
    β₂, 0.8 at t = 1000), so a PyTorch recipe on such a model trains more slowly here.  The
    ``adamw`` optimizer follows PyTorch's form, for porting its recipes exactly."""

    slots = ("m", "v")
    lr: float = attrs.field(default=0.001, converter=float, validator=non_negative)
    beta1: float = attrs.field(default=0.9, converter=float, validator=fraction)
    beta2: float = attrs.field(default=0.999, converter=float, validator=fraction)
    epsilon: float = attrs.field(default=1e-8, converter=float, validator=positive)

    def step(self, params, grads):
        self.ensure_state(params)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        compiled = kernels.enabled()
        for param, grad, m, v in zip(params, grads, self.state["m"], self.state["v"], strict=True):
            if compiled and param.size >= KERNEL_MIN_SIZE:
                t = param.dtype.type
                # adamw's kernel without decay (shrink 1) and ε added to √v itself (÷ 1)
                betas = (t(b1), t(b2), t(1 - b1), t(1 - b2))
                constants = (betas, t(1), t(step_size), t(1), t(self.epsilon))
                in_parts(adam_kernel, (param, grad, m, v), *constants)
            else:
                update_in_blocks(self.update, (param, grad, m, v), step_size)

    def update(self, param, grad, m, v, scratch, step_size):
        """The update of one parameter, or of one block of it, in place through ``scratch``."""
        b1, b2 = self.beta1, self.beta2
        m *= b1
        np.multiply(grad, 1 - b1, out=scratch)
        m += scratch  # m = β₁m + (1−β₁)g
        v *= b2
        np.multiply(grad, grad, out=scratch)
        scratch *= 1 - b2
        v += scratch  # v = β₂v + (1−β₂)g²
        np.sqrt(v, out=scratch)
        scratch += self.epsilon
        np.divide(m, scratch, out=scratch)
        scratch *= step_size
        param -= scratch  # θ −= step · m / (√v + ε̂)


def decay_rule(instance, attribute, value):
    if value not in ("matrices", "all"):
        raise ValueError(f'\'decay\' must be "matrices" or "all", got {value!r}')


@attrs.define(on_setattr=attrs.setters.NO_OP)
class AdamW(StatefulOptimizer):
    """Adam with decoupled weight decay, PyTorch's ``optim.AdamW``:

        θ ← θ·(1 − lr·wd)                                  (decay, before the Adam step)
        m ← β₁m + (1−β₁)g;   v ← β₂v + (1−β₂)g²
        θ ← θ − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)

    unlike ``adam`` (TensorFlow's form), ε is added to the bias-corrected √v̂.  ``decay =
    "matrices"`` decays only parameters of two or more axes (weights and embeddings, not
    biases or layer-norm gains: nanoGPT's two parameter groups); ``"all"`` decays every one.
    """

    slots = ("m", "v")
    lr: float = attrs.field(default=0.001, converter=float, validator=non_negative)
    beta1: float = attrs.field(default=0.9, converter=float, validator=fraction)
    beta2: float = attrs.field(default=0.999, converter=float, validator=fraction)
    epsilon: float = attrs.field(default=1e-8, converter=float, validator=positive)
    weight_decay: float = attrs.field(default=0.01, converter=float, validator=non_negative)
    decay: str = attrs.field(default="matrices", validator=decay_rule)

    def step(self, params, grads):
        self.ensure_state(params)
        self.t += 1
        step_size = self.lr / (1 - self.beta1**self.t)
        root_correction = np.sqrt(1 - self.beta2**self.t)
        compiled = kernels.enabled()
        for param, grad, m, v in zip(params, grads, self.state["m"], self.state["v"], strict=True):
            decayed = self.decay == "all" or param.ndim >= 2
            shrink = 1 - self.lr * self.weight_decay if decayed else 1.0
            if compiled and param.size >= KERNEL_MIN_SIZE:
                t = param.dtype.type
                b1, b2 = self.beta1, self.beta2
                betas = (t(b1), t(b2), t(1 - b1), t(1 - b2))
                constants = (betas, t(shrink), t(step_size), t(root_correction), t(self.epsilon))
                in_parts(adam_kernel, (param, grad, m, v), *constants)
            else:
                update_in_blocks(
                    self.update, (param, grad, m, v), shrink, step_size, root_correction
                )

    def update(self, param, grad, m, v, scratch, shrink, step_size, root_correction):
        """The update of one parameter, or one block of it, in place through ``scratch``."""
        t = param.dtype.type
        if shrink != 1.0:
            param *= t(shrink)  # θ·(1 − lr·wd)
        m *= t(self.beta1)
        np.multiply(grad, t(1 - self.beta1), out=scratch)
        m += scratch  # m = β₁m + (1−β₁)g
        v *= t(self.beta2)
        np.multiply(grad, grad, out=scratch)
        scratch *= t(1 - self.beta2)
        v += scratch  # v = β₂v + (1−β₂)g²
        np.sqrt(v, out=scratch)
        scratch /= t(root_correction)
        scratch += t(self.epsilon)  # √v̂ + ε
        np.divide(m, scratch, out=scratch)
        scratch *= t(step_size)
        param -= scratch


# Elements per block of `update_in_blocks`: the five float32 blocks an Adam update touches
# (parameter, gradient, two moments, scratch) stay in the cache across its ten passes.
BLOCK = 131072
_scratch = threading.local()  # one block-sized scratch array per thread, reused


def scratch_block(dtype):
    held = getattr(_scratch, "array", None)
    if held is None or held.dtype != dtype:
        held = _scratch.array = np.empty(BLOCK, dtype)
    return held


def update_in_blocks(update, arrays, *args):
    """``update(*arrays, scratch, *args)`` on consecutive blocks of the flattened arrays,
    the blocks shared out over `framework.threads.split`'s threads.

    Why blocks: an update written as whole-array passes streams every array through memory
    once per pass; block by block, the passes after the first find it in the cache.
    Measured on the Deep MNIST network's 3.2-million-weight layer: Adam's update takes 9.4 ms
    in blocks against 19 ms whole, on one core, and 6.1 ms split over two.  The same element-wise
    maths in the same order, so the result is the same to the bit."""
    size = arrays[0].size
    if size <= BLOCK:  # one block: straight through, without the split's bookkeeping
        update(*arrays, scratch_block(arrays[0].dtype)[:size].reshape(arrays[0].shape), *args)
        return
    if not all(a.flags.c_contiguous for a in arrays):  # a view of something bigger: one pass
        update(*arrays, np.empty_like(arrays[0]), *args)
        return
    flat = [a.reshape(-1) for a in arrays]

    def part(start, stop):
        scratch = scratch_block(flat[0].dtype)
        for low in range(start, stop, BLOCK):
            high = min(low + BLOCK, stop)
            update(*(a[low:high] for a in flat), scratch[: high - low], *args)

    split(part, size, minimum=2 * BLOCK)


@kernel
def adam_kernel(param, grad, m, v, betas, shrink, step_size, root_correction, epsilon):
    """`AdamW.update` (and `Adam.update`, with shrink 1 and root_correction 1) in one
    compiled pass over flat arrays (`framework.kernels`), in the reference's order of
    operations; ``betas`` is (β₁, β₂, 1 − β₁, 1 − β₂) in the parameter's type, the last
    two rounded from float64 as numpy rounds them.  2.1 ms against 3.6 ms in blocks for
    the 3.2-million-weight layer of the Deep MNIST network, one thread."""
    beta1, beta2, one_minus_beta1, one_minus_beta2 = betas
    for k in range(param.size):
        g = grad[k]
        m[k] = m[k] * beta1 + g * one_minus_beta1
        v[k] = v[k] * beta2 + g * g * one_minus_beta2
        step = m[k] / (np.sqrt(v[k]) / root_correction + epsilon) * step_size
        param[k] = param[k] * shrink - step


# The smallest parameter the optimizers update by a kernel: calling one costs about 5 µs,
# sgd's three numpy passes over a few numbers about 3 µs (a 2-2-1 net's step with momentum:
# 34 µs with the kernel for every parameter against 14 µs); and a model whose parameters are
# all small never loads numba (half a second, about 130 MB).
KERNEL_MIN_SIZE = 4096


@kernel
def sgd_kernel(param, grad, velocity, lr, momentum, nesterov):
    """`SGD`'s momentum step in one compiled pass over flat arrays."""
    for k in range(param.size):
        velocity[k] = momentum * velocity[k] - lr * grad[k]
        if nesterov:
            param[k] += momentum * velocity[k] - lr * grad[k]
        else:
            param[k] += velocity[k]


def in_parts(update, arrays, *args):
    """``update(*flat arrays, *args)`` for a kernel, a large parameter's parts shared out
    over `framework.threads.split`'s threads (a kernel releases the interpreter's lock)."""
    if arrays[0].size < 2 * BLOCK and all(a.flags.c_contiguous for a in arrays):
        update(*(a.reshape(-1) for a in arrays), *args)  # one part: no split's bookkeeping
        return
    if not all(a.flags.c_contiguous for a in arrays):  # a view of something bigger
        copies = [np.ascontiguousarray(a) for a in arrays]
        in_parts(update, copies, *args)
        for array, copy in zip(arrays[:1] + arrays[2:], copies[:1] + copies[2:], strict=True):
            array[...] = copy  # the parameter and the state, written back
        return
    flat = [a.reshape(-1) for a in arrays]
    split(
        lambda start, stop: update(*(a[start:stop] for a in flat), *args),
        flat[0].size,
        minimum=2 * BLOCK,
    )


@attrs.define(on_setattr=attrs.setters.NO_OP)
class RMSprop(StatefulOptimizer):
    """s ← ρs + (1−ρ)g²;  θ ← θ − lr · g / (√s + ε)."""

    slots = ("square_avg",)
    lr: float = attrs.field(default=0.001, converter=float, validator=non_negative)
    rho: float = attrs.field(default=0.9, converter=float, validator=fraction)
    epsilon: float = attrs.field(default=1e-7, converter=float, validator=positive)

    def step(self, params, grads):
        self.ensure_state(params)
        self.t += 1
        for param, grad, square_avg in zip(params, grads, self.state["square_avg"], strict=True):
            square_avg *= self.rho
            square_avg += (1 - self.rho) * grad * grad
            param -= self.lr * grad / (np.sqrt(square_avg) + self.epsilon)


@attrs.define(on_setattr=attrs.setters.NO_OP)
class Adagrad(StatefulOptimizer):
    """s ← s + g²;  θ ← θ − lr · g / (√s + ε), s starting at ``initial_accumulator``."""

    slots = ("sum_squares",)
    lr: float = attrs.field(default=0.01, converter=float, validator=non_negative)
    initial_accumulator: float = attrs.field(
        default=0.1, converter=float, validator=attrs.validators.ge(0)
    )
    epsilon: float = attrs.field(default=1e-7, converter=float, validator=positive)

    def step(self, params, grads):
        fresh = not self.state["sum_squares"]
        self.ensure_state(params)
        if fresh:
            for sum_squares in self.state["sum_squares"]:
                sum_squares += self.initial_accumulator
        self.t += 1
        for param, grad, sum_squares in zip(params, grads, self.state["sum_squares"], strict=True):
            sum_squares += grad * grad
            param -= self.lr * grad / (np.sqrt(sum_squares) + self.epsilon)


@attrs.define(on_setattr=attrs.setters.NO_OP)
class ScipyMinimizer(Optimizer):
    """A quasi-Newton method from ``scipy.optimize.minimize`` over the flat parameter vector.

    ``minimize(objective, x0, iterations, callback)``: ``objective(θ)`` returns the loss and
    its gradient; ``callback(θ)`` runs after each iteration and returns True to stop early.
    There is no learning rate: the line search chooses each step.
    """

    full_batch = True
    lr = None
    method = None
    # scipy's default of 1e-5 on the gradient norm stops on the flat stretches that
    # saturated sigmoids give small costs such as the hours-studied network's (cost ~1e-3,
    # gradient < 1e-5); the line search is cheap, so converge further by default.
    gtol: float = attrs.field(default=1e-8, converter=float, validator=positive)

    def minimize(self, objective, x0, iterations, callback):
        from scipy import optimize  # a quarter of a second to import; only these two need it

        def after_iteration(intermediate_result):
            if callback(intermediate_result.x):
                raise StopIteration

        result = optimize.minimize(
            objective,
            x0,
            jac=True,
            method=self.method,
            callback=after_iteration,
            options={"maxiter": int(iterations), "gtol": self.gtol},
        )
        return result.x


@attrs.define(on_setattr=attrs.setters.NO_OP)
class BFGS(ScipyMinimizer):
    """Broyden–Fletcher–Goldfarb–Shanno: builds a dense inverse-Hessian estimate (as the
    hours-studied network of *Neural Networks Demystified* is trained)."""

    method = "BFGS"


@attrs.define(on_setattr=attrs.setters.NO_OP)
class LBFGS(ScipyMinimizer):
    """Limited-memory BFGS: keeps only the last few updates, for many parameters."""

    method = "L-BFGS-B"


@hookimpl
def register_optimizers():
    return {
        "sgd": SGD,
        "adam": Adam,
        "adamw": AdamW,
        "rmsprop": RMSprop,
        "adagrad": Adagrad,
        "bfgs": BFGS,
        "lbfgs": LBFGS,
    }
