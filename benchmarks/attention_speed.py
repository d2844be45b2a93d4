"""Speed of multi-head self-attention: plugnet's ``multi_head_attention`` against
``torch.nn.MultiheadAttention`` (batch first) on the CPU, in one process.

Issue 11's block: batch 64, sequences of T = 32, D = 64 features, 4 heads, float32.  One
timed call is forward and backward (every parameter's gradient and the input's, as inside a
model) for ``--steps`` batches; PyTorch runs with ``need_weights=False``, the fused path its
transformer layers take.  Rounds alternate the order; one BLAS / torch thread by default
(threadpoolctl, ``torch.set_num_threads``).  Printed: each side's median samples per second
and the median of the per-round ratios.  Target: plugnet >= 0.5x PyTorch.

    python benchmarks/attention_speed.py [--threads 1] [--steps 20] [--rounds 7] [--causal]
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from framework import Sequential

BATCH, LENGTH, SIZE, HEADS = 64, 32, 64, 4


def plugnet_setup(causal):
    model = Sequential(
        [{"type": "multi_head_attention", "num_heads": HEADS, "causal": causal}],
        input_shape=(LENGTH, SIZE),
        seed=0,
    )
    return model.layers[0]


def plugnet_run(layer, x, g, steps):
    start = time.perf_counter()
    for _ in range(steps):
        layer.forward(x, training=True)
        layer.backward(g)
    return time.perf_counter() - start


def torch_setup(causal):
    import torch

    torch.manual_seed(0)
    net = torch.nn.MultiheadAttention(SIZE, HEADS, batch_first=True)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(LENGTH) if causal else None
    return net, mask


def torch_run(setup, x, g, steps):
    import torch

    net, mask = setup
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    start = time.perf_counter()
    for _ in range(steps):
        xs = xt.detach().requires_grad_(True)
        out = net(xs, xs, xs, attn_mask=mask, need_weights=False, is_causal=mask is not None)[0]
        out.backward(gt)
        for p in net.parameters():
            p.grad = None
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (default 1)")
    parser.add_argument(
        "--steps", type=int, default=20, help="forward + backward passes per timed run"
    )
    parser.add_argument("--rounds", type=int, default=7, help="paired rounds (median reported)")
    parser.add_argument("--causal", action="store_true", help="with the causal mask")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, LENGTH, SIZE), dtype=np.float32)
    g = rng.standard_normal((BATCH, LENGTH, SIZE), dtype=np.float32)
    try:
        import torch
    except ImportError:
        torch = None
    with threadpool_limits(args.threads):
        layer = plugnet_setup(args.causal)
        runners = {"plugnet": lambda: plugnet_run(layer, x, g, args.steps)}
        if torch is not None:
            torch.set_num_threads(args.threads)
            setup = torch_setup(args.causal)
            runners["pytorch"] = lambda: torch_run(setup, x, g, args.steps)
        for run in runners.values():
            run()
        rates = {name: [] for name in runners}
        names = list(runners)
        for round_index in range(args.rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                rates[name].append(BATCH * args.steps / runners[name]())
    print(
        f"multi_head_attention forward + backward: batch {BATCH}, T {LENGTH}, D {SIZE}, {HEADS} heads"
        f"{', causal' if args.causal else ''}; {args.threads} thread(s), {args.rounds} rounds of {args.steps} steps"
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
