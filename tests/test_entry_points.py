"""Real entry-point discovery: the example plugin distribution (examples/plugin) is built and
installed into a throw-away directory, and plugnet, run with that directory on its path,
finds it through the ``plugnet`` entry-point group alone."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framework import testing

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"

CONFIG = """\
seed = 0
[data]
type = "moons"
n_samples = 1000
noise = 0.2
test_fraction = 0.2
[model]
layers = [
  { type = "dense", units = 16, activation = "tanh" },
  { type = "gaussian_noise", stddev = 0.05 },
  { type = "dense", units = 2, activation = "softmax" },
]
[train]
loss = "cross_entropy"
optimizer = { type = "sgd", lr = 0.1, momentum = 0.9 }
epochs = 60
batch_size = 32
metrics = ["accuracy"]
[logging]
logdir = "runs/swish"
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A directory holding the installed ``plugnet-swish`` distribution (package and
    dist-info with its entry point), built from a copy so the source tree stays clean."""
    for tool in ("pip", "setuptools"):
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"{tool} is not installed, so the example plugin cannot be built")
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, root / "source")
    target = root / "site"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, f"pip could not install the example plugin:\n{built.stderr}"
    assert (target / "plugnet_swish-0.1.0.dist-info" / "entry_points.txt").exists()
    return target


def plugnet(*args, path=None):
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "framework", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plugins_lists_the_installed_distribution(site):
    result = plugnet("plugins", path=site)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines.index("swish  (distribution plugnet-swish 0.1.0)")
    assert lines[header + 1].split() == ["layers:", "gaussian_noise"]
    assert lines[header + 2].split() == ["activations:", "swish"]


def test_train_uses_the_plugins_components_by_name(site, tmp_path):
    (tmp_path / "swish.toml").write_text(CONFIG)
    args = ["train", "swish.toml", "--set", "model.layers.0.activation=swish", "--quiet"]
    result = plugnet(*args, path=site)
    assert result.returncode == 0, result.stderr
    test_line = next(line for line in result.stdout.splitlines() if line.startswith("test "))
    accuracy = float(test_line.split("accuracy")[1])
    assert accuracy >= 0.9, result.stdout
    assert (tmp_path / "runs" / "swish" / "summary.json").exists()

    if importlib.util.find_spec("plugnet_swish") is None:  # not installed here for good
        without = plugnet(*args[:-1], "--logdir", "runs/without", path=None)
        assert without.returncode == 2
        assert "unknown activation 'swish'" in without.stderr
        assert not (tmp_path / "runs" / "without").exists()


def test_check_plugin_passes_on_the_installed_package(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "plugnet_swish", raising=False)
    import plugnet_swish

    assert Path(plugnet_swish.__file__).is_relative_to(site)
    report = testing.check_plugin(plugnet_swish)
    assert set(report) == {"layers/gaussian_noise", "activations/swish"}
    assert max(report.values()) < 1e-6
