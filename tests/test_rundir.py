"""A run directory holds one run: a second run into it is refused and touches nothing,
``--overwrite`` replaces it, and a directory in use by a live process is locked (an OS lock
that a SIGKILL does not leave behind)."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import framework
from framework import ConfigError
from framework.checkpoints import list_checkpoints
from framework.cli import main
from framework.run import build
from framework.rundir import LOCK_FILE, MANIFEST_FILE, RunDir, holds_run, in_use, run_entries

SUPPORT = os.path.join(os.path.dirname(__file__), "support")


def config(logdir, epochs=2, every=5, keep=0, **train):
    return {
        "seed": 3,
        "data": {"type": "moons", "n_samples": 120, "noise": 0.2, "test_fraction": 0.25},
        "model": {"layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 2, "activation": "softmax"}]},
        "train": {
            "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01}, "epochs": epochs, "batch_size": 10,
            "metrics": ["accuracy"],
            "callbacks": [{"type": "checkpoint", "every": every, "keep": keep}, {"type": "tensorboard", "scalar_every": 1}],
            **train,
        },
        "logging": {"logdir": str(logdir)},
    }  # fmt: skip


def snapshot(directory):
    """Every file under ``directory`` (the lock file aside) with its bytes' digest and mtime."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            if name == LOCK_FILE:
                continue
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = (
                    hashlib.sha256(f.read()).hexdigest(),
                    os.stat(path).st_mtime_ns,
                )
    return found


def cli(capsys, *args):
    code = main(["train", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def write_toml(path, logdir, epochs=2):
    text = f"""seed = 3
[data]
type = "moons"
n_samples = 120
noise = 0.2
test_fraction = 0.25
[model]
layers = [{{ type = "dense", units = 8, activation = "tanh" }}, {{ type = "dense", units = 2, activation = "softmax" }}]
[train]
loss = "cross_entropy"
optimizer = {{ type = "adam", lr = 0.01 }}
epochs = {epochs}
batch_size = 10
callbacks = [{{ type = "checkpoint", every = 5, keep = 2 }}, "tensorboard"]
[logging]
logdir = "{logdir}"
"""
    path.write_text(text)
    return str(path)


# --- what holds a run ---------------------------------------------------------------------------


def test_what_holds_a_run(tmp_path):
    """A directory holds a run only when it holds a run's manifest: names alone (a user's
    config.json, train/, checkpoints/) make no run."""
    assert not holds_run(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / LOCK_FILE).write_text("")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".tmp-abc-step-4.npz").write_bytes(b"half")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "events.out.tfevents.1.host").write_bytes(b"")
    (tmp_path / "config.json").write_text("{}")
    assert not holds_run(tmp_path) and run_entries(tmp_path) == []
    assert RunDir(tmp_path).plugnet_files() == ["config.json", "train/events.out.tfevents.1.host"]
    (tmp_path / MANIFEST_FILE).write_text(
        json.dumps(
            {"format": 1, "files": ["config.json", "train/events.out.tfevents.1.host", "model.npz"]}
        )
    )
    assert holds_run(tmp_path)
    assert run_entries(tmp_path) == ["config.json", "train"]  # model.npz: named, not there
    assert RunDir(tmp_path).foreign_files() == []


