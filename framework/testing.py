"""The plugin authors' testing kit: gradient, shape and parameter checks in float64.

    from framework import testing

    testing.check_plugin(mymodule)                                  # all it registers
    testing.check_layer({"type": "dense", "units": 3}, input_shape=(4,))
    testing.check_activation("tanh")
    testing.check_loss("cross_entropy", y_true=[0, 2, 1, 1])

A backward pass computes a vector-Jacobian product.  Each check therefore contracts the
component's output with a random upstream gradient g, giving the scalar

    f(x) = Σ g ⊙ forward(x),    whose gradient  df/dx = backward(g)

exactly, and compares backward's answer with central differences in float64:

    df/dxᵢ ≈ (f(x + ε eᵢ) − f(x − ε eᵢ)) / 2ε        (truncation error O(ε²), ε = 1e-5)

The error reported is ``max |analytic − numeric| / max(1, max |analytic|, max |numeric|)``:
relative for gradients of order one and larger, absolute below, where the finite-difference
noise floor (about 1e-10) would swamp a relative measure.  Every check returns the largest
error it saw and raises AssertionError naming the component, what was compared, the error
and where, when the error exceeds ``tol`` (1e-6) or a shape or key is wrong.
"""

import numpy as np
import pluggy

from framework import hookspecs
from framework.model import Input, Model, Sequential
from framework.registry import PROJECT, resolve

EPS = 1e-5
TOL = 1e-6
CHECKED_KINDS = ("layers", "activations", "losses")


def numeric_gradient(f, x, eps=EPS):
    """Central differences of the scalar ``f()`` with respect to the array ``x``, which is
    perturbed in place (one element at a time) and restored."""
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + eps
        up = float(f())
        x[index] = old - eps
        down = float(f())
        x[index] = old
        grad[index] = (up - down) / (2 * eps)
    return grad


