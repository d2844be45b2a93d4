"""The `lr_schedule` callback: its rates (against PyTorch's schedulers), exact resume, what it
logs, and its config errors."""

import copy
import csv

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import framework
from framework import Callback, ConfigError, create, hookimpl
from framework.checkpoints import list_checkpoints, load_checkpoint
from framework.cli import main
from framework.run import build


def schedule(total, peak=0.1, **params):
    """An `lr_schedule` ready to give rates, without a trainer."""
    callback = create("callbacks", "lr_schedule", **params)
    callback.peak, callback.length = peak, total
    return callback


def torch_rates(make_scheduler, steps, lr=0.1):
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(torch.optim.lr_scheduler, optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    "params, make_scheduler",
    [
        ({"schedule": "cosine"}, lambda s, o: s.CosineAnnealingLR(o, T_max=40)),
        (
            {"schedule": "cosine", "min_lr": 0.01},
            lambda s, o: s.CosineAnnealingLR(o, T_max=40, eta_min=0.01),
        ),
        (
            {"schedule": "step", "step_size": 7, "gamma": 0.5},
            lambda s, o: s.StepLR(o, step_size=7, gamma=0.5),
        ),
        ({"schedule": "step", "step_size": 10}, lambda s, o: s.StepLR(o, step_size=10)),
        ({"schedule": "exponential", "gamma": 0.9}, lambda s, o: s.ExponentialLR(o, gamma=0.9)),
        (
            {"schedule": "one_cycle"},
            lambda s, o: s.OneCycleLR(o, max_lr=0.1, total_steps=40, cycle_momentum=False),
        ),
        (
            {
                "schedule": "one_cycle",
                "pct_start": 0.5,
                "div_factor": 10.0,
                "final_div_factor": 100.0,
            },
            lambda s, o: s.OneCycleLR(
                o,
                max_lr=0.1,
                total_steps=40,
                pct_start=0.5,
                div_factor=10,
                final_div_factor=100,
                cycle_momentum=False,
            ),
        ),
    ],
    ids=[
        "cosine",
        "cosine-min",
        "step",
        "step-default-gamma",
        "exponential",
        "one-cycle",
        "one-cycle-options",
    ],
)
def test_rates_equal_pytorchs_schedulers(params, make_scheduler):
    expected = torch_rates(make_scheduler, 40)
    ours = schedule(40, **params)
    np.testing.assert_allclose([ours.rate(t) for t in range(40)], expected, rtol=1e-12, atol=1e-15)


def test_warmup_rises_in_a_straight_line_then_the_cosine_starts_at_the_peak():
    ours = schedule(20, peak=0.5, warmup=4)
    rates = [ours.rate(t) for t in range(20)]
    np.testing.assert_allclose(rates[:5], [0.1, 0.2, 0.3, 0.4, 0.5])
    cosine = schedule(16, peak=0.5)
    np.testing.assert_allclose(rates[4:], [cosine.rate(t) for t in range(16)])
    assert (
        rates[-1] < 0.01 and schedule(20, peak=0.5).rate(25) == 0.0
    )  # past the end: stays at the end


def make_config(logdir, callbacks, optimizer=None, epochs=4):
    """90 training samples in batches of 16: 6 steps an epoch."""
    return {
        "seed": 3,
        "data": {"type": "moons", "n_samples": 120, "noise": 0.2, "test_fraction": 0.25},
        "model": {
            "layers": [
                {"type": "dense", "units": 8, "activation": "tanh"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "optimizer": optimizer or {"type": "sgd", "lr": 0.2, "momentum": 0.9},
            "epochs": epochs,
            "batch_size": 16,
            "metrics": ["accuracy"],
            "callbacks": copy.deepcopy(callbacks),
        },
        "logging": {"logdir": str(logdir)},
    }


class Record(Callback):
    """The optimizer's lr at each step, as the step runs, and the batch logs."""

    def __init__(self, crash_step=None):
        self.rates, self.logs, self.crash_step = {}, {}, crash_step

    @hookimpl
    def on_after_backward(self, trainer, step):
        self.rates[step] = trainer.optimizer.lr

    @hookimpl
    def on_batch_end(self, trainer, step, logs):
        self.logs[step] = dict(logs)
        if trainer.step == self.crash_step:
            raise RuntimeError("crash")


def final_params(logdir):
    step, path = list_checkpoints(logdir)[-1]
    return step, load_checkpoint(path)["params"]


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "lr_schedule", "schedule": "cosine", "warmup": 3},
        {"type": "lr_schedule", "schedule": "one_cycle", "lr": 0.5},
        {"type": "lr_schedule", "schedule": "step", "unit": "epoch", "step_size": 1, "gamma": 0.5},
    ],
    ids=["cosine-warmup", "one-cycle", "step-per-epoch"],
)
def test_a_resumed_run_follows_the_schedule_to_the_uninterrupted_weights(tmp_path, spec):
    callbacks = [spec, {"type": "checkpoint", "every": 4, "keep": 0}]
    straight = build(make_config(tmp_path / "straight", callbacks))
    recorder = straight.trainer.add_callback(Record())
    expected = straight.fit()
    assert len(set(recorder.rates.values())) > 2  # the schedule did change the rate

    crashed = build(make_config(tmp_path / "crashed", callbacks))
    crashed.trainer.add_callback(Record(crash_step=11))
    with pytest.raises(RuntimeError, match="crash"):
        crashed.fit()
    assert list_checkpoints(tmp_path / "crashed")[-1][0] == 8  # mid-epoch: steps 8-10 to redo

    resumed = build(make_config(tmp_path / "crashed", callbacks), resume=tmp_path / "crashed")
    again = resumed.trainer.add_callback(Record())
    summary = resumed.fit()
    assert again.rates == {step: rate for step, rate in recorder.rates.items() if step >= 8}
    step, params = final_params(tmp_path / "crashed")
    expected_step, expected_params = final_params(tmp_path / "straight")
    assert step == expected_step == 24
    for key in expected_params:
        np.testing.assert_array_equal(params[key], expected_params[key], err_msg=key)
    assert summary["train"] == expected["train"] and summary["test"] == expected["test"]


