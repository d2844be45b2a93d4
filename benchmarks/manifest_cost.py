"""What naming a checkpoint in its run's manifest adds to writing it.

The checkpoint callback records each ``checkpoints/step-N.npz`` in ``plugnet-run.json``
before writing it (which also drops the name of the one ``keep`` pruned).  Here the same checkpoint writes
(``--arrays`` float32 arrays of 64 x 64, ``keep = 5``) run in a claimed run directory with and
without that manifest update, in paired rounds of alternating order; the figure is the
median of the rounds' ratios, with the checkpoints each round wrote.

    python benchmarks/manifest_cost.py [--checkpoints 200] [--rounds 7] [--arrays 4]
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

from framework.checkpoints import checkpoint_path
from framework.rundir import RunDir, forget, record
from framework.storage import save_arrays

KEEP = 5


def checkpoints(logdir, arrays, count, named):
    """Write ``count`` checkpoints as the checkpoint callback does; seconds per checkpoint."""
    started = time.perf_counter()
    for step in range(count):
        path = checkpoint_path(logdir, step)
        if named:
            record(path)
        save_arrays(path, arrays)
        if step >= KEEP:  # the pruned name leaves the manifest with the next record
            os.unlink(checkpoint_path(logdir, step - KEEP))
    seconds = (time.perf_counter() - started) / count
    for step in range(count - KEEP, count):
        os.unlink(checkpoint_path(logdir, step))
        if named:
            forget(checkpoint_path(logdir, step))
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--arrays", type=int, default=4)
    args = parser.parse_args()
    arrays = {f"layer_{i}/weights": np.zeros((64, 64), np.float32) for i in range(args.arrays)}
    root = tempfile.mkdtemp()
    run = RunDir(os.path.join(root, "run"))
    lock = run.claim()
    os.makedirs(run.file("checkpoints"))
    try:
        plain, named, ratios = [], [], []
        for round_ in range(args.rounds):
            order = (False, True) if round_ % 2 == 0 else (True, False)
            seconds = {
                flag: checkpoints(run.path, arrays, args.checkpoints, flag) for flag in order
            }
            plain.append(seconds[False])
            named.append(seconds[True])
            ratios.append(seconds[True] / seconds[False])
    finally:
        lock.release()
        shutil.rmtree(root)
    print(f"{args.rounds} paired rounds of {args.checkpoints} checkpoints each way")
    print(f"checkpoint alone           {statistics.median(plain) * 1e3:.2f} ms (median)")
    print(f"checkpoint named in manifest {statistics.median(named) * 1e3:.2f} ms (median)")
    print(f"ratio (median of rounds)   {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
