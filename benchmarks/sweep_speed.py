"""Sweep speed: 8 trials of the moons sweep (examples/sweep_moons.toml with tanh and eight
hidden sizes, ``--epochs`` each: 600 by default, about a second of training per trial on this
2-core machine; the example's own 40 epochs train for a tenth of a second), as
``plugnet sweep`` runs them.

Prints, best of ``--repeats``:

* the command's wall time with ``--jobs 1`` and ``--jobs 2``, and the speed-up
  (target >= 1.6x on two free cores), and the same for the `framework.sweep` call alone: the
  command's ~1 s of interpreter start and imports runs once, before any worker, so it bounds
  the command's speed-up when trials are short;
* the CPU time each command used: equal CPU for both means the workers add no work, and the
  speed-up is then bounded only by the cores free to run them;
* what a trial costs beyond its own training with ``--jobs 1``:
  (wall time - sum of the trials' training seconds from their summary.json) / trials, for the
  whole command (process start, imports, storage, logging; target <= 0.5 s) and for the
  `framework.sweep` call alone in a process that has already imported plugnet.

The machine's load average is printed too: on a shared machine the parallel speed-up is
bounded by the cores nobody else is using.

    python benchmarks/sweep_speed.py [--repeats 3] [--epochs 600]
"""

import argparse
import csv
import glob
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "..", "examples", "sweep_moons.toml")
UNITS = [2, 3, 4, 5, 6, 8, 16, 32]
GRID = ["model.layers.0.activation=tanh", "model.layers.0.units=" + ",".join(map(str, UNITS))]


CPU = {}  # jobs -> the least CPU seconds (user + system) the command used


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def training_seconds(logdir):
    paths = glob.glob(os.path.join(logdir, "trial-*", "summary.json"))
    assert len(paths) == len(UNITS), f"expected {len(UNITS)} trials in {logdir}, found {len(paths)}"
    return sum(json.load(open(path))["seconds"] for path in paths)


def command(jobs, logdir, epochs):
    args = [sys.executable, "-m", "framework", "sweep", CONFIG, "--logdir", logdir, "--jobs", str(jobs), "--quiet"]
    args += ["--epochs", str(epochs)]
    for option in GRID:
        args += ["--grid", option]
    start, cpu = time.perf_counter(), children_cpu()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, cwd=os.path.dirname(logdir))
    wall = time.perf_counter() - start
    CPU[jobs] = min(CPU.get(jobs, float("inf")), children_cpu() - cpu)
    with open(os.path.join(logdir, "sweep.csv"), newline="") as f:
        states = [row["state"] for row in csv.DictReader(f)]
    assert states == ["complete"] * len(UNITS), states
    return wall, training_seconds(logdir)


def in_process(logdir, epochs, jobs=1):
    from framework.config import load_config
    from framework.sweeps import sweep

    config = load_config(CONFIG)
    start = time.perf_counter()
    sweep(config, grid=GRID, logdir=logdir, jobs=jobs, overrides=[f"train.epochs={epochs}"])
    return time.perf_counter() - start, training_seconds(logdir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=600, help="epochs per trial")
    args = parser.parse_args()
    importlib.import_module("framework.run")  # imports done before the in-process timing
    from framework.registry import registry

    registry()
    root = tempfile.mkdtemp(prefix="plugnet-sweep-bench-")
    trials = len(UNITS)
    best = {}
    try:
        for repeat in range(args.repeats):
            for name, run in (
                ("jobs 1", lambda d: command(1, d, args.epochs)),
                ("jobs 2", lambda d: command(2, d, args.epochs)),
                ("in-process jobs 1", lambda d: in_process(d, args.epochs)),
                ("in-process jobs 2", lambda d: in_process(d, args.epochs, 2)),
            ):
                logdir = os.path.join(root, f"{name.replace(' ', '-')}-{repeat}")
                wall, train = run(logdir)
                shutil.rmtree(logdir)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, train)
                print(f"  repeat {repeat}: {name:18s} {wall:6.2f} s wall, {train:5.2f} s training", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    one, two, inside = best["jobs 1"], best["jobs 2"], best["in-process jobs 1"]
    inside_two = best["in-process jobs 2"]
    print(f"cores {os.cpu_count()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{trials} trials: --jobs 1 {one[0]:.2f} s, --jobs 2 {two[0]:.2f} s, speed-up {one[0] / two[0]:.2f}x (target >= 1.6x)")
    print(
        f"the sweep call alone (plugnet imported): jobs 1 {inside[0]:.2f} s, jobs 2 {inside_two[0]:.2f} s, "
        f"speed-up {inside[0] / inside_two[0]:.2f}x"
    )
    print(f"CPU seconds of the command: --jobs 1 {CPU[1]:.2f}, --jobs 2 {CPU[2]:.2f} (the same work, spread over workers)")
    print(f"overhead per trial, whole command (--jobs 1): {(one[0] - one[1]) / trials:.3f} s (target <= 0.5 s)")
    print(f"overhead per trial, sweep call alone:        {(inside[0] - inside[1]) / trials:.3f} s")


if __name__ == "__main__":
    main()
