import json
import os
import subprocess
import sys

import pytest

from framework.cli import main

FAST = ["--epochs", "3", "--quiet"]


def write(path, text):
    path.write_text(text)
    return str(path)


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_default_example_writes_summary(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--logdir", str(tmp_path / "run"))
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary) == {"train", "test", "steps", "epochs", "seconds"}
    assert summary["epochs"] == 60 and summary["steps"] == 60 * 25  # 800 samples, batch 32
    # 200 held-out points of noisy moons: an RBF SVM scores 0.94-0.97 on such splits.
    assert summary["test"]["accuracy"] >= 0.94
    assert "logs in" in out and str(tmp_path / "run") in out and "tensorboard --logdir" in out


def test_set_and_seed_override(tmp_path, capsys):
    logdir = tmp_path / "r"
    code, _, err = run_cli(
        capsys,
        "train",
        *FAST,
        "--logdir",
        str(logdir),
        "--set",
        "train.batch_size=800",
        "--seed",
        "3",
    )
    assert code == 0, err
    assert json.loads((logdir / "summary.json").read_text())["steps"] == 3


def test_plugin_module_used_by_name(tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "train",
        *FAST,
        "--logdir",
        str(tmp_path / "c"),
        "--plugin",
        "cube_plugin",
        "--set",
        "model.layers.0.activation=cube",
        "--set",
        "train.optimizer.lr=0.001",
    )
    assert code == 0, err


BAD_INPUTS = [
    (["--set", "model.layers.0.type=dens"], "unknown layer 'dens'; did you mean 'dense'?"),
    (
        ["--set", "model.layers.0.unit=4"],
        "layer 'dense' has no parameter 'unit'; did you mean 'units'?",
    ),
    (["--set", "model.layers.0.units=four"], "layer 'dense'"),
    (
        ["--set", "train.optimizer.lrr=0.1"],
        "optimizer 'sgd' has no parameter 'lrr'; did you mean 'lr'?",
    ),
    (
        ["--set", 'model.layers.0.weight_init="he_normall"'],
        "layer 'dense': weight_init: unknown initializer 'he_normall'; did you mean 'he_normal'?",
    ),
    (
        ["--set", 'model.layers.0.bias_init="nope"'],
        "layer 'dense': bias_init: unknown initializer 'nope'. Known",
    ),
    (["--set", "train.epoch=3"], "unknown config key 'train.epoch'; did you mean 'train.epochs'?"),
    (["--set", "model.input_shape=[3]"], "dense_0"),
    (["--set", "model.layers.1.units=1"], "label"),
    (["--plugin", "no_such_module_xyz"], "cannot import plugin module 'no_such_module_xyz'"),
    (["--set", 'data.type="mnist"', "--set", "data.n_samples=1"], "mnist"),
    # found as training begins, after the tensorboard callback has opened its files
    (
        [
            "--set",
            "data.test_fraction=0",
            "--set",
            'train.callbacks=[{type="early_stopping", monitor="val_loss"}, "tensorboard"]',
        ],
        "val_ values need held-out data",
    ),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_message_and_exit_2(tmp_path, capsys, args, message):
    logdir = tmp_path / "bad"
    code, out, err = run_cli(capsys, "train", *FAST, "--logdir", str(logdir), *args)
    assert code == 2
    assert message in err
    assert err.startswith("plugnet: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not logdir.exists()  # nothing half-written


def test_missing_config_file(capsys):
    code, _, err = run_cli(capsys, "train", "missing.toml")
    assert code == 2 and "config file not found: missing.toml" in err


def test_malformed_toml(tmp_path, capsys):
    config = write(tmp_path / "bad.toml", "seed = 0\n[data\n")
    code, _, err = run_cli(capsys, "train", config)
    assert code == 2 and "invalid TOML" in err and "line 2" in err


def test_missing_data_directory(tmp_path, capsys):
    config = write(
        tmp_path / "m.toml",
        f"""
[data]
type = "mnist"
path = "{tmp_path / "nowhere"}"
[model]
layers = [{{ type = "flatten" }}, {{ type = "dense", units = 10, activation = "softmax" }}]
[train]
loss = "cross_entropy"
""",
    )
    code, _, err = run_cli(capsys, "train", config, "--logdir", str(tmp_path / "x"))
    assert code == 2 and "nowhere" in err and "Traceback" not in err


def test_plugins_command_lists_builtins_by_kind(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    assert "plugins.layers  (built-in)" in out
    assert "layers:" in out and "dense" in out
    assert "callbacks:" in out and "early_stopping" in out


def test_real_process_exit_status_and_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "support"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "framework",
            "train",
            "--set",
            "train.loss=crossentropy",
            "--logdir",
            str(tmp_path / "p"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "plugnet: error: unknown loss 'crossentropy'; did you mean 'cross_entropy'?"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()


# A plugin that leaves work for the end of the process: a file its module holds and never
# flushed, an atexit handler, a thread still running when the command is done and an
# executor's idle worker thread (which waits for threading's exit hook to tell it to stop).
# (Not a file only a reference cycle holds: when the collector frees one, CPython may close
# its buffer before its text layer is flushed, and the text is lost in any program.)
EXIT_PROBE = """
import atexit, os, threading, time
OUT = os.environ["EXIT_PROBE_DIR"]
kept = open(os.path.join(OUT, "kept.txt"), "w")
kept.write("written at import, never flushed\\n")
atexit.register(lambda: open(os.path.join(OUT, "atexit.txt"), "w").write("ran"))
def late():
    time.sleep(0.3)
    open(os.path.join(OUT, "thread.txt"), "w").write("finished")
threading.Thread(target=late).start()
from concurrent.futures import ThreadPoolExecutor
executor = ThreadPoolExecutor(1)
executor.submit(time.sleep, 0.01)
"""


def test_the_command_ends_with_every_file_flushed_atexit_run_and_threads_finished(tmp_path):
    # The command spares the interpreter's shutdown its garbage collection
    # (framework.cli.command), not what a user sees of the shutdown.
    (tmp_path / "exit_probe.py").write_text(EXIT_PROBE)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), EXIT_PROBE_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "framework", "plugins", "--plugin", "exit_probe"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("plugins.layers  (built-in)") and "exit_probe" in result.stdout
    assert result.stdout.endswith("\n") and result.stderr == ""
    assert (tmp_path / "kept.txt").read_text() == "written at import, never flushed\n"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "finished"


def test_unwritable_logdir_is_one_message(tmp_path, capsys):
    (tmp_path / "blocked").write_text("a file where a directory should be")
    code, _, err = run_cli(capsys, "train", *FAST, "--logdir", str(tmp_path / "blocked" / "run"))
    assert code == 2
    assert err.startswith("plugnet: error: ") and err.count("\n") == 1
    assert "blocked" in err and "Traceback" not in err
