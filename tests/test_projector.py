"""The tensorboard callback's ``projector`` option, read back by TensorBoard's own Projector
plugin through its HTTP routes: the hidden layer's activations on the held-out samples, with
their labels, at the end of training and every N epochs."""

import json
from pathlib import Path

import numpy as np
import pytest

from framework import ConfigError, Sequential, Trainer, create

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer  # noqa: E402
from tensorboard.plugins import base_plugin  # noqa: E402
from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin  # noqa: E402
from werkzeug.test import Client  # noqa: E402


def projector(logdir):
    """``get(route, **query)`` against TensorBoard's Projector plugin on ``logdir``."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    context = base_plugin.TBContext(
        logdir=str(logdir),
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)),
    )
    apps = ProjectorPlugin(context).get_plugin_apps()

    def get(route, **query):
        response = Client(apps[route]).get(route, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    return get


def circles(seed=0):
    x, y, x_test, y_test = create("datasets", "circles", n_samples=300).load(
        np.random.default_rng(seed)
    )
    return x, y, x_test, y_test


def train(tmp_path, epochs=4, validation=True, **options):
    x, y, x_test, y_test = circles()
    model = Sequential(
        [
            {"type": "dense", "units": 3, "activation": "sigmoid"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
        input_shape=(2,),
        seed=0,
    )
    callback = create(
        "callbacks", "tensorboard", graph=False, hparams=False, image_every=0, **options
    )
    trainer = Trainer(
        model,
        "cross_entropy",
        {"type": "sgd", "lr": 0.5},
        callbacks=[callback],
        logdir=str(tmp_path / "run"),
    )
    trainer.fit(
        x, y, epochs=epochs, batch_size=60, validation_data=(x_test, y_test) if validation else None
    )
    return trainer, (x, y, x_test, y_test)


def test_hidden_layer_activations_reach_the_projector_with_their_labels(tmp_path):
    trainer, (_, _, x_test, y_test) = train(
        tmp_path, epochs=4, projector=["dense_0"], projector_every=2
    )
    get = projector(tmp_path / "run")
    assert "train" in json.loads(get("/runs"))
    config = json.loads(get("/info", run="train"))
    names = [embedding["tensorName"] for embedding in config["embeddings"]]
    # after epoch 2 (step 8) and epoch 4 (step 16), the end adding nothing new at the same step
    assert names == ["dense_0/activations (step 8)", "dense_0/activations (step 16)"]

    vectors = np.frombuffer(get("/tensor", run="train", name=names[-1]), dtype=np.float32).reshape(
        -1, 3
    )
    hidden = trainer.model.layers[0]
    z = x_test.astype(np.float32) @ hidden.params["weights"] + hidden.params["bias"]
    np.testing.assert_allclose(vectors, 1 / (1 + np.exp(-z)), rtol=1e-6, atol=1e-7)  # σ(xW + b)
    labels = get("/metadata", run="train", name=names[-1]).decode().split()
    assert labels == [str(label) for label in y_test]


def test_without_held_out_data_the_first_training_samples_are_used(tmp_path):
    trainer, (x, *_) = train(
        tmp_path, epochs=2, validation=False, projector=["dense_1"], projector_samples=100
    )
    get = projector(tmp_path / "run")
    names = [e["tensorName"] for e in json.loads(get("/info", run="train"))["embeddings"]]
    assert names == [f"dense_1/activations (step {trainer.step})"]
    vectors = np.frombuffer(get("/tensor", run="train", name=names[0]), dtype=np.float32).reshape(
        -1, 2
    )
    assert len(vectors) == 100
    np.testing.assert_allclose(vectors.sum(axis=1), 1, rtol=1e-5)  # softmax outputs


def test_an_unknown_layer_is_refused_before_training(tmp_path):
    with pytest.raises(
        ConfigError, match="projector names layer 'dense_9'.*its layers: dense_0, dense_1"
    ):
        train(tmp_path, epochs=1, projector=["dense_9"])


def test_projector_must_name_layers():
    with pytest.raises(ConfigError, match="projector must be a list of layer names"):
        create("callbacks", "tensorboard", projector="dense_0")


def test_the_circles_example_shows_its_hidden_layer(tmp_path):
    from framework.cli import main

    logdir = tmp_path / "circles"
    examples = Path(__file__).resolve().parents[1] / "examples"
    args = [
        "train",
        str(examples / "circles_small.toml"),
        "--logdir",
        str(logdir),
        "--quiet",
        "--epochs",
        "200",
    ]
    assert main(args) == 0
    config = json.loads(projector(logdir)("/info", run="train"))
    assert [e["tensorName"] for e in config["embeddings"]] == [
        "dense_0/activations (step 100)",
        "dense_0/activations (step 200)",
    ]
