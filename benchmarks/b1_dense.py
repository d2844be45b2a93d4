"""B1: training throughput of a dense MNIST-sized classifier.

784-256-128-10, relu, softmax cross-entropy, batch 128, SGD with momentum 0.9, float32.
Prints samples/s for plugnet's Trainer, two hand-written numpy loops doing the same maths —
``numpy`` computes each batch's loss value as plugnet does, ``lean`` does only the forward
pass, backward pass and update (no loss value, no bookkeeping: the fastest honest loop) —
and PyTorch on the CPU (same number of threads) when it is installed, with the ratios.
Each is timed over the same data in rounds that rotate which runs first (each round's
times are printed); the ratios are medians over rounds (runs seconds apart, which a machine
whose speed drifts needs), beside best-of.  plugnet and the lean loop check that they ran
every step.  Targets (issue 13): plugnet >= 0.95x lean numpy and >= 1.3x PyTorch.  On a
machine others are using, ``--threads 1`` is the steadier comparison: two BLAS threads
sharing a core with another job wait on each other in every matrix product.

    python benchmarks/b1_dense.py [--samples 12800] [--epochs 2] [--repeats 7] [--threads N]
"""

import argparse
import itertools
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from framework import Sequential, Trainer

SIZES = (784, 256, 128, 10)
LR, MOMENTUM, BATCH = 0.01, 0.9, 128


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], n)
    return x, y


def glorot(rng, fan_in, fan_out):
    limit = np.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


def plugnet_run(x, y, epochs):
    model = Sequential(
        [{"type": "dense", "units": n, "activation": "relu"} for n in SIZES[1:-1]]
        + [{"type": "dense", "units": SIZES[-1], "activation": "softmax"}],
        input_shape=(SIZES[0],),
        seed=0,
    )
    trainer = Trainer(
        model, "cross_entropy", {"type": "sgd", "lr": LR, "momentum": MOMENTUM}, seed=0
    )
    start = time.perf_counter()
    trainer.fit(x, y, epochs=epochs, batch_size=BATCH)
    seconds = time.perf_counter() - start
    assert trainer.step == epochs * -(-len(x) // BATCH), "plugnet ran fewer steps than asked"
    return seconds


def numpy_run(x, y, epochs):
    """The same training written out by hand: the reference plugnet must keep up with."""
    rng = np.random.default_rng(0)
    weights = [glorot(rng, a, b) for a, b in itertools.pairwise(SIZES)]
    biases = [np.zeros(b, np.float32) for b in SIZES[1:]]
    params = weights + biases
    velocity = [np.zeros_like(p) for p in params]
    order_rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(epochs):
        order = order_rng.permutation(len(x))
        xs, ys = x[order], y[order]
        for i in range(0, len(x), BATCH):
            xb, yb = xs[i : i + BATCH], ys[i : i + BATCH]
            acts, pre = [xb], []
            for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
                z = acts[-1] @ w + b
                pre.append(z)
                if layer < len(weights) - 1:
                    acts.append(np.maximum(z, 0))
                else:
                    e = np.exp(z - z.max(axis=1, keepdims=True))
                    probs = e / e.sum(axis=1, keepdims=True)
            n = len(xb)
            loss = -np.mean(np.log(np.clip(probs[np.arange(n), yb], 1e-7, None)))  # noqa: F841
            grad = probs
            grad[np.arange(n), yb] -= 1
            grad /= n
            grads_w, grads_b = [None] * len(weights), [None] * len(weights)
            for layer in reversed(range(len(weights))):
                grads_w[layer] = acts[layer].T @ grad
                grads_b[layer] = grad.sum(axis=0)
                if layer:
                    grad = (grad @ weights[layer].T) * (pre[layer - 1] > 0)
            for p, g, v in zip(params, grads_w + grads_b, velocity, strict=True):
                v *= MOMENTUM
                v -= LR * g
                p += v
    return time.perf_counter() - start


def lean_run(x, y, epochs):
    """The lean reference: the same forward, backward and update as `numpy_run`, and
    nothing else — no loss value, no per-batch bookkeeping.  Batches are gathered by index
    from the data, as plugnet's trainer does (no shuffled copy of the whole set), and the
    gradients are written into arrays allocated once, as plugnet's layers do: a fresh
    784x256 gradient each step costs the allocator's page faults, which would make this loop
    slower than it need be and the comparison flatter than it is."""
    rng = np.random.default_rng(0)
    weights = [glorot(rng, a, b) for a, b in itertools.pairwise(SIZES)]
    biases = [np.zeros(b, np.float32) for b in SIZES[1:]]
    params = weights + biases
    velocity = [np.zeros_like(p) for p in params]
    grads = [np.zeros_like(p) for p in params]
    order_rng = np.random.default_rng(0)
    last = len(weights) - 1
    steps = 0
    start = time.perf_counter()
    for _ in range(epochs):
        order = order_rng.permutation(len(x))
        for i in range(0, len(x), BATCH):
            rows = order[i : i + BATCH]
            xb, yb = x[rows], y[rows]
            acts = [xb]
            for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
                z = acts[-1] @ w
                z += b
                if layer < last:
                    acts.append(np.maximum(z, 0))
            grad = np.exp(z - z.max(axis=1, keepdims=True))
            grad /= grad.sum(axis=1, keepdims=True)  # softmax probabilities
            n = len(xb)
            grad[np.arange(n), yb] -= 1
            grad /= n
            for layer in range(last, -1, -1):
                np.matmul(acts[layer].T, grad, out=grads[layer])
                np.sum(grad, axis=0, out=grads[last + 1 + layer])
                if layer:
                    grad = grad @ weights[layer].T
                    grad *= acts[layer] > 0
            for p, g, v in zip(params, grads, velocity, strict=True):
                v *= MOMENTUM
                v -= LR * g
                p += v
            steps += 1
    seconds = time.perf_counter() - start
    assert steps == epochs * -(-len(x) // BATCH), "the lean loop ran fewer steps than asked"
    return seconds


def torch_run(x, y, epochs):
    import torch

    torch.manual_seed(0)
    layers = []
    for a, b in zip(SIZES[:-2], SIZES[1:-1], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(SIZES[-2], SIZES[-1]))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        xs, ys = xt[order], yt[order]
        for i in range(0, len(xt), BATCH):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[i : i + BATCH]), ys[i : i + BATCH])
            loss.backward()
            optimizer.step()
            loss.item()  # plugnet reads every batch loss too
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12_800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS / torch threads")
    args = parser.parse_args()
    with threadpool_limits(args.threads):
        compare(args)


