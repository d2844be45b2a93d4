"""A GPT in plugnet, composed in Python as nanoGPT's ``model.py`` reads: a function that
makes one block, then the model, then training and sampling.

The recipe is nanoGPT's Shakespeare-char run on a CPU: 4 blocks of 4 heads over 128
channels, a context of 64 characters, no dropout, bias-free linear and layer-norm layers,
the token embedding tied to the output projection, weights from N(0, 0.02) and the
projections into the residual stream from N(0, 0.02/√(2·layers)); AdamW (β 0.9 / 0.99,
weight decay 0.1 on matrices), lr 1e-3 warming up for 100 steps and decaying by a cosine
to 1e-4, gradients clipped at norm 1.  ``examples/shakespeare_char.toml`` is the same run
as a config.

    PLUGNET_DATA=/path/to/data python examples/gpt.py [--steps 2000] [--logdir runs/gpt_py]

It reads ``text/shakespeare.txt`` under PLUGNET_DATA (or ``--text FILE``) with plain
numpy: the first 90% of the characters to train on, the rest held out.
"""

import argparse
import math
import os
import time

import numpy as np

from framework import Input, Model, Trainer, create, generate, hookimpl


def layer(kind, **params):
    return create("layers", kind, **params)


def normal(stddev=0.02):
    return {"type": "normal", "stddev": stddev}


def block(x, name, channels, heads, layers, dropout=0.0):
    """One transformer block (nanoGPT's ``Block``): pre-norm attention and MLP, each added
    to the residual stream.  Layers are named ``<name>/...``, as a config block's copies."""
    residual = normal(0.02 / math.sqrt(2 * layers))  # for what feeds the residual stream
    h = layer("layer_norm", use_bias=False, name=f"{name}/ln_1")(x)  # (N, T, C)
    h = layer(
        "multi_head_attention",
        num_heads=heads,
        causal=True,
        use_bias=False,
        dropout=dropout,
        weight_init=normal(),
        output_init=residual,
        name=f"{name}/attn",
    )(h)  # (N, T, C)
    x = layer("add", name=f"{name}/residual_1")([x, h])  # x + attn(ln_1(x))
    h = layer("layer_norm", use_bias=False, name=f"{name}/ln_2")(x)
    h = layer(
        "dense",
        units=4 * channels,
        activation="gelu",
        use_bias=False,
        weight_init=normal(),
        name=f"{name}/mlp_fc",
    )(h)  # (N, T, 4C)
    h = layer(
        "dense", units=channels, use_bias=False, weight_init=residual, name=f"{name}/mlp_proj"
    )(h)  # (N, T, C)
    return layer("add", name=f"{name}/residual_2")([x, h])  # x + mlp(ln_2(x))


def gpt(vocab_size=65, block_size=64, layers=4, heads=4, channels=128, dropout=0.0, seed=0):
    """The GPT: token and position embeddings, ``layers`` blocks, a final layer norm and the
    output projection tied to the token embedding, giving next-character probabilities."""
    ids = Input((block_size,), name="ids", dtype="int64")  # (N, T) character ids
    x = layer(
        "embedding", input_dim=vocab_size, output_dim=channels, weight_init=normal(), name="wte"
    )(ids)  # (N, T, C)
    x = layer("positional_embedding", max_length=block_size, weight_init=normal(), name="wpe")(x)
    for index in range(layers):
        x = block(x, f"block_{index}", channels, heads, layers, dropout)
    x = layer("layer_norm", use_bias=False, name="ln_f")(x)
    probabilities = layer(
        "dense",
        units=vocab_size,
        tied_to="wte",
        use_bias=False,
        activation="softmax",
        name="lm_head",
    )(x)  # (N, T, vocab)
    return Model(ids, probabilities, seed=seed)


def adamw(lr=1e-3):
    return {
        "type": "adamw",
        "lr": lr,
        "beta1": 0.9,
        "beta2": 0.99,
        "weight_decay": 0.1,
        "decay": "matrices",
    }


class WarmupCosine:
    """nanoGPT's ``get_lr``: linear warm-up to ``lr``, then a cosine down to ``min_lr``."""

    def __init__(self, lr=1e-3, min_lr=1e-4, warmup=100, decay_steps=2000):
        self.lr, self.min_lr, self.warmup, self.decay_steps = lr, min_lr, warmup, decay_steps

    def __call__(self, step):
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        if step > self.decay_steps:
            return self.min_lr
        ratio = (step - self.warmup) / (self.decay_steps - self.warmup)
        return self.min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (self.lr - self.min_lr)

    @hookimpl
    def on_batch_begin(self, trainer, step):
        trainer.optimizer.lr = self(step)


def windows(ids, block_size, count, rng):
    """``count`` random windows of ``ids`` and the same windows one character on
    (nanoGPT's ``get_batch``)."""
    starts = rng.integers(0, len(ids) - block_size, size=count)
    offsets = starts[:, None] + np.arange(block_size)
    return ids[offsets], ids[offsets + 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=None, help="the text file (default: Tiny Shakespeare)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-batches", type=int, default=200)
    parser.add_argument("--logdir", default=None, help="TensorBoard run directory (optional)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    path = args.text or os.path.join(
        os.environ.get("PLUGNET_DATA", "data"), "text", "shakespeare.txt"
    )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))  # the vocabulary: the text's distinct characters
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    train, held_out = ids[:split], ids[split:]
    rng = np.random.default_rng(args.seed)
    batch, block_size = 12, 64
    model = gpt(vocab_size=len(chars), block_size=block_size, seed=args.seed)
    print(model.summary())
    callbacks = [WarmupCosine(decay_steps=args.steps)]
    if args.logdir:
        callbacks.append({"type": "tensorboard"})
    trainer = Trainer(
        model,
        "cross_entropy",
        adamw(),
        callbacks=callbacks,
        logdir=args.logdir,
        clip_norm=1.0,
        seed=args.seed,
    )
    x_val, y_val = windows(held_out, block_size, args.eval_batches * batch, rng)
    start = time.perf_counter()
    done = 0
    while done < args.steps:
        chunk = min(args.eval_every, args.steps - done)
        x, y = windows(train, block_size, chunk * batch, rng)
        trainer.fit(x, y, epochs=1, batch_size=batch, shuffle=False)
        done += chunk
        x_tr, y_tr = windows(train, block_size, args.eval_batches * batch, rng)
        print(
            f"step {done}: train loss {trainer.evaluate(x_tr, y_tr)['loss']:.4f}, val loss "
            f"{trainer.evaluate(x_val, y_val)['loss']:.4f}, {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    sample = generate(model, [index["\n"]], 500, rng=rng)  # nanoGPT's generate
    print("".join(chars[i] for i in sample))


if __name__ == "__main__":
    main()
