"""Speed of LSTM training: plugnet against ``torch.nn.LSTM`` on the CPU, in one process.

The network of issue 11's benchmark: an LSTM of 64 units over sequences of length 50 with
one input feature, then a dense output of one unit; MSE loss, Adam, batch 64, float32.  Each
round times ``--steps`` training steps of both, in an order that alternates from round to
round, on one BLAS / torch thread (threadpoolctl, ``torch.set_num_threads``); the median of
each side's samples per second over ``--rounds`` rounds and the median of the per-round
ratios are printed.  Target: plugnet >= 0.5x PyTorch.

    python benchmarks/lstm_speed.py [--threads 1] [--steps 20] [--rounds 7]
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from framework import Sequential, Trainer

BATCH, LENGTH, FEATURES, UNITS = 64, 50, 1, 64


def data(steps, seed=0):
    rng = np.random.default_rng(seed)
    n = BATCH * steps
    return rng.random((n, LENGTH, FEATURES), dtype=np.float32), rng.random((n, 1), dtype=np.float32)


def plugnet_setup():
    model = Sequential(
        [{"type": "lstm", "units": UNITS}, {"type": "dense", "units": 1}],
        input_shape=(LENGTH, FEATURES),
        seed=0,
    )
    return Trainer(model, "mse", {"type": "adam", "lr": 1e-3}, seed=0)


def plugnet_run(trainer, x, y):
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False)  # one more epoch
    return time.perf_counter() - start


class TorchNet:
    def __init__(self):
        import torch

        torch.manual_seed(0)
        self.lstm = torch.nn.LSTM(FEATURES, UNITS, batch_first=True)
        self.dense = torch.nn.Linear(UNITS, 1)
        self.params = [*self.lstm.parameters(), *self.dense.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=1e-3)

    def __call__(self, x):
        return self.dense(self.lstm(x)[0][:, -1])


def torch_run(net, x, y):
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    start = time.perf_counter()
    for i in range(0, len(xt), BATCH):
        net.optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(xt[i : i + BATCH]), yt[i : i + BATCH])
        loss.backward()
        net.optimizer.step()
        loss.item()  # plugnet reads every batch loss too
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed run")
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds (median reported)")
    args = parser.parse_args()
    x, y = data(args.steps)
    samples = len(x)
    try:
        import torch
    except ImportError:
        torch = None
    with threadpool_limits(args.threads):
        trainer = plugnet_setup()
        runners = {"plugnet": lambda: plugnet_run(trainer, x, y)}
        if torch is not None:
            torch.set_num_threads(args.threads)
            net = TorchNet()
            runners["pytorch"] = lambda: torch_run(net, x, y)
        for run in runners.values():  # warm up: first-call allocations, Adam's state
            run()
        rates = {name: [] for name in runners}
        names = list(runners)
        for round_index in range(args.rounds):
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                rates[name].append(samples / runners[name]())
    print(
        f"LSTM training: batch {BATCH}, length {LENGTH}, {FEATURES} feature, {UNITS} units, dense 1, Adam; "
        f"{args.threads} thread(s), {args.rounds} rounds of {args.steps} steps each"
    )
    for name, values in rates.items():
        print(f"  {name:8s} {statistics.median(values):9.0f} samples/s (median)")
    if "pytorch" in rates:
        ratios = [a / b for a, b in zip(rates["plugnet"], rates["pytorch"], strict=True)]
        print(
            f"  ratio plugnet / pytorch: {statistics.median(ratios):.2f}x (median of paired rounds; target >= 0.5x)"
        )
    else:
        print("  (torch is not installed: no PyTorch reference)")


if __name__ == "__main__":
    main()
