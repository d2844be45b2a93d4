"""What the ``tensorboard`` callback costs on the B1 benchmark.

B1's network (dense 784-256-128-10, relu, softmax cross-entropy, batch 128, SGD with momentum
0.9, float32, random data) trained without the callback, with it at its defaults, and with a
histogram of every tensor at every step (``histogram_every = 1``).  Runs are interleaved and
the best of ``--repeats`` is kept, so a busy moment on a shared machine hurts every variant
alike.  Target: the defaults cost at most 3%.

Wall-clock ratios on a machine shared with other work are noisy, so the time spent inside
the callback's hooks is measured too (summed over a run, compared with the training time
without the callback): the cost the callback adds to the training thread itself.

    python benchmarks/tensorboard_cost.py [--samples 12800] [--epochs 2] [--repeats 7]
"""

import argparse
import functools
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from b1_dense import BATCH, LR, MOMENTUM, SIZES, data  # noqa: E402

from framework import Sequential, Trainer  # noqa: E402
from framework.trainer import TRAINING_HOOKS  # noqa: E402
from plugins.callbacks.tensorboard import TensorBoard  # noqa: E402


class TimedTensorBoard(TensorBoard):
    """The callback with the time spent in its hooks added up in ``hook_seconds``."""

    hook_seconds = 0.0


def timed(method):
    @functools.wraps(method)  # keeps the hookimpl marker and the signature pluggy reads
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            TimedTensorBoard.hook_seconds += time.perf_counter() - start

    return wrapper


for _hook in TRAINING_HOOKS:
    if hasattr(TensorBoard, _hook):
        setattr(TimedTensorBoard, _hook, timed(getattr(TensorBoard, _hook)))

VARIANTS = {"without": None, "defaults": {}, "histogram_every=1": {"histogram_every": 1}}


def train(x, y, epochs, callback, logdir):
    model = Sequential(
        [{"type": "dense", "units": n, "activation": "relu"} for n in SIZES[1:-1]]
        + [{"type": "dense", "units": SIZES[-1], "activation": "softmax"}],
        input_shape=(SIZES[0],), seed=0,
    )
    trainer = Trainer(
        model, "cross_entropy", {"type": "sgd", "lr": LR, "momentum": MOMENTUM},
        callbacks=[TimedTensorBoard(**callback)] if callback is not None else [], logdir=logdir, seed=0,
    )
    TimedTensorBoard.hook_seconds = 0.0
    start = time.perf_counter()
    trainer.fit(x, y, epochs=epochs, batch_size=BATCH)  # includes opening and closing the writers
    return time.perf_counter() - start, TimedTensorBoard.hook_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x, y = data(args.samples)
    best = dict.fromkeys(VARIANTS, float("inf"))
    hooks = dict.fromkeys(VARIANTS, float("inf"))
    with tempfile.TemporaryDirectory() as root:
        for name, callback in VARIANTS.items():  # warm-up: imports, BLAS threads, writer start-up
            train(x[: BATCH * 4], y[: BATCH * 4], 1, callback, os.path.join(root, "warmup", name))
        for repeat in range(args.repeats):
            for name, callback in VARIANTS.items():
                logdir = os.path.join(root, f"{repeat}", name)
                seconds, in_hooks = train(x, y, args.epochs, callback, logdir)
                best[name] = min(best[name], seconds)
                hooks[name] = min(hooks[name], in_hooks)
    steps = -(-args.samples // BATCH) * args.epochs
    print(f"tensorboard callback on B1 (784-256-128-10, batch {BATCH}), {steps} steps per run, best of {args.repeats}")
    print(f"  {'variant':<18} {'wall':>8}  {'per step':>9}  {'ratio':>6}  {'in hooks':>9}  {'hooks / without':>15}")
    for name, seconds in best.items():
        ratio = seconds / best["without"]
        in_hooks = hooks[name] if name != "without" else 0.0
        share = in_hooks / best["without"]
        print(
            f"  {name:<18} {seconds:7.3f}s  {1000 * seconds / steps:6.2f} ms  {ratio:5.3f}x"
            f"  {1000 * in_hooks:7.1f}ms  {100 * share:14.2f}%"
        )
    print(
        f"  defaults: {100 * (best['defaults'] / best['without'] - 1):+.1f}% wall clock, "
        f"{100 * hooks['defaults'] / best['without']:.2f}% in hooks  (target <= 3%)"
    )


if __name__ == "__main__":
    main()
