"""Using a run runs none of its code: evaluate, predict, export and load_model import only
the plugins their user names (or installed entry points), never a module a run's config
names, even one shipped beside it in the current directory.  Resuming one's own run still
imports its config's plugins, as training does."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import framework
from framework import PluginError
from framework.run import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a run received from someone else might carry: importing it runs it.
HELPFUL_LAYERS = """\
import pathlib

pathlib.Path(__file__).with_name("ran.txt").write_text("helpful_layers ran")
"""

REFUSAL = (
    "plugnet: error: the run in . needs the plugin module 'helpful_layers', which plugnet does "
    "not import because a run's config names it (importing a module runs its code); if you trust "
    "it, pass --plugin helpful_layers (in Python: plugins=['helpful_layers']), or install it as a "
    "distribution with a 'plugnet' entry point\n"
)


@pytest.fixture
def received(tmp_path):
    """A trained run whose config.json names `helpful_layers`, shipped beside it."""
    run = tmp_path / "received"
    build(
        {
            "seed": 0,
            "data": {"type": "moons", "n_samples": 100, "test_fraction": 0.2},
            "model": {
                "layers": [
                    {"type": "dense", "units": 4, "activation": "tanh"},
                    {"type": "dense", "units": 2, "activation": "softmax"},
                ]
            },
            "train": {
                "loss": "cross_entropy",
                "epochs": 1,
                "batch_size": 20,
                "metrics": ["accuracy"],
                "callbacks": [{"type": "checkpoint", "every": 2}],
            },
            "logging": {"logdir": str(run)},
        }  # fmt: skip
    ).fit()
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "plugins": ["helpful_layers"]}))
    (run / "helpful_layers.py").write_text(HELPFUL_LAYERS)
    np.save(run / "x.npy", np.zeros((3, 2), np.float32))
    return run


def inside(run, *args):
    """``python -m framework ARGS`` started inside the run directory (on sys.path there)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, *args], cwd=run, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command",
    [
        ["predict", ".", "x.npy", "-o", "p.npy"],
        ["evaluate", "."],
        ["export", ".", "-o", "m.onnx"],
        ["predict", "checkpoints/step-4.npz", "x.npy", "-o", "p.npy"],
    ],
    ids=["predict", "evaluate", "export", "predict a checkpoint"],
)
def test_a_command_run_inside_a_received_run_never_imports_its_plugin(received, command):
    result = inside(received, "-m", "framework", *command)
    assert (result.returncode, result.stdout) == (2, "")
    named = "." if command[1] == "." else str(received)  # a checkpoint's run, found from it
    assert result.stderr == REFUSAL.replace("the run in .", f"the run in {named}")
    assert not (received / "ran.txt").exists()
    assert not (received / "p.npy").exists() and not (received / "m.onnx").exists()


def test_load_model_in_a_session_started_inside_the_run_never_imports_it(received):
    code = (
        "import framework\n"
        "try:\n"
        "    framework.load_model('.')\n"
        "except framework.PluginError as exc:\n"
        "    print(exc)\n"
    )
    result = inside(received, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == REFUSAL.removeprefix("plugnet: error: ")
    assert not (received / "ran.txt").exists()


def test_load_model_refuses_and_names_the_plugin(received):
    with pytest.raises(PluginError, match=r"pass --plugin helpful_layers \(in Python: plugins="):
        framework.load_model(received)
    assert "helpful_layers" not in sys.modules and not (received / "ran.txt").exists()


def test_the_user_trusts_a_plugin_by_naming_it(received):
    result = inside(
        received, "-m", "framework", "predict", ".", "x.npy", "-o", "p.npy",
        "--plugin", "helpful_layers",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (received / "ran.txt").read_text() == "helpful_layers ran"
    assert np.load(received / "p.npy").shape == (3, 2)


def test_resuming_ones_own_run_imports_its_configs_plugins(received):
    result = inside(received, "-m", "framework", "train", "--quiet", "--resume", ".")
    assert result.returncode == 0, result.stderr
    assert (received / "ran.txt").exists()
