"""Speed of TensorFlow's Deep MNIST network: plugnet against PyTorch, and conv2d against matmul.

1. Training throughput (samples/s) of examples/mnist_dcn.toml's network, batch 50, float32,
   Adam: plugnet's Trainer against the same network in PyTorch on the CPU with the same
   number of threads, when torch is installed (target, issue 13: plugnet >= 1.0x PyTorch on
   one thread and on two).  Each thread count is measured in its own rounds.
2. conv2d forward + backward GFLOP/s for each of the network's two convolutions, against the
   machine's float32 matrix-product rate measured in the same run (a square sgemm).  The
   flops counted are a direct convolution's, so the second layer, which ``algorithm =
   "auto"`` runs through the Fourier transform with fewer operations, can beat the rate.

Each round runs plugnet and PyTorch once each, in an order that alternates from round to
round, a moment apart; the ratio printed is the median over rounds of the ratio within a
round (runs seconds apart: on a shared machine whose speed drifts, that is what compares),
beside each side's best run.  The steps each side really ran are counted and printed.
Synthetic images: speed does not depend on the pixels.

    python benchmarks/conv_speed.py [--threads 1 2] [--steps 20] [--repeats 7]
"""

import argparse
import os
import time

# plugnet before numpy, as in every plugnet command: importing it first shortens OpenBLAS's
# idle spin, which decides whether plugnet's own threads help (framework/threads.py).
from framework import Sequential, Trainer, create  # isort: skip
from framework import threads as framework_threads  # isort: skip
from framework.config import load_config  # isort: skip

import numpy as np
from threadpoolctl import threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, os.pardir, "examples", "mnist_dcn.toml")
BATCH = 50


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def plugnet_trainer():
    config = load_config(CONFIG)
    model = Sequential(config["model"]["layers"], input_shape=(28, 28, 1), seed=0)
    return Trainer(model, "cross_entropy", config["train"]["optimizer"], seed=0)


def plugnet_run(trainer, x, y):
    """Seconds for one epoch over ``(x, y)`` and the steps it ran."""
    steps = trainer.step
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=BATCH)  # one more epoch
    return time.perf_counter() - start, trainer.step - steps


def torch_setup():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(7 * 7 * 64, 1024),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(1024, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return model, optimizer


def torch_run(setup, x, y):
    import torch

    model, optimizer = setup
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # torch's NCHW
    yt = torch.from_numpy(y)
    start = time.perf_counter()
    order = torch.randperm(len(xt))
    xs, ys = xt[order], yt[order]
    model.train()
    steps = 0
    for i in range(0, len(xt), BATCH):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i : i + BATCH]), ys[i : i + BATCH])
        loss.backward()
        optimizer.step()
        loss.item()  # plugnet reads every batch loss too
        steps += 1
    return time.perf_counter() - start, steps


def matmul_gflops(repeats, size=2048):
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timed(f):
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def conv_gflops(input_shape, filters, repeats):
    """GFLOP/s of one forward + backward (weights, bias and input gradients) of a 5x5 'same'
    conv2d on a batch of 50: 3 products of 2·N·Ho·Wo·kh·kw·C·F flops each."""
    layer = create("layers", "conv2d", filters=filters, kernel_size=5, activation="relu")
    Sequential([layer], input_shape=input_shape, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, *input_shape), dtype=np.float32)
    grad_y = rng.standard_normal((BATCH, *layer.output_shape), dtype=np.float32)

    def step():
        layer.forward(x, training=True)
        layer.backward(grad_y)

    step()
    best = min(timed(step) for _ in range(repeats))
    height, width, channels = input_shape
    flops = 3 * 2 * BATCH * height * width * 25 * channels * filters
    return flops / best / 1e9, best


def throughput(threads, args):
    """Paired rounds of plugnet and PyTorch training on ``threads`` threads."""
    x, y = images(BATCH * args.steps)
    runners = {"plugnet": (plugnet_run, plugnet_trainer())}
    try:
        import torch

        torch.set_num_threads(threads)
        runners["torch"] = (torch_run, torch_setup())
    except ImportError:
        print("PyTorch is not installed: plugnet's throughput only")
    for run, state in runners.values():  # warm-up: allocations, thread pools, caches
        run(state, x[: BATCH * 2], y[: BATCH * 2])
    times = {name: [] for name in runners}
    steps = dict.fromkeys(runners, 0)
    names = list(runners)
    for round_ in range(args.repeats):
        # PyTorch's OpenMP threads spin a while after it returns, which would tax whichever
        # side always came next: alternate the order, and pause before each run.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            time.sleep(0.2)
            run, state = runners[name]
            seconds, ran = run(state, x, y)
            times[name].append(seconds)
            steps[name] += ran
    print(
        f"Deep MNIST convnet, batch {BATCH}, float32, {threads} thread(s), {args.steps} steps "
        f"per run, {args.repeats} paired rounds in alternating order"
    )
    print(
        f"  OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}: plugnet splits "
        f"its own work over {framework_threads.workers()} thread(s)"
    )
    for name, seconds in times.items():
        per_step = np.median(seconds) / args.steps
        print(
            f"  {name:<8} {BATCH / per_step:8.1f} samples/s median, "
            f"{BATCH * args.steps / min(seconds):8.1f} best  ({1000 * per_step:.1f} ms/step; "
            f"{steps[name]} steps run)"
        )
    if "torch" in times:
        ratios = np.divide(times["torch"], times["plugnet"])
        print(
            f"  plugnet / torch: {np.median(ratios):.2f}x median of rounds "
            f"(range {ratios.min():.2f}-{ratios.max():.2f}), "
            f"{min(times['torch']) / min(times['plugnet']):.2f}x best-of  (target >= 1.0)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="BLAS / torch / plugnet threads, one measurement each (default 1 2)",
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="paired rounds")
    parser.add_argument("--no-layers", action="store_true", help="skip the conv2d GFLOP/s part")
    args = parser.parse_args()

    for threads in args.threads:
        with threadpool_limits(threads):
            throughput(threads, args)
            if args.no_layers:
                continue
            matmul = matmul_gflops(args.repeats)
            print(f"  float32 matmul (2048x2048, numpy's BLAS): {matmul:.1f} GFLOP/s")
            for name, shape, filters in (
                ("conv2d_0", (28, 28, 1), 32),
                ("conv2d_2", (14, 14, 32), 64),
            ):
                rate, seconds = conv_gflops(shape, filters, args.repeats)
                print(
                    f"  {name} {shape} -> {filters}: forward+backward {1000 * seconds:.1f} ms, "
                    f"{rate:.1f} GFLOP/s = {rate / matmul:.2f} of matmul"
                )


if __name__ == "__main__":
    main()