def compare(analytic, numeric, what, tol=TOL):
    """The scaled error between two gradients; AssertionError naming ``what`` above ``tol``."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"{what}: shape {analytic.shape}, expected {numeric.shape}")
    if analytic.size == 0:
        return 0.0
    diff = np.abs(analytic - numeric)
    scale = max(1.0, float(np.abs(analytic).max()), float(np.abs(numeric).max()))
    error = float(diff.max()) / scale
    if not error <= tol:  # also catches NaN
        at = np.unravel_index(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        at = tuple(int(i) for i in at)
        raise AssertionError(
            f"{what}: max error {error:.2e} > tolerance {tol:.0e} (at index {at}: backward "
            f"gives {analytic[at]:.6g}, finite differences {numeric[at]:.6g})"
        )
    return error


def check_shape(array, expected, what):
    shape = np.shape(array)
    if shape != tuple(expected):
        raise AssertionError(f"{what} has shape {shape}, expected {tuple(expected)}")
    if np.asarray(array).dtype != np.float64:
        raise AssertionError(f"{what} has dtype {np.asarray(array).dtype}, expected float64")


def label(component):
    text = repr(component)
    return text if len(text) <= 120 else text[:117] + "..."


# --- layers ----------------------------------------------------------------------------------


def check_layer(
    layer, input_shape=(4,), *, batch=3, training=(False, True), seed=0, eps=EPS, tol=TOL
):
    """Check a layer (an object, a registered name or a ``{"type": ...}`` mapping).

    The layer is built in float64 inside a one-layer model, which sets its name, dtype and
    generator as any model does; a ``multi_input`` layer (a merge) takes a list of input
    shapes and is checked with respect to each input.  Checked: the output shape is the one
    ``build`` promised (with the batch axis); ``grads`` has the keys and shapes of
    ``params``; writing the flat parameter vector and reading it back is exact and in place;
    layer ``state`` (running statistics) is saved and restored through the model's
    ``state_dict``; forward and backward leave their arguments unchanged (a graph hands one
    array to several layers); and, in each ``training`` mode, backward's gradients with
    respect to the input(s) and every parameter match finite differences of
    Σ g ⊙ forward(x).  A layer with ``backward_preactivation`` (used when a loss fuses with
    its activation) must agree with ``backward`` as well.

    Layers that draw random numbers while training (dropout, noise) get a fresh generator
    with the same seed before every forward call, so each call draws the same mask and the
    function being differentiated is deterministic.  A layer that keeps state while training
    (batch norm's running averages) is checked on the function its training forward
    computes, which does not read that state.
    """
    layer = resolve("layers", layer)
    if getattr(layer, "integer_input", False):  # token ids: see check_token_layer
        return check_token_layer(
            layer, input_shape, batch=batch, training=training, seed=seed, eps=eps, tol=tol
        )
    multi = bool(getattr(layer, "multi_input", False))
    if multi:
        inputs = [Input(shape, name=f"input_{i}") for i, shape in enumerate(input_shape)]
        layer._placed = False  # a layer checked twice gets a new place each time
        model = Model(inputs, layer(inputs), dtype="float64", seed=seed)
    else:
        model = Sequential([layer], input_shape=input_shape, dtype="float64", seed=seed)
    layer = model.layers[0]
    layer.needs_input_grad = True  # a model's first layer may skip dL/dx; the check needs it
    what = f"layer {label(layer)}"
    rng = np.random.default_rng(seed)
    errors = [
        check_param_round_trip(model, layer, rng, what),
        check_state_round_trip(model, layer, rng, what),
    ]
    shapes = model.input_shapes
    xs = [rng.normal(size=(batch, *shape)) for shape in shapes]
    g = rng.normal(size=(batch, *model.output_shape))
    for mode in training:
        errors.append(
            check_layer_mode(layer, xs, multi, g, mode, seed, eps, tol, f"{what} (training={mode})")
        )
    return max(errors)


def check_param_round_trip(model, layer, rng, what):
    """Keys, shapes and dtype of params and grads; the flat vector round trip, in place."""
    if set(layer.grads) != set(layer.params):
        raise AssertionError(
            f"{what}: grads keys {sorted(layer.grads)} != params keys {sorted(layer.params)}"
        )
    for key, value in layer.params.items():
        check_shape(layer.grads[key], value.shape, f"{what}: grads['{key}']")
        check_shape(value, value.shape, f"{what}: params['{key}']")
    arrays = dict(layer.params)
    # Perturbed values also break any symmetry of the initializers (zero biases).
    vector = model.get_params() + 0.1 * rng.normal(size=model.num_params)
    model.set_params(vector)
    if not np.array_equal(model.get_params(), vector):
        raise AssertionError(
            f"{what}: set_params followed by get_params does not give the vector back"
        )
    for key, value in arrays.items():
        if layer.params[key] is not value:
            raise AssertionError(
                f"{what}: params['{key}'] was replaced; parameters must be updated in place"
            )
    return 0.0


def check_state_round_trip(model, layer, rng, what):
    """A layer's ``state`` (arrays it keeps but no optimizer trains) is float64 here, is no
    parameter, and comes back exactly from the model's ``state_dict``."""
    state = getattr(layer, "state", None) or {}
    if not isinstance(state, dict):
        raise AssertionError(f"{what}: state must be a dict of arrays, got {type(state).__name__}")
    for key, value in state.items():
        check_shape(value, np.shape(value), f"{what}: state['{key}']")
        if key in layer.params:
            raise AssertionError(f"{what}: '{key}' is both a parameter and state")
    if not state:
        return 0.0
    saved = {key: np.array(value) for key, value in model.state_dict().items()}
    for value in state.values():
        value += rng.normal(size=value.shape)
    model.load_state_dict(saved)
    for key, value in state.items():
        if not np.array_equal(value, saved[f"{layer.name}/{key}"]):
            raise AssertionError(
                f"{what}: state['{key}'] does not come back from the model's state_dict"
            )
    return 0.0


def check_layer_mode(layer, xs, multi, g, training, seed, eps, tol, what):
    def forward(arrays):
        layer.rng = np.random.default_rng(seed)  # the same dropout mask on every call
        return layer.forward(arrays if multi else arrays[0], training)

    given = [x.copy() for x in xs]
    y = forward(given)
    for x, kept in zip(xs, given, strict=True):
        if not np.array_equal(x, kept):
            raise AssertionError(
                f"{what}: forward changed its input in place; a graph may hand it to other layers"
            )
    check_shape(y, g.shape, f"{what}: forward output")
    upstream = g.copy()
    grad_in = layer.backward(upstream)
    if not np.array_equal(upstream, g):
        raise AssertionError(f"{what}: backward changed its gradient argument in place")
    if multi:
        if not isinstance(grad_in, (list, tuple)) or len(grad_in) != len(xs):
            raise AssertionError(
                f"{what}: backward must return a list of {len(xs)} gradients, one per input"
            )
        grad_xs = [np.array(gx) for gx in grad_in]
    else:
        grad_xs = [np.array(grad_in)]
    grads = {key: np.array(value) for key, value in layer.grads.items()}
    if set(grads) != set(layer.params):
        raise AssertionError(
            f"{what}: after backward, grads keys {sorted(grads)} != params keys {sorted(layer.params)}"
        )
    errors = []
    for i, (x, grad_x) in enumerate(zip(given, grad_xs, strict=True)):
        name = f"input {i}" if multi else "the input"
        check_shape(grad_x, x.shape, f"{what}: backward's gradient with respect to {name}")

        def objective():
            return np.vdot(g, forward(given))

        errors.append(
            compare(
                grad_x,
                numeric_gradient(objective, x, eps),
                f"{what}: gradient with respect to {name}",
                tol,
            )
        )

    def objective():
        return np.vdot(g, forward(given))

    for key, param in layer.params.items():
        errors.append(
            compare(
                grads[key],
                numeric_gradient(objective, param, eps),
                f"{what}: gradient of '{key}'",
                tol,
            )
        )

    activation = getattr(layer, "activation", None)
    if hasattr(layer, "backward_preactivation") and activation is not None:
        forward(given)
        if layer.preactivations is not None:
            grad_z = activation.backward(layer.preactivations, layer.activations, g.copy())
        else:  # no separate activation: the output is the net input
            grad_z = g.copy()
        via_z = layer.backward_preactivation(grad_z)
        for i, (a, b) in enumerate(zip(via_z if multi else [via_z], grad_xs, strict=True)):
            errors.append(
                compare(a, b, f"{what}: backward_preactivation against backward (input {i})", tol)
            )
        for key in layer.params:
            errors.append(
                compare(
                    layer.grads[key], grads[key], f"{what}: backward_preactivation's '{key}'", tol
                )
            )
    return max(errors)


# --- layers whose input is integer token ids (embedding) ------------------------------------


def check_token_layer(
    layer,
    input_shape=(5,),
    *,
    vocab=None,
    batch=3,
    training=(False, True),
    seed=0,
    eps=EPS,
    tol=TOL,
):
    """`check_layer` for a layer that takes integer token ids (class attribute
    ``integer_input = True``, as ``embedding``): inputs are random ids in ``[0, vocab)``
    (``vocab`` defaults to the layer's ``input_dim``) of shape ``(batch, *input_shape)``.
    Ids have no gradient, so only the parameters' gradients are checked against finite
    differences; backward must return None (or zeros) for the input."""
    model = Sequential([layer], input_shape=input_shape, dtype="float64", seed=seed)
    layer = model.layers[0]
    what = f"layer {label(layer)}"
    vocab = vocab if vocab is not None else getattr(layer, "input_dim", None)
    if vocab is None:
        raise AssertionError(f"{what}: give check_token_layer the vocabulary size (vocab=...)")
    rng = np.random.default_rng(seed)
    errors = [check_param_round_trip(model, layer, rng, what)]
    ids = rng.integers(0, vocab, size=(batch, *model.input_shape))
    g = rng.normal(size=(batch, *model.output_shape))
    for mode in training:
        mode_what = f"{what} (training={mode})"

        def objective(mode=mode):
            layer.rng = np.random.default_rng(seed)
            return np.vdot(g, layer.forward(ids.copy(), mode))

        objective()
        check_shape(layer.forward(ids.copy(), mode), g.shape, f"{mode_what}: forward output")
        grad_ids = layer.backward(g.copy())
        if grad_ids is not None and np.any(grad_ids):
            raise AssertionError(
                f"{mode_what}: backward returned a non-zero gradient for integer ids"
            )
        for key, param in layer.params.items():
            analytic = np.array(layer.grads[key])
            errors.append(
                compare(
                    analytic,
                    numeric_gradient(objective, param, eps),
                    f"{mode_what}: gradient of '{key}'",
                    tol,
                )
            )
    return max(errors)


# --- activations -----------------------------------------------------------------------------


def check_activation(activation, shape=(4, 5), *, seed=0, eps=EPS, tol=TOL):
    """Check an activation: backward(z, a, grad_a) against finite differences of
    Σ grad_a ⊙ forward(z).  That is the full vector-Jacobian product, so activations that
    couple their inputs (softmax, over the last axis) are checked as completely as
    element-wise ones.  Inputs are kept at least 0.05 away from 0, where relu and leaky_relu
    have their kink."""
    activation = resolve("activations", activation)
    what = f"activation {label(activation)}"
    rng = np.random.default_rng(seed)
    z = 2 * rng.normal(size=shape)
    z += np.where(z >= 0, 0.05, -0.05)
    a = activation.forward(z.copy())
    check_shape(a, z.shape, f"{what}: forward output")
    grad_a = rng.normal(size=a.shape)
    grad_z = activation.backward(z.copy(), np.array(a), grad_a.copy())
    check_shape(grad_z, z.shape, f"{what}: backward output")
    numeric = numeric_gradient(lambda: np.vdot(grad_a, activation.forward(z)), z, eps)
    return compare(grad_z, numeric, f"{what}: gradient with respect to z", tol)


# --- losses ----------------------------------------------------------------------------------


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def check_loss(loss, y_pred=None, y_true=None, *, batch=4, classes=3, seed=0, eps=EPS, tol=TOL):
    """Check a loss: backward(y_pred, y_true) against finite differences of forward.

    By default ``y_pred`` are softmax probabilities of shape (batch, classes) and ``y_true``
    one-hot rows, data every built-in loss accepts; pass your own for other losses (class
    indices for cross-entropy, logits with ``from_logits``...).  Where the loss fuses with
    the softmax or sigmoid link, ``backward_fused(a, y)`` must match finite differences of
    z ↦ forward(activation(z), y) and, wherever the chained gradient
    activation.backward(z, a, backward(a, y)) is finite, that too.
    """
    loss = resolve("losses", loss)
    what = f"loss {label(loss)}"
    rng = np.random.default_rng(seed)
    if y_pred is None:
        y_pred = softmax(rng.normal(size=(batch, classes)))
    if y_true is None:
        y_true = np.eye(classes)[rng.integers(classes, size=len(y_pred))]
    y_pred = np.array(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true)
    value = loss.forward(y_pred.copy(), y_true)
    if np.ndim(value) != 0 or not np.isfinite(value):
        raise AssertionError(f"{what}: forward must return one finite number, got {value!r}")
    grad = loss.backward(y_pred.copy(), y_true)
    check_shape(grad, y_pred.shape, f"{what}: backward output")
    numeric = numeric_gradient(lambda: loss.forward(y_pred, y_true), y_pred, eps)
    errors = [compare(grad, numeric, f"{what}: gradient with respect to y_pred", tol)]
    fuses_with = getattr(loss, "fuses_with", None)  # optional in the protocol
    for link in ("softmax", "sigmoid"):
        if fuses_with is not None and fuses_with(link):
            errors.append(
                check_fused(
                    loss, resolve("activations", link), y_true, y_pred.shape, rng, eps, tol, what
                )
            )
    return max(errors)


def check_fused(loss, activation, y_true, shape, rng, eps, tol, what):
    what = f"{what}: backward_fused after {activation.link}"
    z = rng.normal(size=shape)
    a = activation.forward(z.copy())
    fused = loss.backward_fused(np.array(a), y_true)
    check_shape(fused, z.shape, what)
    numeric = numeric_gradient(lambda: loss.forward(activation.forward(z), y_true), z, eps)
    errors = [compare(fused, numeric, f"{what} against finite differences", tol)]
    with np.errstate(all="ignore"):
        chained = np.asarray(activation.backward(z, a, loss.backward(np.array(a), y_true)))
    finite = np.isfinite(chained)
    errors.append(
        compare(fused[finite], chained[finite], f"{what} against the chained gradient", tol)
    )
    return max(errors)


# --- whole plugins ---------------------------------------------------------------------------

CHECKS = {"layers": check_layer, "activations": check_activation, "losses": check_loss}


def check_plugin(module, cases=None, *, tol=TOL):
    """Check every layer, activation and loss a plugin module registers; return
    ``{"kind/name": largest error}``.

    The module goes through a fresh plugin manager (its hooks are validated against the hook
    specifications, as when plugnet loads it) and each registration hook is called.  Every
    component is then made and checked once per *case*.  A case is a mapping: ``params``
    holds the constructor's keyword arguments, every other key goes to the check
    (``input_shape`` for layers, ``shape`` for activations, ``y_pred`` / ``y_true`` for
    losses).  Cases come from the ``cases`` argument (``{name: case or [cases]}``), else
    from a ``check_cases`` attribute of the registered factory (a list of cases), else one
    empty case: the defaults, with layers fed inputs of shape (4,).

        testing.check_plugin(mymodule, cases={"scaled_dense": {"params": {"units": 3}}})

    Every failure is collected; an AssertionError then lists them all.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    name = getattr(module, "__name__", repr(module))
    try:
        pm.register(module, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise AssertionError(f"plugin {name}: {exc}") from exc
    cases = dict(cases or {})
    report, failures = {}, []
    for kind in CHECKED_KINDS:
        for mapping in getattr(pm.hook, hookspecs.REGISTRATION_HOOKS[kind])():
            for component_name, factory in mapping.items():
                for case in cases_for(component_name, factory, cases):
                    key = f"{kind}/{component_name}"
                    try:
                        error = check_case(kind, component_name, factory, case, tol)
                    except AssertionError as exc:
                        failures.append(f"{key}: {exc}")
                    except Exception as exc:
                        failures.append(
                            f"{key}: could not be checked with case {case!r}: {type(exc).__name__}: "
                            f"{exc} (give it a case: cases={{'{component_name}': "
                            "{'params': {...}, 'input_shape': (...)}})"
                        )
                    else:
                        report[key] = max(report.get(key, 0.0), error)
    if failures:
        raise AssertionError(
            f"plugin {name}: {len(failures)} check(s) failed:\n  " + "\n  ".join(failures)
        )
    return report


def cases_for(component_name, factory, cases):
    found = cases.get(component_name, getattr(factory, "check_cases", None)) or [{}]
    return [found] if isinstance(found, dict) else list(found)


def check_case(kind, component_name, factory, case, tol):
    case = dict(case)
    component = factory(**case.pop("params", {}))
    if getattr(component, "kind", None) is None:
        try:
            component.kind = component_name  # as the registry does; names the layer in messages
        except AttributeError:  # a slotted object: the name is cosmetic
            pass
    return CHECKS[kind](component, **case, tol=tol)
