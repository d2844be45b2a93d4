"""Checkpoints: what a file holds, keeping the last K, exact resume, torn and hostile files."""

import copy
import json
import logging
import os
import pickle
import time

import numpy as np
import pytest
from cli_checks import cli_error  # tests/support

import framework
from framework import Callback, ConfigError, DataError, create, hookimpl
from framework.checkpoints import (
    decode_tree,
    encode_tree,
    latest_whole_checkpoint,
    list_checkpoints,
    load_checkpoint,
    resume,
    save_checkpoint,
)
from framework.cli import main
from framework.run import build

SGD_MOMENTUM = {"type": "sgd", "lr": 0.1, "momentum": 0.9}
ADAM = {"type": "adam", "lr": 0.01}
DENSE = [
    {"type": "dense", "units": 8, "activation": "tanh"},
    {"type": "dense", "units": 2, "activation": "softmax"},
]
WITH_DROPOUT = [
    {"type": "dense", "units": 8, "activation": "relu"},
    {"type": "dropout", "rate": 0.3},
    {"type": "dense", "units": 2, "activation": "softmax"},
]


def make_config(
    logdir, optimizer=SGD_MOMENTUM, layers=DENSE, epochs=4, batch_size=16, every=4, keep=0
):
    """90 training samples in batches of 16: 6 steps an epoch, the last one short, so
    checkpoints every 4 steps fall mid-epoch."""
    return {
        "seed": 3,
        "data": {"type": "moons", "n_samples": 120, "noise": 0.2, "test_fraction": 0.25},
        "model": {"layers": copy.deepcopy(layers)},
        "train": {
            "loss": "cross_entropy",
            "optimizer": dict(optimizer),
            "epochs": epochs,
            "batch_size": batch_size,
            "metrics": ["accuracy"],
            "callbacks": [{"type": "checkpoint", "every": every, "keep": keep}],
        },
        "logging": {"logdir": str(logdir)},
    }


class CrashAt(Callback):
    """Stands in for a crash: raises once training has done ``step`` steps."""

    def __init__(self, step):
        self.crash_step = step

    @hookimpl
    def on_batch_end(self, trainer):
        if trainer.step == self.crash_step:
            raise RuntimeError(f"crash at step {trainer.step}")


def run_until_crash(config, step):
    experiment = build(config)
    experiment.trainer.add_callback(CrashAt(step))
    with pytest.raises(RuntimeError, match="crash at step"):
        experiment.fit()


def final_params(logdir):
    step, path = list_checkpoints(logdir)[-1]
    return step, load_checkpoint(path)["params"]


def assert_same_params(got, expected):
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=1e-6, err_msg=key)


# --- what a checkpoint holds --------------------------------------------------------------------


def test_checkpoint_files_hold_parameters_optimizer_counters_and_generators(tmp_path):
    config = make_config(tmp_path / "run", ADAM, epochs=2, every=4)
    experiment = build(config)
    experiment.fit()
    trainer = experiment.trainer
    logdir = tmp_path / "run"
    # every 4 steps, and the end (12 steps: 2 epochs of 6)
    assert [step for step, _ in list_checkpoints(logdir)] == [4, 8, 12]
    with np.load(logdir / "checkpoints" / "step-8.npz", allow_pickle=False) as raw:
        assert int(raw["step"]) == 8 and int(raw["epoch"]) == 1 and int(raw["batch_in_epoch"]) == 2
        assert {"dense_0/weights", "dense_0/bias", "dense_1/weights", "dense_1/bias"} <= set(
            raw.files
        )
        state = json.loads(str(raw["state"]))
    assert state["optimizer"]["t"] == 8 and state["optimizer_kind"] == "adam"
    assert state["optimizer"]["m.0"] == {"__array__": "state/optimizer/m.0"}
    assert state["rng"]["data"]["bit_generator"] == "PCG64"
    assert state["epoch_seen"] == 2 * 16  # two batches of the second epoch
    assert state["history"]["loss"] == trainer.history["loss"][:1]
    # the seconds trained so far, the running fit's included
    seconds = [
        load_checkpoint(logdir / "checkpoints" / f"step-{n}.npz")["state"]["seconds"]
        for n in (4, 8, 12)
    ]
    assert 0 < seconds[0] < seconds[1] < seconds[2] <= trainer.seconds

    last = load_checkpoint(logdir / "checkpoints" / "step-12.npz")
    assert (last["step"], last["epoch"], last["batch_in_epoch"]) == (12, 2, 0)
    assert_same_params(last["params"], trainer.model.state_dict())
    optimizer_state = trainer.optimizer.state_dict()
    assert last["state"]["optimizer"]["t"] == optimizer_state["t"] == 12
    np.testing.assert_array_equal(last["state"]["optimizer"]["v.2"], optimizer_state["v.2"])
    assert last["state"]["rng"]["data"] == trainer.rng.bit_generator.state
    assert last["state"]["rng"]["model"] == trainer.model.rng.bit_generator.state


