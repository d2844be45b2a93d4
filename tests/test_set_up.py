"""Setting up a run or a sweep pauses Python's cyclic garbage collector (the imports of
plugins and of a dataset's library would have it walk their objects again and again), and
training runs with it on again.  How much time it saves: ``benchmarks/sweep_speed.py``."""

import gc

import counted_dataset  # tests/support, on sys.path (conftest)
import pytest

from framework import Callback, hookimpl
from framework.run import build, paused_gc
from framework.sweeps import sweep


def blobs_config(tmp_path, name):
    return {
        "seed": 0,
        "plugins": ["counted_dataset"],
        "data": {"type": "counted_blobs", "log": str(tmp_path / "loads.txt")},
        "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
        "train": {"loss": "cross_entropy", "epochs": 2, "batch_size": 30},
        "logging": {"logdir": str(tmp_path / name)},
    }


class CollectorWatch(Callback):
    """Notes whether the collector is on when training begins."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def on_train_begin(self, trainer):
        self.seen.append(gc.isenabled())


@pytest.fixture
def collector_on():
    assert gc.isenabled()
    counted_dataset.COLLECTOR_ON.clear()
    yield
    gc.enable()


def test_paused_gc_resumes_only_what_it_paused(collector_on):
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it off and left it so
    assert gc.isenabled()
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()  # a caller's own choice stands


def test_paused_gc_resumes_when_the_block_raises(collector_on):
    with pytest.raises(ZeroDivisionError):
        with paused_gc():
            raise ZeroDivisionError
    assert gc.isenabled()


def test_a_run_loads_its_data_paused_and_trains_with_the_collector_on(tmp_path, collector_on):
    experiment = build(blobs_config(tmp_path, "run"))
    assert counted_dataset.COLLECTOR_ON == [False]
    assert gc.isenabled()
    watch = CollectorWatch()
    experiment.trainer.add_callback(watch)
    experiment.fit()
    assert watch.seen == [True]


def test_a_sweep_sets_up_paused_and_resumes_before_its_trials(tmp_path, collector_on):
    config = blobs_config(tmp_path, "sweep")
    config["sweep"] = {"metric": "train.loss", "params": {"train.epochs": [1, 2]}}
    result = sweep(config, jobs=1)
    assert [t.state for t in result.trials] == ["complete", "complete"]
    assert counted_dataset.COLLECTOR_ON == [False]  # loaded once, in the set-up
    assert gc.isenabled()