def data_folder(root):
    """An ordinary data folder, with the names a run directory uses."""
    files = {
        "train/cat.0001.jpg": b"\xff\xd8 a cat",
        "test/labels.csv": b"name,label\ncat.0001.jpg,cat\n",
        "checkpoints/notes.txt": b"my notes",
        "config.json": b'{"mine": true}\n',
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_a_data_folder_is_no_run_and_overwrite_deletes_none_of_it(tmp_path, capsys):
    folder = tmp_path / "data"
    files = data_folder(folder)
    for extra in ([], ["--overwrite"]):
        code, out, err = cli(capsys, "--logdir", str(folder), "--epochs", "1", *extra)
        assert (code, out) == (2, "")
        assert err == (
            f"plugnet: error: {folder} holds files of the names plugnet writes that no run of its own "
            f"wrote there: config.json; plugnet replaces and removes only what its runs recorded (in "
            f"{MANIFEST_FILE}), so move them away or give another --logdir\n"
        )
    assert {name: (folder / name).read_bytes() for name in files} == files
    assert not (folder / MANIFEST_FILE).exists()


def test_overwrite_removes_only_the_runs_own_files(tmp_path, capsys):
    logdir = tmp_path / "run"
    framework.run(config(logdir, epochs=2, keep=0))
    (logdir / "notes.txt").write_text("mine")
    (logdir / "train" / "cat.0001.jpg").write_bytes(b"a cat")
    (logdir / "test" / "labels.csv").write_text("cat,1\n")
    (logdir / "checkpoints" / "notes.txt").write_text("my notes")
    own = json.loads((logdir / MANIFEST_FILE).read_text())["files"]
    assert "config.json" in own and "model.npz" in own and "summary.json" in own
    assert {name for name in own if name.startswith("checkpoints/")} == {
        f"checkpoints/step-{step}.npz" for step in (5, 10, 15, 18)
    }
    assert any(name.startswith("train/events.out.tfevents.") for name in own)
    code, _, err = cli(capsys, "--logdir", str(logdir), "--epochs", "1", "--overwrite")
    assert code == 0, err
    assert (logdir / "notes.txt").read_text() == "mine"
    assert (logdir / "train" / "cat.0001.jpg").read_bytes() == b"a cat"
    assert (logdir / "test" / "labels.csv").read_text() == "cat,1\n"
    assert (logdir / "checkpoints" / "notes.txt").read_text() == "my notes"
    for name in own:  # the old run's checkpoints and event files are gone
        if "/" in name:
            assert not (logdir / name).exists(), name


def test_a_file_plugnet_writes_that_is_not_the_runs_is_a_refusal_even_with_overwrite(
    tmp_path, capsys
):
    logdir = tmp_path / "run"
    framework.run(config(logdir, epochs=1))
    (logdir / "checkpoints" / "step-99.npz").write_bytes(b"someone else's")
    before = snapshot(logdir)
    code, _, err = cli(capsys, "--logdir", str(logdir), "--epochs", "1", "--overwrite")
    assert code == 2
    assert err.startswith(
        f"plugnet: error: {logdir} holds files of the names plugnet writes that no run of its own "
        "wrote there: checkpoints/step-99.npz; "
    )
    assert snapshot(logdir) == before


def test_an_empty_directory_left_by_the_run_goes_a_users_folder_stays(tmp_path):
    logdir = tmp_path / "run"
    framework.run(config(logdir, epochs=1))
    (logdir / "test" / "labels.csv").write_text("mine")
    framework.run(config(logdir, epochs=1, callbacks=[]), overwrite=True)
    assert not (logdir / "checkpoints").exists() and not (logdir / "train").exists()
    assert os.listdir(logdir / "test") == ["labels.csv"]


def test_a_users_file_of_the_csv_loggers_name_is_not_replaced(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "history.csv").write_text("my,own,table\n")
    with pytest.raises(
        ConfigError, match="history.csv is there already and this run did not write it"
    ):
        framework.run(config(logdir, epochs=1, callbacks=["csv_logger"]))
    assert (logdir / "history.csv").read_text() == "my,own,table\n"
    os.unlink(logdir / "history.csv")
    framework.run(config(logdir, epochs=1, callbacks=["csv_logger"]), overwrite=True)
    assert "history.csv" in json.loads((logdir / MANIFEST_FILE).read_text())["files"]
    framework.run(config(logdir, epochs=2, callbacks=["csv_logger"]), overwrite=True)  # its own
    assert len((logdir / "history.csv").read_text().splitlines()) == 3  # header, two epochs


def old_run(logdir):
    """A run as plugnet wrote it before it kept a manifest."""
    framework.run(config(logdir, epochs=1))
    os.unlink(logdir / MANIFEST_FILE)


def test_a_run_from_before_the_manifest_is_read_resumed_and_never_overwritten(tmp_path, capsys):
    logdir = tmp_path / "old"
    old_run(logdir)
    assert not holds_run(logdir)
    assert framework.load_model(logdir).predict(np.zeros((1, 2))).shape == (1, 2)
    before = snapshot(logdir)
    code, _, err = cli(capsys, "--logdir", str(logdir), "--epochs", "2", "--overwrite")
    assert (
        code == 2
        and f"if they are a run of an older plugnet, continue it with --resume {logdir}" in err
    )
    assert "wrote there: checkpoints/step-5.npz, checkpoints/step-9.npz, config.json, " in err
    assert snapshot(logdir) == before
    framework.run(config(logdir, epochs=2), resume=logdir)  # adopts its files
    own = json.loads((logdir / MANIFEST_FILE).read_text())["files"]
    assert "config.json" in own and "checkpoints/step-5.npz" in own
    assert any(name.startswith("train/events.out.tfevents.") for name in own)
    framework.run(config(logdir, epochs=1), overwrite=True)  # now its own run: replaced


def test_a_foreign_manifest_is_refused_and_kept(tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / MANIFEST_FILE).write_text("[1, 2]")
    code, _, err = cli(capsys, "--logdir", str(folder), "--epochs", "1", "--overwrite")
    assert code == 2 and "is not a run manifest (it is not a manifest plugnet wrote)" in err
    assert (folder / MANIFEST_FILE).read_text() == "[1, 2]"


def test_a_new_run_into_a_directory_without_a_run_is_allowed(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "notes.txt").write_text("mine")
    framework.run(config(logdir))
    assert (logdir / "summary.json").exists() and (logdir / "notes.txt").read_text() == "mine"


# --- a second run is refused ---------------------------------------------------------------------


def test_second_run_is_refused_and_touches_nothing(tmp_path):
    logdir = tmp_path / "run"
    framework.run(config(logdir, epochs=3))  # 9 steps an epoch: checkpoints 5..25 and 27
    before = snapshot(logdir)
    with pytest.raises(ConfigError) as refused:
        framework.run(config(logdir, epochs=1))
    message = str(refused.value)
    assert message == (
        f"{logdir} already holds a finished run of 27 steps (checkpoints/, config.json, event files, "
        f"model.npz, summary.json, test/, train/); continue it with --resume {logdir}, replace it with --overwrite, "
        "or give another --logdir"
    )
    assert snapshot(logdir) == before


def test_refused_before_the_data_are_loaded(tmp_path, monkeypatch):
    logdir = tmp_path / "run"
    framework.run(config(logdir))
    loaded = []
    run_module = sys.modules["framework.run"]  # `framework.run` is the function
    monkeypatch.setattr(
        run_module, "load_data", lambda *a, **k: loaded.append(a) or pytest.fail("data loaded")
    )
    with pytest.raises(ConfigError, match="already holds a finished run"):
        build(config(logdir))
    assert not loaded


def test_cli_second_run_is_exit_2_one_line(tmp_path, capsys):
    toml = write_toml(tmp_path / "c.toml", tmp_path / "run")
    assert cli(capsys, toml)[0] == 0
    before = snapshot(tmp_path / "run")
    code, out, err = cli(capsys, toml)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        f"plugnet: error: {tmp_path / 'run'} already holds a finished run of 18 steps"
    )
    for choice in (f"--resume {tmp_path / 'run'}", "--overwrite", "another --logdir"):
        assert choice in err
    assert snapshot(tmp_path / "run") == before


