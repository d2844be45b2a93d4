"""What the ``tensorboard`` callback costs on the B1 benchmark.

B1's network (dense 784-256-128-10, relu, softmax cross-entropy, batch 128, SGD with momentum
0.9, float32, random data) trained without the callback, with it at its defaults, and with a
histogram of every tensor at every step (``histogram_every = 1``).  Runs are interleaved and
the best of ``--repeats`` is kept, so a busy moment on a shared machine hurts every variant
alike; the median of each repeat's ratio to its own run without is printed too.
Target: the defaults cost at most 3%.

Each repeat runs the three variants in an order that rotates from repeat to repeat, and
the medians are of each repeat's ratio to its own run without the callback: on a shared
machine the best-of figures compare moments that may be seconds apart and differently
loaded, the paired ones compare runs made back to back.

Wall-clock ratios on a machine shared with other work are noisy, so two steadier figures
are printed beside them: the process's CPU time (all threads, the writer's included) and the
time spent inside the callback's hooks, summed over a run and compared with the training time
without the callback.  ``--threads 1`` pins BLAS to one thread, which makes wall-clock times
on a busy machine steadier still.

    python benchmarks/tensorboard_cost.py [--samples 12800] [--epochs 2] [--repeats 7]
"""

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from b1_dense import BATCH, LR, MOMENTUM, SIZES, data  # noqa: E402

from framework import Sequential, Trainer  # noqa: E402
from framework.trainer import TRAINING_HOOKS  # noqa: E402
from plugins.callbacks.tensorboard import TensorBoard  # noqa: E402


class TimedTensorBoard(TensorBoard):
    """The callback with the time spent in its hooks added up in ``HOOK_SECONDS[0]``."""


# Not a class attribute: assigning one at every call would invalidate the class's attribute
# cache each time, and every attribute the callback then reads would be looked up anew (0.4
# µs a call on its own: the measuring would add to what it measures).
HOOK_SECONDS = [0.0]


def timed(method):
    @functools.wraps(method)  # keeps the hookimpl marker and the signature pluggy reads
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            HOOK_SECONDS[0] += time.perf_counter() - start

    return wrapper


for _hook in TRAINING_HOOKS:
    if hasattr(TensorBoard, _hook):
        setattr(TimedTensorBoard, _hook, timed(getattr(TensorBoard, _hook)))

VARIANTS = {"without": None, "defaults": {}, "histogram_every=1": {"histogram_every": 1}}


def train(x, y, epochs, callback, logdir):
    model = Sequential(
        [{"type": "dense", "units": n, "activation": "relu"} for n in SIZES[1:-1]]
        + [{"type": "dense", "units": SIZES[-1], "activation": "softmax"}],
        input_shape=(SIZES[0],),
        seed=0,
    )
    trainer = Trainer(
        model,
        "cross_entropy",
        {"type": "sgd", "lr": LR, "momentum": MOMENTUM},
        callbacks=[TimedTensorBoard(**callback)] if callback is not None else [],
        logdir=logdir,
        seed=0,
    )
    HOOK_SECONDS[0] = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    trainer.fit(x, y, epochs=epochs, batch_size=BATCH)  # includes opening and closing the writers
    return {
        "wall": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,  # every thread of the process: BLAS and writers too
        "hooks": HOOK_SECONDS[0],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, help="BLAS threads (default: numpy's own choice)")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    x, y = data(args.samples)
    best = {
        name: {"wall": float("inf"), "cpu": float("inf"), "hooks": float("inf")}
        for name in VARIANTS
    }
    # each repeat's wall and CPU times over its own run without the callback
    ratios = {name: [] for name in VARIANTS}
    cpu_ratios = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    with tempfile.TemporaryDirectory() as root:
        for name, callback in VARIANTS.items():  # warm-up: imports, BLAS threads, writer start-up
            train(x[: BATCH * 4], y[: BATCH * 4], 1, callback, os.path.join(root, "warmup", name))
        for repeat in range(args.repeats):
            # The order rotates from repeat to repeat, so no variant always follows the heavy
            # one (histograms of every tensor) or always comes first.
            shift = repeat % len(names)
            measured = {}
            for name in names[shift:] + names[:shift]:
                callback = VARIANTS[name]
                measured[name] = train(
                    x, y, args.epochs, callback, os.path.join(root, f"{repeat}", name)
                )
                for key, value in measured[name].items():
                    best[name][key] = min(best[name][key], value)
            for name in names:
                ratios[name].append(measured[name]["wall"] / measured["without"]["wall"])
                cpu_ratios[name].append(measured[name]["cpu"] / measured["without"]["cpu"])
    steps = -(-args.samples // BATCH) * args.epochs
    base = best["without"]
    print(
        f"tensorboard callback on B1 (784-256-128-10, batch {BATCH}), {steps} steps per run, "
        f"best of {args.repeats}, BLAS threads: {args.threads or 'default'}"
    )
    print(
        f"  {'variant':<18} {'wall':>8} {'ratio':>7} {'median':>7} {'cpu':>8} {'ratio':>7}"
        f" {'median':>7} {'in hooks':>9} {'/ wall without':>15}"
    )
    for name, measured in best.items():
        in_hooks = measured["hooks"] if name != "without" else 0.0
        print(
            f"  {name:<18} {measured['wall']:7.3f}s {measured['wall'] / base['wall']:6.3f}x"
            f" {statistics.median(ratios[name]):6.3f}x"
            f" {measured['cpu']:7.3f}s {measured['cpu'] / base['cpu']:6.3f}x"
            f" {statistics.median(cpu_ratios[name]):6.3f}x"
            f" {1000 * in_hooks:7.1f}ms {100 * in_hooks / base['wall']:14.2f}%"
        )
    defaults = best["defaults"]
    print(
        f"  defaults: {100 * (defaults['wall'] / base['wall'] - 1):+.1f}% wall clock "
        f"({100 * (statistics.median(ratios['defaults']) - 1):+.1f}% median of paired runs), "
        f"{100 * (defaults['cpu'] / base['cpu'] - 1):+.1f}% CPU time best-of "
        f"({100 * (statistics.median(cpu_ratios['defaults']) - 1):+.1f}% median of paired "
        f"runs), {100 * defaults['hooks'] / base['wall']:.1f}% in its hooks  (target <= 3%)"
    )


if __name__ == "__main__":
    main()
