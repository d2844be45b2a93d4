"""Peak resident memory of training on a token file larger than the model needs in memory.

Writes a token file of ``--megabytes`` MB (random uint16 ids below ``--vocab``, in chunks)
into a temporary directory, trains ``--steps`` steps of a small GRU language model on it
with the ``tokens`` dataset in a child process (``plugnet train``), reports the child's
peak resident set size (``ru_maxrss``) beside the file's size, and deletes the file.

    python benchmarks/text_memory.py                    # 600 MB, 30 steps
    python benchmarks/text_memory.py --megabytes 100

The file is memory-mapped and sampled by random offsets, so resident memory stays the
interpreter, the libraries, the model and a batch: the file's pages touched by 30 batches
are a few hundred kB.  Checking that no id reaches vocab_size reads the file once in 8 MB
chunks with ordinary reads, which the page cache holds, not the process.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIG = """seed = 0
[data]
type = "tokens"
path = "{train}"
val_path = "{val}"
vocab_size = {vocab}
block_size = 64
[model]
layers = [
  {{ type = "embedding", input_dim = "vocab", output_dim = 32 }},
  {{ type = "gru", units = 64, return_sequences = true }},
  {{ type = "dense", units = "vocab", activation = "softmax" }},
]
[train]
loss = "cross_entropy"
optimizer = {{ type = "adam", lr = 0.003 }}
batch_size = 32
steps = {steps}
evaluate_every = {steps}
eval_batches = 10
[logging]
logdir = "{logdir}"
"""


def write_ids(path, megabytes, vocab, rng):
    chunk = 1 << 24  # ids per write: 32 MB
    left = megabytes * 1_000_000 // 2
    with open(path, "wb") as f:
        while left:
            n = min(chunk, left)
            rng.integers(0, vocab, size=n, dtype=np.uint16).astype("<u2").tofile(f)
            left -= n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=600)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--vocab", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        train, val = os.path.join(directory, "train.bin"), os.path.join(directory, "val.bin")
        rng = np.random.default_rng(0)
        write_ids(train, args.megabytes, args.vocab, rng)
        write_ids(val, max(args.megabytes // 10, 1), args.vocab, rng)
        config = os.path.join(directory, "c.toml")
        with open(config, "w") as f:
            f.write(
                CONFIG.format(
                    train=train,
                    val=val,
                    vocab=args.vocab,
                    steps=args.steps,
                    logdir=os.path.join(directory, "run"),
                )
            )
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "framework", "train", config, "--quiet"], check=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB -> MB
        size = os.path.getsize(train) / 2**20
    print(
        f"token file {size:.0f} MiB ({args.megabytes} MB), {args.steps} steps in {seconds:.1f} s: "
        f"peak RSS {peak:.0f} MiB"
    )


if __name__ == "__main__":
    main()
