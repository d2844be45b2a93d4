"""B3: the cost of one per-sample step on XOR (2-2-1, sigmoid, binary cross-entropy, SGD).

The network is tiny, so this measures what plugnet adds around a step: hooks, bookkeeping,
component calls, and the epoch's bookkeeping too, since an epoch is 4 steps.  Prints
microseconds per step for plugnet's Trainer (without and with an accuracy metric) and for
two hand-written numpy loops doing the same maths, shuffling each epoch as the trainer does:
``numpy`` also computes each step's loss value, ``lean`` does only the forward pass, backward
pass and update (issue 13's reference).  Each run counts the steps it actually took.  Runs
come in rounds that rotate which goes first; the ratios are medians over rounds of the
per-step times measured seconds apart (this shared VM's speed drifts by up to 2x).
Target (issue 13): plugnet <= 1.8x lean.

    python benchmarks/b3_xor_step.py [--epochs 2000] [--rounds 7]
"""

import argparse
import statistics
import time

import numpy as np

from framework import Sequential, Trainer

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([0, 1, 1, 0])
LR = 0.1


def plugnet_run(epochs, metrics=()):
    model = Sequential(
        [
            {"type": "dense", "units": 2, "activation": "sigmoid"},
            {"type": "dense", "units": 1, "activation": "sigmoid"},
        ],
        input_shape=(2,),
        seed=0,
    )
    trainer = Trainer(
        model, "binary_cross_entropy", {"type": "sgd", "lr": LR}, metrics=list(metrics), seed=0
    )
    start = time.perf_counter()
    trainer.fit(X, Y, epochs=epochs, batch_size=1)
    seconds = time.perf_counter() - start
    assert trainer.step == 4 * epochs, f"plugnet took {trainer.step} steps, not {4 * epochs}"
    assert len(trainer.history["loss"]) == epochs  # the epoch losses were all recorded
    return seconds / trainer.step


def hand_run(epochs, loss_value):
    """Per-sample SGD written out by hand, shuffling each epoch as the trainer does; with
    ``loss_value`` it also computes each step's binary cross-entropy, as plugnet logs it."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(2, 2)).astype(np.float32)
    b1 = np.zeros(2, np.float32)
    w2 = rng.normal(size=(2, 1)).astype(np.float32)
    b2 = np.zeros(1, np.float32)
    y = Y.reshape(-1, 1).astype(np.float32)
    order_rng = np.random.default_rng(0)
    steps = 0
    start = time.perf_counter()
    for _ in range(epochs):
        order = order_rng.permutation(4)
        for i in range(4):
            rows = order[i : i + 1]
            xb, yb = X[rows], y[rows]
            a1 = 1 / (1 + np.exp(-(xb @ w1 + b1)))
            a2 = 1 / (1 + np.exp(-(a1 @ w2 + b2)))
            if loss_value:
                p = np.clip(a2, 1e-7, 1 - 1e-7)
                loss = float(-np.mean(yb * np.log(p) + (1 - yb) * np.log(1 - p)))  # noqa: F841
            g2 = a2 - yb  # fused sigmoid + cross-entropy
            g1 = (g2 @ w2.T) * a1 * (1 - a1)
            w2 -= LR * (a1.T @ g2)
            b2 -= LR * g2.sum(axis=0)
            w1 -= LR * (xb.T @ g1)
            b1 -= LR * g1.sum(axis=0)
            steps += 1
    seconds = time.perf_counter() - start
    assert steps == 4 * epochs
    return seconds / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    runs = {
        "lean": lambda epochs: hand_run(epochs, False),
        "numpy": lambda epochs: hand_run(epochs, True),
        "plugnet": plugnet_run,
        "plugnet + accuracy": lambda epochs: plugnet_run(epochs, ["accuracy"]),
    }
    for run in runs.values():  # warm-up: imports, caches
        run(50)
    names = list(runs)
    times = {name: [] for name in names}
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(runs[name](args.epochs))
    print(f"B3 XOR 2-2-1 per-sample steps, {args.epochs * 4} steps per run, {args.rounds} rounds")
    for name in names:
        print(
            f"  {name:<20} {statistics.median(times[name]) * 1e6:8.1f} us/step (median), "
            f"{min(times[name]) * 1e6:6.1f} best"
        )
    for name in ("plugnet", "plugnet + accuracy"):
        for reference, target in (("lean", 1.8), ("numpy", None)):
            ratio = statistics.median(
                a / b for a, b in zip(times[name], times[reference], strict=True)
            )
            note = f"  (target <= {target})" if target and name == "plugnet" else ""
            print(f"  {name} / {reference}: {ratio:.2f}x median of rounds{note}")


if __name__ == "__main__":
    main()
