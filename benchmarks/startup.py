"""Start-up with PyTorch installed against without it, in one run.

Where torch is installed, ``import tensorboardX`` imports it (about 1.4 s); plugnet imports
only tensorboardX's protocol buffers and record writer (`framework.tensorboardx_protos`), so
its processes should start as fast as where torch is absent (target, issue 13: within 0.1 s).
Each command runs as a fresh process in two environments of the same interpreter, which
differ only in one environment variable read by a ``sitecustomize`` put first on
``PYTHONPATH`` (so every child process inherits it: the sweep's fork server and workers):

* ``torch importable``: this environment as it is (torch must be installed for the
  comparison to mean anything; the script says so when it is not);
* ``torch hidden``: the same, with the path finder blind to ``torch``, so that
  ``import torch`` fails and ``importlib.util.find_spec("torch")`` is None, exactly as where
  torch is not installed.

In both, the ``sitecustomize`` notes every process that looks for ``torch`` at all (an
import or a probe), and the script prints them: with nothing listed, no plugnet process,
worker or fork server went near torch.

Commands: ``plugnet plugins``; ``plugnet train`` of the default example (its 60 epochs of
two moons, with the tensorboard callback); ``plugnet sweep`` of the default example over a
two-point grid with ``--jobs 2`` and one epoch a trial, which is start-up all through: the
sweep process, its fork server, and two workers each starting its trial.

Each round runs the six (command, environment) pairs in an order rotated by one each round;
the script prints each pair's median wall time and CPU time and, per command, the median
over rounds of (torch importable − torch hidden); the target is on wall time, and CPU time,
less disturbed by other jobs on a shared machine, says whether a wall-time difference is
noise.

    python benchmarks/startup.py [--rounds 3]
"""

import argparse
import csv
import glob
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SITECUSTOMIZE = """\
# Written by benchmarks/startup.py: notes each process that looks for torch, and with
# PLUGNET_BENCH_HIDE_TORCH=1 makes torch look not installed.
import os
import sys
from importlib.machinery import PathFinder


class WatchTorch:  # first on sys.meta_path: sees every top-level import, finds nothing itself
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            with open(os.path.join(os.environ["PLUGNET_BENCH_TORCH_LOG"], str(os.getpid())), "w") as f:
                f.write(" ".join(sys.orig_argv))
        return None


class PathFinderWithoutTorch(PathFinder):  # the path finder, blind to torch
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            return None
        return super().find_spec(name, path, target)


if os.environ.get("PLUGNET_BENCH_HIDE_TORCH") == "1":
    sys.meta_path[:] = [PathFinderWithoutTorch if f is PathFinder else f for f in sys.meta_path]
if os.environ.get("PLUGNET_BENCH_TORCH_LOG"):
    sys.meta_path.insert(0, WatchTorch())
"""


def environments(root):
    shim = os.path.join(root, "shim")
    os.makedirs(shim)
    with open(os.path.join(shim, "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [shim, os.environ.get("PYTHONPATH")]))
    envs = {}
    for name, hide in (("torch importable", "0"), ("torch hidden", "1")):
        log = os.path.join(root, "looked-for-torch", name.replace(" ", "-"))
        os.makedirs(log)
        envs[name] = dict(
            os.environ, PYTHONPATH=path, PLUGNET_BENCH_HIDE_TORCH=hide, PLUGNET_BENCH_TORCH_LOG=log
        )
    return envs


def check_hiding(envs, root):
    """Whether torch is importable in each environment, as the script claims."""
    code = "import importlib.util; print(importlib.util.find_spec('torch') is not None)"
    for name, env in envs.items():
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=root,
            check=True,
            capture_output=True,
            text=True,
        )
        found = out.stdout.strip() == "True"
        assert found == (
            name == "torch importable" and importlib.util.find_spec("torch") is not None
        ), (name, found)
    for env in envs.values():  # the probe itself looked for torch: forget it
        for path in glob.glob(os.path.join(env["PLUGNET_BENCH_TORCH_LOG"], "*")):
            os.remove(path)


def commands(root):
    sweep_dir = os.path.join(root, "sweep")
    return {
        "plugnet plugins": (["plugins"], None),
        "plugnet train (default example)": (
            ["train", "--quiet", "--logdir", os.path.join(root, "train")],
            "train",
        ),
        "plugnet sweep, 2 workers": (
            [
                "sweep",
                "--quiet",
                "--jobs",
                "2",
                "--epochs",
                "1",
                "--grid",
                "model.layers.0.units=4,8",
                "--logdir",
                sweep_dir,
            ],
            "sweep",
        ),
    }


def children_cpu():
    """CPU seconds (user + system) of the child processes reaped so far: less disturbed than
    wall time by other jobs on a shared machine (a sweep's workers count once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args, env, root, clean):
    """(wall seconds, CPU seconds) of one command."""
    if clean:
        shutil.rmtree(os.path.join(root, clean), ignore_errors=True)
    start, cpu = time.perf_counter(), children_cpu()
    subprocess.run(
        [sys.executable, "-m", "framework", *args],
        env=env,
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start, children_cpu() - cpu
    if clean == "sweep":  # both trials ran to the end, in their workers
        with open(os.path.join(root, clean, "sweep.csv"), newline="") as f:
            states = [row["state"] for row in csv.DictReader(f)]
        assert states == ["complete"] * 2, states
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        print(
            "torch is not installed here: both environments are the same (pip install -e '.[bench]')"
        )
    root = tempfile.mkdtemp(prefix="plugnet-startup-")
    try:
        envs = environments(root)
        check_hiding(envs, root)
        cmds = commands(root)
        pairs = [(c, e) for c in cmds for e in envs]
        times = {pair: [] for pair in pairs}
        for rounds in range(args.rounds):
            shift = rounds % len(pairs)
            for command, env in pairs[shift:] + pairs[:shift]:
                argv, clean = cmds[command]
                times[command, env].append(run(argv, envs[env], root, clean))
        print(
            f"{args.rounds} rounds; cores {os.cpu_count()}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
        for env in envs:
            looked = [
                open(path).read()
                for path in glob.glob(os.path.join(envs[env]["PLUGNET_BENCH_TORCH_LOG"], "*"))
            ]
            print(
                f"  {env}: processes that looked for torch: {len(looked)}"
                + "".join(f"\n    {argv}" for argv in looked)
            )
        width = max(map(len, cmds))
        print(
            f"{'':{width}}  {'torch importable':>16}  {'torch hidden':>12}  {'difference':>10}  (medians of rounds)"
        )
        for command in cmds:
            for index, what in ((0, "wall"), (1, "CPU")):
                with_torch = [t[index] for t in times[command, "torch importable"]]
                without = [t[index] for t in times[command, "torch hidden"]]
                difference = statistics.median(
                    a - b for a, b in zip(with_torch, without, strict=True)
                )
                verdict = ("ok" if difference <= 0.1 else "over 0.1 s") if what == "wall" else ""
                label = command if what == "wall" else ""
                print(
                    f"{label:{width}}  {statistics.median(with_torch):12.2f} s {what:<4}"
                    f"{statistics.median(without):8.2f} s {what:<4}{difference:+8.2f} s  {verdict}"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