def test_keep_leaves_only_the_newest(tmp_path):
    build(make_config(tmp_path, epochs=3, every=2, keep=2)).fit()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [16, 18]


def test_without_every_only_the_end_is_saved(tmp_path):
    config = make_config(tmp_path, epochs=2)
    config["train"]["callbacks"] = ["checkpoint"]
    build(config).fit()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [12]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"every": 0}, "every must be a positive integer, got 0"),
        ({"every": 2.5}, "every must be a positive integer, got 2.5"),
        ({"every": True}, "every must be a positive integer, got True"),
        ({"keep": -1}, "keep must be an integer >= 0, got -1"),
        ({"evry": 3}, "callback 'checkpoint' has no parameter 'evry'; did you mean 'every'?"),
    ],
)
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match="callback 'checkpoint'") as info:
        create("callbacks", "checkpoint", **params)
    assert message in str(info.value)


def test_checkpoint_needs_a_logdir():
    model = framework.Sequential(DENSE, input_shape=(2,))
    trainer = framework.Trainer(model, "cross_entropy", callbacks=["checkpoint"])
    with pytest.raises(ConfigError, match="needs the trainer's logdir"):
        trainer.fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]), epochs=1)


def test_nested_state_round_trips_big_integers_and_arrays():
    generator = np.random.Generator(np.random.MT19937(5))
    value = {
        "pcg": np.random.default_rng(7).bit_generator.state,  # 128-bit integers
        "mt": generator.bit_generator.state,  # an array of 624 words
        "scalar": np.float32(0.5),
        "list": [1, 2.5, None, "text", True],
    }
    arrays = {}
    skeleton = json.loads(json.dumps(encode_tree(value, "s", arrays)))
    back = decode_tree(skeleton, arrays)
    assert back["pcg"] == value["pcg"] and back["pcg"]["state"]["state"] > 2**64
    np.testing.assert_array_equal(back["mt"]["state"]["key"], value["mt"]["state"]["key"])
    assert back["scalar"] == np.float32(0.5) and back["scalar"].dtype == np.float32
    assert back["list"] == value["list"]
    generator.random(3)
    generator.bit_generator.state = back["mt"]
    assert generator.random() == np.random.Generator(np.random.MT19937(5)).random()
    with pytest.raises(TypeError, match="'s/bad' is of type set"):
        encode_tree({"bad": {1}}, "s", {})


