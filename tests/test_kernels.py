"""Compiled kernels (`framework.kernels`): each equals the numpy reference it replaces, its
`exp` is accurate, importing plugnet never imports numba, and a second process compiles
nothing (the cache)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from framework import create, kernels
from framework.kernels import exp, kernel
from plugins.activations import GELU
from plugins.layers.conv import Conv2D
from plugins.layers.normalization import BatchNorm, LayerNorm, centre_columns
from plugins.layers.pooling import MaxPool2D
from plugins.layers.recurrent import LSTM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@kernel
def exp_of(x, out):
    for k in range(x.size):
        out[k] = exp(x[k])


def test_float32_exp_is_within_two_units_in_the_last_place():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [np.linspace(-87, 88, 200_001), rng.uniform(-87, 88, 100_000), [0.0, -0.0, 1e-30, -1e-30]]
    ).astype(np.float32)
    out = np.empty_like(x)
    exp_of(x, out)
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 2


def test_float32_exp_clamps_to_normal_numbers_and_keeps_a_nan():
    x = np.array([-np.inf, -200, 200, np.inf, np.nan], np.float32)
    out = np.empty_like(x)
    exp_of(x, out)
    np.testing.assert_allclose(out[:4], np.exp(np.float64([-87, -87, 88, 88])), rtol=3e-7)
    assert np.isnan(out[4])


def test_float64_exp_is_the_c_librarys():
    x = np.random.default_rng(1).uniform(-700, 700, 10_000)
    out = np.empty_like(x)
    exp_of(x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-15)


def test_kernels_can_be_switched_off(monkeypatch):
    assert kernels.enabled()
    with kernels.use_kernels(False):
        assert not kernels.enabled()
    monkeypatch.setenv("PLUGNET_KERNELS", "0")
    assert not kernels.enabled()
    with kernels.use_kernels(True):
        assert kernels.enabled()


def both_ways(run):
    """``run()``'s results with the numpy reference and with the kernels."""
    results = []
    for on in (False, True):
        with kernels.use_kernels(on):
            results.append(run())
    return results


def two_passes(layer, x, grad_y):
    """A layer's outputs and gradients over two training passes (the second reuses the
    first one's arrays and buffers)."""
    results = {}
    for step in range(2):
        results[f"y{step}"] = layer.forward(x * (step + 1), training=True).copy()
        results[f"dx{step}"] = layer.backward(grad_y).copy()
        results.update({f"d{name}{step}": g.copy() for name, g in layer.grads.items()})
    return results


