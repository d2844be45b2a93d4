"""The MNIST example's run against PyTorch: minutes, accuracy and memory, same recipe.

``examples/mnist_dcn.toml`` (TensorFlow's Deep MNIST net: Adam 1e-4, batches of 50, dropout
0.5, held-out evaluation every 1,100 steps and after every epoch, a checkpoint every 1,100
steps, the TensorBoard callback) trained for ``--steps`` steps by ``benchmarks/mnist_dcn.py``,
exactly as ``plugnet train`` runs it; and the same recipe written in PyTorch (the same
network, truncated-normal weights and 0.1 biases, ``optim.Adam``, the same evaluations and
checkpoints, no TensorBoard).  Each side runs in its own process, one after the other,
the order alternating from round to round; each reports the steps it ran,
its training time (data loading excluded), its final test accuracy and its peak resident
memory.

    PLUGNET_DATA=../shared/data python benchmarks/mnist_example.py [--steps 6000]
        [--threads 2] [--rounds 1]

Needs real MNIST in ``$PLUGNET_DATA/mnist`` and torch (the ``bench`` extra).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EVALUATE_EVERY = 1100  # the example's evaluate_every and checkpoint every
BATCH = 50


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def torch_side(steps, threads, directory):
    """The example's recipe in PyTorch; returns the same figures as mnist_dcn.py."""
    import numpy as np
    import torch

    from plugins.datasets import MNIST

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = MNIST().load(np.random.default_rng(0))
    xt = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))  # NCHW
    yt = torch.from_numpy(y_train.astype(np.int64))
    xv = torch.from_numpy(np.ascontiguousarray(x_test.transpose(0, 3, 1, 2)))
    yv = torch.from_numpy(y_test.astype(np.int64))
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(1024, 10),
    )
    with torch.no_grad():
        for module in model:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.1, a=-0.2, b=0.2)
                module.bias.fill_(0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def evaluate():
        model.eval()
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for start in range(0, len(xv), 1000):
                logits = model(xv[start : start + 1000])
                total_loss += float(loss_fn(logits, yv[start : start + 1000])) * len(logits)
                correct += int((logits.argmax(1) == yv[start : start + 1000]).sum())
        model.train()
        return correct / len(xv), total_loss / len(xv)

    started = time.perf_counter()
    step, per_epoch = 0, len(xt) // BATCH
    accuracy = loss = None
    while step < steps:
        order = torch.randperm(len(xt))
        for batch in range(per_epoch):
            index = order[batch * BATCH : (batch + 1) * BATCH]
            optimizer.zero_grad()
            loss_fn(model(xt[index]), yt[index]).backward()
            optimizer.step()
            step += 1
            if step % EVALUATE_EVERY == 0:
                accuracy, loss = evaluate()
                checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                torch.save(checkpoint, os.path.join(directory, f"step_{step}.pt"))
            if step == steps:
                break
        accuracy, loss = evaluate()  # after each epoch (and at the end), as plugnet's trainer
    wall = time.perf_counter() - started
    return {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "steps": step,
        "training_seconds": round(wall, 1),
        "peak_rss_mib": round(peak_rss_mib()),
        "threads": torch.get_num_threads(),
    }


def run_side(side, steps, threads, directory):
    """One side in a fresh process; its figures as a dict."""
    out = os.path.join(directory, f"{side}.json")
    if side == "plugnet":
        command = [
            sys.executable,
            os.path.join(HERE, "mnist_dcn.py"),
            f"--threads={threads}",
            f"--set=train.steps={steps}",
            f"--logdir={os.path.join(directory, 'run')}",
            f"--json={out}",
        ]
    else:
        command = [sys.executable, __file__, "--side=torch", f"--steps={steps}"]
        command += [f"--threads={threads}", f"--json={out}", f"--directory={directory}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        figures = json.load(f)
    figures["process_seconds"] = round(time.perf_counter() - started, 1)  # start-up and loading
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--side", choices=["torch"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "torch":
        with open(args.json, "w") as f:
            json.dump(torch_side(args.steps, args.threads, args.directory), f)
        return

    results = {"plugnet": [], "torch": []}
    sides = ["plugnet", "torch"]
    for round_ in range(args.rounds):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            with tempfile.TemporaryDirectory() as directory:
                figures = run_side(side, args.steps, args.threads, directory)
            results[side].append(figures)
            print(f"round {round_ + 1} {side:<8} {json.dumps(figures)}", flush=True)
    print(f"MNIST example, {args.steps} steps, {args.threads} threads, {args.rounds} round(s):")
    for side, runs in results.items():
        minutes = statistics.median(r["training_seconds"] for r in runs) / 60
        print(
            f"  {side:<8} {minutes:5.2f} min training  steps {runs[0]['steps']}  "
            f"test accuracy {runs[-1]['test_accuracy']:.4f}  "
            f"peak RSS {max(r['peak_rss_mib'] for r in runs):,} MiB"
        )
    ratios = [
        t["training_seconds"] / p["training_seconds"]
        for p, t in zip(results["plugnet"], results["torch"], strict=True)
    ]
    print(f"  plugnet's speed / PyTorch's: {statistics.median(ratios):.2f}x (target >= 1.0)")


if __name__ == "__main__":
    main()
