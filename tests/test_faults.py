"""Faults: training killed with SIGKILL at several points resumes to the uninterrupted
weights; a diverging run is stopped by terminate_on_nan."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import framework
from framework.checkpoints import list_checkpoints, load_checkpoint
from framework.cli import main

SUPPORT = os.path.join(os.path.dirname(__file__), "support")
EPOCHS = 12  # 6 steps an epoch: 72 steps, a checkpoint every 3

CONFIG = f"""seed = 4
plugins = ["slow_plugin"]
[data]
type = "moons"
n_samples = 120
noise = 0.2
test_fraction = 0.25
[model]
layers = [
  {{ type = "dense", units = 12, activation = "relu" }},
  {{ type = "dropout", rate = 0.25 }},
  {{ type = "dense", units = 2, activation = "softmax" }},
]
[train]
loss = "cross_entropy"
optimizer = {{ type = "adam", lr = 0.01 }}
epochs = {EPOCHS}
batch_size = 16
metrics = ["accuracy"]
callbacks = [{{ type = "checkpoint", every = 3, keep = 0 }}, {{ type = "slow", seconds = 0.02 }}]
"""


def start(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SUPPORT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "framework", "train", *args, "--quiet"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_when(process, logdir, ready, timeout=120):
    """SIGKILL ``process`` as soon as ``ready(names in checkpoints/)`` holds."""
    directory = os.path.join(logdir, "checkpoints")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = os.listdir(directory) if os.path.isdir(directory) else []
        if ready(names):
            process.send_signal(signal.SIGKILL)
            process.wait()
            return names
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(
                f"training ended before the kill point (status {process.returncode}): {err.decode()}"
            )
        time.sleep(0.002)
    process.kill()
    pytest.fail("the kill point was never reached")


def count(names):
    return sum(name.startswith("step-") for name in names)


def check_every_file(logdir):
    """Each checkpoint file loads; anything else is the temporary file of a cut-off write."""
    directory = os.path.join(logdir, "checkpoints")
    steps = []
    for name in os.listdir(directory):
        if name.startswith(".tmp-"):
            continue
        checkpoint = load_checkpoint(os.path.join(directory, name))
        assert name == f"step-{checkpoint['step']}.npz"
        steps.append(checkpoint["step"])
    return sorted(steps)


def final_params(logdir):
    return load_checkpoint(list_checkpoints(logdir)[-1][1])


def test_sigkill_at_several_points_then_resume_gives_the_uninterrupted_weights(tmp_path):
    (tmp_path / "c.toml").write_text(CONFIG)
    sys.path.insert(0, SUPPORT)
    try:
        expected = framework.run(
            dict(
                framework.config.load_config(tmp_path / "c.toml"),
                logging={"logdir": str(tmp_path / "straight")},
            )
        )
    finally:
        sys.path.remove(SUPPORT)
    straight = final_params(tmp_path / "straight")
    assert straight["step"] == 6 * EPOCHS

    logdir = str(tmp_path / "killed")
    kill_points = [
        ("after the first checkpoint", lambda names: count(names) >= 1),
        ("after four more", lambda names: count(names) >= 5),
        (
            "during a write, or just after one",
            lambda names: any(n.startswith(".tmp-") for n in names) or count(names) >= 9,
        ),
        ("past an epoch boundary", lambda names: count(names) >= 14),
    ]
    steps_seen = []
    for index, (_, ready) in enumerate(kill_points):
        args = ["c.toml", "--logdir", logdir] if index == 0 else ["--resume", logdir]
        kill_when(start(args, tmp_path), logdir, ready)
        steps = check_every_file(logdir)
        assert steps and steps[-1] < 6 * EPOCHS  # killed before the end
        assert steps == sorted(set(steps)) and all(step % 3 == 0 for step in steps)
        steps_seen.append(steps[-1])
    assert steps_seen == sorted(steps_seen)  # each resumed run went further

    process = start(["--resume", logdir], tmp_path)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert f"resuming {logdir} from step {steps_seen[-1]}" in out.decode()
    resumed = final_params(logdir)
    assert resumed["step"] == straight["step"]
    for key, value in straight["params"].items():
        np.testing.assert_allclose(resumed["params"][key], value, rtol=0, atol=1e-6, err_msg=key)
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["train"] == pytest.approx(expected["train"], abs=1e-9)
    assert summary["test"] == pytest.approx(expected["test"], abs=1e-9)
    assert not [n for n in os.listdir(os.path.join(logdir, "checkpoints")) if n.startswith(".tmp-")]


DIVERGING = """seed = 0
[data]
type = "regression"
n_samples = 100
n_features = 5
target_scale = "standard"
[model]
layers = [{ type = "dense", units = 8, activation = "tanh" }, { type = "dense", units = 1 }]
[train]
loss = "mse"
optimizer = { type = "sgd", lr = 1000.0 }
epochs = 50
batch_size = 16
callbacks = ["terminate_on_nan", { type = "checkpoint", every = 2 }]
[logging]
logdir = "runs/diverge"
"""


def test_diverging_run_is_stopped_by_terminate_on_nan(tmp_path, capsys):
    (tmp_path / "diverge.toml").write_text(DIVERGING)
    code = main(["train", "diverge.toml", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((tmp_path / "runs/diverge/summary.json").read_text())
    stopped = summary["steps"] - 1  # the step whose loss was not finite, counted from 0
    assert summary["epochs"] < 50
    assert f"plugnet: training stopped at step {stopped}: loss is " in err
    assert err.split(f"step {stopped}: loss is ")[1].split()[0] in ("nan", "inf")
    # the checkpoints written on the way are whole and finite; the diverged end is not saved
    steps = []
    for step, path in list_checkpoints("runs/diverge"):
        params = load_checkpoint(path)["params"]
        assert all(np.isfinite(v).all() for v in params.values())
        steps.append(step)
    assert steps and max(steps) <= stopped + 1
