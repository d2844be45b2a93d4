"""plugnet's pytest plugin, run through pytest's own ``pytester``: ``--plugnet-check MODULE``
from a directory with no test files, and the ``plugnet_check`` fixture in a test file, on a
correct plugin and on a deliberately wrong one."""

import importlib.metadata

import pytest

from framework import registry

pytest_plugins = ["pytester"]

# pytester's in-process runs forget the modules they imported; importing every built-in plugin
# (scipy's extensions among them) here first keeps them, as C extensions load once a process.
registry()

GOOD = '''
import attrs
import numpy as np

from framework import Activation, Layer, activate, activation_spec, hookimpl, preactivation_grad


class Cube(Activation):
    """a = z³;  da/dz = 3z²."""

    def forward(self, z):
        return z**3

    def backward(self, z, a, grad_a):
        return grad_a * 3 * z**2


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class ScaledDense(Layer):
    """z = s ⊙ (x · W) + b;  a = f(z)."""

    check_cases = [{"params": {"units": 3, "activation": "tanh"}, "input_shape": (4,)}]

    units: int
    activation: object = attrs.field(default=None, converter=activation_spec)

    def build(self, input_shape):
        self.add_param("weights", (input_shape[0], self.units), "glorot_uniform")
        self.add_param("scale", (self.units,), {"type": "constant", "value": 1.0})
        self.add_param("bias", (self.units,), "zeros")
        return (self.units,)

    def forward(self, x, training=False):
        self.inputs, self.xw = x, x @ self.params["weights"]
        return activate(self, self.xw * self.params["scale"] + self.params["bias"])

    def backward(self, grad_y):
        delta = preactivation_grad(self, grad_y)
        self.grads["scale"][...] = np.sum(self.xw * delta, axis=0)
        self.grads["bias"][...] = np.sum(delta, axis=0)
        delta_xw = delta * self.params["scale"]
        self.grads["weights"][...] = self.inputs.T @ delta_xw
        return delta_xw @ self.params["weights"].T


@hookimpl
def register_activations():
    return {"cube": Cube}


@hookimpl
def register_layers():
    return {"scaled_dense": ScaledDense}
'''

# Two mistakes a plugin author makes: a wrong derivative (2z² for z³) and a scale gradient
# that forgets the activation's derivative (summing x·W ⊙ g instead of x·W ⊙ δ).
WRONG = GOOD.replace("grad_a * 3 * z**2", "grad_a * 2 * z**2").replace(
    "np.sum(self.xw * delta, axis=0)", "np.sum(self.xw * grad_y, axis=0)"
)

GOOD_CHECKS = [
    "activations/cube::gradient",
    "activations/cube::float32",
    "layers/scaled_dense::round_trip",
    "layers/scaled_dense::float32",
    "layers/scaled_dense::float64",
    "layers/scaled_dense::gradient[training=False]",
    "layers/scaled_dense::gradient[training=True]",
]


def plugin_args():
    """Loads the plugin where plugnet is not installed with its entry points (a checkout on
    PYTHONPATH); where it is, pytest loads it by itself and -p would load it twice."""
    entry_points = importlib.metadata.entry_points(group="pytest11")
    if any(ep.value == "framework.pytest_plugin" for ep in entry_points):
        return []
    return ["-p", "framework.pytest_plugin"]


@pytest.fixture
def run(pytester):
    pytester.syspathinsert()

    def run(*args):
        # hypothesis's plugin would import hypothesis afresh in every run (4 s each)
        return pytester.runpytest(
            *plugin_args(), "-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args
        )

    return run


def test_option_collects_every_component_and_check_with_no_test_files(pytester, run):
    pytester.makepyfile(good_plugin=GOOD)  # not a test file: nothing else to collect
    result = run("--plugnet-check", "good_plugin", "-v")
    result.assert_outcomes(passed=len(GOOD_CHECKS))
    for check in GOOD_CHECKS:
        pattern = check.replace("[", "?").replace("]", "?")  # brackets are fnmatch's
        result.stdout.fnmatch_lines([f"good_plugin::{pattern} PASSED*"])
    assert result.ret == 0


