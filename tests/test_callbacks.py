"""The general built-in callbacks: progress, early_stopping, terminate_on_nan, csv_logger."""

import csv
import io
import json
import math
import re
import warnings

import numpy as np
import pytest

from framework import Callback, ConfigError, Sequential, Trainer, create, hookimpl
from framework.cli import main
from plugins.callbacks.early_stopping import EarlyStopping
from plugins.callbacks.progress import epochs_between_lines


def blobs(n, seed, spread=1.5):
    """Two overlapping Gaussian blobs: easy to overfit, so held-out loss turns back up."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) * spread + np.where(y[:, None] == 1, 1.0, -1.0)
    return x, y


def classifier(units=32, seed=0):
    return Sequential(
        [
            {"type": "dense", "units": units, "activation": "tanh"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
        input_shape=(2,),
        seed=seed,
    )


def overfitting_trainer(callbacks):
    return Trainer(
        classifier(),
        "cross_entropy",
        {"type": "sgd", "lr": 0.3, "momentum": 0.9},
        metrics=["accuracy"],
        callbacks=callbacks,
        seed=0,
    )


class ParamsPerEpoch(Callback):
    """Records the weights as each epoch ends, before any other callback acts on them."""

    def __init__(self):
        self.params = []

    @hookimpl(tryfirst=True)
    def on_epoch_end(self, trainer):
        self.params.append(trainer.model.get_params())


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


# --- early_stopping ----------------------------------------------------------------------------


def drive(stopper, values, monitor="val_loss", metrics=()):
    """Feed ``values`` of ``monitor`` to ``stopper`` epoch by epoch, as a trainer would, with
    the weights set to the epoch number; returns the trainer."""
    model = Sequential([{"type": "dense", "units": 1}], input_shape=(1,), dtype="float64", seed=0)
    trainer = Trainer(model, "mse", metrics=list(metrics))
    trainer.validation_data = (np.zeros((1, 1)), np.zeros(1))
    trainer.epochs = len(values) + 10
    stopper.on_train_begin(trainer)
    for epoch, value in enumerate(values):
        model.set_params(np.full(model.num_params, float(epoch)))
        trainer.epoch = epoch + 1
        stopper.on_epoch_end(trainer, epoch, {"loss": 0.0, monitor: value})
        if trainer.stop_training:
            break
    return trainer


@pytest.mark.parametrize(
    "values, params, stopped, best",
    [
        # improves at 0, 1 and 4; then three epochs without improvement
        ([1.0, 0.8, 0.9, 0.85, 0.79, 0.81, 0.82, 0.83, 0.5], dict(patience=3), 7, 4),
        # 0.79 is not better than 0.8 by more than min_delta, so epoch 4 is the third miss
        (
            [1.0, 0.8, 0.9, 0.85, 0.79, 0.81, 0.82, 0.83, 0.5],
            dict(patience=3, min_delta=0.05),
            4,
            1,
        ),
        # patience 0: the first epoch without improvement stops
        ([1.0, 0.8, 0.9, 0.5], dict(patience=0), 2, 1),
        # an equal value is no improvement
        ([1.0, 0.8, 0.8, 0.8], dict(patience=2), 3, 1),
        # NaN never improves
        ([1.0, math.nan, math.nan], dict(patience=2), 2, 0),
    ],
)
def test_patience_and_min_delta_count_epochs_without_improvement(values, params, stopped, best):
    stopper = EarlyStopping(verbose=False, **params)
    trainer = drive(stopper, values)
    assert trainer.stop_training
    assert (stopper.stopped_epoch, stopper.best_epoch) == (stopped, best)
    assert stopper.best == values[best]
    np.testing.assert_array_equal(
        trainer.model.get_params(), float(best)
    )  # the best epoch's weights
    assert trainer.stop_reason.startswith(
        f"early stopping at epoch {stopped + 1}: val_loss has not improved"
    )


def test_no_stop_while_improving():
    stopper = EarlyStopping(patience=1, verbose=False)
    trainer = drive(stopper, [5.0, 4.0, 3.0, 2.0])
    assert not trainer.stop_training and stopper.stopped_epoch is None and stopper.best_epoch == 3


def test_max_mode_for_accuracy():
    stopper = EarlyStopping(monitor="val_accuracy", patience=2, verbose=False)
    trainer = drive(
        stopper, [0.5, 0.6, 0.6, 0.55, 0.9], monitor="val_accuracy", metrics=["accuracy"]
    )
    assert stopper.direction == "max"
    assert (stopper.stopped_epoch, stopper.best_epoch) == (3, 1)
    np.testing.assert_array_equal(trainer.model.get_params(), 1.0)


class Score:
    higher_is_better = False

    def __call__(self, y_pred, y_true):
        return 0.0


@pytest.mark.parametrize(
    "monitor, mode, direction",
    [
        ("val_loss", "auto", "min"),
        ("loss", "auto", "min"),
        ("val_accuracy", "auto", "max"),
        ("mae", "auto", "min"),  # from the metric's higher_is_better
        ("val_score", "auto", "min"),  # a third-party metric that says lower is better
        ("val_loss", "max", "max"),  # an explicit mode wins
    ],
)
def test_direction_from_mode_metric_or_name(monitor, mode, direction):
    model = classifier()
    trainer = Trainer(model, "cross_entropy", metrics=["accuracy", "mae", Score()])
    trainer.validation_data = blobs(4, 1)
    stopper = EarlyStopping(monitor=monitor, mode=mode)
    stopper.on_train_begin(trainer)
    assert stopper.direction == direction


def test_stops_a_real_run_and_restores_the_best_epochs_weights(capsys):
    stopper = create("callbacks", "early_stopping", patience=5)
    recorder = ParamsPerEpoch()
    trainer = overfitting_trainer([stopper, recorder])
    history = trainer.fit(*blobs(40, 0), epochs=100, batch_size=8, validation_data=blobs(40, 1))
    val_loss = history["val_loss"]
    best = int(np.argmin(val_loss))
    assert len(val_loss) == best + 5 + 1 < 100  # stopped after five epochs without a better one
    assert stopper.best_epoch == best and stopper.stopped_epoch == best + 5
    np.testing.assert_array_equal(trainer.model.get_params(), recorder.params[best])
    # restored before the final held-out evaluation, so the test metrics are the best epoch's
    assert trainer.test_logs["loss"] == pytest.approx(val_loss[best], rel=1e-6)
    assert capsys.readouterr().err == (
        f"plugnet: early stopping at epoch {best + 6}: val_loss has not improved for 5 epochs; "
        f"restored the weights of epoch {best + 1} (val_loss {val_loss[best]:.4f})\n"
    )


def test_restores_the_best_weights_at_the_end_without_a_stop():
    recorder = ParamsPerEpoch()
    trainer = overfitting_trainer([EarlyStopping(patience=1000), recorder])
    history = trainer.fit(*blobs(40, 0), epochs=25, batch_size=8, validation_data=blobs(40, 1))
    best = int(np.argmin(history["val_loss"]))
    assert best < 24 and len(history["val_loss"]) == 25
    np.testing.assert_array_equal(trainer.model.get_params(), recorder.params[best])
    assert trainer.test_logs["loss"] == pytest.approx(history["val_loss"][best], rel=1e-6)


def test_restore_best_false_keeps_the_last_weights():
    recorder = ParamsPerEpoch()
    trainer = overfitting_trainer(
        [EarlyStopping(patience=5, restore_best=False, verbose=False), recorder]
    )
    trainer.fit(*blobs(40, 0), epochs=100, batch_size=8, validation_data=blobs(40, 1))
    assert trainer.stop_training
    np.testing.assert_array_equal(trainer.model.get_params(), recorder.params[-1])


def test_unknown_monitor_fails_before_the_first_step():
    trainer = Trainer(
        classifier(),
        "cross_entropy",
        metrics=["accuracy"],
        callbacks=[{"type": "early_stopping", "monitor": "val_los"}],
    )
    with pytest.raises(ConfigError) as error:
        trainer.fit(*blobs(20, 0), epochs=3, validation_data=blobs(10, 1))
    assert str(error.value) == (
        "early_stopping monitors 'val_los', which this run does not log; did you mean 'val_loss'? "
        "Logged values: loss, accuracy, val_loss, val_accuracy"
    )
    assert trainer.step == 0


def test_val_monitor_without_held_out_data_says_why():
    trainer = Trainer(classifier(), "cross_entropy", callbacks=["early_stopping"])
    with pytest.raises(ConfigError, match=r"Logged values: loss \(val_ values need held-out data"):
        trainer.fit(*blobs(20, 0), epochs=3)


def test_unknown_monitor_from_the_cli_is_one_message_and_exit_2(capsys):
    code = main(
        [
            "train",
            "--epochs",
            "2",
            "--quiet",
            "--logdir",
            "run",
            "--set",
            'train.callbacks=[{type = "early_stopping", monitor = "val_acc"}]',
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "plugnet: error: early_stopping monitors 'val_acc', which this run does not log; did you mean "
        "'val_accuracy'? Logged values: loss, accuracy, val_loss, val_accuracy\n"
    )


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(mode="up"), "'mode' must be in"),
        (dict(patience=-1), "'patience' must be >= 0"),
        (dict(patience=2.5), "'patience' must be <class 'int'>"),
        (dict(min_delta=-0.1), "'min_delta' must be >= 0"),
    ],
)
def test_bad_parameters_name_the_callback(params, message):
    with pytest.raises(ConfigError, match="callback 'early_stopping'") as error:
        create("callbacks", "early_stopping", **params)
    assert message in str(error.value)


# --- terminate_on_nan -------------------------------------------------------------------------


def diverging_trainer(callbacks=()):
    """Linear regression with a step size far past stability: the loss grows geometrically
    until it overflows float32."""
    model = Sequential([{"type": "dense", "units": 1}], input_shape=(3,), seed=0)
    return Trainer(model, "mse", {"type": "sgd", "lr": 5.0}, callbacks=list(callbacks), seed=0)


def regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    return x, x @ np.array([1.0, -2.0, 0.5])


class StepLosses(Callback):
    def __init__(self):
        self.losses = []

    @hookimpl
    def on_batch_end(self, logs):
        self.losses.append(logs["loss"])


def test_terminate_on_nan_stops_at_the_first_non_finite_step_and_names_it(capsys):
    reference = StepLosses()
    with np.errstate(all="ignore"):
        diverging_trainer([reference]).fit(*regression_data(), epochs=40, batch_size=4)
    bad = next(step for step, loss in enumerate(reference.losses) if not math.isfinite(loss))
    assert bad > 8  # it takes a few epochs to overflow, so the step is not trivially the first

    guard = create("callbacks", "terminate_on_nan")
    trainer = diverging_trainer([guard])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings are silenced while it watches
        trainer.fit(*regression_data(), epochs=40, batch_size=4)
    assert trainer.step == bad + 1 and guard.stopped_step == bad
    reason = (
        f"training stopped at step {bad}: loss is {reference.losses[bad]} (epoch {bad // 8 + 1})"
    )
    assert trainer.stop_reason == reason
    assert capsys.readouterr().err == f"plugnet: {reason}\n"
    assert np.geterr()["over"] == "warn"  # numpy's settings are given back


def test_a_diverging_cli_run_ends_cleanly_with_its_summary(tmp_path, capsys):
    config = tmp_path / "diverge.toml"
    config.write_text(
        """
