"""Training speed of the models users train, plugnet against PyTorch on the CPU (issue 24).

    python benchmarks/model_speed.py [--models dcn resnet lstm gru mlp] [--threads 1 2]
        [--orders plugnet-first numpy-first] [--rounds 7] [--steps-scale 1.0] [--json FILE]

The models (synthetic data of the real shapes: speed does not depend on the values):

- ``dcn``: TensorFlow's Deep MNIST net (examples/mnist_dcn.toml), batch 50, Adam;
- ``resnet``: examples/resnet_mnist.toml's residual network, batch 32, Adam;
- ``lstm``: an LSTM of 32 units on the adding problem (T = 50, 2 features), then dense 1,
  MSE, batch 64, Adam (examples/lstm_adding.toml);
- ``gru``: the same with a GRU (examples/gru_adding.toml);
- ``mlp``: B1 made wide, dense 784-2048-2048-10, relu, softmax cross-entropy, batch 128,
  SGD with momentum 0.9.

Every side runs in a process of its own, started once per model and thread count: PyTorch
is never loaded in plugnet's process, whose OpenBLAS threads would otherwise contend with
PyTorch's OpenMP threads for the cores.  plugnet runs in two processes, one per import order:
``plugnet-first`` imports plugnet before numpy (as every ``plugnet`` command does),
``numpy-first`` imports numpy first (as nearly every script and notebook does).  The
processes wait on their stdin while another one runs; a round asks each to train its fixed
number of steps once, in an order that rotates from round to round, with a pause before
each run (PyTorch's OpenMP threads spin a while after it returns).  The ratio printed is the
median over rounds of PyTorch's time over plugnet's within the round (runs seconds apart: on
a shared machine whose speed drifts, that is what compares); the steps each side ran are
counted and printed.  Thread counts: ``threadpoolctl.threadpool_limits`` in plugnet's
processes (which also sets how many threads plugnet splits its own work over) and
``torch.set_num_threads`` with ``OMP_NUM_THREADS`` in PyTorch's.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, os.pardir, "examples")

# model -> (batch, steps per timed run, description)
MODELS = {
    "dcn": (50, 20, "Deep MNIST conv net (examples/mnist_dcn.toml), batch 50, Adam"),
    "resnet": (32, 40, "examples/resnet_mnist.toml's network, batch 32, Adam"),
    "lstm": (64, 40, "LSTM 32 units, adding problem T=50, dense 1, MSE, batch 64, Adam"),
    "gru": (64, 40, "GRU 32 units, adding problem T=50, dense 1, MSE, batch 64, Adam"),
    "mlp": (128, 20, "MLP 784-2048-2048-10, relu/softmax, batch 128, SGD momentum 0.9"),
}
SIDES = ("plugnet-first", "numpy-first", "torch")


# --- the data (numpy only: each worker makes its own, from the same seed) ------------------


def data(np, model, samples):
    rng = np.random.default_rng(0)
    if model in ("dcn", "resnet"):
        return rng.random((samples, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, samples)
    if model == "mlp":
        return rng.random((samples, 784), dtype=np.float32), rng.integers(0, 10, samples)
    x = np.stack(
        [rng.random((samples, 50)), (rng.random((samples, 50)) < 0.04).astype(float)], axis=-1
    ).astype(np.float32)
    return x, rng.random((samples, 1), dtype=np.float32)


# --- plugnet's side ----------------------------------------------------------------------------


def plugnet_trainer(model):
    from framework import Trainer
    from framework.config import load_config
    from framework.model import model_from_config

    if model in ("dcn", "resnet"):
        name = "mnist_dcn.toml" if model == "dcn" else "resnet_mnist.toml"
        config = load_config(os.path.join(EXAMPLES, name))
        net = model_from_config(config["model"]["layers"], input_shape=(28, 28, 1), seed=0)
        lr = config["train"]["optimizer"]["lr"]
        return Trainer(net, "cross_entropy", {"type": "adam", "lr": lr}, seed=0)
    if model in ("lstm", "gru"):
        net = model_from_config(
            [{"type": model, "units": 32}, {"type": "dense", "units": 1}],
            input_shape=(50, 2),
            seed=0,
        )
        return Trainer(net, "mse", {"type": "adam", "lr": 0.003}, seed=0)
    layers = [{"type": "dense", "units": 2048, "activation": "relu"} for _ in range(2)]
    net = model_from_config(
        [*layers, {"type": "dense", "units": 10, "activation": "softmax"}],
        input_shape=(784,),
        seed=0,
    )
    return Trainer(net, "cross_entropy", {"type": "sgd", "lr": 0.01, "momentum": 0.9}, seed=0)


def plugnet_worker(args):
    """Import in the order asked, then answer each ``run`` on stdin with one JSON line."""
    if args.side == "numpy-first":
        import numpy as np

        import framework  # noqa: F401
    else:
        import framework  # noqa: F401  isort: skip
        import numpy as np
    from threadpoolctl import threadpool_limits

    from framework import threads

    threadpool_limits(args.threads[0])
    batch, steps, _ = MODELS[args.model]
    steps = max(2, round(steps * args.steps_scale))
    x, y = data(np, args.model, batch * steps)
    trainer = plugnet_trainer(args.model)

    def run():
        before = trainer.step
        start = time.perf_counter()
        trainer.fit(x, y, epochs=1, batch_size=batch)
        return time.perf_counter() - start, trainer.step - before

    info = {
        "workers": threads.workers(),
        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
    }
    serve(run, info)


def serve(run, info):
    run()  # warm-up: allocations, thread pools, caches, optimizer state
    run()
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        cpu = time.process_time()
        seconds, steps = run()
        cpu = time.process_time() - cpu  # every thread of the process: steadier under load
        print(json.dumps({"seconds": seconds, "steps": steps, "cpu": cpu}), flush=True)


# --- PyTorch's side ----------------------------------------------------------------------------


def torch_model(torch, model):
    nn = torch.nn
    if model == "dcn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1024, 10),
        )  # fmt: skip
    if model == "resnet":

        class Block(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
                self.bn1 = nn.BatchNorm2d(channels)
                self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
                self.bn2 = nn.BatchNorm2d(channels)

            def forward(self, x):
                h = torch.relu(self.bn1(self.conv1(x)))
                return torch.relu(x + self.bn2(self.conv2(h)))

        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), Block(32),
            nn.MaxPool2d(2), Block(32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
        )  # fmt: skip
    if model in ("lstm", "gru"):
        recurrent = (nn.LSTM if model == "lstm" else nn.GRU)(2, 32, batch_first=True)
        dense = nn.Linear(32, 1)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.recurrent, self.dense = recurrent, dense

            def forward(self, x):
                return self.dense(self.recurrent(x)[0][:, -1])

        return Net()
    return nn.Sequential(
        nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)
    )


def torch_worker(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads[0])
    torch.manual_seed(0)
    batch, steps, _ = MODELS[args.model]
    steps = max(2, round(steps * args.steps_scale))
    x, y = data(np, args.model, batch * steps)
    if x.ndim == 4:
        x = x.transpose(0, 3, 1, 2).copy()  # torch's NCHW
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    net = torch_model(torch, args.model)
    if args.model == "mlp":
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    else:
        lr = {"dcn": 1e-4, "resnet": 0.004}.get(args.model, 0.003)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss() if args.model in ("lstm", "gru") else torch.nn.CrossEntropyLoss()

    def run():
        start = time.perf_counter()
        order = torch.randperm(len(xt))  # plugnet shuffles each epoch too
        net.train()
        ran = 0
        for i in range(0, len(xt), batch):
            rows = order[i : i + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[rows]), yt[rows])
            loss.backward()
            optimizer.step()
            loss.item()  # plugnet reads every batch loss too
            ran += 1
        return time.perf_counter() - start, ran

    serve(run, {"torch": torch.__version__, "threads": torch.get_num_threads()})


# --- the rounds ----------------------------------------------------------------------------------


def start_worker(side, model, threads, args):
    env = dict(os.environ)
    if side == "torch":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, "--model", model]
    command += ["--threads", str(threads), "--steps-scale", str(args.steps_scale)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise SystemExit(
            f"the {side} worker for {model} failed to start (exit {process.returncode})"
        )
    return process, json.loads(line)


def compare(model, threads, args):
    sides = [side for side in SIDES if side in args.orders or side == "torch"]
    if args.no_torch:
        sides.remove("torch")
    workers, info = {}, {}
    try:
        for side in sides:
            workers[side], info[side] = start_worker(side, model, threads, args)
        times = {side: [] for side in sides}
        steps = dict.fromkeys(sides, 0)
        for round_ in range(args.rounds):
            shift = round_ % len(sides)
            for side in sides[shift:] + sides[:shift]:
                time.sleep(0.2)
                process = workers[side]
                process.stdin.write("run\n")
                process.stdin.flush()
                answer = json.loads(process.stdout.readline())
                times[side].append(answer["seconds"])
                steps[side] += answer["steps"]
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()
    batch, _, description = MODELS[model]
    per_run = steps[sides[0]] // args.rounds
    print(f"{description}; {threads} thread(s), {args.rounds} paired rounds of {per_run} steps")
    result = {"model": model, "threads": threads, "sides": {}}
    for side in sides:
        ms = 1000 * statistics.median(times[side]) * args.rounds / steps[side]
        extra = {k: v for k, v in info[side].items() if k != "ready"}
        print(f"  {side:<14} {ms:8.2f} ms/step median  ({steps[side]} steps run)  {extra}")
        result["sides"][side] = {"ms_per_step": ms, "steps": steps[side], "times": times[side]}
        if side != "torch" and "torch" in times:
            ratios = [t / p for t, p in zip(times["torch"], times[side], strict=True)]
            median = statistics.median(ratios)
            result["sides"][side]["ratio"] = median
            print(
                f"  {'':<14} {median:.2f}x PyTorch (median of rounds, range "
                f"{min(ratios):.2f}-{max(ratios):.2f})"
            )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--orders", nargs="+", default=list(SIDES[:2]), choices=list(SIDES[:2]),
        help="plugnet's import orders to run (default both)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds")
    parser.add_argument(
        "--steps-scale", type=float, default=1.0, help="scale every model's steps per run"
    )
    parser.add_argument("--no-torch", action="store_true", help="plugnet only")
    parser.add_argument("--json", help="write every round's times here")
    parser.add_argument("--worker", choices=SIDES, dest="side", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "torch":
        return torch_worker(args)
    if args.side:
        return plugnet_worker(args)
    results = []
    for model in args.models:
        for threads in args.threads:
            results.append(compare(model, threads, args))
    print("\n| model | threads | " + " | ".join(args.orders) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in args.orders) + " |")
    for result in results:
        cells = [f"{result['sides'][side].get('ratio', float('nan')):.2f}x" for side in args.orders]
        print(f"| {result['model']} | {result['threads']} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
