"""Accuracy run: TensorFlow's Deep MNIST network (examples/mnist_dcn.toml) on real MNIST.

Trains the example exactly as ``plugnet train`` would (same config, callbacks and all) and
reports the final test accuracy against the Deep MNIST tutorial's 0.9869, the steps, the wall
time and the peak resident memory (target <= 2 GiB).  Each held-out evaluation is printed as it
happens, so a run cut short still tells how far it got.

    PLUGNET_DATA=/path/to/data python benchmarks/mnist_dcn.py [--threads 1] [--epochs N]
        [--set KEY=VALUE ...] [--logdir DIR] [--json FILE]

MNIST is read from ``$PLUGNET_DATA/mnist`` (the four IDX files).  ``--threads`` caps the
BLAS threads, and with them the threads plugnet splits its own work over
(`framework.threads`); plugnet is imported before numpy here, as in a ``plugnet`` command,
so that OpenBLAS's idle threads do not spin on the cores those threads need.
"""

import argparse
import json
import os
import resource
import sys
import time

from framework import hookimpl  # isort: skip - before numpy, as in a plugnet command
from threadpoolctl import threadpool_limits

from framework.config import apply_overrides, load_config
from framework.run import build

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, os.pardir, "examples", "mnist_dcn.toml")
SEED_ACCURACY = 0.9869
RSS_LIMIT = 2 * 1024**3


def peak_rss_bytes():
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class Report:
    """Prints a line per held-out evaluation and per epoch, with the time so far."""

    def __init__(self, started):
        self.started = started

    @hookimpl
    def on_evaluate_end(self, trainer, step, logs):
        metrics = "  ".join(f"{key} {value:.4f}" for key, value in logs.items())
        print(
            f"step {step:>6}  test {metrics}  [{time.perf_counter() - self.started:,.0f} s, "
            f"peak RSS {peak_rss_bytes() / 2**20:,.0f} MiB]",
            flush=True,
        )

    @hookimpl
    def on_epoch_end(self, trainer, epoch, logs):
        print(
            f"epoch {epoch + 1} done at step {trainer.step}: train loss {logs['loss']:.4f}",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--logdir", help="override logging.logdir")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    overrides = list(args.set)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.logdir:
        overrides.append(f"logging.logdir={json.dumps(args.logdir)}")
    config = apply_overrides(load_config(args.config), overrides)

    with threadpool_limits(args.threads):
        started = time.perf_counter()
        experiment = build(config, overwrite=True)  # a benchmark run again replaces its last run
        experiment.trainer.add_callback(Report(started))
        print(experiment.trainer.model.summary(), flush=True)
        summary = experiment.fit()
        wall = time.perf_counter() - started

    accuracy = summary.get("test", {}).get("accuracy")
    results = {
        "test_accuracy": accuracy,
        "test_loss": summary.get("test", {}).get("loss"),
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "wall_seconds": round(wall, 1),
        "training_seconds": summary["seconds"],
        "steps_per_second": round(summary["steps"] / summary["seconds"], 2),
        "peak_rss_mib": round(peak_rss_bytes() / 2**20),
        "threads": args.threads,
    }
    print(json.dumps(results, indent=2))
    if accuracy is not None:
        verdict = "meets" if accuracy >= SEED_ACCURACY else "is below"
        print(f"test accuracy {accuracy:.4f} {verdict} the Deep MNIST tutorial's {SEED_ACCURACY}")
    rss_verdict = "within" if peak_rss_bytes() <= RSS_LIMIT else "OVER"
    print(f"peak RSS {results['peak_rss_mib']:,} MiB, {rss_verdict} the 2 GiB budget")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
