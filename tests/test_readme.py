"""The README is a front door: short, its set-up commands those CI runs, its code true, and
the founding tutorials named by what they are wherever users read about them."""

import importlib.util
import re
from pathlib import Path

import numpy as np

from framework import create, testing

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

INSTALL_AND_TRAIN = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && plugnet train"
)
INSTALL_AND_TEST = (
    "python3 -m venv .venv && . .venv/bin/activate && "
    'pip install -e ".[dev,ray,onnx,docs]" "torch==2.13.0" && python -m pytest -q'
)


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_is_at_most_300_lines():
    assert len(README.splitlines()) <= 300


def test_readme_gives_the_two_set_up_commands_and_ci_installs_what_the_second_does():
    assert f"```sh\n{INSTALL_AND_TRAIN}\n```" in README
    assert f"```sh\n{INSTALL_AND_TEST}\n```" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[dev,ray,onnx,docs]" "torch==2.13.0"' in ci
    assert "python -m pytest -q" in ci


def test_readme_links_point_at_files_that_exist():
    links = re.findall(r"\]\(((?:docs|examples)/[^)#]+)", README)
    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_readme_layer_example_passes_the_gradient_checks(tmp_path, monkeypatch):
    layer_code = next(block for block in python_blocks(README) if "class Scale(Layer)" in block)
    (tmp_path / "readme_layers.py").write_text(layer_code)
    spec = importlib.util.spec_from_file_location("readme_layers", tmp_path / "readme_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    errors = testing.check_plugin(module)
    assert set(errors) == {"layers/scale"} and errors["layers/scale"] < 1e-6


def test_readme_compose_example_runs():
    code = next(block for block in python_blocks(README) if "resnet = Model(" in block)
    x, y, x_test, y_test = create("datasets", "moons", n_samples=200, test_fraction=0.2).load(
        np.random.default_rng(0)
    )
    code = code.replace("epochs=50", "epochs=2").replace('model.save("model.npz")', "")
    scope = {"x": x, "y": y, "x_test": x_test, "y_test": y_test}
    exec(compile(code, "README.md", "exec"), scope)  # the README's own code, as a reader runs it
    assert scope["resnet"].output_shape == (10,)


# "seed 000" .. "seed 003" were the tutorials' file names; readers cannot look them up.
SEED_NUMBER = re.compile(r"\bseed 0\d\d\b", re.I)


def test_founding_tutorials_are_named_by_what_they_are():
    places = [ROOT / "README.md", ROOT / "mkdocs.yml"]
    for folder, pattern in [("docs", "**/*.md"), ("examples", "**/*"), ("benchmarks", "*.py")]:
        places += [p for p in (ROOT / folder).glob(pattern) if p.is_file()]
    offenders = [
        f"{p.relative_to(ROOT)}: {match.group(0)}"
        for p in places
        if p.suffix in {".md", ".toml", ".py", ".ipynb", ".yml"}
        for match in SEED_NUMBER.finditer(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_readme_config_trains(tmp_path):
    import tomllib

    import framework

    config = tomllib.loads(re.findall(r"```toml\n(.*?)```", README, flags=re.S)[0])
    config["logging"]["logdir"] = str(tmp_path / "moons")
    config["train"]["epochs"] = 2
    summary = framework.run(config)
    assert summary["epochs"] == 2 and list((tmp_path / "moons").rglob("events.out.tfevents.*"))
