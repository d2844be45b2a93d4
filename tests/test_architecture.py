"""The floors of framework/ (docs/architecture.md): each module imports only modules on its
own floor or below, lazy imports inside functions included, and no modules import each
other in a circle.  Read from the source with `ast`; nothing is imported."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORK = os.path.join(ROOT, "framework")

# From the ground up; a module may import its own floor and those below it.
FLOORS = [
    (
        "ground: errors, files on disk, the registry, configs, data, signals",
        [
            "errors", "formatting", "hookspecs", "validators", "threads", "windows", "storage",
            "registry", "config", "data", "stopping", "tensorboardx_protos", "event_files", "images",
            "text", "kernels", "allocator", "winograd",
        ],
    ),
    ("engine: components, models, the training loop", ["base", "model", "batch_split", "trainer"]),
    (
        "model and checkpoint files, TensorBoard summaries, the plugin authors' kit",
        ["checkpoints", "saving", "summaries", "testing", "pytest_plugin", "scaffold"],
    ),
    ("the run directory", ["rundir"]),
    ("a run trained, a trained model used", ["run", "inference", "onnx_export"]),
    ("sweeps", ["sweeps"]),
    ("the public API and the command line", ["__init__", "cli", "__main__"]),
]  # fmt: skip
FLOOR = {module: level for level, (_, modules) in enumerate(FLOORS) for module in modules}


def module_name(path):
    """``framework/sweeps/runner.py`` -> ``sweeps``, ``framework/run.py`` -> ``run``."""
    parts = os.path.relpath(path, FRAMEWORK).removesuffix(".py").split(os.sep)
    return parts[0]


def framework_files():
    for directory, _, names in os.walk(FRAMEWORK):
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def imported(path):
    """``{(module, line)}``: the framework modules a file imports, wherever the import is."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "framework":  # from framework import threads, __version__
                names = [
                    f"framework.{alias.name}"
                    if os.path.exists(os.path.join(FRAMEWORK, f"{alias.name}.py"))
                    else "framework.__init__"
                    for alias in node.names
                ]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "framework" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def import_graph():
    graph = {}
    for path in framework_files():
        source = module_name(path)
        for target, line in imported(path):
            if target != source:
                graph.setdefault(source, {}).setdefault(target, (path, line))
    return graph


def test_every_module_has_a_floor():
    assert {module_name(path) for path in framework_files()} == set(FLOOR)


def test_no_import_runs_up_a_floor():
    upward = [
        f"{os.path.relpath(path, ROOT)}:{line} imports framework.{target} "
        f"({FLOORS[FLOOR[target]][0]}) from below it"
        for source, targets in import_graph().items()
        for target, (path, line) in targets.items()
        if FLOOR[target] > FLOOR[source]
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    graph = import_graph()
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for target in graph.get(module, {}):
            if state.get(target) == "open":
                circle = trail[trail.index(target) :] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
