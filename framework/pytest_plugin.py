"""plugnet's pytest plugin: every component a plugin registers becomes its own test.

Installed with plugnet (a ``pytest11`` entry point), so any pytest run has it:

    pytest --plugnet-check mypackage          # from any directory, no test file needed

or, inside a test file, the ``plugnet_check`` fixture with a marker naming the module:

    import pytest
    import mypackage

    pytestmark = pytest.mark.plugnet_check(mypackage)

    def test_component(plugnet_check):
        plugnet_check()

Either way each registered component gets one test per check, named by component and
check, so a failure says which one broke::

    mypackage::layers/scaled_dense::round_trip
    mypackage::layers/scaled_dense::float32
    mypackage::layers/scaled_dense::float64
    mypackage::layers/scaled_dense::gradient[training=False]
    mypackage::layers/scaled_dense::gradient[training=True]
    mypackage::activations/cube::gradient
    mypackage::activations/cube::float32

The checks are `framework.testing`'s, with the same cases (``check_cases`` on the factory,
or ``cases={name: case}`` given to the marker): layers get the parameter round trip, the
dtype checks (forward and backward keep float32 or float64 and the promised shapes) and the
finite-difference gradient check in each ``training`` mode; activations and losses their
gradient check and a float32 check; initializers a shape check; every other kind is made
from its case, which catches a factory that cannot be called with its own defaults.

This module imports nothing of plugnet until checks are collected, so a pytest run that
does not use it pays next to nothing for it.
"""

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

OPTION = "--plugnet-check"
MARKER = "plugnet_check"

# The checks each kind gets, in the order they run.
CHECK_NAMES = {
    "layers": (
        "round_trip",
        "float32",
        "float64",
        "gradient[training=False]",
        "gradient[training=True]",
    ),
    "activations": ("gradient", "float32"),
    "losses": ("gradient", "float32"),
    "initializers": ("shape",),
}
MAKE_ONLY = ("make",)  # optimizers, metrics, datasets, callbacks


def pytest_addoption(parser):
    group = parser.getgroup("plugnet", "plugnet plugin checks")
    group.addoption(
        OPTION, action="append", default=[], metavar="MODULE", dest="plugnet_check",
        help="check every component the plugin module MODULE registers, one test per component "
        "and check (repeatable)",
    )  # fmt: skip


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{MARKER}(module, cases=None): parametrize the plugnet_check fixture over every "
        "component the plugin module registers and every check it gets",
    )


# --- what is checked -------------------------------------------------------------------------


class PluginCheckError(Exception):
    """A plugin module that cannot be imported or whose hooks are invalid."""


class Check:
    """One check of one component: calling it runs the check and fails the test naming both."""

    def __init__(self, module_name, kind, name, factory, case, case_label, check):
        self.module_name = module_name
        self.kind = kind
        self.name = name
        self.factory = factory
        self.case = dict(case)
        self.check = check
        self.component = f"{kind}/{name}{case_label}"

    @property
    def id(self):
        return f"{self.component}::{self.check}"

    def __repr__(self):
        return f"<plugnet check {self.module_name}::{self.id}>"

    def __call__(self):
        from framework.errors import PlugnetError

        try:
            run_check(self)
        except AssertionError as exc:
            failure = f"{self.id}: {exc}"
        except (
            PlugnetError
        ) as exc:  # plugnet's own message says it; any other error keeps its traceback
            failure = f"{self.id}: {type(exc).__name__}: {exc}"
        else:
            return
        pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback


def import_plugin(module):
    if not isinstance(module, str):
        return module
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PluginCheckError(f"cannot import plugin module '{module}': {exc}") from exc


def plugin_checks(module, cases=None):
    """Every `Check` of every component ``module`` (a module or its name) registers."""
    import pluggy

    from framework import hookspecs
    from framework.registry import PROJECT

    module = import_plugin(module)
    module_name = getattr(module, "__name__", repr(module))
    if getattr(module, "__file__", None) is None and hasattr(module, "__path__"):
        raise PluginCheckError(
            f"'{module_name}' imported as a namespace package (a directory without __init__.py "
            f"at {list(module.__path__)}) instead of the plugin: run pytest from another directory"
        )
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    try:  # validated against the hook specifications, as when plugnet loads it
        pm.register(module, name=module_name)
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginCheckError(f"plugin {module_name}: {exc}") from exc
    cases = dict(cases or {})
    checks = []
    for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            try:
                mapping = impl.function() or {}
            except Exception as exc:
                raise PluginCheckError(
                    f"plugin {module_name}: {hook_name}() raised {type(exc).__name__}: {exc}"
                ) from exc
            for name, factory in mapping.items():
                found = cases_for(name, factory, cases)
                for index, case in enumerate(found):
                    label = f"[{index}]" if len(found) > 1 else ""
                    for check in CHECK_NAMES.get(kind, MAKE_ONLY):
                        checks.append(Check(module_name, kind, name, factory, case, label, check))
    return checks


