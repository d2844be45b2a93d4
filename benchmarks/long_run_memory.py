"""Memory over a long run: 10,000 steps with TensorBoard and checkpoints on.

Trains the moons example (dense 2-16-2, tanh, softmax cross-entropy, SGD with momentum,
batch 32: 25 steps an epoch) for ``--steps`` steps with the ``tensorboard`` callback (a
scalar every 10 steps, histograms every 100), the ``checkpoint`` callback (every 100 steps,
the last 5 kept) and held-out evaluation every 50 steps.  Prints the resident set size (RSS)
now and the peak so far at 1,000 steps and at the end, and how much the current RSS grew
between them.  A flat run grows by little more than allocator noise.

    python benchmarks/long_run_memory.py [--steps 10000] [--logdir DIR]
"""

import argparse
import os
import resource
import tempfile
import time

from framework import Callback, hookimpl
from framework.checkpoints import list_checkpoints
from framework.run import build

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib():
    """The current resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class MemoryProbe(Callback):
    """Records (step, current RSS, peak RSS) at the steps asked for."""

    def __init__(self, at):
        self.at = set(at)
        self.samples = []

    @hookimpl
    def on_batch_end(self, trainer):
        if trainer.step in self.at:
            self.samples.append((trainer.step, rss_mib(), peak_rss_mib(), time.perf_counter()))


def config(steps, logdir):
    epochs = -(-steps // 25)
    return {
        "seed": 0,
        "data": {"type": "moons", "n_samples": 1000, "noise": 0.2, "test_fraction": 0.2},
        "model": {
            "layers": [
                {"type": "dense", "units": 16, "activation": "tanh"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "epochs": epochs,
            "batch_size": 32,
            "metrics": ["accuracy"],
            "evaluate_every": 50,
            "callbacks": [
                {"type": "tensorboard", "scalar_every": 10, "histogram_every": 100},
                {"type": "checkpoint", "every": 100, "keep": 5},
            ],
        },
        "logging": {"logdir": logdir},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--logdir", help="where the run goes (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.logdir or os.path.join(tmp, "long_run")
        marks = sorted({min(100, args.steps), min(1000, args.steps), args.steps})
        experiment = build(
            config(args.steps, logdir), overwrite=True
        )  # run again: replaces the last run
        probe = experiment.trainer.add_callback(MemoryProbe(marks))
        start = time.perf_counter()
        summary = experiment.fit()
        kept = [step for step, _ in list_checkpoints(logdir)]
        print(
            f"{summary['steps']} steps in {time.perf_counter() - start:.1f} s; checkpoints kept at steps {kept}"
        )
        print(f"{'step':>6}  {'RSS MiB':>8}  {'peak RSS MiB':>12}")
        for step, rss, peak, _ in probe.samples:
            print(f"{step:>6}  {rss:>8.1f}  {peak:>12.1f}")
        by_step = {step: (rss, peak) for step, rss, peak, _ in probe.samples}
        if 1000 in by_step and args.steps in by_step and args.steps > 1000:
            grew = by_step[args.steps][0] - by_step[1000][0]
            print(f"RSS growth from step 1,000 to {args.steps:,}: {grew:+.1f} MiB")


if __name__ == "__main__":
    main()
