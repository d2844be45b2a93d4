"""A run survives being stopped: SIGTERM and SIGINT end `plugnet train` at a step boundary
with a checkpoint of that step, flushed event files and the HParams session's status, one
line and exit 143 / 130; resuming reaches the uninterrupted run's weights; a second signal
stops at once.  `GracefulStop.request` does the same from code (a sweep's worker)."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

import framework
from framework import Callback, hookimpl
from framework.checkpoints import list_checkpoints, load_checkpoint
from framework.config import load_config
from framework.run import build
from framework.rundir import in_use
from framework.stopping import GracefulStop, Interrupted, interrupted_by

SUPPORT = os.path.join(os.path.dirname(__file__), "support")
EPOCHS = 12  # 6 steps an epoch: 72 steps

CONFIG = f"""seed = 4
plugins = ["slow_plugin", "stall_plugin"]
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
callbacks = [
  {{ type = "checkpoint", every = 4, keep = 0 }},
  {{ type = "early_stopping", monitor = "val_loss", patience = 100, restore_best = true, verbose = false }},
  {{ type = "tensorboard", scalar_every = 1, histogram_every = 0 }},
  {{ type = "slow", seconds = 0.02 }},
]
"""

LINE = re.compile(
    r"plugnet: interrupted \((?P<signal>SIG\w+)\) at step (?P<step>\d+); checkpoint (?P<checkpoint>\S+); "
    r"resume with: plugnet train --resume (?P<logdir>\S+)\n"
)


def start(args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SUPPORT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-m", "framework", "train", *args, "--quiet"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_until(process, ready, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            pytest.fail(
                f"the run ended before {what} ({process.returncode}): {process.communicate()[1]}"
            )
        time.sleep(0.005)
    process.kill()
    pytest.fail(f"never saw {what}")


def first_checkpoint(logdir):
    return lambda: bool(list_checkpoints(logdir))


def straight_run(tmp_path):
    """The uninterrupted run, in this process: its final checkpoint and summary."""
    config = dict(load_config(tmp_path / "c.toml"), logging={"logdir": str(tmp_path / "straight")})
    summary = framework.run(config)
    return load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1]), summary


def scalar_steps(directory, tag="loss"):
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0})
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def session_status(logdir):
    (root_file,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    events = EventAccumulator(root_file)
    events.Reload()
    content = events.PluginTagToContent("hparams")
    return hparams_metadata.parse_session_end_info_plugin_data(
        content["_hparams_/session_end_info"]
    ).status


@pytest.mark.parametrize(
    "signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_stops_at_a_step_boundary_and_resume_reaches_the_uninterrupted_weights(
    tmp_path, signum, status
):
    (tmp_path / "c.toml").write_text(CONFIG)
    logdir = str(tmp_path / "stopped")
    process = start(["c.toml", "--logdir", logdir], tmp_path)
    wait_until(process, first_checkpoint(logdir), "the first checkpoint")
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    line = LINE.fullmatch(err)  # one line, and nothing else on stderr
    assert line, err
    step = int(line["step"])
    assert line["signal"] == signal.Signals(signum).name and line["logdir"] == logdir
    assert 4 <= step < 6 * EPOCHS
    # the checkpoint of the very step it stopped at, the newest one
    assert line["checkpoint"] == os.path.join(logdir, "checkpoints", f"step-{step}.npz")
    assert load_checkpoint(line["checkpoint"])["step"] == step
    assert list_checkpoints(logdir)[-1][0] == step
    assert not os.path.exists(os.path.join(logdir, "summary.json"))  # not finished
    assert not in_use(logdir)
    # every step's scalars reached the file (the writer flushes every 10 s on its own)
    assert scalar_steps(os.path.join(logdir, "train")) == list(range(step))
    assert session_status(logdir) == api_pb2.STATUS_UNKNOWN

    straight, summary = straight_run(tmp_path)
    resumed = start(["--resume", logdir], tmp_path)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"resuming {logdir} from step {step}" in out
    final = load_checkpoint(list_checkpoints(logdir)[-1][1])
    assert final["step"] == straight["step"] == 6 * EPOCHS
    for key, value in straight["params"].items():
        np.testing.assert_array_equal(final["params"][key], value, err_msg=key)
    resumed_summary = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    assert resumed_summary["train"] == pytest.approx(summary["train"], abs=1e-9)
    assert resumed_summary["test"] == pytest.approx(summary["test"], abs=1e-9)
    assert scalar_steps(os.path.join(logdir, "train")) == list(range(6 * EPOCHS))  # no step twice
    assert session_status(logdir) == api_pb2.STATUS_SUCCESS


def test_a_second_signal_stops_at_once(tmp_path):
    marker = tmp_path / "ending"
    stalled = CONFIG.replace(
        '{ type = "slow", seconds = 0.02 },',
        f'{{ type = "slow", seconds = 0.02 }},\n  {{ type = "stall", marker = "{marker}", seconds = 600 }},',
    )
    (tmp_path / "c.toml").write_text(stalled)
    logdir = str(tmp_path / "twice")
    process = start(["c.toml", "--logdir", logdir], tmp_path)
    wait_until(process, first_checkpoint(logdir), "the first checkpoint")
    process.send_signal(signal.SIGTERM)
    wait_until(
        process, marker.exists, "the end of training"
    )  # stopped; now stalling in on_train_end
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)  # not the stall's 600 s
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the second signal did not stop the run")
    assert process.returncode == 130
    stopped = re.fullmatch(
        r"plugnet: interrupted again, stopped at once \(SIGINT\) at step (\d+); newest checkpoint (\S+); "
        r"resume with: plugnet train --resume (\S+)\n", err,
    )  # fmt: skip
    assert stopped, err
    assert stopped[2] == list_checkpoints(logdir)[-1][1] and stopped[3] == logdir
    assert not in_use(logdir)


# --- from code: GracefulStop.request -----------------------------------------------------------


def small_config(logdir, **train):
    return {
        "seed": 1,
        "data": {"type": "moons", "n_samples": 120, "noise": 0.2, "test_fraction": 0.25},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 2, "activation": "softmax"}]},
        "train": {
            "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01}, "epochs": 5, "batch_size": 10,
            "callbacks": [{"type": "checkpoint", "every": 4}, {"type": "tensorboard", "scalar_every": 1}], **train,
        },
        "logging": {"logdir": str(logdir)},
    }  # fmt: skip


class RequestStopAt(Callback):
    """Asks the run to stop while step ``at`` is under way, as a signal handler would."""

    def __init__(self, stop, at, signum=signal.SIGTERM):
        self.stop, self.at, self.signum = stop, at, signum
        self.seen = None

    @hookimpl
    def on_after_backward(self, trainer, step):
        if step == self.at:
            self.stop.request(self.signum)
            self.seen = interrupted_by(trainer)


def test_request_stops_after_the_current_step(tmp_path):
    logdir = tmp_path / "run"
    experiment = build(small_config(logdir))
    requester = experiment.trainer.add_callback(RequestStopAt(experiment.stop, at=6))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as stopped:
        experiment.fit()
    assert isinstance(stopped.value, KeyboardInterrupt)
    exc = stopped.value
    assert (exc.step, exc.exit_status, exc.signal_name, exc.at_once) == (7, 143, "SIGTERM", False)
    assert exc.checkpoint == str(logdir / "checkpoints" / "step-7.npz")
    assert (
        str(exc)
        == f"interrupted (SIGTERM) at step 7; checkpoint {exc.checkpoint}; resume with: plugnet train --resume {logdir}"
    )
    assert [step for step, _ in list_checkpoints(logdir)] == [4, 7]
    assert experiment.trainer.stop_reason == "interrupted (SIGTERM)" and requester.seen == "SIGTERM"
    assert not (logdir / "summary.json").exists() and not in_use(logdir)
    assert (
        signal.getsignal(signal.SIGTERM),
        signal.getsignal(signal.SIGINT),
    ) == before  # handlers put back
    assert scalar_steps(logdir / "train") == list(range(7))
    assert session_status(logdir) == api_pb2.STATUS_UNKNOWN
    summary = framework.run(resume=logdir)
    assert summary["steps"] == 45


def test_a_request_before_training_stops_before_the_first_step(tmp_path):
    logdir = tmp_path / "run"
    experiment = build(small_config(logdir))
    experiment.stop.request(signal.SIGINT)
    with pytest.raises(Interrupted) as stopped:
        experiment.fit()
    assert (stopped.value.step, stopped.value.exit_status) == (0, 130)
    assert [step for step, _ in list_checkpoints(logdir)] == [0]


def test_without_a_checkpoint_callback_the_line_says_so(tmp_path):
    logdir = tmp_path / "run"
    experiment = build(small_config(logdir, callbacks=[]))
    experiment.trainer.add_callback(RequestStopAt(experiment.stop, at=2))
    with pytest.raises(Interrupted) as stopped:
        experiment.fit()
    assert (
        str(stopped.value)
        == "interrupted (SIGTERM) at step 3; no checkpoint (the run has no checkpoint callback)"
    )


def test_full_batch_runs_stop_at_an_iteration_boundary(tmp_path):
    logdir = tmp_path / "bfgs"
    config = {
        "seed": 0,
        "data": {"type": "regression", "n_samples": 60, "n_features": 3, "test_fraction": 0},
        "model": {
            "layers": [
                {"type": "dense", "units": 4, "activation": "tanh"},
                {"type": "dense", "units": 1},
            ]
        },
        "train": {
            "loss": "mse",
            "optimizer": "bfgs",
            "epochs": 50,
            "callbacks": [{"type": "checkpoint"}],
        },
        "logging": {"logdir": str(logdir)},
    }
    experiment = build(config)
    experiment.trainer.add_callback(RequestStopAt(experiment.stop, at=3))
    with pytest.raises(Interrupted) as stopped:
        experiment.fit()
    assert stopped.value.step == 4 and stopped.value.checkpoint == str(
        logdir / "checkpoints" / "step-4.npz"
    )
    assert load_checkpoint(stopped.value.checkpoint)["epoch"] == 4


def test_the_stop_checkpoint_holds_the_weights_before_early_stopping_restores_the_best(tmp_path):
    """Early stopping puts the best weights back when training ends; the checkpoint of a
    stopped run must hold the weights it stopped with, or resuming would train on from the
    best epoch's weights."""
    early = {"type": "early_stopping", "monitor": "val_loss", "patience": 100, "verbose": False}

    def config(logdir):
        c = small_config(logdir, epochs=6)
        c["train"]["callbacks"] = [{"type": "checkpoint", "every": 4}, early]
        return c

    framework.run(config(tmp_path / "straight"))
    experiment = build(config(tmp_path / "stopped"))
    experiment.trainer.add_callback(RequestStopAt(experiment.stop, at=20))
    with pytest.raises(Interrupted):
        experiment.fit()
    framework.run(resume=tmp_path / "stopped")
    straight = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1][1])
    resumed = load_checkpoint(list_checkpoints(tmp_path / "stopped")[-1][1])
    assert resumed["step"] == straight["step"] == 54
    for key, value in straight["params"].items():
        np.testing.assert_array_equal(resumed["params"][key], value, err_msg=key)


def test_graceful_stop_outside_the_main_thread_sets_no_handlers():
    import threading

    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with GracefulStop():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before] and signal.getsignal(signal.SIGTERM) == before
