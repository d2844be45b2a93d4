"""Configs of several inputs (a dataset giving x as a dict by input name), and token ids
refused by a float layer."""

import json

import numpy as np
import pytest
from cli_checks import cli_error  # tests/support

import framework
from framework import ConfigError, DataError
from framework.checkpoints import list_checkpoints, load_checkpoint
from framework.cli import main
from framework.run import build

TWO_INPUTS = """seed = 0
[data]
type = "two_inputs"
n_samples = 400
[model]
inputs = ["a", { name = "b", shape = [2] }]
layers = [
  { type = "dense", units = 8, activation = "tanh", inputs = ["a"], name = "from_a" },
  { type = "dense", units = 8, activation = "tanh", inputs = ["b"], name = "from_b" },
  { type = "concatenate", inputs = ["from_a", "from_b"] },
  { type = "dense", units = 2, activation = "softmax" },
]
[train]
loss = "cross_entropy"
optimizer = { type = "adam", lr = 0.02 }
epochs = 12
batch_size = 32
metrics = ["accuracy"]
callbacks = [{ type = "tensorboard" }, { type = "checkpoint", every = 40, keep = 0 }, "csv_logger"]
"""


def test_the_two_inputs_dataset_needs_both_inputs():
    x, y, x_test, y_test = framework.create("datasets", "two_inputs", n_samples=500).load(
        np.random.default_rng(1)
    )
    assert sorted(x) == ["a", "b"] and x["a"].shape == (400, 3) and x["b"].shape == (400, 2)
    assert x_test["a"].shape == (100, 3) and len(y_test) == 100
    np.testing.assert_array_equal(y, x["a"].sum(1) > x["b"].sum(1))
    assert 0.4 < y.mean() < 0.6


def test_a_config_of_two_inputs_trains_evaluates_and_resumes_from_the_cli(tmp_path, capsys):
    (tmp_path / "two.toml").write_text(TWO_INPUTS)
    assert main(["train", "two.toml", "--quiet", "--logdir", "runs/a"]) == 0
    summary = json.loads((tmp_path / "runs/a/summary.json").read_text())
    assert summary["steps"] == 120 and summary["test"]["accuracy"] > 0.9  # chance is 0.5
    capsys.readouterr()
    assert main(["evaluate", "runs/a"]) == 0
    assert f"accuracy {summary['test']['accuracy']:.4f}" in capsys.readouterr().out
    model = framework.load_model("runs/a")
    assert model.input_names == ["a", "b"] and model.input_shape == [(3,), (2,)]

    # Killed after step 50 (its newest checkpoint is step 40), then resumed: the same weights.
    assert main(["train", "two.toml", "--quiet", "--logdir", "runs/b", "--epochs", "12"]) == 0
    experiment = build(framework.config.load_config("two.toml") | {"logging": {"logdir": "runs/c"}})

    class Crash(framework.Callback):
        @framework.hookimpl
        def on_batch_end(self, trainer):
            if trainer.step == 50:
                raise RuntimeError("crash")

    experiment.trainer.add_callback(Crash())
    with pytest.raises(RuntimeError):
        experiment.fit()
    assert main(["train", "--resume", "runs/c", "--quiet"]) == 0
    expected = load_checkpoint(list_checkpoints("runs/b")[-1][1])["params"]
    got = load_checkpoint(list_checkpoints("runs/c")[-1][1])["params"]
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_wrong_input_names_are_one_message_naming_them(tmp_path, capsys):
    (tmp_path / "two.toml").write_text(TWO_INPUTS)
    err = cli_error(
        capsys, "train", "two.toml", "--logdir", "runs/x", "--set", 'model.inputs=["a", "c"]'
    )
    assert "dataset 'two_inputs' gives inputs 'a', 'b' but the model declares 'a', 'c'" in err
    assert "no model input is named 'b'" in err and "no data for input 'c'" in err
    err = cli_error(
        capsys, "train", "two.toml", "--logdir", "runs/x", "--set", 'model.inputs=["a"]'
    )
    assert "no model input is named 'b'" in err
    err = cli_error(
        capsys,
        "train",
        "two.toml",
        "--logdir",
        "runs/x",
        "--set",
        'model.inputs=[{name = "a", size = 3}, "b"]',
    )
    assert "model.inputs.0 (a) has no key 'size'" in err
    err = cli_error(
        capsys, "train", "two.toml", "--logdir", "runs/x", "--set", 'model.inputs=["a", "a"]'
    )
    assert "distinct inputs" in err
    err = cli_error(
        capsys,
        "train",
        "two.toml",
        "--logdir",
        "runs/x",
        "--set",
        'model.inputs=["a", {name = "b", shape = [4]}]',
    )
    assert "expected shape (None, 4), got (None, 2)" in err
    err = cli_error(
        capsys, "train", "two.toml", "--logdir", "runs/x", "--set", "model.layers.0.inputs=['b']"
    )
    assert "input 'a' does not reach the model's output" in err
    assert not (tmp_path / "runs/x").exists()  # nothing written


def test_inputs_declared_for_array_data():
    config = {
        "data": {"type": "moons", "n_samples": 50},
        "model": {
            "inputs": ["point"],
            "layers": [{"type": "dense", "units": 2, "activation": "softmax"}],
        },
        "train": {"loss": "cross_entropy", "epochs": 1},
        "logging": {"logdir": "runs/one"},
    }
    experiment = build(config)
    assert experiment.trainer.model.input_names == ["point"]
    experiment.fit()
    config["model"]["inputs"] = ["p", "q"]
    with pytest.raises(
        DataError, match="declares inputs 'p', 'q', but dataset 'moons' gives one array"
    ):
        build(dict(config, logging={"logdir": "runs/two"}))


# --- token ids ---------------------------------------------------------------------------------


def token_config(layers):
    return {
        "data": {"type": "reverse_sequence", "n_samples": 100, "vocab": 7},
        "model": {"layers": layers},
        "train": {"loss": "cross_entropy", "epochs": 1},
        "logging": {"logdir": "runs/tokens"},
    }


def test_a_float_layer_reading_token_ids_is_refused_with_a_hint(capsys, tmp_path):
    layers = [{"type": "dense", "units": 7, "activation": "softmax"}]
    with pytest.raises(ConfigError) as caught:
        build(token_config(layers))
    message = str(caught.value)
    assert message.startswith(
        "layer dense_0 (dense) reads the model's input, which holds integer token ids"
    )
    assert 'e.g. { type = "embedding", input_dim = 7, output_dim = 32 }' in message
    (tmp_path / "tokens.toml").write_text(
        '[data]\ntype = "reverse_sequence"\n[model]\nlayers = [{ type = "dense", units = 10, activation = "softmax" }]\n'
        '[train]\nloss = "cross_entropy"\n'
    )
    assert "layer dense_0 (dense) reads the model's input" in cli_error(
        capsys, "train", "tokens.toml", "--logdir", "runs/t"
    )
    assert not (tmp_path / "runs/t").exists()


def test_token_ids_read_by_an_embedding_train_and_unmarked_integers_are_not_refused():
    layers = [
        {"type": "embedding", "input_dim": 7, "output_dim": 4},
        {"type": "dense", "units": 7, "activation": "softmax"},
    ]
    build(token_config(layers)).fit()
    # Integer-valued features from a dataset that does not mark them as tokens still train.
    config = {
        "data": {"type": "xor"},
        "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
        "train": {"loss": "cross_entropy", "epochs": 1},
        "logging": {"logdir": "runs/xor"},
    }
    build(config).fit()
