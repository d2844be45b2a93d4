"""framework.threads: splitting work over BLAS's cores, and the layers and optimizer that use
it giving the same numbers on one thread and on two."""

import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from framework import Sequential, create, threads

two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")


def blas_threads():
    return min(
        c.num_threads for c in ThreadpoolController().select(user_api="blas").lib_controllers
    )


def test_split_covers_the_range_once_in_contiguous_parts():
    seen = []
    lock = threading.Lock()

    def work(start, stop):
        with lock:
            seen.append((start, stop))

    threads.split(work, 1001)
    seen.sort()
    assert seen[0][0] == 0 and seen[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in itertools.pairwise(seen))
    assert len(seen) == threads.workers()


def test_split_keeps_small_work_on_the_calling_thread():
    callers = []
    threads.split(
        lambda start, stop: callers.append((threading.get_ident(), start, stop)), 10, minimum=8
    )
    assert callers == [(threading.get_ident(), 0, 10)]


@two_cores
def test_split_runs_parts_on_two_threads_with_blas_held_to_one():
    with threadpool_limits(2):
        if threads.workers() < 2:
            pytest.skip("OpenBLAS's idle threads spin in this process: plugnet does not split")
        inside = {}

        def work(start, stop):
            inside[start] = (threading.get_ident(), threads.workers(), blas_threads())

        threads.split(work, 100)
        assert len({ident for ident, _, _ in inside.values()}) == 2
        assert all(w == 1 and b == 1 for _, w, b in inside.values())
        assert blas_threads() == 2  # restored


@two_cores
def test_an_exception_in_another_threads_part_is_raised_and_blas_restored():
    with threadpool_limits(2):
        if threads.workers() < 2:
            pytest.skip("plugnet does not split in this process")

        def work(start, stop):
            if start:
                raise ValueError("second part")

        with pytest.raises(ValueError, match="second part"):
            threads.split(work, 100)
        assert blas_threads() == 2


def run_python(code, env_extra):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


CODE = """
{first}
from threadpoolctl import threadpool_limits
from framework import threads
import os
with threadpool_limits(2):
    workers = threads.workers()
    print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), workers)
"""


@two_cores
def test_plugnet_imported_first_shortens_openblas_spin_and_splits():
    assert run_python(CODE.format(first="import framework"), {}) == "20 2"


SPIN_REPORTED = """
import numpy
import framework
from threadpoolctl import threadpool_limits
from framework import threads
with threadpool_limits(2):
    threads.workers()
    print(*(threads.spin_exponent(c) for c in threads._blas))
    a = numpy.arange(256.0 * 256, dtype=numpy.float32).reshape(256, 256) / 65536
    print(bool(numpy.allclose(a @ a, a.astype(float) @ a, rtol=1e-5)))
"""


@two_cores
def test_numpy_imported_first_gets_its_openblas_spin_shortened_and_splits():
    # Set after OpenBLAS loaded, the variable alone would not change its spin: plugnet has
    # OpenBLAS read it again and restart its threads (threads.shorten_loaded_spin).
    assert run_python(CODE.format(first="import numpy"), {}) == "20 2"
    # OpenBLAS itself reports the new spin, and its restarted threads compute right.
    reported, correct = run_python(SPIN_REPORTED, {}).splitlines()
    assert set(reported.split()) == {"20"} and correct == "True"


@two_cores
def test_a_spin_the_user_set_is_honoured_whatever_the_import_order():
    # The user's value wins in either order: a short one splits, a long one does not.
    assert (
        run_python(CODE.format(first="import numpy"), {"OPENBLAS_THREAD_TIMEOUT": "16"}) == "16 2"
    )
    assert (
        run_python(CODE.format(first="import framework"), {"OPENBLAS_THREAD_TIMEOUT": "26"})
        == "26 1"
    )


