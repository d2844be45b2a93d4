"""Saving and loading whole models: model.save / load_model, run directories' model.npz,
checkpoints and weights files; nothing pickled, damaged files named."""

import json
import os
import shutil

import numpy as np
import pytest

import framework
from framework import ConfigError, DataError, Sequential, create, load_model
from framework.run import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layer(kind, **params):
    return create("layers", kind, **params)


def every_layer_model(dtype="float32"):
    return Sequential(
        [
            layer(
                "conv2d",
                filters=3,
                kernel_size=3,
                strides=2,
                padding="same",
                activation={"type": "leaky_relu", "alpha": 0.2},
                weight_init={"type": "truncated_normal", "stddev": 0.3},
                bias_init={"type": "constant", "value": 0.1},
            ),
            layer("maxpool2d", pool_size=2, strides=1, padding="same"),
            layer("avgpool2d", pool_size=[2, 1]),
            layer("flatten"),
            layer("dropout", rate=0.25),
            layer("dense", units=6, activation="tanh", use_bias=False),
            layer("reshape", target_shape=[2, 3]),
            layer("activation", activation="sigmoid"),
            layer("flatten"),
            layer("dense", units=4, activation="softmax", weight_init="he_normal"),
        ],
        input_shape=(7, 6, 2),
        dtype=dtype,
        seed=3,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_and_load_round_trip_bit_identical(tmp_path, dtype):
    model = every_layer_model(dtype)
    x = np.random.default_rng(0).normal(size=(5, 7, 6, 2))
    path = model.save(tmp_path / "model.npz")
    loaded = load_model(path)
    assert loaded is not model and loaded.dtype == model.dtype
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert loaded.summary() == model.summary()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[key], value)
        assert loaded.state_dict()[key].dtype == value.dtype


def test_model_file_is_plain_numpy_and_json(tmp_path):
    model = every_layer_model()
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:  # nothing pickled
        architecture = json.loads(str(data["architecture"]))
        assert set(data.files) - {"architecture"} == set(model.state_dict())
    assert architecture["dtype"] == "float32"
    assert architecture["inputs"] == [{"name": "input", "shape": [7, 6, 2]}]
    conv = architecture["layers"][0]
    assert conv["name"] == "conv2d_0" and conv["inputs"] == ["input"]
    assert conv["layer"]["type"] == "conv2d" and conv["layer"]["kernel_size"] == [3, 3]
    assert conv["layer"]["activation"] == {"type": "leaky_relu", "alpha": 0.2}
    assert conv["layer"]["weight_init"] == {"type": "truncated_normal", "stddev": 0.3}
    assert architecture["layers"][1]["inputs"] == ["conv2d_0"]
    assert architecture["output"] == "dense_9"


