"""What the graph engine costs, and batch norm and a residual network against PyTorch.

    python benchmarks/graph_speed.py [--repeats 7] [--threads 1 2]

Three comparisons, each timed in the same process, in rotating order, reporting the median
of the ratios of paired rounds (this VM's speed drifts by up to 2x within seconds):

1. engine: B1's network (784-256-128-10 relu / softmax, batch 128, SGD momentum) built as
   a `Model` from `Input` and layer calls, against the same network as a `Sequential`
   (target: >= 0.97x).  A chain runs the chain path either way; the general graph path
   (the one branching models take: a dict of tensors, gradients summed where they fork) is
   timed too, on the same chain, to show what that bookkeeping costs.
2. batch norm: forward and backward in training mode on a (64, 28, 28, 32) float32 batch,
   against `torch.nn.BatchNorm2d` on the same values (one thread; target <= 1.5x its time).
3. residual net: training steps of examples/resnet_mnist.toml's model (batch 64, SGD with
   momentum) against the same network in PyTorch, on one thread and on two.
"""

import argparse
import os
import time

import numpy as np
from model_speed import torch_model  # the same PyTorch networks as model_speed.py
from threadpoolctl import threadpool_limits

from framework import Input, Model, Sequential, Trainer, create
from framework.config import load_config
from framework.model import model_from_config

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "resnet_mnist.toml")


def paired(runners, repeats):
    """{name: [seconds per round]}, each round starting with a different runner."""
    names = list(runners)
    times = {name: [] for name in names}
    for name in names:  # warm-up
        runners[name]()
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            time.sleep(0.1)
            times[name].append(runners[name]())
    return times


def median_ratio(times, slow, fast):
    return float(np.median(np.divide(times[slow], times[fast])))


# --- 1. the engine ---------------------------------------------------------------------------

SIZES = (784, 256, 128, 10)


def b1_layers():
    return [create("layers", "dense", units=n, activation="relu") for n in SIZES[1:-1]] + [
        create("layers", "dense", units=SIZES[-1], activation="softmax")
    ]


def b1_model(kind):
    if kind == "sequential":
        return Sequential(b1_layers(), input_shape=(SIZES[0],), seed=0)
    x = h = Input((SIZES[0],))
    for layer in b1_layers():
        h = layer(h)
    model = Model(x, h, seed=0)
    if kind == "graph path":
        model.chain = False  # force the general DAG path on the same chain
    return model


def engine(repeats, samples=12_800):
    rng = np.random.default_rng(0)
    x = rng.random((samples, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], samples)

    def runner(kind):
        def run():
            trainer = Trainer(
                b1_model(kind),
                "cross_entropy",
                {"type": "sgd", "lr": 0.01, "momentum": 0.9},
                seed=0,
            )
            start = time.perf_counter()
            trainer.fit(x, y, epochs=1, batch_size=128)
            assert trainer.step == samples // 128
            return time.perf_counter() - start

        return run

    times = paired({kind: runner(kind) for kind in ("sequential", "model", "graph path")}, repeats)
    steps = samples // 128
    print(f"1. engine: B1 as Sequential / Model, {steps} steps per run, {repeats} paired rounds")
    for kind, seconds in times.items():
        print(f"   {kind:<11} {steps / np.median(seconds):8.1f} steps/s (median)")
    print(
        f"   Model / Sequential speed:            {median_ratio(times, 'sequential', 'model'):.3f}x  (target >= 0.97)"
    )
    print(
        f"   general graph path / Sequential:     {median_ratio(times, 'sequential', 'graph path'):.3f}x"
    )


# --- 2. batch norm ---------------------------------------------------------------------------


def batch_norm(repeats, torch, loops=20):
    rng = np.random.default_rng(0)
    shape = (64, 28, 28, 32)
    x = rng.normal(size=shape).astype(np.float32)
    g = rng.normal(size=shape).astype(np.float32)
    layer = Sequential([{"type": "batch_norm"}], input_shape=shape[1:]).layers[0]

    def ours():
        start = time.perf_counter()
        for _ in range(loops):
            layer.forward(x, training=True)
            layer.backward(g)
        return time.perf_counter() - start

    runners = {"plugnet": ours}
    if torch is not None:
        bn = torch.nn.BatchNorm2d(32)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_()
        gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())

        def theirs():
            start = time.perf_counter()
            for _ in range(loops):
                xt.grad = None
                bn(xt).backward(gt)
            return time.perf_counter() - start

        runners["torch"] = theirs
    with threadpool_limits(1):
        times = paired(runners, repeats)
    print(
        f"2. batch norm forward + backward, training, {shape} float32, one thread, {loops} passes a run"
    )
    for name, seconds in times.items():
        print(f"   {name:<8} {1000 * np.median(seconds) / loops:7.2f} ms per pass (median)")
    if torch is not None:
        print(
            f"   plugnet time / PyTorch time:         {median_ratio(times, 'plugnet', 'torch'):.3f}x  (target <= 1.5)"
        )


# --- 3. the residual network -----------------------------------------------------------------


def resnet(repeats, torch, threads, steps=30, batch=64):
    rng = np.random.default_rng(0)
    x = rng.random((steps * batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch)
    layers = load_config(EXAMPLE)["model"]["layers"]

    def ours():
        model = model_from_config(layers, input_shape=(28, 28, 1), seed=0)
        trainer = Trainer(
            model, "cross_entropy", {"type": "sgd", "lr": 0.01, "momentum": 0.9}, seed=0
        )
        start = time.perf_counter()
        trainer.fit(x, y, epochs=1, batch_size=batch, shuffle=False)
        assert trainer.step == steps
        return time.perf_counter() - start

    runners = {"plugnet": ours}
    if torch is not None:
        xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)

        def theirs():
            torch.manual_seed(0)
            net = torch_model(torch, "resnet")
            optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            start = time.perf_counter()
            for i in range(steps):
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.cross_entropy(
                    net(xt[i * batch : (i + 1) * batch]), yt[i * batch : (i + 1) * batch]
                )
                loss.backward()
                optimizer.step()
                loss.item()
            return time.perf_counter() - start

        runners["torch"] = theirs
    with threadpool_limits(threads):
        if torch is not None:
            torch.set_num_threads(threads)
        times = paired(runners, repeats)
    print(
        f"3. resnet_mnist training, batch {batch}, SGD momentum, {threads} thread(s), {steps} steps a run"
    )
    for name, seconds in times.items():
        print(f"   {name:<8} {steps * batch / np.median(seconds):8.0f} samples/s (median)")
    if torch is not None:
        print(
            f"   plugnet / PyTorch speed:             {median_ratio(times, 'torch', 'plugnet'):.3f}x"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", choices=["engine", "batch_norm", "resnet"], default=None)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch not installed: parts 2 and 3 time plugnet alone")
    if args.only in (None, "engine"):
        engine(args.repeats)
    if args.only in (None, "batch_norm"):
        batch_norm(args.repeats, torch)
    if args.only in (None, "resnet"):
        for threads in args.threads:
            resnet(args.repeats, torch, threads)


if __name__ == "__main__":
    main()
