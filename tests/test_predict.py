"""plugnet predict / evaluate / --version, run as a user runs them (the real CLI in a
subprocess), and the input readers and batched writer behind them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import framework
from framework.inference import predict_to_file, read_inputs
from framework.run import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env():
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "framework", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(),
    )


def train(logdir, data, layers, **train):
    experiment = build(
        {
            "seed": 0,
            "data": data,
            "model": {"layers": layers},
            "train": {
                "loss": "cross_entropy",
                "epochs": 2,
                "batch_size": 32,
                "metrics": ["accuracy"],
                **train,
            },
            "logging": {"logdir": str(logdir)},
        }
    )
    experiment.fit()
    return experiment.trainer.model


@pytest.fixture(scope="module")
def moons(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "moons"
    model = train(
        logdir,
        {"type": "moons", "n_samples": 300, "test_fraction": 0.2},
        [
            {"type": "dense", "units": 8, "activation": "tanh"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
    )
    return logdir, model


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs") / "digits"
    model = train(
        logdir,
        {"type": "digits", "flatten": False},
        [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool2d"},
            {"type": "flatten"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ],
        epochs=1,
    )
    return logdir, model


def inputs(n=300, features=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, features)).astype(np.float32)


def test_predict_csv_equals_model_predict_on_the_same_array(moons, tmp_path):
    run, model = moons
    x = inputs()
    np.savetxt(
        tmp_path / "x.csv", x, fmt="%.9g", delimiter=",", header="a,b", comments=""
    )  # a header row
    result = cli("predict", run, "x.csv", "-o", "p.npy", "--batch-size", "1000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote predictions of 300 samples to p.npy" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), model.predict(x))
    result = cli("predict", run, "x.csv", "-o", "p.csv", "--batch-size", "1000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # %.9g is exact for float32: the CSV holds the very same values.
    np.testing.assert_array_equal(
        np.loadtxt(tmp_path / "p.csv", delimiter=",", dtype=np.float32), model.predict(x)
    )


def test_predict_npy_npz_in_batches_and_classes(moons, tmp_path):
    run, model = moons
    x = inputs(700)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x, y=np.zeros(700))
    result = cli("predict", run, "x.npy", "-o", "out/p.npy", "--batch-size", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "p.npy"), model.predict(x), rtol=0, atol=1e-6
    )
    result = cli("predict", run, "x.npz", "-o", "classes.csv", "--classes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    classes = np.loadtxt(tmp_path / "classes.csv", dtype=np.int64)
    np.testing.assert_array_equal(classes, np.argmax(model.predict(x), axis=1))
    assert [name for name in os.listdir(tmp_path) if name.startswith(".tmp")] == []


def test_npy_input_is_read_through_a_memory_map(moons, tmp_path):
    np.save(tmp_path / "x.npy", inputs(10))
    assert isinstance(read_inputs(str(tmp_path / "x.npy"), moons[1]), np.memmap)


def digit_pictures(directory, images):
    from PIL import Image

    directory.mkdir()
    pixels = np.round(images[..., 0] * 255).astype(np.uint8)
    for index, picture in enumerate(pixels):
        Image.fromarray(picture, mode="L").save(directory / f"digit-{index:02d}.png")
    return pixels


def test_predict_png_images_for_an_image_model(digits, tmp_path):
    run, model = digits
    x_test = framework.data.load_data(json.loads((run / "config.json").read_text()))[1][2]
    pixels = digit_pictures(tmp_path / "pictures", x_test[:12])
    result = cli("predict", run, "pictures", "-o", "p.npy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = model.predict((pixels / np.float32(255))[..., None])
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)
    result = cli(
        "predict",
        run,
        "pictures/digit-03.png",
        "pictures/digit-07.png",
        "-o",
        "two.csv",
        "--classes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        np.loadtxt(tmp_path / "two.csv", dtype=np.int64), np.argmax(expected[[3, 7]], axis=1)
    )


def test_progress_bar_on_a_terminal_for_long_inputs(moons, tmp_path, capsys):
    model = moons[1]
    predict_to_file(model, inputs(500), str(tmp_path / "a.npy"), batch_size=100, progress=True)
    err = capsys.readouterr().err
    assert "/500" in err and "sample/s" in err  # the bar, cleared when done
    predict_to_file(
        model, inputs(500), str(tmp_path / "b.npy"), batch_size=100
    )  # stderr is no terminal here
    predict_to_file(
        model, inputs(50), str(tmp_path / "c.npy"), batch_size=100, progress=True
    )  # one batch
    assert capsys.readouterr().err == ""


def test_evaluate_prints_the_runs_held_out_metrics(moons, tmp_path):
    run, _ = moons
    summary = json.loads((run / "summary.json").read_text())
    result = cli("evaluate", run, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    logs = json.loads(result.stdout)
    assert set(logs) == set(summary["test"])
    for key, value in summary["test"].items():
        assert logs[key] == pytest.approx(value, rel=1e-6)
    result = cli("evaluate", run, "--set", "data.n_samples=1000", cwd=tmp_path)  # other data
    assert result.returncode == 0, result.stderr
    assert "on 200 held-out samples" in result.stdout and "test   loss" in result.stdout


def test_version(tmp_path):
    result = cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"plugnet {framework.__version__}"


def bad_inputs(tmp_path, moons_run, digits_run):
    """(name, command, what stderr says); every file the commands read is made here."""
    x = inputs(20)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "three.npy", inputs(20, features=3))
    bad = x.copy()
    bad[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    (tmp_path / "words.csv").write_text("1,2\n3,4\n5,abc\n")
    (tmp_path / "x.json").write_text("[]")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "config.json").write_text((moons_run / "config.json").read_text())
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "config.json").write_text((moons_run / "config.json").read_text())
    whole = (moons_run / "model.npz").read_bytes()
    (tmp_path / "torn" / "model.npz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "blocker").write_text("a file where a directory should be")
    (tmp_path / "taken.npy").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((9, 8), np.uint8), mode="L").save(tmp_path / "tall.png")
    moons, digits = str(moons_run), str(digits_run)
    return [
        (
            "not a run",
            ["predict", "not_a_run", "x.npy", "-o", "p.npy"],
            "not_a_run is not a plugnet run directory: it has no config.json",
        ),
        (
            "missing run",
            ["predict", "nowhere", "x.npy", "-o", "p.npy"],
            "no run directory or model file at nowhere",
        ),
        (
            "no weights",
            ["predict", "no_weights", "x.npy", "-o", "p.npy"],
            "no_weights holds no weights: no model.npz",
        ),
        (
            "torn model",
            ["predict", "torn", "x.npy", "-o", "p.npy"],
            "model.npz is not a readable .npz file",
        ),
        (
            "shape",
            ["predict", moons, "three.npy", "-o", "p.npy"],
            "three.npy holds samples of shape (None, 3); the model takes (None, 2)",
        ),
        (
            "csv word",
            ["predict", moons, "words.csv", "-o", "p.npy"],
            "words.csv, line 3, column 2: 'abc' is not a number",
        ),
        (
            "output extension",
            ["predict", moons, "x.npy", "-o", "p.txt"],
            "cannot write predictions to p.txt: unknown extension '.txt'; use .npy or .csv",
        ),
        (
            "output is a directory",
            ["predict", moons, "x.npy", "-o", "taken.npy"],
            "taken.npy: it is a directory",
        ),
        (
            "input extension",
            ["predict", moons, "x.json", "-o", "p.npy"],
            "cannot read input x.json: unknown extension '.json'",
        ),
        (
            "nan",
            ["predict", moons, "nan.npy", "-o", "p.npy"],
            "nan.npy contains NaN or inf (first at index (4, 1))",
        ),
        (
            "picture size",
            ["predict", digits, "tall.png", "-o", "p.npy"],
            "tall.png is 9x8 pixels (height x width); the model takes 8x8 images",
        ),
        (
            "unwritable onnx",
            ["export", moons, "-o", "blocker/m.onnx"],
            "cannot write the ONNX file blocker/m.onnx",
        ),
        (
            "evaluate not a run",
            ["evaluate", "not_a_run"],
            "not_a_run is not a plugnet run directory",
        ),
        (
            "evaluate nothing held out",
            ["evaluate", moons, "--set", "data.test_fraction=0"],
            "the run's data holds nothing out",
        ),
    ]


def test_bad_input_is_one_message_exit_2_and_nothing_written(moons, digits, tmp_path):
    cases = bad_inputs(tmp_path, moons[0], digits[0])
    before = sorted(os.listdir(tmp_path))
    # Started together: each is a fresh interpreter, and they need not wait for each other.
    running = [
        (
            name,
            expected,
            subprocess.Popen(
                [sys.executable, "-m", "framework", *command],
                cwd=tmp_path,
                env=cli_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for name, command, expected in cases
    ]
    failures = []
    for name, expected, process in running:
        _, err = process.communicate(timeout=300)
        if not (
            process.returncode == 2
            and err.startswith("plugnet: error: ")
            and err.count("\n") == 1
            and expected in err
            and "Traceback" not in err
        ):
            failures.append(f"{name}: exit {process.returncode}, stderr {err!r}")
    assert not failures, "\n".join(failures)
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file