def seed002_gradients(blas):
    """Output and parameter gradients of one training batch through a small seed-002-like
    net (an im2col and a Fourier convolution, max pooling) on ``blas`` threads."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)  # batch big enough to be split
    y = rng.integers(0, 10, 64)
    layers = [
        {"type": "conv2d", "filters": 8, "kernel_size": 5, "activation": "relu"},
        {"type": "maxpool2d"},
        {"type": "conv2d", "filters": 16, "kernel_size": 5, "activation": "relu"},
        {"type": "maxpool2d"},
        {"type": "flatten"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ]
    with threadpool_limits(blas):
        model = Sequential(layers, input_shape=(28, 28, 1), seed=0)
        assert model.layers[2].uses_fft and not model.layers[0].uses_fft
        loss = create("losses", "cross_entropy")
        out = model.forward(x, True)
        model.backward(loss.backward(out, y))
        return out, [g.copy() for g in model.grads_list()]


@two_cores
def test_the_conv_net_gives_the_same_gradients_on_one_thread_and_on_two():
    out_one, one = seed002_gradients(1)
    out_two, two = seed002_gradients(2)
    np.testing.assert_allclose(out_one, out_two, rtol=1e-5, atol=1e-7)
    for a, b in zip(one, two, strict=True):  # float32 sums taken in another order: rounding only
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * np.abs(a).max())


@two_cores
def test_adam_in_blocks_over_threads_is_the_whole_array_update_to_the_bit():
    rng = np.random.default_rng(1)
    shape = (700, 1000)  # several blocks, so it is split and blocked
    param = rng.standard_normal(shape, dtype=np.float32)
    grads = [rng.standard_normal(shape, dtype=np.float32) for _ in range(3)]
    results = []
    for blas in (1, 2):
        adam = create("optimizers", "adam", lr=0.01)
        p = param.copy()
        with threadpool_limits(blas):
            for g in grads:
                adam.step([p], [g])
        results.append(p)
    # The formula, whole arrays at a time.
    p, m, v = param.copy(), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for t, g in enumerate(grads, start=1):
        m = np.float32(0.9) * m + np.float32(0.1) * g
        v = np.float32(0.999) * v + np.float32(0.001) * g * g
        p = p - np.float32(0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)) * m / (
            np.sqrt(v) + np.float32(1e-8)
        )
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], p, rtol=1e-6, atol=1e-7)


@two_cores
def test_max_pool_split_over_threads_matches_one_thread_exactly():
    rng = np.random.default_rng(2)
    # big enough that the compiled pass too is shared out (parts of 2**18 numbers or more)
    x = rng.standard_normal((40, 32, 32, 16)).astype(np.float32)
    x[:, ::2, ::2] = x[:, 1::2, 1::2]  # ties: the first in row-major order wins
    grad_y = rng.standard_normal((40, 16, 16, 16)).astype(np.float32)
    outs = []
    for blas in (1, 2):
        layer = create("layers", "maxpool2d")
        Sequential([layer], input_shape=(32, 32, 16))
        layer.needs_input_grad = True
        with threadpool_limits(blas):
            outs.append((layer.forward(x, training=True), layer.backward(grad_y)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def gpt_block_gradients(blas):
    """Output and parameter gradients of a GPT block's layers (layer norm, causal attention
    with dropout, a GELU MLP) on a batch big enough to be split, on ``blas`` threads."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 64, 32), dtype=np.float32)
    grad_y = rng.standard_normal((16, 64, 32), dtype=np.float32)
    layers = [
        {"type": "layer_norm", "use_bias": False},
        {"type": "multi_head_attention", "num_heads": 4, "causal": True, "dropout": 0.2},
        {"type": "layer_norm"},
        {"type": "dense", "units": 128, "activation": "gelu"},
        {"type": "dense", "units": 32},
    ]
    with threadpool_limits(blas):
        model = Sequential(layers, input_shape=(64, 32), seed=0)
        for layer in model.layers:
            layer.needs_input_grad = True
        out = model.forward(x, True)
        grad_x = model.backward(grad_y)
        return out, [grad_x, *(g.copy() for g in model.grads_list())]


@two_cores
def test_the_gpt_block_gives_the_same_gradients_on_one_thread_and_on_two():
    out_one, one = gpt_block_gradients(1)
    out_two, two = gpt_block_gradients(2)
    np.testing.assert_allclose(out_one, out_two, rtol=1e-5, atol=1e-6)
    # float32 sums taken in another order: rounding only, against the largest gradient (the
    # key bias's is zero up to rounding: softmax ignores what adds to a whole row)
    scale = max(np.abs(a).max() for a in one)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * scale)
