"""Training speed of nanoGPT's Shakespeare-char CPU recipe: plugnet against PyTorch.

The network of nanoGPT's README run on a CPU (context 64, batch 12, 4 blocks, 4 heads, 128
channels, vocabulary 65, no dropout, bias-free, tied output projection; AdamW, gradients
clipped at norm 1.0): plugnet's is ``examples/gpt.py``'s, PyTorch's is built here the way
nanoGPT's ``model.py`` builds it (``scaled_dot_product_attention``, ``nn.GELU``, AdamW in
two groups, ``clip_grad_norm_``; no ``torch.compile``), trained as nanoGPT's ``train.py``
trains it (a random batch of windows per step, ``zero_grad(set_to_none=True)``).

Each side runs in its own process (one worker per framework, started once per thread
count and kept warm); a round times ``--steps`` training steps on each side, the two
sides in alternating order from round to round, never at the same time.  Reported per
thread count: each side's median steps per second and the median of the rounds' ratios.
``--profile`` then says where plugnet's step goes (per layer kind, GELU, softmax, the
optimizer, the rest), beside the rate this machine's BLAS reaches on the step's own matrix
products.

    python benchmarks/gpt_speed.py [--threads 1 2] [--rounds 7] [--steps 100] [--profile]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VOCAB, BLOCK, BATCH, LAYERS, HEADS, CHANNELS = 65, 64, 12, 4, 4, 128
CORPUS = 1_000_000  # characters of random ids drawn from: the speed does not depend on them


# --- the two workers ----------------------------------------------------------------------------


def plugnet_worker():
    """``step(count)``: ``count`` training steps of plugnet's GPT through `Trainer.fit`."""
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import numpy as np
    from gpt import adamw, gpt

    from framework import Trainer

    model = gpt(VOCAB, BLOCK, LAYERS, HEADS, CHANNELS, seed=0)
    trainer = Trainer(model, "cross_entropy", adamw(), clip_norm=1.0, seed=0)
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, VOCAB, size=CORPUS)

    def steps(count):
        starts = rng.integers(0, CORPUS - BLOCK - 1, size=count * BATCH)
        offsets = starts[:, None] + np.arange(BLOCK)
        x, y = corpus[offsets], corpus[offsets + 1]
        begin = time.perf_counter()
        trainer.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False)
        return time.perf_counter() - begin

    return steps


def torch_worker():
    """``step(count)``: ``count`` training steps of nanoGPT's model in PyTorch."""
    import math

    import numpy as np
    import torch
    from torch import nn
    from torch.nn import functional as F

    class LayerNorm(nn.Module):  # nanoGPT's: LayerNorm with an optional bias
        def __init__(self, size):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(size))

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)

    class CausalSelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(CHANNELS, 3 * CHANNELS, bias=False)
            self.c_proj = nn.Linear(CHANNELS, CHANNELS, bias=False)

        def forward(self, x):
            n, t, c = x.size()
            q, k, v = self.c_attn(x).split(CHANNELS, dim=2)
            q = q.view(n, t, HEADS, c // HEADS).transpose(1, 2)  # (N, h, T, d)
            k = k.view(n, t, HEADS, c // HEADS).transpose(1, 2)
            v = v.view(n, t, HEADS, c // HEADS).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(n, t, c))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(CHANNELS, 4 * CHANNELS, bias=False)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * CHANNELS, CHANNELS, bias=False)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = LayerNorm(CHANNELS), CausalSelfAttention()
            self.ln_2, self.mlp = LayerNorm(CHANNELS), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(VOCAB, CHANNELS)
            self.wpe = nn.Embedding(BLOCK, CHANNELS)
            self.h = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln_f = LayerNorm(CHANNELS)
            self.lm_head = nn.Linear(CHANNELS, VOCAB, bias=False)
            self.wte.weight = self.lm_head.weight  # weight tying
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith("c_proj.weight") else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx, targets):
            pos = torch.arange(idx.size(1))
            x = self.wte(idx) + self.wpe(pos)
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    torch.manual_seed(0)
    model = GPT()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99))
    rng = np.random.default_rng(0)
    corpus = torch.from_numpy(rng.integers(0, VOCAB, size=CORPUS))

    def steps(count):
        begin = time.perf_counter()
        for _ in range(count):
            ix = torch.randint(CORPUS - BLOCK - 1, (BATCH,))  # nanoGPT's get_batch
            x = torch.stack([corpus[i : i + BLOCK] for i in ix])
            y = torch.stack([corpus[i + 1 : i + 1 + BLOCK] for i in ix])
            loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()
        return time.perf_counter() - begin

    return steps