def test_a_run_without_checkpoints_is_not_offered_to_resume(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--quiet"]) == 0  # the default example: runs/moons
    code, _, err = cli(capsys, "--epochs", "1")
    assert code == 2
    assert err == (
        "plugnet: error: runs/moons already holds a finished run of 25 steps (config.json, event files, "
        "model.npz, summary.json, test/, train/); replace it with --overwrite or give another --logdir "
        "(it has no checkpoint to --resume from)\n"
    )


def test_an_unfinished_run_is_named_by_its_newest_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    framework.run(config(logdir))
    os.unlink(logdir / "summary.json")
    with pytest.raises(
        ConfigError,
        match=r"already holds an unfinished run, checkpointed at step 18 \(checkpoints/",
    ):
        framework.run(config(logdir))


# --- --overwrite -------------------------------------------------------------------------------


def test_overwrite_replaces_the_old_run_and_keeps_other_files(tmp_path):
    logdir = tmp_path / "run"
    framework.run(config(logdir, epochs=4))  # checkpoints up to step 36
    (logdir / "notes.txt").write_text("mine")
    # The run the issue saw mixed: fewer steps, `keep` pruning, into the same directory.
    summary = framework.run(config(logdir, epochs=1, keep=1), overwrite=True)
    assert summary["steps"] == 9
    assert [step for step, _ in list_checkpoints(logdir)] == [9]  # none of the old run's
    assert json.loads((logdir / "config.json").read_text())["train"]["epochs"] == 1
    assert (logdir / "notes.txt").read_text() == "mine"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir / "train"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == list(
        range(9)
    )  # the old run's steps are gone


def test_overwrite_with_bad_input_leaves_the_old_run_whole(tmp_path, capsys):
    toml = write_toml(tmp_path / "c.toml", tmp_path / "run")
    assert cli(capsys, toml)[0] == 0
    before = snapshot(tmp_path / "run")
    code, _, err = cli(capsys, toml, "--overwrite", "--set", "train.loss=crossentropy")
    assert code == 2 and "unknown loss 'crossentropy'" in err
    assert snapshot(tmp_path / "run") == before


def test_cli_overwrite(tmp_path, capsys):
    toml = write_toml(tmp_path / "c.toml", tmp_path / "run", epochs=3)
    assert cli(capsys, toml)[0] == 0
    code, out, err = cli(capsys, toml, "--overwrite", "--epochs", "1")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 9
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [5, 9]


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    code, _, err = cli(capsys, "--resume", "runs/a", "--overwrite")
    assert code == 2
    assert (
        err
        == "plugnet: error: --resume continues the run in runs/a and --overwrite would replace it: give one of them\n"
    )


# --- locks ---------------------------------------------------------------------------------------


def test_a_built_run_holds_its_directory_until_fit_ends(tmp_path):
    logdir = tmp_path / "run"
    experiment = build(config(logdir))
    assert in_use(logdir)
    for kwargs in ({}, {"overwrite": True}, {"resume": logdir}):
        with pytest.raises(
            ConfigError,
            match=f"^{re.escape(str(logdir))} is in use by another plugnet process \\(pid {os.getpid()}\\)",
        ):
            build(config(logdir), **kwargs)
    experiment.fit()
    assert not in_use(logdir)
    framework.run(config(logdir, epochs=3), resume=logdir)  # free again


def slow_run_command(logdir, sleep=0.05, epochs=1000, every=1):
    return [
        sys.executable, "-m", "framework", "train", "--quiet", "--plugin", "slow_plugin", "--logdir", str(logdir),
        "--epochs", str(epochs), "--set",
        f'train.callbacks=[{{type="checkpoint", every={every}, keep=2}}, {{type="slow", seconds={sleep}}}]',
    ]  # fmt: skip


def start(command, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SUPPORT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_checkpoint(process, logdir, timeout=120):
    """Block until the run in ``process`` has written a checkpoint: it holds its lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list_checkpoints(logdir):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended early ({process.returncode}): {process.communicate()[1]}")
        time.sleep(0.01)
    process.kill()
    pytest.fail("the run never wrote a checkpoint")


def test_a_live_process_locks_its_directory_and_sigkill_frees_it(tmp_path, capsys):
    logdir = tmp_path / "live"
    process = start(slow_run_command(logdir), tmp_path)
    try:
        wait_for_checkpoint(process, logdir)
        message = f"plugnet: error: {logdir} is in use by another plugnet process (pid {process.pid}); wait for it to end, or give another --logdir\n"
        for args in ([], ["--overwrite"]):
            code, _, err = cli(capsys, "--logdir", str(logdir), "--epochs", "1", *args)
            assert (code, err) == (2, message)
        code, _, err = cli(capsys, "--resume", str(logdir))
        assert (code, err) == (2, message)
        assert process.poll() is None  # the live run trains on, its files untouched
        assert json.loads((logdir / "config.json").read_text())["train"]["epochs"] == 1000
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert (logdir / LOCK_FILE).exists() and not in_use(logdir)  # the OS dropped the lock
    code, _, err = cli(capsys, "--logdir", str(logdir), "--epochs", "1", "--overwrite")
    assert code == 0, err
    assert json.loads((logdir / "summary.json").read_text())["steps"] == 25


def test_two_processes_started_together_one_runs_one_is_refused(tmp_path):
    logdir = tmp_path / "both"
    command = slow_run_command(logdir, sleep=0.0, epochs=2, every=5)
    first, second = start(command, tmp_path), start(command, tmp_path)
    results = sorted((p.wait(timeout=120), p.communicate()[1]) for p in (first, second))
    assert results[0] == (0, "")
    code, err = results[1]
    assert code == 2 and err.count("\n") == 1, err
    # refused early (in use) or, if the other had finished already, as holding its run
    assert (
        "is in use by another plugnet process" in err
        or "already holds a finished run of 50 steps" in err
    )
    assert [step for step, _ in list_checkpoints(logdir)] == [45, 50]
    assert json.loads((logdir / "summary.json").read_text())["steps"] == 50


def test_an_experiment_dropped_unfitted_frees_its_directory(tmp_path):
    import gc

    logdir = tmp_path / "run"
    experiment = build(config(logdir))
    assert in_use(logdir)
    del experiment
    gc.collect()
    assert not in_use(logdir)
    framework.run(config(logdir), overwrite=True)  # config.json alone counts as a run