# --- exact resume ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer, layers, batch_size, crash_step",
    [
        (SGD_MOMENTUM, DENSE, 16, 10),  # mid-epoch: last checkpoint at step 8, epoch 1 batch 2
        (ADAM, DENSE, 16, 13),  # last checkpoint at 12: an epoch boundary
        (ADAM, WITH_DROPOUT, 16, 15),  # dropout masks continue from the saved generator
        ({"type": "sgd", "lr": 0.05, "momentum": 0.5, "nesterov": True}, WITH_DROPOUT, 1, 200),
    ],
    ids=["sgd-momentum", "adam", "adam-dropout", "per-sample-nesterov-dropout"],
)
def test_resume_after_a_crash_reaches_the_uninterrupted_weights(
    tmp_path, optimizer, layers, batch_size, crash_step
):
    straight = make_config(tmp_path / "straight", optimizer, layers, batch_size=batch_size)
    expected = framework.run(straight)
    expected_step, expected_params = final_params(tmp_path / "straight")

    crashed = make_config(tmp_path / "crashed", optimizer, layers, batch_size=batch_size)
    run_until_crash(crashed, crash_step)
    newest = list_checkpoints(tmp_path / "crashed")[-1][0]
    assert newest < crash_step  # something is left to redo

    summary = framework.run(resume=tmp_path / "crashed")
    step, params = final_params(tmp_path / "crashed")
    assert step == expected_step
    assert_same_params(params, expected_params)
    assert summary["train"] == pytest.approx(expected["train"], abs=1e-9)
    assert summary["test"] == pytest.approx(expected["test"], abs=1e-9)
    assert (summary["steps"], summary["epochs"]) == (expected["steps"], expected["epochs"])


def test_resume_twice_and_with_more_epochs(tmp_path):
    expected = framework.run(make_config(tmp_path / "straight", ADAM, WITH_DROPOUT, epochs=6))
    _, expected_params = final_params(tmp_path / "straight")

    config = make_config(tmp_path / "run", ADAM, WITH_DROPOUT, epochs=4)
    run_until_crash(config, 7)
    config_resumed = build(config, resume=tmp_path / "run")
    config_resumed.trainer.add_callback(CrashAt(19))
    with pytest.raises(RuntimeError):
        config_resumed.fit()
    finished = framework.run(resume=tmp_path / "run")  # the saved config: 4 epochs
    assert finished["epochs"] == 4
    longer = dict(config, train={**config["train"], "epochs": 6})
    summary = framework.run(longer, resume=tmp_path / "run")
    assert summary["train"] == pytest.approx(expected["train"], abs=1e-9)
    assert_same_params(final_params(tmp_path / "run")[1], expected_params)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["epochs"] == 6


class StepAtBegin(Callback):
    def __init__(self):
        self.seen = None

    @hookimpl
    def on_train_begin(self, trainer):
        self.seen = (trainer.step, trainer.epoch, trainer.batch_in_epoch, trainer.resumed_from_step)


def test_counters_are_restored_before_train_begin(tmp_path):
    config = make_config(tmp_path, epochs=3)
    run_until_crash(config, 10)
    experiment = build(config, resume=tmp_path)
    recorder = experiment.trainer.add_callback(StepAtBegin())
    experiment.fit()
    assert recorder.seen == (8, 1, 2, 8)


def test_resume_with_the_trainer_api(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)

    def trainer(logdir="api"):
        model = framework.Sequential(WITH_DROPOUT, input_shape=(2,), seed=1)
        return framework.Trainer(
            model,
            "cross_entropy",
            ADAM,
            callbacks=[{"type": "checkpoint", "every": 3}],
            logdir=str(tmp_path / logdir),
            seed=2,
        )

    straight = trainer("straight")
    straight.fit(x, y, epochs=3, batch_size=8)
    interrupted = trainer()
    interrupted.add_callback(CrashAt(7))
    with pytest.raises(RuntimeError):
        interrupted.fit(x, y, epochs=3, batch_size=8)
    resumed = trainer()
    assert resume(resumed, tmp_path / "api").endswith("step-6.npz")
    resumed.fit(x, y, epochs=3, batch_size=8, initial_epoch=resumed.epoch)  # 3 in all
    assert_same_params(resumed.model.state_dict(), straight.model.state_dict())
    assert resumed.history == straight.history


# --- the command line --------------------------------------------------------------------------


def write_toml(path, logdir, epochs=3, every=5):
    path.write_text(
        f"""seed = 1
[data]
type = "moons"
n_samples = 100
test_fraction = 0.2
[model]
layers = [{{ type = "dense", units = 6, activation = "tanh" }}, {{ type = "dense", units = 2, activation = "softmax" }}]
[train]
loss = "cross_entropy"
optimizer = {{ type = "adam", lr = 0.02 }}
epochs = {epochs}
batch_size = 16
callbacks = [{{ type = "checkpoint", every = {every}, keep = 3 }}]
[logging]
logdir = "{logdir}"
"""
    )
    return str(path)