def cases_for(name, factory, cases):
    """The ``check_cases`` convention of `framework.testing.check_plugin`: the given cases,
    else the factory's ``check_cases``, else one empty case; a single case may be a mapping."""
    found = cases.get(name, getattr(factory, "check_cases", None)) or [{}]
    return [found] if isinstance(found, dict) else list(found)


# --- running one check -----------------------------------------------------------------------


def make(check):
    params = check.case.get("params", {})
    try:
        component = check.factory(**params)
    except Exception as exc:
        raise AssertionError(
            f"could not be made with params {params!r}: {type(exc).__name__}: {exc} (give it a "
            f"case: a check_cases list on the class, or cases={{'{check.name}': {{'params': {{...}}}}}})"
        ) from exc
    if getattr(component, "kind", None) is None:
        try:
            component.kind = check.name  # as the registry does: names it in messages
        except AttributeError:
            pass
    return component


def options(case, *names):
    """The case's keys among ``names``: the keyword arguments a check takes."""
    return {key: value for key, value in case.items() if key in names}


def run_check(check):
    from framework import testing

    component = make(check)
    case = {key: value for key, value in check.case.items() if key != "params"}
    kind, name = check.kind, check.check
    if kind == "layers":
        layer_args = options(case, "input_shape", "batch", "seed", "eps", "tol")
        if name == "round_trip":
            testing.check_layer(component, **layer_args, training=())
        elif name.startswith("gradient"):
            testing.check_layer(component, **layer_args, training=(name.endswith("True]"),))
        else:
            check_layer_dtype(component, name, **options(case, "input_shape", "batch", "seed"))
    elif kind == "activations":
        if name == "gradient":
            testing.check_activation(component, **case)
        else:
            check_activation_float32(component, **options(case, "shape", "seed"))
    elif kind == "losses":
        if name == "gradient":
            testing.check_loss(component, **case)
        else:
            check_loss_float32(
                component, **options(case, "y_pred", "y_true", "batch", "classes", "seed")
            )
    elif kind == "initializers":
        check_initializer_shape(component, **options(case, "shape", "seed"))


def expect(array, shape, dtype, what):
    array = np.asarray(array)
    if array.shape != tuple(shape):
        raise AssertionError(f"{what} has shape {array.shape}, expected {tuple(shape)}")
    if array.dtype != dtype:
        raise AssertionError(
            f"{what} has dtype {array.dtype}, expected {dtype} (keep the input's dtype)"
        )


