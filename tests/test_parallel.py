"""framework.parallel: work split across threads gives exactly the one-thread result."""

import numpy as np
import pytest

from framework import Sequential, parallel


def test_split_covers_the_range_once_in_parts(monkeypatch):
    monkeypatch.setattr(parallel, "workers", lambda: 3)
    seen = []
    parallel.split(lambda start, stop: seen.append((start, stop)), 10)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 10)]
    seen.clear()
    parallel.split(lambda start, stop: seen.append((start, stop)), 10, minimum=6)
    assert seen == [(0, 10)]  # parts would be smaller than the minimum: one call


def test_split_raises_what_a_part_raises(monkeypatch):
    monkeypatch.setattr(parallel, "workers", lambda: 2)

    def work(start, stop):
        if start:
            raise ValueError("second part")

    with pytest.raises(ValueError, match="second part"):
        parallel.split(work, 10)


def test_workers_follow_the_blas_limit():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1):
        assert parallel.workers() == 1


def fft_step(workers, monkeypatch):
    """Seed 002's second convolution, by the Fourier path, forward and backward."""
    monkeypatch.setattr(parallel, "workers", lambda: workers)
    monkeypatch.setattr("plugins.layers.conv.workers", lambda: workers)
    model = Sequential([{"type": "conv2d", "filters": 8, "kernel_size": 5, "algorithm": "fft"}],
                       input_shape=(14, 14, 6), seed=0)
    model.layers[0].needs_input_grad = True
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 14, 14, 6), dtype=np.float32)
    out = model.forward(x, training=True)
    grad_x = model.backward(rng.standard_normal(out.shape, dtype=np.float32))
    return out, grad_x, model.layers[0].grads["weights"].copy()


def test_the_fourier_transforms_split_over_threads_match_one_thread_bit_for_bit(monkeypatch):
    calls = []
    real_split = parallel.split
    monkeypatch.setattr("plugins.layers.conv.split", lambda work, total: calls.append(total) or real_split(work, total))
    one = fft_step(1, monkeypatch)
    assert calls == []
    three = fft_step(3, monkeypatch)
    assert calls  # the transforms were split
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)
