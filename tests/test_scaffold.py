"""``plugnet new-plugin``: the distribution it writes installs into a throw-away virtual
environment, its tests pass there at once, and ``plugnet plugins`` lists it; bad names and
occupied directories are clean errors."""

import importlib.util
import os
import shutil
import site
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from framework import testing
from framework.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_it_writes_a_distribution_whose_components_pass_the_checks(tmp_path, capsys, monkeypatch):
    assert main(["new-plugin", "my_layers", str(tmp_path / "plugin")]) == 0
    out = capsys.readouterr().out
    assert "pip install -e" in out and "pytest" in out
    plugin = tmp_path / "plugin"
    assert sorted(str(p.relative_to(plugin)) for p in plugin.rglob("*") if p.is_file()) == [
        "README.md", "my_layers/__init__.py", "pyproject.toml", "tests/test_my_layers.py",
    ]  # fmt: skip
    pyproject = (plugin / "pyproject.toml").read_text()
    assert 'name = "plugnet-my-layers"' in pyproject
    assert '[project.entry-points.plugnet]\nmy_layers = "my_layers"' in pyproject
    assert "$" not in pyproject + (plugin / "my_layers" / "__init__.py").read_text()

    monkeypatch.syspath_prepend(str(plugin))
    import my_layers

    report = testing.check_plugin(my_layers)
    assert set(report) == {"layers/scaled_dense", "activations/cube"}
    assert max(report.values()) < 1e-6
    assert "dL/ds = Σ_batch (x · W) ⊙ δ" in my_layers.ScaledDense.__doc__  # the maths is there


def test_the_default_directory_is_the_distribution_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "cube_things"]) == 0
    assert (tmp_path / "plugnet-cube-things" / "cube_things" / "__init__.py").exists()


def test_an_empty_directory_is_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["new-plugin", "filler", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "pyproject.toml").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no staging directory left


@pytest.mark.parametrize(
    "name, message",
    [
        ("my-plugin", "'my-plugin' is not a valid Python package name*(e.g. 'my_plugin')"),
        ("2fast", "'2fast' is not a valid Python package name*"),
        ("class", "'class' is not a valid Python package name*"),
        ("naïve", "'naïve' is not a valid Python package name*"),
        ("json", "'json' is taken*"),
        ("framework", "'framework' is taken*"),
    ],
)
def test_a_bad_name_is_a_clean_error(tmp_path, capsys, name, message):
    import fnmatch

    assert main(["new-plugin", name, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert fnmatch.fnmatch(err, f"plugnet: error: {message}"), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_directory_that_is_not_empty_is_refused_and_left_alone(tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    assert main(["new-plugin", "good_name", str(target)]) == 2
    assert "taken exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


# --- in a fresh environment --------------------------------------------------------------------


SEES_PLUGNET = f"""
import importlib.metadata, pathlib, framework
dist = importlib.metadata.distribution("plugnet")
plugin = any(ep.group == "pytest11" and ep.value == "framework.pytest_plugin" for ep in dist.entry_points)
here = pathlib.Path(framework.__file__).resolve().is_relative_to({str(ROOT)!r})
raise SystemExit(0 if plugin and here else 1)
"""


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A throw-away virtual environment that sees this environment's packages (numpy, pip,
    setuptools...: nothing is downloaded) and has plugnet installed; returns its python."""
    for tool in ("pip", "setuptools"):
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"{tool} is not installed, so nothing can be installed into a venv")
    root = tmp_path_factory.mktemp("venv")
    venv.create(root / "env", with_pip=False)
    python = root / "env" / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # addsitedir also runs the .pth files there (editable installs use them)
    ours = {
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        *site.getsitepackages(),
    }
    lines = [
        f"import site; site.addsitedir({path!r})" for path in sorted(ours) if os.path.isdir(path)
    ]
    Path(purelib, "parent-environment.pth").write_text("\n".join(lines) + "\n")
    if in_venv(python, "-c", SEES_PLUGNET, cwd=root).returncode != 0:
        # This environment runs plugnet from a checkout on PYTHONPATH, or has another copy
        # installed: install this checkout into the venv, as `pip install .` would.
        source = root / "plugnet"
        for part in ("framework", "plugins"):
            shutil.copytree(
                ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        for part in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / part, source / part)
        pip(python, "install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    return python


def pip(python, *args):
    result = subprocess.run(
        [python, "-m", "pip", "--quiet", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def in_venv(python, *args, cwd):
    # plugnet as installed in the venv, not a checkout on PYTHONPATH
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PLUGNET_DATA")
    }
    return subprocess.run(
        [python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_in_a_fresh_venv_install_then_pytest_passes_and_plugnet_lists_it(fresh_venv, tmp_path):
    python = fresh_venv
    made = in_venv(python, "-m", "framework", "new-plugin", "fresh_plugin", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    pip(
        python,
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-e",
        str(tmp_path / "plugnet-fresh-plugin"),
    )

    tests = in_venv(
        python, "-m", "pytest", "plugnet-fresh-plugin", "-p", "no:cacheprovider", "-v", cwd=tmp_path
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "test_component[layers/scaled_dense::gradient[training=True]] PASSED" in tests.stdout
    assert "test_component[activations/cube::gradient] PASSED" in tests.stdout
    assert " 9 passed" in tests.stdout

    listed = in_venv(python, "-m", "framework", "plugins", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    header = lines.index("fresh_plugin  (distribution plugnet-fresh-plugin 0.1.0)")
    assert lines[header + 1].split() == ["layers:", "scaled_dense"]
    assert lines[header + 2].split() == ["activations:", "cube"]

    # the same checks from the command line, from a directory with no tests in it
    (tmp_path / "elsewhere").mkdir()
    args = ["-m", "pytest", "--plugnet-check", "fresh_plugin", "-p", "no:cacheprovider"]
    alone = in_venv(python, *args, cwd=tmp_path / "elsewhere")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert " 7 passed" in alone.stdout