def check_layer_dtype(layer, dtype, input_shape=(4,), batch=3, seed=0):
    """Built in ``dtype`` as a model builds it, the layer's parameters, outputs, gradients
    and input gradients are all ``dtype`` and have the shapes ``build`` promised, in both
    ``training`` modes."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    layer.name, layer.dtype, layer.rng = getattr(layer, "kind", None) or "layer", dtype, rng
    multi = getattr(layer, "multi_input", False)
    shapes = [tuple(s) for s in input_shape] if multi else [tuple(input_shape)]
    output_shape = tuple(layer.build(shapes if multi else shapes[0]))
    for key, value in layer.params.items():
        expect(value, np.shape(value), dtype, f"params['{key}']")

    def sample(shape):
        if getattr(layer, "integer_input", False):
            return rng.integers(0, 2, size=(batch, *shape))
        return rng.normal(size=(batch, *shape)).astype(dtype)

    for training in (False, True):
        where = f"in {dtype} (training={training})"
        inputs = [sample(shape) for shape in shapes]
        y = layer.forward(inputs if multi else inputs[0], training)
        expect(y, (batch, *output_shape), dtype, f"forward's output {where}")
        grad = layer.backward(rng.normal(size=np.shape(y)).astype(dtype))
        grads = list(grad) if multi else [grad]
        for x, g in zip(inputs, grads, strict=True):
            if np.issubdtype(x.dtype, np.floating):
                expect(g, x.shape, dtype, f"backward's gradient with respect to the input {where}")
        for key, value in layer.params.items():
            expect(layer.grads[key], value.shape, dtype, f"grads['{key}'] {where}")


def check_activation_float32(activation, shape=(4, 5), seed=0):
    z = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    a = activation.forward(z.copy())
    expect(a, z.shape, np.float32, "forward's output in float32")
    grad = activation.backward(z, np.asarray(a), np.ones_like(z))
    expect(grad, z.shape, np.float32, "backward's output in float32")


def check_loss_float32(loss, y_pred=None, y_true=None, batch=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    if y_pred is None:
        z = rng.normal(size=(batch, classes))
        y_pred = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    if y_true is None:
        y_true = np.eye(classes)[rng.integers(classes, size=len(y_pred))]
    y_pred = np.asarray(y_pred, dtype=np.float32)
    value = loss.forward(y_pred.copy(), np.asarray(y_true))
    if np.ndim(value) != 0 or not np.isfinite(value):
        raise AssertionError(f"forward in float32 must return one finite number, got {value!r}")
    expect(
        loss.backward(y_pred.copy(), np.asarray(y_true)),
        y_pred.shape,
        np.float32,
        "backward's output in float32",
    )


def check_initializer_shape(initializer, shape=(3, 4), seed=0):
    first = np.asarray(initializer(tuple(shape), np.random.default_rng(seed)))
    if first.shape != tuple(shape):
        raise AssertionError(f"returned shape {first.shape} for shape {tuple(shape)}")
    if not np.all(np.isfinite(first)):
        raise AssertionError("returned values that are not finite")
    again = np.asarray(initializer(tuple(shape), np.random.default_rng(seed)))
    if not np.array_equal(first, again):
        raise AssertionError(
            "the same generator seed gave different values: draw from the rng given"
        )


# --- the fixture and the marker --------------------------------------------------------------


def pytest_generate_tests(metafunc):
    if MARKER not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None:
        return  # the fixture itself says what is missing
    if not marker.args:
        raise pytest.UsageError(
            f"{MARKER} marker: name the plugin module, e.g. @pytest.mark.{MARKER}(mypackage)"
        )
    try:
        checks = plugin_checks(marker.args[0], marker.kwargs.get("cases"))
    except PluginCheckError as exc:
        raise pytest.UsageError(str(exc)) from exc
    if not checks:
        raise pytest.UsageError(f"plugin {marker.args[0]!r} registers no components")
    metafunc.parametrize(MARKER, checks, ids=[check.id for check in checks])


@pytest.fixture
def plugnet_check():
    """Parametrized over every component and check of the module the ``plugnet_check``
    marker names; reaching this body means the marker is missing."""
    pytest.fail(
        f"mark the test with @pytest.mark.{MARKER}(your_plugin_module) to check its components",
        pytrace=False,
    )


# --- --plugnet-check MODULE: items with no test file -----------------------------------------


class PluginModule(pytest.Collector):
    """The checks of one plugin module, grouped by component."""

    def collect(self):
        try:
            checks = plugin_checks(self.name)
        except PluginCheckError as exc:
            raise self.CollectError(str(exc)) from exc
        components = {}
        for check in checks:
            components.setdefault(check.component, []).append(check)
        return [
            Component.from_parent(self, name=name, checks=group)
            for name, group in components.items()
        ]

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value.args[0])
        return super().repr_failure(excinfo)


class Component(pytest.Collector):
    def __init__(self, *, checks, **kwargs):
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self):
        return [CheckItem.from_parent(self, name=check.check, check=check) for check in self.checks]


class CheckItem(pytest.Item):
    def __init__(self, *, check, **kwargs):
        super().__init__(**kwargs)
        self.check = check

    def runtest(self):
        self.check()

    def reportinfo(self):
        return self.path, None, f"{self.check.module_name}::{self.check.id}"


def module_path(name):
    """The plugin module's file, for pytest's reports (the current directory if unknown)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin not in ("built-in", "frozen") else Path.cwd()


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    # The session's own collection (of the paths given, or of the current directory) gains
    # one collector per --plugnet-check module, so everything else pytest does with
    # collected items (-k, --collect-only, reports) applies to them unchanged.
    report = yield
    if isinstance(collector, pytest.Session) and report.passed:
        for name in collector.config.getoption("plugnet_check"):
            report.result.append(
                PluginModule.from_parent(collector, name=name, nodeid=name, path=module_path(name))
            )
    return report