def test_cli_resume_continues_from_the_saved_config(tmp_path, capsys):
    config = write_toml(tmp_path / "c.toml", "runs/a", epochs=3)
    assert main(["train", config, "--quiet"]) == 0
    assert main(["train", config, "--quiet", "--epochs", "5", "--logdir", "runs/b"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "runs/a", "--epochs", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming runs/a from step 15 (epoch 3)" in out  # the end's checkpoint: epoch done
    a = json.loads((tmp_path / "runs/a/summary.json").read_text())
    b = json.loads((tmp_path / "runs/b/summary.json").read_text())
    assert a["steps"] == b["steps"] == 25
    assert a["train"] == pytest.approx(b["train"], abs=1e-9) and a["test"] == pytest.approx(
        b["test"], abs=1e-9
    )
    assert_same_params(final_params(tmp_path / "runs/a")[1], final_params(tmp_path / "runs/b")[1])


def test_cli_resume_errors(tmp_path, capsys):
    assert "run directory not found: nowhere" in cli_error(capsys, "train", "--resume", "nowhere")
    os.mkdir("empty")
    assert "empty holds no config.json" in cli_error(capsys, "train", "--resume", "empty")
    config = write_toml(tmp_path / "c.toml", "runs/a", epochs=1)
    assert main(["train", config, "--quiet", "--set", "train.callbacks=[]"]) == 0
    err = cli_error(capsys, "train", "--resume", "runs/a")
    assert "no checkpoint to resume from in runs/a/checkpoints" in err
    assert "drop --logdir runs/b" in cli_error(
        capsys, "train", "--resume", "runs/a", "--logdir", "runs/b"
    )


def test_cli_resume_into_a_different_model_is_refused(tmp_path, capsys):
    config = write_toml(tmp_path / "c.toml", "runs/a", epochs=1)
    assert main(["train", config, "--quiet"]) == 0
    before = (tmp_path / "runs/a/config.json").read_text()
    err = cli_error(capsys, "train", "--resume", "runs/a", "--set", "model.layers.0.units=7")
    assert (
        "runs/a/checkpoints/step-5.npz: dense_0/weights has shape (2, 6), the model's is (2, 7)"
        in err
    )
    assert (tmp_path / "runs/a/config.json").read_text() == before  # nothing rewritten
    err = cli_error(
        capsys, "train", "--resume", "runs/a", "--set", "train.optimizer.type=sgd", "--quiet"
    )
    assert "written with optimizer 'adam'; this run uses 'sgd'" in err


# --- torn and hostile files --------------------------------------------------------------------


def test_torn_newest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    straight = make_config(tmp_path / "straight", ADAM, WITH_DROPOUT)
    framework.run(straight)
    config = make_config(tmp_path / "run", ADAM, WITH_DROPOUT)
    run_until_crash(config, 15)
    newest = tmp_path / "run" / "checkpoints" / "step-12.npz"
    newest.write_bytes(newest.read_bytes()[:300])  # torn by a disk failure
    with caplog.at_level(logging.WARNING, logger="plugnet.checkpoints"):
        assert load_checkpoint(latest_whole_checkpoint(tmp_path / "run")["path"])["step"] == 8
    assert "skipping unreadable checkpoint" in caplog.text and "step-12.npz" in caplog.text
    assert "resuming from" in caplog.text and "step-8.npz" in caplog.text
    framework.run(resume=tmp_path / "run")
    assert_same_params(final_params(tmp_path / "run")[1], final_params(tmp_path / "straight")[1])


def test_no_whole_checkpoint_is_exit_2(tmp_path, capsys):
    config = write_toml(tmp_path / "c.toml", "runs/a", epochs=1, every=2)
    assert main(["train", config, "--quiet"]) == 0
    for _, path in list_checkpoints("runs/a"):
        with open(path, "r+b") as f:
            f.truncate(100)
    before = {
        name: (tmp_path / "runs/a" / name).read_bytes() for name in ("config.json", "summary.json")
    }
    err = cli_error(capsys, "train", "--resume", "runs/a")
    assert "no whole checkpoint in runs/a/checkpoints: every one is unreadable" in err
    assert "step-5.npz is not a readable .npz file" in err  # the newest is named
    for name, content in before.items():
        assert (tmp_path / "runs/a" / name).read_bytes() == content


class Payload:
    """Unpickling this would create the file ``pwned``."""

    def __reduce__(self):
        return (open, ("pwned", "w"))


def test_object_arrays_are_refused_and_never_run(tmp_path, caplog):
    framework.run(make_config(tmp_path, epochs=1, every=3))
    good = load_checkpoint(tmp_path / "checkpoints" / "step-6.npz")
    hostile = {
        key: value for key, value in np.load(tmp_path / "checkpoints" / "step-6.npz").items()
    }
    hostile["dense_0/bias"] = np.array([Payload()], dtype=object)
    path = tmp_path / "checkpoints" / "step-99.npz"
    np.savez(path, **hostile)  # numpy pickles the object array
    assert b"pwned" in path.read_bytes()
    with pytest.raises(
        DataError, match="holds an object .pickled. array; plugnet refuses to load it"
    ):
        load_checkpoint(path)
    with caplog.at_level(logging.WARNING, logger="plugnet.checkpoints"):
        assert latest_whole_checkpoint(tmp_path)["step"] == good["step"] == 6
    assert "step-99.npz" in caplog.text
    assert not os.path.exists("pwned")
    with pytest.raises(DataError, match="holds an object"):
        framework.Sequential(DENSE, input_shape=(2,)).load_weights(path)
    assert not os.path.exists("pwned")
    assert pickle.dumps(Payload())  # the payload is real: pickling works


def test_foreign_npz_is_not_a_checkpoint(tmp_path):
    np.savez(tmp_path / "step-1.npz", weights=np.zeros(3))
    with pytest.raises(
        DataError, match="is not a plugnet checkpoint: it has no step, epoch, batch_in_epoch, state"
    ):
        load_checkpoint(tmp_path / "step-1.npz")
    np.savez(
        tmp_path / "step-2.npz", step=1, epoch=0, batch_in_epoch=0, state=np.array("{not json")
    )
    with pytest.raises(DataError, match="is not a readable plugnet checkpoint"):
        load_checkpoint(tmp_path / "step-2.npz")
    np.savez(tmp_path / "step-3.npz", step=-1, epoch=0, batch_in_epoch=0, state=np.array("{}"))
    with pytest.raises(DataError, match="'step' must be a non-negative integer"):
        load_checkpoint(tmp_path / "step-3.npz")
    (tmp_path / "step-4.npz").write_bytes(b"not an archive at all")
    with pytest.raises(
        DataError, match="is not a readable .npz file: it is neither a zip archive nor numpy data"
    ):
        load_checkpoint(tmp_path / "step-4.npz")
    (tmp_path / "step-5.npz").write_bytes(pickle.dumps({"step": 1}))
    with pytest.raises(DataError, match="is a Python pickle; plugnet refuses to load it"):
        load_checkpoint(tmp_path / "step-5.npz")


def test_stale_temporary_files_are_removed_on_start(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / ".tmp-abc123step-4.npz").write_bytes(b"half a file")
    framework.run(make_config(tmp_path, epochs=1))
    assert sorted(os.listdir(directory)) == ["step-4.npz", "step-6.npz"]


def test_save_checkpoint_refuses_state_that_needs_pickle(tmp_path):
    experiment = build(make_config(tmp_path, epochs=1))

    class Weird(Callback):
        def state_dict(self):
            return {"when": object()}

    experiment.trainer.add_callback(Weird())
    with pytest.raises(
        ConfigError,
        match="cannot write a checkpoint: 'state/callbacks/weird/when' is of type object",
    ):
        save_checkpoint(experiment.trainer, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


class Counter(Callback):
    """A callback with state that must survive a resume."""

    def __init__(self):
        self.batches = 0

    @hookimpl
    def on_batch_end(self):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]


def test_callback_state_is_saved_and_restored(tmp_path):
    config = make_config(tmp_path, epochs=2)
    experiment = build(config)
    experiment.trainer.add_callback(Counter())
    experiment.trainer.add_callback(CrashAt(10))
    with pytest.raises(RuntimeError):
        experiment.fit()
    saved = load_checkpoint(tmp_path / "checkpoints" / "step-8.npz")["state"]["callbacks"]
    assert saved == {"counter": {"batches": 8}}
    fresh = build(config, resume=tmp_path)
    counter = fresh.trainer.add_callback(Counter())
    resume(fresh.trainer, tmp_path)  # again, now that the counter is there to restore
    assert counter.batches == 8
    fresh.fit()
    assert counter.batches == 12


# --- TensorBoard after a resume ----------------------------------------------------------------


def scalar_series(logdir, writer, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(os.path.join(logdir, writer), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_tensorboard_continues_at_the_restored_step(tmp_path):
    def with_tensorboard(logdir):
        config = make_config(logdir, ADAM, WITH_DROPOUT, epochs=3)
        config["train"]["callbacks"].append(
            {"type": "tensorboard", "scalar_every": 1, "histogram_every": 0}
        )
        config["train"]["evaluate_every"] = 5
        return config

    framework.run(with_tensorboard(tmp_path / "straight"))
    config = with_tensorboard(tmp_path / "run")
    run_until_crash(config, 11)  # steps 0-10 logged; the checkpoint is at 8 steps done
    # tensorboardX names event files by the second: a resume within the same second as the
    # crash would reuse (and truncate) the crashed run's file unless the writer is given a
    # unique filename_suffix, so the resume here starts in the next second.
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
    framework.run(resume=tmp_path / "run")
    for writer, tag in (("train", "loss"), ("test", "loss"), ("train", "dense_0/weights/mean")):
        expected = scalar_series(tmp_path / "straight", writer, tag)
        got = scalar_series(tmp_path / "run", writer, tag)
        steps = [step for step, _ in got]
        assert steps == sorted(set(steps)), f"{writer}/{tag}: repeated or rewound steps"
        assert steps == [step for step, _ in expected], f"{writer}/{tag}"
        np.testing.assert_allclose(
            [v for _, v in got], [v for _, v in expected], rtol=1e-6, err_msg=f"{writer}/{tag}"
        )


def test_resume_keeps_early_stopping_state_and_csv_rows(tmp_path):
    """early_stopping's patience count and best weights, and csv_logger's rows, continue
    across a crash as if there had been none."""

    def config(logdir):
        c = make_config(logdir, epochs=30, every=6)
        c["train"]["optimizer"] = {"type": "sgd", "lr": 2.0, "momentum": 0.9}  # noisy: stops early
        c["train"]["callbacks"] += [
            {"type": "early_stopping", "monitor": "val_loss", "patience": 3, "verbose": False},
            "csv_logger",
        ]
        return c

    expected = framework.run(config(tmp_path / "straight"))
    assert expected["epochs"] < 30  # it did stop early
    run_until_crash(config(tmp_path / "crashed"), 6 * (expected["epochs"] - 1) + 3)
    summary = framework.run(resume=tmp_path / "crashed")
    assert (summary["steps"], summary["epochs"]) == (expected["steps"], expected["epochs"])
    assert summary["test"] == pytest.approx(expected["test"], abs=1e-9)
    straight_csv = (tmp_path / "straight" / "history.csv").read_text()
    assert (tmp_path / "crashed" / "history.csv").read_text() == straight_csv


def test_written_files_get_the_mode_new_files_get(tmp_path):
    """Not mkstemp's 0600: a sweep's or a run's files on a shared disk stay readable."""
    from framework.storage import save_json

    old = os.umask(0o027)
    try:
        save_json(tmp_path / "summary.json", {"loss": 1.0})
        framework.save_arrays(tmp_path / "weights.npz", {"w": np.zeros(2)})
    finally:
        os.umask(old)
    for name in ("summary.json", "weights.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name