def test_a_wrong_plugin_fails_naming_the_component_and_the_check(pytester, run):
    pytester.makepyfile(wrong_plugin=WRONG)
    result = run("--plugnet-check", "wrong_plugin")
    result.assert_outcomes(passed=4, failed=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "FAILED wrong_plugin::layers/scaled_dense::gradient?training=False?*",
            "FAILED wrong_plugin::layers/scaled_dense::gradient?training=True?*",
            "FAILED wrong_plugin::activations/cube::gradient*",
        ],
        consecutive=False,
    )
    text = result.stdout.str()
    assert "activations/cube::gradient: activation" in text
    assert "gradient with respect to z: max error" in text
    assert "gradient of 'scale': max error" in text  # which parameter, too
    assert "Traceback" not in text and "During handling" not in text


def test_the_fixture_parametrizes_a_test_over_the_checks(pytester, run):
    pytester.makepyfile(good_plugin=GOOD, wrong_plugin=WRONG)
    pytester.makepyfile(
        test_plugins="""
        import pytest
        import good_plugin

        @pytest.mark.plugnet_check(good_plugin)
        def test_good(plugnet_check):
            plugnet_check()

        @pytest.mark.plugnet_check("wrong_plugin")
        def test_wrong(plugnet_check):
            plugnet_check()
        """
    )
    result = run("-v")
    result.assert_outcomes(passed=len(GOOD_CHECKS) + 4, failed=3)
    result.stdout.fnmatch_lines(
        ["*test_good?layers/scaled_dense::gradient?training=True?? PASSED*"], consecutive=False
    )
    result.stdout.fnmatch_lines(
        ["*test_wrong?activations/cube::gradient? FAILED*"], consecutive=False
    )


def test_cases_given_to_the_marker_replace_check_cases(pytester, run):
    pytester.makepyfile(good_plugin=GOOD)
    pytester.makepyfile(
        test_cases="""
        import pytest

        CASES = {"scaled_dense": [{"params": {"units": 2}, "input_shape": (3,)},
                                  {"params": {"units": 4, "activation": "sigmoid"}, "input_shape": (2,)}]}

        @pytest.mark.plugnet_check("good_plugin", cases=CASES)
        def test_component(plugnet_check):
            plugnet_check()
        """
    )
    result = run("-v")
    result.assert_outcomes(passed=2 + 2 * 5)
    result.stdout.fnmatch_lines(["*layers/scaled_dense?1?::round_trip? PASSED*"], consecutive=False)


def test_a_layer_that_cannot_be_made_says_to_give_it_a_case(pytester, run):
    pytester.makepyfile(no_cases=GOOD.replace("    check_cases = [", "    _unused = ["))
    result = run("--plugnet-check", "no_cases")
    result.assert_outcomes(passed=2, failed=5)
    result.stdout.fnmatch_lines(
        ["*layers/scaled_dense::round_trip: could not be made with params {}*check_cases*"]
    )


def test_a_module_that_cannot_be_imported_is_a_collection_error(pytester, run):
    result = run("--plugnet-check", "no_such_plugin_module")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*cannot import plugin module 'no_such_plugin_module'*"])


def test_a_hook_with_a_misspelt_argument_is_a_collection_error(pytester, run):
    pytester.makepyfile(
        bad_hooks="""
        from framework import hookimpl

        @hookimpl
        def register_layers(trainer):
            return {}
        """
    )
    result = run("--plugnet-check", "bad_hooks")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["plugin bad_hooks: *register_layers*", "*definition: register_layers(trainer)*"]
    )


def test_the_fixture_without_the_marker_says_what_is_missing(pytester, run):
    pytester.makepyfile(test_unmarked="def test_it(plugnet_check):\n    plugnet_check()\n")
    result = run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*mark the test with @pytest.mark.plugnet_check(your_plugin_module)*"]
    )


def test_collect_only_lists_the_checks_of_the_built_in_activations(run):
    result = run("--plugnet-check", "plugins.activations", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["plugins.activations::activations/softmax::gradient", "14 tests collected*"],
        consecutive=False,
    )
