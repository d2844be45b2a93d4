import pytest

import framework
from framework import ConfigError, PluginError, create, registry
import importlib

registry_module = importlib.import_module("framework.registry")


@pytest.fixture
def fresh_registry(monkeypatch):
    """A plugin manager and registry of this test's own, discarded afterwards."""
    monkeypatch.setattr(registry_module, "_manager", None)
    monkeypatch.setattr(registry_module, "_registry", None)


def test_every_contract_name_is_registered():
    names = {kind: set(registry().names(kind)) for kind in framework.KINDS}
    assert {"dense", "dropout", "flatten", "reshape", "activation"} <= names["layers"]
    assert {"identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"} <= names["activations"]
    assert {"mse", "binary_cross_entropy", "cross_entropy"} <= names["losses"]
    assert {"sgd", "adam", "rmsprop", "adagrad", "bfgs", "lbfgs"} <= names["optimizers"]
    assert {
        "zeros", "constant", "uniform", "normal", "truncated_normal",
        "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
    } <= names["initializers"]
    assert {"accuracy", "mse", "mae"} <= names["metrics"]
    assert {"xor", "hours_studied", "regression", "moons", "circles", "digits", "mnist",
            "fashion_mnist"} <= names["datasets"]
    assert {"progress", "early_stopping", "terminate_on_nan", "csv_logger"} <= names["callbacks"]


def test_unknown_name_lists_known_names_and_closest_match():
    with pytest.raises(ConfigError) as info:
        create("layers", "dens", units=3)
    message = str(info.value)
    assert "unknown layer 'dens'" in message
    assert "did you mean 'dense'?" in message
    assert "flatten" in message  # the known names are listed


def test_misspelt_parameter_names_component_and_parameter():
    with pytest.raises(ConfigError, match=r"layer 'dense' has no parameter 'unit'; did you mean 'units'\?"):
        create("layers", "dense", unit=3)


def test_mistyped_parameter_names_component():
    with pytest.raises(ConfigError, match="layer 'dense'.*units"):
        create("layers", "dense", units="three")


def test_resolve_accepts_name_mapping_class_and_instance():
    relu = create("activations", "relu")
    assert framework.resolve("activations", relu) is relu
    assert type(framework.resolve("activations", "relu")) is type(relu)
    assert type(framework.resolve("activations", {"type": "relu"})) is type(relu)
    assert type(framework.resolve("activations", type(relu))) is type(relu)
    with pytest.raises(ConfigError, match="needs a 'type' key"):
        framework.resolve("optimizers", {"lr": 0.1})


def test_unknown_kind():
    with pytest.raises(ConfigError, match="unknown component kind 'layer'; did you mean 'layers'"):
        create("layer", "dense")


def test_duplicate_name_names_both_plugins(fresh_registry):
    framework.load_plugins(["clash_plugin"])
    with pytest.raises(PluginError) as info:
        registry()
    assert "activation 'relu' is registered by two plugins" in str(info.value)
    assert "'plugins.activations'" in str(info.value) and "'clash_plugin'" in str(info.value)


def test_plugin_whose_hook_raises_is_named(fresh_registry):
    framework.load_plugins(["broken_plugin"])
    with pytest.raises(PluginError, match=r"plugin 'broken_plugin' failed in register_losses\(\).*disk on fire"):
        registry()


def test_unknown_plugin_module(fresh_registry):
    with pytest.raises(PluginError, match="cannot import plugin module 'no_such_plugin_xyz'"):
        framework.load_plugins(["no_such_plugin_xyz"])


def test_plugin_module_by_name_registers_components(fresh_registry):
    framework.load_plugins(["cube_plugin"])
    cube = create("activations", "cube")
    assert cube.kind == "cube"
    assert registry().by_plugin()["cube_plugin"] == {"activations": ["cube"]}
