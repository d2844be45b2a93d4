"""Rough edges a new user hits on a first run: each is one clear message or a truthful line."""

import json

import pytest

from framework.cli import main
from framework.errors import ConfigError
from framework.model import model_from_config

FAST = ["--epochs", "1", "--quiet"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "overrides",
    [
        # the default example is a chain (a Sequential)
        ['model.layers.0.name="h"', 'model.layers.1.name="h"'],
        # a graph config: the second layer reads the first by name
        ['model.layers.0.name="h"', 'model.layers.1.name="h"', 'model.layers.1.inputs=["h"]'],
    ],
    ids=["chain", "graph"],
)
def test_two_layers_with_one_name_is_one_message_and_exit_2(tmp_path, capsys, overrides):
    logdir = tmp_path / "run"
    sets = [arg for item in overrides for arg in ("--set", item)]
    code, _, err = run_cli(capsys, "train", *FAST, "--logdir", str(logdir), *sets)
    assert code == 2, err
    assert err == (
        "plugnet: error: model.layers.1 (dense): the name 'h' is used twice "
        "(model.layers.0 has it too); give each layer its own name\n"
    )
    assert not logdir.exists()  # nothing half-written


def test_duplicate_layer_names_from_python_config():
    layers = [
        {"type": "dense", "units": 3, "name": "hidden"},
        {"type": "dense", "units": 3, "name": "out"},
        {"type": "dense", "units": 2, "name": "hidden"},
    ]
    with pytest.raises(
        ConfigError,
        match=r"model\.layers\.2 \(dense\): the name 'hidden' is used twice \(model\.layers\.0",
    ):
        model_from_config(layers, input_shape=(2,))


def test_a_run_without_the_tensorboard_callback_does_not_claim_event_files(tmp_path, capsys):
    logdir = tmp_path / "quiet"
    code, out, err = run_cli(
        capsys, "train", *FAST, "--logdir", str(logdir), "--set", "train.callbacks=[]"
    )
    assert code == 0, err
    assert not list(logdir.rglob("events.out.tfevents.*"))
    assert "(summary.json, TensorBoard event files)" not in out
    assert "tensorboard --logdir" not in out
    assert "no TensorBoard event files" in out and "tensorboard callback" in out
    assert json.loads((logdir / "summary.json").read_text())["epochs"] == 1


def test_a_run_with_the_tensorboard_callback_says_where_to_watch_it(tmp_path, capsys):
    logdir = tmp_path / "watched"
    code, out, err = run_cli(capsys, "train", *FAST, "--logdir", str(logdir))
    assert code == 0, err
    assert list(logdir.rglob("events.out.tfevents.*"))
    assert "(summary.json, TensorBoard event files)" in out
    assert f"tensorboard --logdir {tmp_path}" in out


def test_duplicate_layer_names_in_a_python_sequential():
    from framework import Sequential

    with pytest.raises(ConfigError, match="names must be unique in a model: h used more than once"):
        Sequential(
            [
                {"type": "dense", "units": 3, "name": "h"},
                {"type": "dense", "units": 2, "name": "h"},
            ],
            input_shape=(2,),
        )
