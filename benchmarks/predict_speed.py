"""Throughput of ``plugnet predict`` on TensorFlow's Deep MNIST network
(examples/mnist_dcn.toml).

Three ways to score the same 10,000 test-sized images (28x28x1, float32, in an .npy file),
timed from the file on disk to the predictions:

1. ``plugnet predict MODEL x.npy -o out.npy``: the real command in a fresh process, so its
   time includes the interpreter's start, imports, loading the model, reading the input
   and writing the output (target: >= 0.8x the throughput of 2);
2. in-process: ``np.load`` of the file and ``model.predict(x, batch_size=256)`` on a model
   already loaded (the batch size the command uses);
3. ONNX Runtime on the model exported by ``plugnet export`` (``np.load`` + session runs in
   batches of 256), when onnx and onnxruntime are installed.

Where PyTorch is installed the command is also timed with torch hidden from it, as on an
install without the ``bench`` extra: plugnet imports tensorboardX's protobufs without the
writer module that would import torch, so the two should match.

The images are the official MNIST test images when found (``--data DIR`` or
$PLUGNET_DATA/mnist), else random pixels; the weights are the config's random
initialisation (speed depends on neither).  Each round runs the three in rotating order and
the ratios are taken within a round; the medians over ``--rounds`` are printed (a shared
machine drifts by up to 2x between rounds).  Every contender uses ``--threads`` BLAS / ONNX
Runtime threads.

    python benchmarks/predict_speed.py [--images 10000] [--rounds 3] [--threads 1]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from framework import Sequential, load_model
from framework.config import load_config
from framework.data import read_idx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = os.path.join(ROOT, "examples", "mnist_dcn.toml")
BATCH = 256  # plugnet predict's default batch size


def test_images(n, data_dir):
    """``(images, where they came from)``: MNIST's test images in [0, 1] if found, else random."""
    directory = data_dir or os.path.join(os.environ.get("PLUGNET_DATA", ""), "mnist")
    path = os.path.join(directory, "t10k-images-idx3-ubyte.gz")
    if os.path.isfile(path):
        images = read_idx(path)[:n].astype(np.float32) / 255
        if len(images) == n:
            return images[..., None], f"MNIST test images from {directory}"
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28, 1), dtype=np.float32), "random pixels"


def torch_installed():
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def hide_torch(directory):
    """A directory whose ``torch`` package fails to import, as an absent one does."""
    package = os.path.join(directory, "hidden", "torch")
    os.makedirs(package)
    with open(os.path.join(package, "__init__.py"), "w") as f:
        f.write('raise ImportError("torch hidden by benchmarks/predict_speed.py")\n')
    return os.path.dirname(package)


def time_cli(model_path, x_path, out_path, threads, first_paths=()):
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [*first_paths, ROOT, os.environ.get("PYTHONPATH")])
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "framework", "predict", model_path, x_path, "-o", out_path],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def time_in_process(model, x_path, threads):
    with threadpool_limits(threads):
        start = time.perf_counter()
        x = np.load(x_path)
        y = model.predict(x, batch_size=BATCH)
        elapsed = time.perf_counter() - start
    return elapsed, y


def time_onnx(session, x_path):
    from framework.onnx_export import run_onnx

    start = time.perf_counter()
    x = np.load(x_path)
    y = run_onnx(session, x, batch_size=BATCH)
    return time.perf_counter() - start, y


def onnx_contender(model, directory, threads):
    try:
        import onnxruntime

        from framework.onnx_export import export_onnx
    except ImportError:
        return None
    path = export_onnx(model, os.path.join(directory, "model.onnx"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", help="directory of the MNIST IDX files")
    args = parser.parse_args()

    config = load_config(CONFIG)
    with tempfile.TemporaryDirectory() as directory:
        model = Sequential(config["model"]["layers"], input_shape=(28, 28, 1), seed=0)
        model_path = model.save(os.path.join(directory, "model.npz"))
        model = load_model(model_path)  # as the command will have it
        x, source = test_images(args.images, args.data)
        x_path = os.path.join(directory, "x.npy")
        np.save(x_path, x)
        out_path = os.path.join(directory, "out.npy")
        session = onnx_contender(model, directory, args.threads)
        print(
            f"{args.images} images ({source}), batch {BATCH}, {args.threads} thread(s), {args.rounds} rounds"
        )

        names = ["plugnet predict", "in-process"] + (["onnxruntime"] if session else [])
        hidden = hide_torch(directory) if torch_installed() else None
        if hidden:
            names.append("predict, no torch")
        times = {name: [] for name in names}
        ratios, hidden_ratios, onnx_ratios, differences = [], [], [], []
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            elapsed = {}
            for name in order:
                if name == "plugnet predict":
                    elapsed[name] = time_cli(model_path, x_path, out_path, args.threads)
                elif name == "predict, no torch":
                    elapsed[name] = time_cli(model_path, x_path, out_path, args.threads, [hidden])
                elif name == "in-process":
                    elapsed[name], expected = time_in_process(model, x_path, args.threads)
                else:
                    elapsed[name], got = time_onnx(session, x_path)
            np.testing.assert_array_equal(
                np.load(out_path), expected
            )  # the command's output is predict's
            for name in names:
                times[name].append(elapsed[name])
            ratios.append(elapsed["in-process"] / elapsed["plugnet predict"])
            if hidden:
                hidden_ratios.append(elapsed["in-process"] / elapsed["predict, no torch"])
            if session:
                onnx_ratios.append(elapsed["in-process"] / elapsed["onnxruntime"])
                differences.append(float(np.max(np.abs(got - expected))))
            print(
                f"round {round_index + 1}: "
                + ", ".join(f"{name} {elapsed[name]:.2f} s" for name in order)
            )

        print()
        for name in names:
            median = statistics.median(times[name])
            print(f"{name:<18} median {median:6.2f} s   {args.images / median:8.0f} images/s")
        print(
            f"plugnet predict throughput / in-process (median of paired rounds): {statistics.median(ratios):.2f}x  (target >= 0.8x)"
        )
        if hidden:
            print(
                f"  the same with torch hidden (no tensorboardX start-up import):     {statistics.median(hidden_ratios):.2f}x"
            )
        if session:
            print(
                f"onnxruntime throughput / in-process (median of paired rounds):     {statistics.median(onnx_ratios):.2f}x"
            )
            print(f"largest |onnxruntime - predict| over the images: {max(differences):.2g}")
        else:
            print('onnxruntime: not installed (pip install -e ".[onnx]")')


if __name__ == "__main__":
    main()
