"""The example configs in examples/ train to the results the founding documents report.

Where an example's full run takes long (circles.toml: 50,000 samples; moons.toml and xor.toml
at the seed's learning rates; regression_bfgs.toml's 200 BFGS iterations), the test trains a
smaller or faster variant, said at each test.
"""

import json
import os

import numpy as np
import pytest

from framework import resolve, run
from framework.cli import main
from framework.config import apply_overrides, check_config, load_config
from framework.run import build

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")
FILE_DATASETS = {"mnist", "fashion_mnist", "text", "lines", "tokens"}
CONFIGS = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".toml"))


def example(name, *overrides):
    return apply_overrides(load_config(os.path.join(EXAMPLES, name)), list(overrides))


def test_the_seed_examples_are_there():
    assert {
        "hours_studied.toml",
        "regression_bfgs.toml",
        "circles.toml",
        "circles_small.toml",
        "moons.toml",
        "moons_deep.toml",
        "xor.toml",
    } <= set(CONFIGS)


def small_text_files(root, config):
    """A stand-in for a text example's file (Tiny Shakespeare, makemore's names) in
    ``root/text/``, under the name the example gives: the tests read no shared data and
    fetch nothing."""
    (root / "text").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghij"), size=rng.integers(3, 9))) for _ in range(1500)]
    separator = "\n" if config["data"]["type"] == "lines" else " "
    (root / "text" / config["data"]["path"]).write_text(separator.join(words) + "\n")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_example_builds(name, tmp_path, monkeypatch):
    """Every example's config is valid and its data fit its model (nothing is trained).
    Examples that read data files (MNIST) are only checked, as the tests have no such files;
    text examples read small stand-ins of their files."""
    config = example(name)
    if config["data"]["type"] in ("text", "lines"):
        small_text_files(tmp_path, config)
        monkeypatch.setenv("PLUGNET_DATA", str(tmp_path))
    if config["data"]["type"] in FILE_DATASETS:
        check_config(config)
        resolve("datasets", config["data"])
        return
    experiment = build(config)
    assert len(experiment.x_train) and experiment.trainer.model.num_params > 0


def test_hours_studied_bfgs_drives_the_cost_below_1e_5(tmp_path, capsys):
    """Seed 000: 2-3-1 sigmoid net, no biases, uniform [0, 1) weights, ½Σ(y − ŷ)², BFGS."""
    logdir = tmp_path / "hours"
    assert (
        main(
            [
                "train",
                os.path.join(EXAMPLES, "hours_studied.toml"),
                "--logdir",
                str(logdir),
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads((logdir / "summary.json").read_text())
    assert summary["train"]["loss"] < 1e-5
    assert 1 <= summary["epochs"] <= 200  # one BFGS iteration per epoch, at most maxiter
    experiment = build(example("hours_studied.toml"))
    model = experiment.trainer.model
    assert model.num_params == 2 * 3 + 3 * 1  # weights only
    assert all(np.all((w >= 0) & (w < 1)) for w in model.params_list())


def test_regression_bfgs_fits_the_deeper_network():
    """Seed 000's 30 → [10, 15, 7, 6] net; 20 BFGS iterations here instead of 200."""
    experiment = build(example("regression_bfgs.toml", "train.epochs=20", "logging.logdir=run"))
    model = experiment.trainer.model
    assert model.num_params == 30 * 10 + 10 * 15 + 15 * 7 + 7 * 6
    before = experiment.trainer.evaluate(experiment.x_train, experiment.y_train)
    summary = experiment.fit()
    after = summary["train"]
    assert summary["steps"] == 20
    assert after["loss"] < 0.2 * before["loss"]
    # ½Σ over 100 samples × 6 targets is 300 times the mean squared error.
    assert after["loss"] == pytest.approx(300 * after["mse"])


def test_circles_small_reaches_97_percent(tmp_path, capsys):
    """Seed 001's 2-3-2 net with momentum on 1,000 circles (circles.toml trains on 50,000)."""
    logdir = tmp_path / "circles"
    code = main(
        ["train", os.path.join(EXAMPLES, "circles_small.toml"), "--logdir", str(logdir), "--quiet"]
    )
    assert code == 0
    summary = json.loads((logdir / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.97
    assert summary["steps"] == summary["epochs"] == 400  # full batch: one step per epoch


def test_circles_full_example_is_the_small_one_at_scale():
    full, small = example("circles.toml"), example("circles_small.toml")
    assert (
        full["model"] == small["model"]
        and full["train"]["optimizer"] == small["train"]["optimizer"]
    )
    # 50,000 training samples as in the seed; lr 5.0 on the mean loss = 1e-4 on the sum.
    train_samples = full["data"]["n_samples"] * (1 - full["data"]["test_fraction"])
    assert train_samples == 50_000
    assert full["train"]["optimizer"]["lr"] == pytest.approx(1e-4 * train_samples)


def test_moons_tanh_16_units_reaches_95_percent():
    """Seed 002: one tanh layer of 16 units with L2, full-batch descent, as moons.toml trains."""
    config = example("moons.toml", "logging.logdir=run")
    assert config["model"]["layers"][0] == {"type": "dense", "units": 16, "activation": "tanh"}
    summary = run(config)
    assert summary["test"]["accuracy"] >= 0.95


def test_moons_deep_reaches_95_percent():
    summary = run(example("moons_deep.toml", "logging.logdir=run"))
    assert summary["test"]["accuracy"] >= 0.95


def test_xor_gets_all_four_points_right():
    """Seed 003's 2-2-1 net with per-sample SGD; lr 1.0 for 2,000 epochs here, where xor.toml
    takes the seed's lr 0.01 for 50,000 epochs."""
    experiment = build(
        example("xor.toml", "train.optimizer.lr=1.0", "train.epochs=2000", "logging.logdir=run")
    )
    summary = experiment.fit()
    assert summary["steps"] == 2000 * 4  # batch_size = 1: one step per point
    predicted = experiment.trainer.model.predict(experiment.x_train).ravel() > 0.5
    assert np.array_equal(predicted, experiment.y_train == 1)
    assert experiment.trainer.evaluate(experiment.x_train, experiment.y_train)["accuracy"] == 1.0