def serve(side, threads):
    """A worker process: set the threads, build, then time ``count`` steps per line read."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    if side == "pytorch":
        import torch

        torch.set_num_threads(threads)
        steps = torch_worker()
    else:
        steps = plugnet_worker()
    steps(10)  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line)
        print(json.dumps({"steps": count, "seconds": steps(count)}), flush=True)


# --- profile of plugnet's step --------------------------------------------------------------------


def profile(threads, count):
    """Where plugnet's training step goes: every layer's forward and backward timed by
    kind, the activations and the optimizer timed on their own, and the step's matrix
    products timed alone at the step's own shapes (the BLAS rate)."""
    import collections

    import numpy as np
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from gpt import adamw, gpt

    from framework import Trainer

    model = gpt(VOCAB, BLOCK, LAYERS, HEADS, CHANNELS, seed=0)
    trainer = Trainer(model, "cross_entropy", adamw(), clip_norm=1.0, seed=0)
    spent = collections.Counter()

    def timed(key, function):
        def wrapper(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - begin

        return wrapper

    for layer in model.layers:
        kind = layer.kind
        activation = getattr(layer, "activation", None)
        if activation is not None and activation.kind == "gelu":
            kind = "dense + gelu"
            activation.forward = timed("  of which gelu", activation.forward)
            activation.backward = timed("  of which gelu", activation.backward)
        layer.forward = timed(kind, layer.forward)
        # The output layer's backward starts from the fused loss gradient; every other
        # layer's backward calls its own backward_preactivation, timed once with it.
        name = "backward_preactivation" if layer is model.output_layer else "backward"
        setattr(layer, name, timed(kind, getattr(layer, name)))
    trainer.optimizer.step = timed("optimizer", trainer.optimizer.step)
    import framework.trainer as trainer_module

    trainer_module.clip_gradients = timed("clip_norm", trainer_module.clip_gradients)
    trainer.loss.forward = timed("loss", trainer.loss.forward)
    trainer.loss.backward_fused = timed("loss", trainer.loss.backward_fused)
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, size=(count * BATCH, BLOCK))
    y = rng.integers(0, VOCAB, size=(count * BATCH, BLOCK))
    trainer.fit(x[: 10 * BATCH], y[: 10 * BATCH], epochs=1, batch_size=BATCH, shuffle=False)
    spent.clear()
    begin = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=BATCH, shuffle=False)
    total = time.perf_counter() - begin

    # The step's matrix products alone, at its shapes (float32): forward and backward.
    tokens, c = BATCH * BLOCK, CHANNELS
    f32 = np.float32
    a = rng.standard_normal((tokens, 4 * c), dtype=f32)
    products = []  # (left, right) pairs of one step
    for _ in range(LAYERS):
        for k, n in ((c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)):
            x_, w_ = a[:, :k].copy(), rng.standard_normal((k, n), dtype=f32)
            g_ = rng.standard_normal((tokens, n), dtype=f32)
            products += [(x_, w_), (x_.T, g_), (g_, w_.T)]  # y = xW, dW = xᵀg, dx = gWᵀ
        q = rng.standard_normal((BATCH, HEADS, BLOCK, c // HEADS), dtype=f32)
        s = rng.standard_normal((BATCH, HEADS, BLOCK, BLOCK), dtype=f32)
        products += [(q, q.transpose(0, 1, 3, 2)), (s, q)] * 3  # S, PV; dP, dV, dQ, dK
    head_w = rng.standard_normal((c, VOCAB), dtype=f32)
    head_g = rng.standard_normal((tokens, VOCAB), dtype=f32)
    products += [(a[:, :c].copy(), head_w), (head_g.T, a[:, :c].copy()), (head_g, head_w.T)]
    flops = sum(2 * np.prod(l_.shape[:-1]) * l_.shape[-1] * r_.shape[-1] for l_, r_ in products)
    for left, right in products:
        left @ right
    begin = time.perf_counter()
    for _ in range(20):
        for left, right in products:
            left @ right
    matmul_seconds = (time.perf_counter() - begin) / 20
    per_step = total / count
    print(f"plugnet's step on {threads} thread(s), {count} steps: {per_step * 1e3:.1f} ms")
    print(
        f"  matrix products alone at the step's shapes: {matmul_seconds * 1e3:.1f} ms per step"
        f" ({flops / 1e9:.2f} GFLOP, {flops / matmul_seconds / 1e9:.1f} GFLOP/s)"
    )
    print("  time inside each part, per step (layers include their matrix products):")
    nested = "  of which gelu"  # inside "dense + gelu": printed under it
    for key, seconds in spent.most_common():
        if key == nested:
            continue
        print(f"    {key:<24} {seconds / count * 1e3:6.2f} ms  {seconds / total:6.1%}")
        if key == "dense + gelu" and nested in spent:
            print(
                f"    {nested:<24} {spent[nested] / count * 1e3:6.2f} ms  {spent[nested] / total:6.1%}"
            )
    inside = sum(spent.values()) - spent[nested]
    print(
        f"    {'rest (trainer, Python)':<24} {(total - inside) / count * 1e3:6.2f} ms  "
        f"{(total - inside) / total:6.1%}"
    )


# --- the comparison ------------------------------------------------------------------------------


def start(side, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", side, "--threads", str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if process.stdout.readline().strip() != "ready":
        raise SystemExit(f"the {side} worker did not start")
    return process


def timed_steps(process, count):
    process.stdin.write(f"{count}\n")
    process.stdin.flush()
    result = json.loads(process.stdout.readline())
    return result["steps"] / result["seconds"]


def compare(threads, rounds, count):
    workers = {side: start(side, threads) for side in ("plugnet", "pytorch")}
    rates = {side: [] for side in workers}
    try:
        for index in range(rounds):
            order = ["plugnet", "pytorch"] if index % 2 == 0 else ["pytorch", "plugnet"]
            for side in order:
                rates[side].append(timed_steps(workers[side], count))
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()
    ratios = [a / b for a, b in zip(rates["plugnet"], rates["pytorch"], strict=True)]
    print(
        f"{threads} thread(s), {rounds} rounds of {count} steps: plugnet "
        f"{statistics.median(rates['plugnet']):.1f} steps/s, PyTorch "
        f"{statistics.median(rates['pytorch']):.1f} steps/s (medians); plugnet / PyTorch "
        f"{statistics.median(ratios):.2f}x (median of the rounds' ratios, "
        f"range {min(ratios):.2f}-{max(ratios):.2f})",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed run")
    parser.add_argument("--profile", action="store_true", help="also: where plugnet's step goes")
    parser.add_argument("--serve", choices=["plugnet", "pytorch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.threads[0])
        return
    print(
        f"nanoGPT's Shakespeare-char CPU recipe: context {BLOCK}, batch {BATCH}, {LAYERS} "
        f"layers, {HEADS} heads, {CHANNELS} channels, vocabulary {VOCAB}; AdamW, clip 1.0",
        flush=True,
    )
    for threads in args.threads:
        compare(threads, args.rounds, args.steps)
    if args.profile:
        for threads in args.threads:
            profile(threads, args.steps)


if __name__ == "__main__":
    main()