def moons_config(logdir, epochs=3, **train):
    return {
        "seed": 0,
        "data": {"type": "moons", "n_samples": 200, "test_fraction": 0.25},
        "model": {
            "layers": [
                {"type": "dense", "units": 8, "activation": "tanh"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "cross_entropy",
            "epochs": epochs,
            "batch_size": 32,
            "metrics": ["accuracy"],
            **train,
        },
        "logging": {"logdir": str(logdir)},
    }


def test_a_run_writes_model_npz_that_loads_bit_identical(tmp_path):
    experiment = build(
        moons_config(tmp_path / "run", callbacks=[{"type": "checkpoint", "every": 5}])
    )
    experiment.fit()
    trained = experiment.trainer.model
    assert (tmp_path / "run" / "model.npz").is_file()
    x = np.random.default_rng(1).normal(size=(50, 2))
    expected = trained.predict(x)
    np.testing.assert_array_equal(load_model(tmp_path / "run").predict(x), expected)
    np.testing.assert_array_equal(
        load_model(str(tmp_path / "run" / "model.npz")).predict(x), expected
    )
    # The last checkpoint is of the last step: the same weights, with the run's config.
    newest = framework.checkpoints.list_checkpoints(tmp_path / "run")[-1][1]
    np.testing.assert_array_equal(load_model(newest).predict(x), expected)
    # A run that did not finish has no model.npz: its newest whole checkpoint is used.
    shutil.copytree(tmp_path / "run", tmp_path / "cut")
    os.remove(tmp_path / "cut" / "model.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "cut").predict(x), expected)


def test_weights_file_needs_a_config(tmp_path):
    model = Sequential(
        [layer("dense", units=8, activation="tanh"), layer("dense", units=2, activation="softmax")],
        input_shape=(2,),
    )
    model.save_weights(tmp_path / "w" / "weights.npz")
    config = moons_config(tmp_path / "unused")
    config["model"]["input_shape"] = [2]
    x = np.random.default_rng(0).normal(size=(4, 2))
    np.testing.assert_array_equal(
        load_model(tmp_path / "w" / "weights.npz", config=config).predict(x), model.predict(x)
    )
    with pytest.raises(
        DataError, match="holds weights but not the model's architecture: give the config"
    ):
        load_model(tmp_path / "w" / "weights.npz")
    (tmp_path / "w" / "config.json").write_text(json.dumps(config))  # a config beside it is found
    np.testing.assert_array_equal(
        load_model(tmp_path / "w" / "weights.npz").predict(x), model.predict(x)
    )
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[data]\ntype = "moons"\n[model]\ninput_shape = [2]\nlayers = [{ type = "dense", units = 8, activation = "tanh" }, '
        '{ type = "dense", units = 2, activation = "softmax" }]\n[train]\nloss = "mse"\n'
    )
    np.testing.assert_array_equal(
        load_model(tmp_path / "w" / "weights.npz", config=toml).predict(x), model.predict(x)
    )


def test_a_plugin_layer_and_activation_round_trip(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples", "plugin"))
    framework.load_plugins(["plugnet_swish", "cube_plugin"])  # cube: a plain class, not attrs
    model = Sequential(
        [
            layer("dense", units=4, activation={"type": "swish", "beta": 2.0}),
            layer("gaussian_noise", stddev=0.3),
            layer("dense", units=1, activation="cube"),
        ],
        input_shape=(3,),
        seed=0,
    )
    model.save(tmp_path / "p.npz")
    loaded = load_model(tmp_path / "p.npz")
    assert loaded.layers[0].activation.beta == 2.0 and loaded.layers[1].stddev == 0.3
    assert type(loaded.layers[2].activation).__name__ == "Cube"
    x = np.random.default_rng(0).normal(size=(6, 3))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


class Opaque(framework.Layer):
    """A layer that keeps its parameter under another name, with no get_config."""

    def __init__(self, factor=2.0):
        self.scale = factor

    def forward(self, x, training=False):
        return x * self.scale

    def backward(self, grad_y):
        return grad_y * self.scale


def test_unsaveable_layer_and_unbuilt_model_are_config_errors(tmp_path):
    model = Sequential([layer("dense", units=2), Opaque()], input_shape=(2,))
    with pytest.raises(
        ConfigError,
        match=r"layer opaque_1 \(opaque\) \(Opaque\) keeps no attribute 'factor'.*get_config",
    ):
        model.save(tmp_path / "o.npz")
    with pytest.raises(ConfigError, match="not built"):
        Sequential([layer("dense", units=2)]).save(tmp_path / "u.npz")
    assert os.listdir(tmp_path) == []


def test_damaged_files_are_data_errors(tmp_path):
    model = every_layer_model()
    model.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "torn.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="torn.npz is not a readable .npz file"):
        load_model(tmp_path / "torn.npz")
    arrays = dict(np.load(tmp_path / "m.npz"))
    arrays["architecture"] = np.array("{not json")
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(
        DataError, match="bad.npz is not a readable plugnet model file: its architecture is damaged"
    ):
        load_model(tmp_path / "bad.npz")
    np.savez(tmp_path / "pickled.npz", architecture=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="refuses to load it"):
        load_model(tmp_path / "pickled.npz")
    with pytest.raises(DataError, match="no run directory or model file at"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is not a plugnet run directory: it has no config.json"):
        load_model(tmp_path / "empty")


def test_run_directory_without_weights_or_with_a_torn_model(tmp_path):
    build(
        moons_config(tmp_path / "run", epochs=1, callbacks=[{"type": "checkpoint", "every": 2}])
    ).fit()
    os.makedirs(tmp_path / "bare")
    shutil.copy(tmp_path / "run" / "config.json", tmp_path / "bare")
    with pytest.raises(
        DataError, match=r"bare holds no weights: no model.npz .* and no checkpoint"
    ):
        load_model(tmp_path / "bare")
    path = tmp_path / "run" / "model.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(
        DataError,
        match=r"model.npz is not a readable .npz file.*delete it to load the run's newest checkpoint",
    ):
        load_model(tmp_path / "run")


def graph_model():
    image = framework.Input((6, 6, 1), name="image")
    extra = framework.Input((3,), name="extra")
    stem = layer("conv2d", filters=3, kernel_size=3, activation="relu", name="stem")(image)
    branch = layer("batch_norm", name="bn")(layer("conv2d", filters=3, kernel_size=3)(stem))
    h = layer("global_avgpool2d")(layer("add", activation="relu")([stem, branch]))
    h = layer("concatenate")([layer("layer_norm")(h), layer("dense", units=2)(extra)])
    return framework.Model([image, extra], layer("dense", units=2, activation="softmax")(h), seed=0)


def test_a_graph_model_round_trips_with_names_inputs_and_layer_state(tmp_path):
    model = graph_model()
    rng = np.random.default_rng(0)
    for _, _key, value in model.states():  # as if trained: running statistics not at their start
        value[...] = rng.uniform(0.5, 2.0, value.shape)
    x = {"image": rng.normal(size=(4, 6, 6, 1)), "extra": rng.normal(size=(4, 3))}
    model.save(tmp_path / "g.npz")
    loaded = load_model(tmp_path / "g.npz")
    assert isinstance(loaded, framework.Model) and not isinstance(loaded, Sequential)
    assert loaded.input_names == ["image", "extra"]
    assert loaded.inbound == model.inbound
    np.testing.assert_array_equal(
        loaded.state_dict()["bn/running_var"], model.state_dict()["bn/running_var"]
    )
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.summary() == model.summary()


def test_a_graph_config_run_loads_bit_identical(tmp_path):
    config = moons_config(tmp_path / "run")
    config["model"]["layers"] = [
        {"type": "dense", "units": 8, "activation": "tanh", "name": "a"},
        {"type": "batch_norm", "name": "bn"},
        {"type": "dense", "units": 8, "activation": "tanh", "inputs": ["input"]},
        {"type": "add", "inputs": ["bn", "dense_2"]},
        {"type": "dense", "units": 2, "activation": "softmax"},
    ]
    experiment = build(config)
    experiment.fit()
    x = np.random.default_rng(1).normal(size=(20, 2))
    loaded = load_model(tmp_path / "run")
    np.testing.assert_array_equal(loaded.predict(x), experiment.trainer.model.predict(x))
    os.remove(tmp_path / "run" / "model.npz")
    with pytest.raises(DataError, match="holds no weights"):
        load_model(tmp_path / "run")
