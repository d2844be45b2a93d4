"""framework.parallel: work split across threads gives exactly the one-thread result."""

import numpy as np
import pytest

from framework import Sequential, parallel, resolve


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


def one_step(workers, monkeypatch, optimizer):
    """A conv net's forward, backward and update on a batch large enough to be split."""
    monkeypatch.setattr(parallel, "workers", lambda: workers)
    model = Sequential(
        [
            {"type": "conv2d", "filters": 8, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool2d", "pool_size": 2},
            {"type": "conv2d", "filters": 16, "kernel_size": 3, "activation": "relu"},
            {"type": "avgpool2d", "pool_size": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 10},
        ],
        input_shape=(16, 16, 3),
        seed=0,
    )
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 16, 16, 3), dtype=np.float32)
    out = model.forward(x, training=True)
    grad_x = model.backward(rng.standard_normal(out.shape, dtype=np.float32))
    opt = resolve("optimizers", dict(optimizer))
    for _ in range(2):
        opt.step(model.params_list(), model.grads_list())
    return out, grad_x, model.get_params(), opt.state_dict()


@pytest.mark.parametrize(
    "optimizer",
    [{"type": "adam", "lr": 0.01}, {"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}],
    ids=["adam", "sgd-nesterov"],
)
def test_split_layers_and_updates_match_one_thread_bit_for_bit(monkeypatch, optimizer):
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1024)  # split even this small net's arrays
    monkeypatch.setattr("plugins.optimizers.BLOCK", 1000)  # several blocks a parameter
    one = one_step(1, monkeypatch, optimizer)
    three = one_step(3, monkeypatch, optimizer)
    for a, b in zip(one[:3], three[:3]):
        np.testing.assert_array_equal(a, b)
    assert one[3].keys() == three[3].keys()
    for key in one[3]:
        np.testing.assert_array_equal(one[3][key], three[3][key])


def test_the_net_above_is_split(monkeypatch):
    """The bit-for-bit test above means something only if the work was really split."""
    monkeypatch.setattr(parallel, "MIN_ELEMENTS", 1024)
    monkeypatch.setattr("plugins.optimizers.BLOCK", 1000)
    calls = []
    real_split = parallel.split

    def counting(work, total, minimum=1):
        calls.append(min(3, total // max(minimum, 1)))
        return real_split(work, total, minimum)

    monkeypatch.setattr(parallel, "split", counting)
    one_step(3, monkeypatch, {"type": "adam"})
    assert sum(parts > 1 for parts in calls) >= 10
