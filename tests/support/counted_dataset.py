"""A plugin module for the sweep tests: a dataset that notes each load (the process that
loaded it) in a file, so a test can count how many times a sweep loaded its data; and, in
this process, whether Python's garbage collector was on during each load."""

import gc
import os

import attrs

from framework import Dataset, hookimpl, split_train_test

COLLECTOR_ON = []  # gc.isenabled() during each load in this process


@attrs.define
class CountedBlobs(Dataset):
    """Two Gaussian blobs; each load appends this process's id to the file ``log``."""

    log: str = attrs.field()
    n_samples: int = attrs.field(default=120)
    spread: float = attrs.field(default=1.0)

    def load(self, rng):
        COLLECTOR_ON.append(gc.isenabled())
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        y = rng.integers(0, 2, self.n_samples)
        x = rng.normal(0, self.spread, (self.n_samples, 2)) + 2.0 * y[:, None]
        return split_train_test(x, y, 0.25, rng)


@hookimpl
def register_datasets():
    return {"counted_blobs": CountedBlobs}
