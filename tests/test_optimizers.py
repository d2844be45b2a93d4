"""Each built-in optimizer's update against its formula, written out here step by step."""

import numpy as np
import pytest

from framework import resolve


def adam(p, g, state, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    state.setdefault("m", np.zeros_like(p))
    state.setdefault("v", np.zeros_like(p))
    state["m"] = b1 * state["m"] + (1 - b1) * g
    state["v"] = b2 * state["v"] + (1 - b2) * g * g
    return p - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * state["m"] / (np.sqrt(state["v"]) + eps)


def sgd_momentum(p, g, state, t, lr=0.01, mu=0.9, nesterov=False):
    state["v"] = mu * state.get("v", np.zeros_like(p)) - lr * g
    return p + (mu * state["v"] - lr * g if nesterov else state["v"])


def rmsprop(p, g, state, t, lr=0.01, rho=0.9, eps=1e-7):
    state["s"] = rho * state.get("s", np.zeros_like(p)) + (1 - rho) * g * g
    return p - lr * g / (np.sqrt(state["s"]) + eps)


def adagrad(p, g, state, t, lr=0.01, initial=0.1, eps=1e-7):
    state["s"] = state.get("s", np.full_like(p, initial)) + g * g
    return p - lr * g / (np.sqrt(state["s"]) + eps)


CASES = [
    ({"type": "sgd", "lr": 0.01}, lambda p, g, s, t: p - 0.01 * g),
    ({"type": "sgd", "lr": 0.01, "momentum": 0.9}, sgd_momentum),
    (
        {"type": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True},
        lambda p, g, s, t: sgd_momentum(p, g, s, t, nesterov=True),
    ),
    ({"type": "adam", "lr": 0.01}, adam),
    ({"type": "rmsprop", "lr": 0.01}, rmsprop),
    ({"type": "adagrad", "lr": 0.01}, adagrad),
]


@pytest.mark.parametrize(
    "spec, formula",
    CASES,
    ids=lambda c: (
        c["type"] + ("-" + "-".join(k for k in c if k not in ("type", "lr")) if len(c) > 2 else "")
        if isinstance(c, dict)
        else ""
    ),
)
def test_updates_follow_the_formula(spec, formula):
    rng = np.random.default_rng(0)
    # shapes and dtypes of a real model, largest last, float32 beside float64
    shapes = [((4, 3), np.float64), ((3,), np.float64), ((50, 8), np.float32), ((8,), np.float32)]
    params = [rng.normal(size=shape).astype(dtype) for shape, dtype in shapes]
    expected = [p.astype(np.float64) for p in params]
    states = [{} for _ in params]
    optimizer = resolve("optimizers", dict(spec))
    for t in range(1, 6):
        grads = [rng.normal(size=p.shape).astype(p.dtype) for p in params]
        optimizer.step(params, grads)
        expected = [
            formula(p, g.astype(np.float64), s, t)
            for p, g, s in zip(expected, grads, states, strict=True)
        ]
    for got, want in zip(params, expected, strict=True):
        tol = 1e-12 if got.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def pytorch_adam(p, g, state, t, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.Adam's update: ε added to √v̂, after the bias correction."""
    state.setdefault("m", np.zeros_like(p))
    state.setdefault("v", np.zeros_like(p))
    state["m"] = b1 * state["m"] + (1 - b1) * g
    state["v"] = b2 * state["v"] + (1 - b2) * g * g
    m_hat, v_hat = state["m"] / (1 - b1**t), state["v"] / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def test_adam_is_tensorflows_form_and_says_how_it_differs_from_pytorchs():
    """Where gradients are tiny the two forms part: plugnet's first step is √(1−β₂) of
    PyTorch's; a user porting a PyTorch recipe reads that in the docstring."""
    optimizer = resolve("optimizers", {"type": "adam", "lr": 0.01})
    grad = np.full(3, 1e-12)  # far below ε = 1e-8
    param = np.zeros(3)
    optimizer.step([param], [grad])
    ours = adam(np.zeros(3), grad, {}, 1)
    theirs = pytorch_adam(np.zeros(3), grad, {}, 1)
    np.testing.assert_allclose(param, ours, rtol=1e-12)
    np.testing.assert_allclose(param / theirs, np.sqrt(1 - 0.999), rtol=1e-3)
    # with ordinary gradients the two agree
    large = np.full(3, 0.5)
    np.testing.assert_allclose(
        adam(np.zeros(3), large, {}, 1), pytorch_adam(np.zeros(3), large, {}, 1), rtol=1e-6
    )
    doc = " ".join(type(optimizer).__doc__.split())
    assert "TensorFlow's form" in doc
    assert "PyTorch's ``torch.optim.Adam`` adds ε after it" in doc
    assert "``adamw`` optimizer follows PyTorch's form" in doc
