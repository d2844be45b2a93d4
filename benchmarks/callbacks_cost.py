"""What the general built-in callbacks add to a step, on B3's XOR run (2-2-1 sigmoid, binary
cross-entropy, per-sample SGD, 4 steps an epoch): the run where a step is cheapest, so any
per-step work shows most.

Wall-clock comparisons of whole runs are too noisy on a shared machine to resolve a
microsecond, so each callback's hooks are timed directly, called through a pluggy hook caller
exactly as the trainer calls them: ``on_batch_end`` every step and ``on_epoch_end`` once per
4 steps.  Their sum per step is set against the time of a plugnet step without callbacks and
of B3's hand-written numpy step (best of ``--repeats``).  ``progress (bar)`` draws a real
tqdm bar into an in-memory stream (what a terminal gets); ``progress (lines)`` prints its
bounded epoch lines into one.

    python benchmarks/callbacks_cost.py [--calls 200000] [--repeats 5]
"""

import argparse
import io
import os
import sys
import time

import pluggy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from b3_xor_step import X, Y, numpy_run, plugnet_run  # noqa: E402

from framework import Sequential, Trainer, create  # noqa: E402
from framework.hookspecs import TrainingHooks  # noqa: E402

STEPS_PER_EPOCH = 4
VARIANTS = {
    "progress (lines)": lambda: create("callbacks", "progress", bar=False, file=io.StringIO()),
    "progress (bar)": lambda: create("callbacks", "progress", bar=True, file=io.StringIO()),
    "terminate_on_nan": lambda: create("callbacks", "terminate_on_nan"),
    "early_stopping(loss)": lambda: create(
        "callbacks", "early_stopping", monitor="loss", patience=10**9, restore_best=False
    ),
    "csv_logger": lambda: create("callbacks", "csv_logger", filename=os.devnull),
}


def xor_trainer():
    model = Sequential(
        [
            {"type": "dense", "units": 2, "activation": "sigmoid"},
            {"type": "dense", "units": 1, "activation": "sigmoid"},
        ],
        input_shape=(2,),
        seed=0,
    )
    trainer = Trainer(model, "binary_cross_entropy", seed=0)
    trainer.fit(X, Y, epochs=1, batch_size=1)  # sets steps_per_epoch, history, the logs
    return trainer


def hook_seconds(callback, calls):
    """Seconds per call of ``on_batch_end`` and of ``on_epoch_end`` (0 where not implemented)."""
    trainer = xor_trainer()
    trainer.epochs = 10**9  # a run far longer than the calls made
    manager = pluggy.PluginManager("plugnet")
    manager.add_hookspecs(TrainingHooks)
    manager.register(callback)
    hooks = manager.hook
    hooks.on_train_begin(trainer=trainer)
    logs = {"loss": 0.5, "val_loss": 0.5}
    result = []
    for name, count in (("on_batch_end", calls), ("on_epoch_end", calls // STEPS_PER_EPOCH)):
        caller = getattr(hooks, name)
        if not caller.get_hookimpls():
            result.append(0.0)
            continue
        start = time.perf_counter()
        for i in range(count):
            trainer.step = i + 1  # what the trainer does between calls; the bar reads it
            caller(trainer=trainer, step=i, epoch=i, logs=logs)
        result.append((time.perf_counter() - start) / count)
    hooks.on_train_end(trainer=trainer, logs=logs)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    numpy_step = min(numpy_run(2000) for _ in range(args.repeats))
    plugnet_step = min(plugnet_run(2000) for _ in range(args.repeats))
    print(
        f"XOR per-sample step: numpy {numpy_step * 1e6:.1f} us, plugnet {plugnet_step * 1e6:.1f} us "
        f"({plugnet_step / numpy_step:.2f}x numpy); best of {args.repeats}"
    )
    print(
        f"{'callback':<22} {'batch_end':>10} {'epoch_end':>10} {'per step':>9}  plugnet+callback / numpy"
    )
    for name, make in VARIANTS.items():
        batch, epoch = (
            min(values)
            for values in zip(
                *(hook_seconds(make(), args.calls) for _ in range(args.repeats)), strict=True
            )
        )
        per_step = batch + epoch / STEPS_PER_EPOCH
        print(
            f"  {name:<20} {batch * 1e6:8.2f}us {epoch * 1e6:8.2f}us {per_step * 1e6:7.2f}us  "
            f"{(plugnet_step + per_step) / numpy_step:.2f}x"
        )


if __name__ == "__main__":
    main()