def compare(args):
    x, y = data(args.samples)
    runners = {"plugnet": plugnet_run, "numpy": numpy_run, "lean": lean_run}
    try:
        import torch

        torch.set_num_threads(args.threads)
        runners["torch"] = torch_run
    except ImportError:
        print("PyTorch not installed: comparing with hand-written numpy only")
    times = {name: [] for name in runners}
    for runner in runners.values():  # warm-up: imports, allocator, BLAS threads
        runner(x[: BATCH * 4], y[: BATCH * 4], 1)
    names = list(runners)
    for round_ in range(args.repeats):
        # Each round starts with a different runner, and each run waits a moment first:
        # PyTorch's OpenMP threads keep spinning after it returns, which would tax
        # whichever runner always came next.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            time.sleep(0.2)
            times[name].append(runners[name](x, y, args.epochs))
        print(
            f"  round {round_}: " + ", ".join(f"{name} {times[name][-1]:.3f} s" for name in names),
            flush=True,
        )
    best = {name: min(seconds) for name, seconds in times.items()}
    samples = args.samples * args.epochs
    steps = args.epochs * -(-args.samples // BATCH)
    print(
        f"B1 dense 784-256-128-10, batch {BATCH}, {args.threads} thread(s), {samples} samples "
        f"({steps} steps) per run, {args.repeats} rounds"
    )
    for name, seconds in best.items():
        print(f"  {name:<8} {samples / seconds:>10,.0f} samples/s")
    # Best-of compares each at its quietest moment; the median of the ratios within each
    # round compares runs made seconds apart, which a machine whose speed drifts needs.
    for other, target in (("numpy", None), ("lean", 0.95), ("torch", 1.3)):
        if other in times:
            paired = np.median(np.divide(times[other], times["plugnet"]))
            print(
                f"  plugnet / {other:<5}: {best[other] / best['plugnet']:.3f}x best-of, "
                f"{paired:.3f}x median of rounds" + (f"  (target >= {target})" if target else "")
            )


if __name__ == "__main__":
    main()
