"""The sequence examples, in quick versions that train in seconds: the LSTM and GRU on a
shorter adding problem, and the transformer config's structure (the whole transformer
trains where the graph engine's add and layer_norm layers exist)."""

import os

import pytest

from framework import registry, run
from framework.config import apply_overrides, load_config

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def example(name, *overrides):
    return apply_overrides(
        load_config(os.path.join(EXAMPLES, name)), ["logging.logdir=run", *overrides]
    )


QUICK_ADDING = ("data.length=12", "data.n_samples=3000", "train.epochs=20")


@pytest.mark.parametrize("name", ["lstm_adding.toml", "gru_adding.toml"])
def test_recurrent_nets_solve_a_short_adding_problem(name):
    """Always predicting the mean scores about 0.167; the examples' nets at length 12 get far
    below it in a few epochs (the full examples at length 50 reach < 0.01)."""
    config = example(name, *QUICK_ADDING)
    summary = run(config)
    assert summary["test"]["mse"] < 0.02


def test_the_adding_examples_are_length_50():
    for name in ("lstm_adding.toml", "gru_adding.toml"):
        config = load_config(os.path.join(EXAMPLES, name))
        assert config["data"] == {
            "type": "adding_problem",
            "length": 50,
            "n_samples": 10000,
            "test_fraction": 0.2,
        }


def graph_engine():
    return {"add", "layer_norm"} <= set(registry().names("layers"))


@pytest.mark.skipif(not graph_engine(), reason="needs the graph engine's add and layer_norm layers")
def test_transformer_reverses_sequences():
    summary = run(example("transformer_reverse.toml", "data.n_samples=4000", "train.epochs=2"))
    assert summary["test"]["accuracy"] >= 0.99