seed = 0
[data]
type = "regression"
n_samples = 200
n_features = 5
test_fraction = 0.2
target_scale = "standard"
[model]
layers = [{ type = "dense", units = 8, activation = "relu" }, { type = "dense", units = 1 }]
[train]
loss = "mse"
optimizer = { type = "sgd", lr = 5.0 }
epochs = 50
batch_size = 16
callbacks = ["terminate_on_nan"]
"""
    )
    code = main(["train", str(config), "--quiet", "--logdir", "run"])
    out, err = capsys.readouterr()
    assert code == 0
    match = re.fullmatch(
        r"plugnet: training stopped at step (\d+): loss is (nan|inf) \(epoch 1\)\n", err
    )
    assert match, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == int(match.group(1)) + 1 and summary["epochs"] == 0
    assert summary["train"]["loss"] is None  # strict JSON: the non-finite loss is null
    assert "trained 0 epochs" in out


# --- csv_logger --------------------------------------------------------------------------------


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.reader(file))


def test_csv_rows_equal_the_history(tmp_path):
    trainer = Trainer(
        classifier(4),
        "cross_entropy",
        metrics=["accuracy"],
        callbacks=["csv_logger"],
        logdir=str(tmp_path / "run"),
    )
    history = trainer.fit(*blobs(30, 0), epochs=4, batch_size=8, validation_data=blobs(10, 1))
    header, *rows = read_csv(tmp_path / "run" / "history.csv")
    assert header == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [int(row[0]) for row in rows] == [0, 1, 2, 3]
    for column, key in enumerate(header[1:], start=1):
        assert [float(row[column]) for row in rows] == history[key]  # exact: floats round-trip


def test_csv_without_logdir_goes_to_the_current_directory(tmp_path):
    logger = create("callbacks", "csv_logger", filename="log.csv", separator=";")
    Trainer(classifier(4), "cross_entropy", callbacks=[logger]).fit(*blobs(10, 0), epochs=2)
    assert logger.path == "log.csv"
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "epoch;loss"


def test_csv_append_adds_rows_under_one_header(tmp_path):
    path = str(tmp_path / "abs" / "h.csv")  # absolute: used as given, not under the logdir
    for _ in range(2):
        trainer = Trainer(
            classifier(4),
            "cross_entropy",
            callbacks=[{"type": "csv_logger", "filename": path, "append": True}],
            logdir="elsewhere",
        )
        trainer.fit(*blobs(10, 0), epochs=3)
    header, *rows = read_csv(path)
    assert header == ["epoch", "loss"] and [row[0] for row in rows] == ["0", "1", "2"] * 2


def test_csv_append_to_a_file_with_other_columns_is_refused(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,accuracy\n0,1.0,0.5\n")
    trainer = Trainer(
        classifier(4), "cross_entropy", callbacks=[{"type": "csv_logger", "append": True}]
    )
    with pytest.raises(
        ConfigError,
        match="history.csv has the columns epoch, loss, accuracy, but this run logs epoch, loss;",
    ):
        trainer.fit(*blobs(10, 0), epochs=1)
    assert (tmp_path / "history.csv").read_text() == "epoch,loss,accuracy\n0,1.0,0.5\n"


def test_csv_is_flushed_each_epoch_and_closed_on_exception(tmp_path):
    rows_seen = []

    class Watch(Callback):
        @hookimpl(trylast=True)
        def on_epoch_end(self, epoch):
            rows_seen.append(len(read_csv(tmp_path / "history.csv")))
            if epoch == 2:
                raise RuntimeError("boom")

    logger = create("callbacks", "csv_logger")
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(classifier(4), "cross_entropy", callbacks=[logger, Watch()]).fit(
            *blobs(10, 0), epochs=5
        )
    assert rows_seen == [2, 3, 4]  # header + one row per finished epoch, readable at once
    assert logger._file is None


# --- progress ----------------------------------------------------------------------------------


LINE = re.compile(
    r"epoch +(\d+)/(\d+)  loss (\S+)  accuracy (\S+)  val_loss (\S+)  val_accuracy (\S+)"
)


def test_progress_prints_a_line_per_epoch_off_a_terminal(capsys):
    trainer = Trainer(classifier(4), "cross_entropy", metrics=["accuracy"], callbacks=["progress"])
    history = trainer.fit(*blobs(30, 0), epochs=3, batch_size=8, validation_data=blobs(10, 1))
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        match = LINE.fullmatch(line)
        assert match, line
        assert match.group(1, 2) == (str(epoch + 1), "3")
        for value, key in zip(
            match.groups()[2:], ["loss", "accuracy", "val_loss", "val_accuracy"], strict=True
        ):
            assert float(value) == pytest.approx(history[key][epoch], abs=5.1e-5)


@pytest.mark.parametrize(
    "epochs, every",
    [(1, 1), (60, 1), (100, 1), (101, 2), (250, 5), (1000, 10), (1001, 20), (50000, 500)],
)
def test_long_runs_print_about_a_hundred_lines(epochs, every):
    assert epochs_between_lines(epochs) == every
    assert math.ceil(epochs / every) <= 100


def lines_for(epochs, capsys, callbacks=(), **params):
    progress = create("callbacks", "progress", **params)
    trainer = Trainer(classifier(4), "cross_entropy", callbacks=[*callbacks, progress])
    trainer.fit(*blobs(10, 0), epochs=epochs)  # full batch: one step per epoch
    return [int(line.split()[1].split("/")[0]) for line in capsys.readouterr().err.splitlines()]


def test_a_long_run_prints_the_first_every_nth_and_last_epoch(capsys):
    assert lines_for(250, capsys, every_seconds=None) == [1, *range(5, 251, 5)]
    assert lines_for(23, capsys, every=10) == [1, 10, 20, 23]
    assert lines_for(23, capsys, every=10, every_seconds=0) == list(
        range(1, 24)
    )  # slow epochs all print


def test_an_early_stop_prints_the_epoch_it_stopped_on(capsys):
    class StopAt(Callback):
        @hookimpl
        def on_epoch_end(self, trainer, epoch):
            if epoch == 16:
                trainer.stop_training = True

    assert lines_for(100, capsys, [StopAt()], every=10, every_seconds=None) == [1, 10, 17]


def test_progress_draws_a_bar_on_a_terminal():
    terminal = FakeTerminal()
    trainer = Trainer(
        classifier(4),
        "cross_entropy",
        metrics=["accuracy"],
        callbacks=[{"type": "progress", "file": terminal}],
    )
    history = trainer.fit(*blobs(30, 0), epochs=3, batch_size=8)
    text = terminal.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and "epoch 1/3  loss" not in text
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("epoch 3/3: 100%|") and " 12/12 [" in last
    assert f"loss={history['loss'][-1]:.4g}, accuracy={history['accuracy'][-1]:.4g}]" in last


@pytest.mark.parametrize("bar, terminal, drawn", [(True, False, True), (False, True, False)])
def test_bar_option_overrides_the_terminal_test(bar, terminal, drawn):
    stream = FakeTerminal() if terminal else io.StringIO()
    Trainer(
        classifier(4),
        "cross_entropy",
        callbacks=[create("callbacks", "progress", bar=bar, file=stream)],
    ).fit(*blobs(10, 0), epochs=2)
    assert ("100%|" in stream.getvalue()) is drawn
    assert stream.getvalue().startswith("epoch 1/2  loss") is not drawn


def test_the_bar_is_closed_where_training_failed():
    class Boom(Callback):
        @hookimpl
        def on_batch_end(self, step):
            if step == 5:
                raise RuntimeError("boom")

    terminal = FakeTerminal()
    progress = create("callbacks", "progress", file=terminal)
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(classifier(4), "cross_entropy", callbacks=[progress, Boom()]).fit(
            *blobs(30, 0), epochs=3, batch_size=8
        )
    text = terminal.getvalue()
    assert text.endswith("\n")  # the error prints on a line of its own
    assert " 6/12 [" in text.rstrip("\n").split("\r")[-1]
    assert progress._bar is None


def test_cli_prints_epoch_lines_unless_quiet(capsys):
    assert main(["train", "--epochs", "3", "--logdir", "run"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("  ")[0] for line in err.splitlines()] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    assert out.startswith("trained 3 epochs")
    assert main(["train", "--epochs", "3", "--logdir", "run", "--quiet", "--overwrite"]) == 0
    assert capsys.readouterr().err == ""
