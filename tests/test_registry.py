import importlib
import importlib.util
import os
import subprocess
import sys

import pytest

import framework
from framework import ConfigError, PluginError, create, registry

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
        "zeros",
        "constant",
        "uniform",
        "normal",
        "truncated_normal",
        "glorot_uniform",
        "glorot_normal",
        "he_uniform",
        "he_normal",
    } <= names["initializers"]
    assert {"accuracy", "mse", "mae"} <= names["metrics"]
    assert {
        "xor",
        "hours_studied",
        "regression",
        "moons",
        "circles",
        "digits",
        "mnist",
        "fashion_mnist",
    } <= names["datasets"]
    assert {"progress", "early_stopping", "terminate_on_nan", "csv_logger"} <= names["callbacks"]


def test_unknown_name_lists_known_names_and_closest_match():
    with pytest.raises(ConfigError) as info:
        create("layers", "dens", units=3)
    message = str(info.value)
    assert "unknown layer 'dens'" in message
    assert "did you mean 'dense'?" in message
    assert "flatten" in message  # the known names are listed


def test_misspelt_parameter_names_component_and_parameter():
    with pytest.raises(
        ConfigError, match=r"layer 'dense' has no parameter 'unit'; did you mean 'units'\?"
    ):
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
    with pytest.raises(
        PluginError, match=r"plugin 'broken_plugin' failed in register_losses\(\).*disk on fire"
    ):
        registry()


def test_unknown_plugin_module(fresh_registry):
    with pytest.raises(PluginError, match="cannot import plugin module 'no_such_plugin_xyz'"):
        framework.load_plugins(["no_such_plugin_xyz"])


def test_plugin_module_by_name_registers_components(fresh_registry):
    framework.load_plugins(["cube_plugin"])
    cube = create("activations", "cube")
    assert cube.kind == "cube"
    assert registry().by_plugin()["cube_plugin"] == {"activations": ["cube"]}


# --- plugin modules that raise while they are imported ---------------------------------------

RAISING_MODULES = [
    ("raise RuntimeError('the GPU is not ready')", "RuntimeError: the GPU is not ready"),
    ("def register_layers(:\n    pass\n", "SyntaxError: "),
    ("import no_such_dependency_xyz", "No module named 'no_such_dependency_xyz'"),
    ("1 / 0", "ZeroDivisionError: division by zero"),
]


@pytest.mark.parametrize(("source", "error"), RAISING_MODULES)
def test_plugin_module_that_raises_on_import_is_named(
    fresh_registry, tmp_path, monkeypatch, source, error
):
    (tmp_path / "raising_plugin.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "raising_plugin", raising=False)
    with pytest.raises(PluginError) as info:
        framework.load_plugins(["raising_plugin"])
    assert str(info.value).startswith(f"cannot import plugin module 'raising_plugin': {error}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("where", ["--plugin", "config"])
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_command_with_a_raising_plugin_module_is_one_message_exit_2(tmp_path, where, command):
    (tmp_path / "raising_plugin.py").write_text("raise RuntimeError('the GPU is not ready')\n")
    args = [
        sys.executable,
        "-m",
        "framework",
        command,
        "--quiet",
        "--epochs",
        "1",
        "--logdir",
        "runs/never",
    ]
    if where == "--plugin":
        args += ["--plugin", "raising_plugin"]
    else:
        args += ["--set", 'plugins=["raising_plugin"]']
    if command == "sweep":
        args += ["--grid", "model.layers.0.units=2,3", "--jobs", "2"]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    )
    result = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "plugnet: error: cannot import plugin module 'raising_plugin': RuntimeError: the GPU is not ready\n"
    )
    assert not (tmp_path / "runs").exists()


BROKEN_DISTRIBUTION = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "plugnet-broken"
version = "0.3.1"

[project.entry-points.plugnet]
broken = "plugnet_broken"

[tool.setuptools]
py-modules = ["plugnet_broken"]
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """A directory holding an installed throw-away distribution, ``plugnet-broken``, whose
    ``plugnet`` entry point names a module that raises when imported."""
    for tool in ("pip", "setuptools"):
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"{tool} is not installed, so the throw-away plugin cannot be built")
    root = tmp_path_factory.mktemp("broken")
    source = root / "source"
    source.mkdir()
    (source / "pyproject.toml").write_text(BROKEN_DISTRIBUTION)
    (source / "plugnet_broken.py").write_text(
        "raise RuntimeError('this plugin needs a licence key')\n"
    )
    target = root / "site"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, f"pip could not install the throw-away plugin:\n{built.stderr}"
    assert (target / "plugnet_broken-0.3.1.dist-info" / "entry_points.txt").exists()
    return target


@pytest.mark.parametrize(
    "command", [["plugins"], ["train", "--quiet", "--epochs", "1", "--logdir", "runs/never"]]
)
def test_entry_point_that_fails_to_load_names_its_distribution(broken_site, tmp_path, command):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(broken_site), os.environ.get("PYTHONPATH", "")])
    )
    result = subprocess.run(
        [sys.executable, "-m", "framework", *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "plugnet: error: the 'plugnet' entry point 'broken' (plugnet_broken) of the distribution "
        "plugnet-broken 0.3.1 failed to load: RuntimeError: this plugin needs a licence key\n"
    )
    assert not (tmp_path / "runs").exists()
