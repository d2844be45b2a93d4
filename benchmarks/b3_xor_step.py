"""B3: the cost of one per-sample step on XOR (2-2-1, sigmoid, binary cross-entropy, SGD).

The network is tiny, so this measures what plugnet adds around a step: hooks, bookkeeping,
component calls.  Prints microseconds per step for plugnet's Trainer and for a hand-written
numpy step doing the same maths, and their ratio (target: plugnet <= 2x).

    python benchmarks/b3_xor_step.py [--epochs 5000] [--repeats 5]
"""

import argparse
import time

import numpy as np

from framework import Sequential, Trainer

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
Y = np.array([0, 1, 1, 0])
LR = 0.1


def plugnet_run(epochs, metrics=()):
    model = Sequential(
        [{"type": "dense", "units": 2, "activation": "sigmoid"},
         {"type": "dense", "units": 1, "activation": "sigmoid"}],
        input_shape=(2,), seed=0,
    )
    trainer = Trainer(model, "binary_cross_entropy", {"type": "sgd", "lr": LR}, metrics=list(metrics), seed=0)
    start = time.perf_counter()
    trainer.fit(X, Y, epochs=epochs, batch_size=1)
    return (time.perf_counter() - start) / trainer.step


def numpy_run(epochs):
    """Per-sample SGD written out by hand, shuffling each epoch as the trainer does."""
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
        xs, ys = X[order], y[order]
        for i in range(4):
            xb, yb = xs[i : i + 1], ys[i : i + 1]
            a1 = 1 / (1 + np.exp(-(xb @ w1 + b1)))
            a2 = 1 / (1 + np.exp(-(a1 @ w2 + b2)))
            p = np.clip(a2, 1e-7, 1 - 1e-7)
            loss = float(-np.mean(yb * np.log(p) + (1 - yb) * np.log(1 - p)))  # noqa: F841
            g2 = a2 - yb  # fused sigmoid + cross-entropy
            g1 = (g2 @ w2.T) * a1 * (1 - a1)
            w2 -= LR * (a1.T @ g2)
            b2 -= LR * g2.sum(axis=0)
            w1 -= LR * (xb.T @ g1)
            b1 -= LR * g1.sum(axis=0)
            steps += 1
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    plugnet_run(50), numpy_run(50)
    runs = {"numpy": lambda: numpy_run(args.epochs), "plugnet": lambda: plugnet_run(args.epochs),
            "plugnet + accuracy": lambda: plugnet_run(args.epochs, ["accuracy"])}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeats):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    print(f"B3 XOR 2-2-1 per-sample steps, {args.epochs * 4} steps per run, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:<20} {seconds * 1e6:8.1f} us/step")
    print(f"  plugnet / numpy time per step: {best['plugnet'] / best['numpy']:.2f}x  (target <= 2)")
    print(f"  with accuracy metric each step: {best['plugnet + accuracy'] / best['numpy']:.2f}x")


if __name__ == "__main__":
    main()