def assert_close(reference, compiled, dtype):
    tolerance = {"rtol": 1e-12, "atol": 1e-13} if dtype == np.float64 else {"rtol": 2e-5}
    for name in reference:
        scale = np.abs(reference[name]).max()
        atol = tolerance.get("atol", 2e-6 * scale)
        np.testing.assert_allclose(
            compiled[name], reference[name], rtol=tolerance["rtol"], atol=atol, err_msg=name
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_the_lstm_kernels_equal_the_numpy_reference(dtype, return_sequences):
    rng = np.random.default_rng(2)
    layer = LSTM(units=5, return_sequences=return_sequences)
    layer.name, layer.dtype, layer.rng = "lstm", dtype, rng
    layer.build((7, 3))
    for name, value in layer.params.items():
        layer.params[name] = (value + rng.normal(0, 0.3, value.shape)).astype(dtype)
    layer.grads = {name: np.zeros_like(value) for name, value in layer.params.items()}
    layer.needs_input_grad = True
    x = rng.standard_normal((6, 7, 3)).astype(dtype)
    grad_y = rng.standard_normal((6, 7, 5) if return_sequences else (6, 5)).astype(dtype)

    def run():
        return {**two_passes(layer, x, grad_y), "cells": layer.cells.copy()}

    reference, compiled = both_ways(run)
    assert_close(reference, compiled, dtype)


def test_the_gelu_kernel_equals_the_numpy_reference():
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((300, 257)) * 4).astype(np.float32)
    z[0, :6] = [0.0, -0.0, 1e-30, -60.0, 60.0, np.nan]
    gelu = GELU()
    grad_a = rng.standard_normal(z.shape).astype(np.float32)

    def run():
        a = gelu.forward(z)
        return {"a": a, "grad_z": gelu.backward(z, a, grad_a)}

    reference, compiled = both_ways(run)
    assert np.isnan(compiled["a"][0, 5]) and np.isnan(compiled["grad_z"][0, 5])
    for name in reference:
        np.testing.assert_allclose(compiled[name], reference[name], rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_bias", [False, True])
def test_the_layer_norm_kernels_equal_the_numpy_reference(dtype, use_bias):
    rng = np.random.default_rng(5)
    layer = LayerNorm(use_bias=use_bias)
    layer.name, layer.dtype, layer.rng = "norm", dtype, rng
    layer.build((9, 37))
    for value in layer.params.values():
        value += rng.standard_normal(value.shape).astype(dtype)
    layer.needs_input_grad = True
    x = (rng.standard_normal((4, 9, 37)) * 3 + 2).astype(dtype)
    grad_y = rng.standard_normal(x.shape).astype(dtype)

    def run():
        results = {"y": layer.forward(x, training=True).copy(), "dx": layer.backward(grad_y)}
        return results | {f"d{name}": g.copy() for name, g in layer.grads.items()}

    reference, compiled = both_ways(run)
    assert_close(reference, compiled, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_batch_norm_kernels_equal_the_numpy_reference(dtype):
    rng = np.random.default_rng(6)
    layer = BatchNorm(momentum=0.3)
    layer.name, layer.dtype, layer.rng = "norm", dtype, rng
    layer.build((6, 5, 7))
    for value in layer.params.values():
        value += rng.standard_normal(value.shape).astype(dtype)
    layer.needs_input_grad = True
    x = (rng.standard_normal((40, 6, 5, 7)) * 3 + 2).astype(dtype)
    grad_y = rng.standard_normal(x.shape).astype(dtype)
    start = {name: value.copy() for name, value in layer.state.items()}

    def run():
        for name, value in start.items():
            layer.state[name][...] = value
        results = {"y": layer.forward(x, training=True).copy(), "dx": layer.backward(grad_y)}
        results |= {f"d{name}": g.copy() for name, g in layer.grads.items()}
        results |= {name: value.copy() for name, value in layer.state.items()}
        return results | {"evaluation": layer.forward(x)}

    reference, compiled = both_ways(run)
    assert_close(reference, compiled, dtype)


@pytest.mark.parametrize(
    "options, shape, exact",
    [
        ({}, (8, 8, 5), True),  # windows that tile the image: each input written once
        ({}, (7, 9, 3), True),  # a row and a column no window reads
        ({"pool_size": 3, "strides": 2, "padding": "same"}, (9, 9, 4), False),
        ({"pool_size": 2, "strides": 1}, (6, 6, 2), False),  # overlapping: shares added
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_max_pool_kernels_equal_the_numpy_reference(options, shape, exact, dtype):
    rng = np.random.default_rng(8)
    layer = MaxPool2D(**options)
    layer.name, layer.dtype, layer.rng = "pool", dtype, rng
    layer.build(shape)
    layer.needs_input_grad = True
    x = rng.standard_normal((5, *shape)).astype(dtype)
    x[0, 0, 1] = x[0, 0, 0]  # ties: the first in row-major order wins
    x[1, 1, 1, 0] = np.nan  # a NaN wins its windows, as np.maximum gives
    grad_y = rng.standard_normal((5, *layer.out_size, shape[2])).astype(dtype)

    def run():
        y = layer.forward(x, training=True)
        grad_x = layer.backward(grad_y)
        grad_x[1] = 0  # where a NaN won, the two may send its gradient to different inputs
        return {"y": y, "dx": grad_x}

    reference, compiled = both_ways(run)
    np.testing.assert_array_equal(compiled["y"], reference["y"])  # NaN where NaN
    if exact:
        np.testing.assert_array_equal(compiled["dx"], reference["dx"])
    else:  # overlapping windows add their shares in another order
        np.testing.assert_allclose(compiled["dx"], reference["dx"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "options, shape",
    [
        ({"filters": 6}, (9, 9, 4)),  # 3x3, stride 1, "same"
        ({"filters": 3, "strides": 2, "padding": "same"}, (9, 8, 5)),
        ({"filters": 2, "kernel_size": [2, 3], "padding": "valid"}, (6, 7, 3)),
        ({"filters": 4, "activation": "relu"}, (8, 8, 1)),  # one channel: offset by offset
        ({"filters": 5, "use_bias": False}, (7, 5, 16)),  # odd sizes: Winograd's last tiles
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_conv_kernels_equal_the_numpy_reference(options, shape, dtype):
    rng = np.random.default_rng(9)
    layer = Conv2D(algorithm="auto", **options)
    layer.name, layer.dtype, layer.rng = "conv", dtype, rng
    layer.build(shape)
    layer.params = {
        k: (v + rng.normal(0, 0.2, v.shape)).astype(dtype) for k, v in layer.params.items()
    }
    layer.grads = {name: np.zeros_like(value) for name, value in layer.params.items()}
    layer.needs_input_grad = True
    x = rng.standard_normal((5, *shape)).astype(dtype)
    grad_y = rng.standard_normal((5, *layer.out_size, layer.filters)).astype(dtype)

    reference, compiled = both_ways(lambda: two_passes(layer, x, grad_y))
    assert_close(reference, compiled, dtype)


def test_the_batch_norm_sums_keep_float32_precision_over_many_rows():
    x = (np.random.default_rng(7).standard_normal((200_000, 4)) + 3).astype(np.float32)
    centred, squares = np.empty_like(x), np.empty(4)
    centre_columns(x, np.zeros(4, np.float32), centred, squares)
    exact = np.square(x, dtype=np.float64).sum(axis=0)
    # in blocks: about 1e-9; float32 sums row after row (and numpy's einsum): about 5e-6
    np.testing.assert_allclose(squares, exact, rtol=1e-7)


@pytest.mark.parametrize(
    "name, options",
    [
        ("adam", {"lr": 0.01}),
        ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
        ("adamw", {"lr": 0.01, "weight_decay": 0.1, "decay": "all"}),
        ("sgd", {"lr": 0.1, "momentum": 0.9}),
        ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ],
)
def test_the_optimizer_kernels_equal_the_numpy_reference(name, options):
    rng = np.random.default_rng(4)
    joined = rng.standard_normal((100, 80)).astype(np.float32)
    start = [rng.standard_normal((600, 500)).astype(np.float32), joined[:, :50], joined[0]]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in start] for _ in range(3)]

    def run():
        optimizer = create("optimizers", name, **options)
        params = [p.copy() for p in start]  # the copy of a column view is contiguous: view it
        params[1] = np.concatenate([params[1], np.zeros((100, 30), np.float32)], axis=1)[:, :50]
        for step_grads in grads:
            optimizer.step(params, step_grads)
        return {f"p{i}": p for i, p in enumerate(params)} | {
            key: value for key, value in optimizer.state_dict().items() if key != "t"
        }

    reference, compiled = both_ways(run)
    for key in reference:
        # one rounding fewer where a multiply-add fuses: terms of order 1 differ by an ulp
        np.testing.assert_allclose(compiled[key], reference[key], rtol=1e-6, atol=1e-6)


def run_python(code, **env):
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, **env),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_listing_the_plugins_never_imports_numba():
    code = (
        "import json, sys\nfrom framework.cli import main\ncode = main(['plugins'])\n"
        "print(json.dumps('numba' in sys.modules))"
    )
    assert run_python(code) is False


TRAIN_ONCE = """
import json
import numpy as np
from framework import Sequential
from plugins.layers import recurrent

model = Sequential([{"type": "lstm", "units": 4}, {"type": "dense", "units": 1}], input_shape=(5, 2))
x = np.zeros((3, 5, 2), np.float32)
model.backward(np.ones_like(model.forward(x, training=True)))
stats = [recurrent.lstm_steps.compiled.stats, recurrent.lstm_steps_backward.compiled.stats]
print(json.dumps([[sum(s.cache_hits.values()), sum(s.cache_misses.values())] for s in stats]))
"""


def test_a_second_process_compiles_nothing(tmp_path):
    first = run_python(TRAIN_ONCE, NUMBA_CACHE_DIR=str(tmp_path), PLUGNET_KERNELS="1")
    second = run_python(TRAIN_ONCE, NUMBA_CACHE_DIR=str(tmp_path), PLUGNET_KERNELS="1")
    assert all(misses >= 1 for _, misses in first)
    assert second == [[1, 0], [1, 0]]  # loaded from the cache, compiled nothing