def test_the_rate_is_in_the_logs_the_csv_and_tensorboard(tmp_path):
    callbacks = [
        {"type": "lr_schedule", "schedule": "cosine"},
        {"type": "csv_logger"},
        {"type": "tensorboard", "scalar_every": 1, "histogram_every": 0},
    ]
    experiment = build(make_config(tmp_path, callbacks, epochs=3))
    recorder = experiment.trainer.add_callback(Record())
    experiment.fit()
    rates = schedule(18, peak=0.2)
    assert recorder.rates == {t: pytest.approx(rates.rate(t)) for t in range(18)}
    assert all(recorder.logs[t]["lr"] == recorder.rates[t] for t in range(18))
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(row["lr"]) for row in rows] == pytest.approx([rates.rate(t) for t in (5, 11, 17)])
    events = EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    logged = {event.step: event.value for event in events.Scalars("lr")}
    assert sorted(logged) == list(range(18))  # once a step: the logs' lr, not the optimizer's too
    assert [logged[t] for t in range(18)] == pytest.approx(
        [rates.rate(t) for t in range(18)], rel=1e-6
    )


def test_a_second_fit_continues_from_the_peak_it_first_read():
    x = np.random.default_rng(0).normal(size=(32, 2))
    y = (x[:, 0] > 0).astype(int)
    model = framework.Sequential(
        [{"type": "dense", "units": 2, "activation": "softmax"}], input_shape=(2,), seed=0
    )
    callback = create("callbacks", "lr_schedule", schedule="cosine")
    trainer = framework.Trainer(
        model, "cross_entropy", {"type": "sgd", "lr": 0.3}, callbacks=[callback]
    )
    trainer.fit(x, y, epochs=2, batch_size=8)
    trainer.fit(x, y, epochs=2, batch_size=8)  # the schedule now spans 4 epochs from 0.3
    assert callback.peak == 0.3 and callback.length == 16
    assert trainer.optimizer.lr == pytest.approx(callback.rate(15))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"schedule": "cosin"}, "did you mean 'cosine'"),
        ({"lr": -0.1}, "'lr' must be > 0"),
        ({"warmup": -1}, "'warmup' must be >= 0"),
        ({"min_lr": -1.0}, "'min_lr' must be >= 0"),
        ({"schedule": "step"}, "needs step_size"),
        ({"schedule": "step", "step_size": 0}, "'step_size' must be > 0"),
        ({"schedule": "exponential"}, "needs gamma"),
        ({"schedule": "exponential", "gamma": -0.5}, "'gamma' must be > 0"),
        ({"schedule": "one_cycle", "warmup": 3}, "drop warmup"),
        ({"schedule": "one_cycle", "pct_start": 1.5}, "'pct_start' must be <= 1"),
        ({"unit": "batch"}, "'unit' must be in"),
        ({"warmup": True}, "warmup must be a number"),
        ({"total": 0}, "'total' must be > 0"),
        ({"speed": 2}, "has no parameter 'speed'"),
    ],
)
def test_config_errors_name_the_problem(params, message):
    with pytest.raises(ConfigError, match=message):
        create("callbacks", "lr_schedule", **params)


def test_a_warmup_longer_than_the_run_and_a_full_batch_optimizer_are_refused(tmp_path):
    config = make_config(tmp_path / "a", [{"type": "lr_schedule", "warmup": 24}])
    with pytest.raises(
        ConfigError, match=r"warmup \(24\) must be shorter than the schedule \(24 steps\)"
    ):
        build(config).fit()
    config = make_config(tmp_path / "b", [{"type": "lr_schedule"}], optimizer="bfgs")
    with pytest.raises(ConfigError, match="needs a step optimizer with an lr"):
        build(config).fit()


def test_cli_config_errors_exit_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(
        """seed = 1
[data]
type = "moons"
n_samples = 60
[model]
layers = [{ type = "dense", units = 2, activation = "softmax" }]
[train]
loss = "cross_entropy"
epochs = 1
callbacks = [{ type = "lr_schedule", schedule = "cosine", lr = -1.0 }]
"""
    )
    for args, message in [
        ([], "'lr' must be > 0"),
        (
            ["--set", 'train.callbacks.0.schedule="sine"', "--set", "train.callbacks.0.lr=0.1"],
            "unknown schedule 'sine'",
        ),
    ]:
        code = main(["train", str(path), "--quiet", "--logdir", "runs/x", *args])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("plugnet: error: ") and err.count("\n") == 1 and message in err
        assert "Traceback" not in err
    assert not (tmp_path / "runs/x").exists()  # nothing written
