"""Every registered built-in layer, activation and loss against finite differences.

The tests are parametrised by the registry's names, so a built-in is checked the moment it is
registered.  A name missing from the tables below is checked with its defaults (layers on
inputs of shape (4,)); a layer that cannot build that way fails here until it gets an entry.
Entries for names not registered (yet) generate nothing.
"""

import types

import attrs
import numpy as np
import pytest

from framework import Activation, Layer, Loss, hookimpl, registry, testing

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]

# name -> list of cases: constructor ``params`` plus keyword arguments of the check.
LAYER_CASES = {
    "dense": [
        {"params": {"units": 3}, "input_shape": (4,)},
        *({"params": {"units": 3, "activation": a}, "input_shape": (4,)} for a in ACTIVATIONS),
        {"params": {"units": 2, "activation": "sigmoid", "use_bias": False}, "input_shape": (3,)},
    ],
    "activation": [{"params": {"activation": a}, "input_shape": (2, 3)} for a in ACTIVATIONS],
    "dropout": [{"params": {"rate": 0.5}, "input_shape": (6,)}, {"params": {"rate": 0.0}}],
    "flatten": [{"input_shape": (2, 3, 2)}],
    "reshape": [{"params": {"target_shape": (3, -1)}, "input_shape": (2, 6)}],
    "conv2d": [
        {
            "params": {"filters": 3, "kernel_size": 3, "padding": p, "strides": s},
            "input_shape": (5, 5, 2),
        }
        for p in ("same", "valid")
        for s in (1, 2)
    ]
    + [
        {
            "params": {"filters": 2, "kernel_size": (2, 3), "activation": "tanh"},
            "input_shape": (4, 5, 1),
        }
    ],
    "maxpool2d": [
        {"params": {"pool_size": 2}, "input_shape": (4, 4, 2)},
        {"params": {"pool_size": 3, "strides": 2, "padding": "same"}, "input_shape": (5, 5, 2)},
    ],
    "avgpool2d": [
        {"params": {"pool_size": 2}, "input_shape": (4, 4, 2)},
        {"params": {"pool_size": 3, "strides": 2, "padding": "same"}, "input_shape": (5, 5, 2)},
    ],
    "add": [
        {"input_shape": [(4,), (4,)]},
        {"params": {"activation": "relu"}, "input_shape": [(3, 3, 2)] * 3},
    ],
    "multiply": [
        {"input_shape": [(4,), (4,)]},
        {"params": {"activation": "tanh"}, "input_shape": [(2, 3)] * 3},
    ],
    "concatenate": [
        {"input_shape": [(3,), (2,), (1,)]},
        {"params": {"axis": 1}, "input_shape": [(2, 3), (1, 3)]},
        {"params": {"axis": -2, "activation": "sigmoid"}, "input_shape": [(2, 2, 3), (2, 1, 3)]},
    ],
    "batch_norm": [
        {"input_shape": (3,)},
        {"params": {"momentum": 0.3, "epsilon": 1e-3}, "input_shape": (3, 2, 2)},
        {"input_shape": (4, 3), "batch": 2},
    ],
    "layer_norm": [
        {"input_shape": (5,)},
        {"params": {"epsilon": 1e-3}, "input_shape": (3, 4)},
        {"params": {"use_bias": False}, "input_shape": (3, 4)},
    ],
    "global_avgpool2d": [{"input_shape": (3, 2, 4)}],
    "global_maxpool2d": [{"input_shape": (3, 3, 2)}],
}

ACTIVATION_CASES = {
    "leaky_relu": [{}, {"params": {"alpha": 0.2}}],
    "softmax": [{"shape": (3, 4)}, {"shape": (2, 3, 5)}],
    "gelu": [{}, {"params": {"approximate": "tanh"}}],
}

PROBABILITIES = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.25, 0.25, 0.5], [0.1, 0.7, 0.2]])
LOSS_CASES = {
    "mse": [{}, {"params": {"reduction": "half_sum"}}, {"params": {"reduction": "sum"}}],
    "binary_cross_entropy": [
        {},
        {
            "params": {"from_logits": True},
            "y_pred": [[-1.5], [0.3], [2.0], [-0.2]],
            "y_true": [1, 0, 1, 0],
        },
    ],
    "cross_entropy": [
        {},
        {"y_pred": PROBABILITIES, "y_true": np.array([1, 0, 2, 1])},
        {
            "params": {"from_logits": True},
            "y_pred": 3 * PROBABILITIES - 1,
            "y_true": np.array([0, 2, 2, 1]),
        },
    ],
}


def cases(kind, table):
    """``(name, case)`` for every registered name of ``kind``: its table entries, or the
    default case when it has none."""
    return [
        pytest.param(name, case, id=f"{name}-{i}")
        for name in registry().names(kind)
        for i, case in enumerate(
            table.get(name)
            or getattr(registry().entry(kind, name).factory, "check_cases", None)
            or [{}]
        )
    ]


def make(kind, name, case):
    case = dict(case)
    return registry().create(kind, name, **case.pop("params", {})), case


@pytest.mark.parametrize(("name", "case"), cases("layers", LAYER_CASES))
def test_layer_gradients(name, case):
    layer, check_args = make("layers", name, case)
    assert testing.check_layer(layer, **check_args) < 1e-6


@pytest.mark.parametrize(("name", "case"), cases("activations", ACTIVATION_CASES))
def test_activation_gradients(name, case):
    activation, check_args = make("activations", name, case)
    assert testing.check_activation(activation, **check_args) < 1e-6


@pytest.mark.parametrize(("name", "case"), cases("losses", LOSS_CASES))
def test_loss_gradients(name, case):
    loss, check_args = make("losses", name, case)
    assert testing.check_loss(loss, **check_args) < 1e-6


def test_every_contract_builtin_is_registered_and_so_checked():
    names = registry()
    assert set(ACTIVATIONS) <= set(names.names("activations"))
    assert {"mse", "binary_cross_entropy", "cross_entropy"} <= set(names.names("losses"))
    assert {"dense", "activation", "dropout", "flatten", "reshape"} <= set(names.names("layers"))


# --- the kit catches mistakes ----------------------------------------------------------------


class WrongCube(Activation):
    """a = z³ with a wrong derivative (2z² instead of 3z²)."""

    def forward(self, z):
        return z**3

    def backward(self, z, a, grad_a):
        return grad_a * 2 * z**2


@attrs.define(eq=False)
class Scale(Layer):
    """y = x ⊙ w, per feature; ``wrong`` forgets to sum the weight gradient over the batch."""

    wrong: bool = False

    def build(self, input_shape):
        self.add_param("weights", input_shape, {"type": "normal"})
        return tuple(input_shape)

    def forward(self, x, training=False):
        self.inputs = x
        return x * self.params["weights"]

    def backward(self, grad_y):
        grad_w = (self.inputs * grad_y)[0] if self.wrong else np.sum(self.inputs * grad_y, axis=0)
        self.grads["weights"][...] = grad_w
        return grad_y * self.params["weights"]


class HalfGradientMSE(Loss):
    """mean((ŷ − y)²) with the factor 2 of its gradient forgotten."""

    def forward(self, y_pred, y_true):
        return float(np.mean((y_pred - y_true) ** 2))

    def backward(self, y_pred, y_true):
        return (y_pred - y_true) / y_pred.size


class WrongFusedCrossEntropy(Loss):
    """A correct cross-entropy whose fused softmax gradient has the wrong sign."""

    def forward(self, y_pred, y_true):
        return float(-np.mean(np.sum(y_true * np.log(y_pred), axis=-1)))

    def backward(self, y_pred, y_true):
        return -y_true / y_pred / len(y_pred)

    def fuses_with(self, link):
        return link == "softmax"

    def backward_fused(self, y_pred, y_true):
        return (y_true - y_pred) / len(y_pred)


class FusedCrossEntropy(WrongFusedCrossEntropy):
    def backward_fused(self, y_pred, y_true):
        return (y_pred - y_true) / len(y_pred)


def test_the_correct_versions_pass():
    """The broken components below differ from these only by their bug."""
    import cube_plugin  # tests/support: a = z³ with da/dz = 3z²

    assert testing.check_layer(Scale(), input_shape=(3,)) < 1e-6
    assert testing.check_loss(FusedCrossEntropy()) < 1e-6
    assert set(testing.check_plugin(cube_plugin)) == {"activations/cube"}


def test_kit_catches_a_wrong_activation_derivative():
    with pytest.raises(
        AssertionError, match=r"activation .*WrongCube.*gradient with respect to z: max error"
    ):
        testing.check_activation(WrongCube())


def test_kit_catches_a_wrong_parameter_gradient_and_names_it():
    with pytest.raises(
        AssertionError,
        match=r"layer .*wrong=True.*gradient of 'weights': max error .* > tolerance 1e-06",
    ):
        testing.check_layer(Scale(wrong=True), input_shape=(3,))


def test_kit_catches_a_wrong_loss_gradient():
    with pytest.raises(AssertionError, match="gradient with respect to y_pred: max error"):
        testing.check_loss(HalfGradientMSE())


def test_kit_catches_a_wrong_fused_gradient():
    with pytest.raises(
        AssertionError, match="backward_fused after softmax against finite differences"
    ):
        testing.check_loss(WrongFusedCrossEntropy())


def test_kit_catches_wrong_shapes():
    @attrs.define(eq=False)
    class Lies(Layer):
        def build(self, input_shape):
            return (input_shape[0] + 1,)  # promises one more feature than forward gives

        def forward(self, x, training=False):
            return x

        def backward(self, grad_y):
            return grad_y

    with pytest.raises(
        AssertionError, match=r"forward output has shape \(3, 4\), expected \(3, 5\)"
    ):
        testing.check_layer(Lies(), input_shape=(4,))


def test_dropout_is_checked_with_its_mask_in_training():
    """Training-mode dropout differs from the identity, yet passes: the mask is held fixed."""
    layer = registry().create("layers", "dropout", rate=0.5)
    assert testing.check_layer(layer, input_shape=(8,), training=(True,)) < 1e-6
    assert np.count_nonzero(layer.activations == 0) > 0


# --- check_plugin ----------------------------------------------------------------------------


def plugin_module(**hooks):
    module = types.ModuleType("example_plugin")
    for hook_name, mapping in hooks.items():
        setattr(module, hook_name, hookimpl(lambda mapping=mapping: mapping))
    return module


def test_check_plugin_reports_every_component():
    module = plugin_module(
        register_layers={"scale": Scale},
        register_activations={"tanh_copy": type(registry().create("activations", "tanh"))},
    )
    report = testing.check_plugin(module)
    assert set(report) == {"layers/scale", "activations/tanh_copy"}
    assert all(error < 1e-6 for error in report.values())


def test_check_plugin_lists_every_failure_with_component_names():
    Scale.check_cases = [{"params": {"wrong": True}, "input_shape": (2,)}]
    try:
        module = plugin_module(
            register_layers={"scale": Scale},
            register_activations={"cube": WrongCube},
            register_losses={"half": HalfGradientMSE},
        )
        with pytest.raises(AssertionError) as caught:
            testing.check_plugin(module)
    finally:
        del Scale.check_cases
    message = str(caught.value)
    assert message.startswith("plugin example_plugin: 3 check(s) failed:")
    assert "layers/scale: layer Scale(wrong=True)" in message
    assert "activations/cube:" in message and "losses/half:" in message


def test_check_plugin_asks_for_a_case_when_defaults_cannot_build():
    dense = type(registry().create("layers", "dense", units=1))
    # a layer that needs an argument and brings no check_cases of its own
    module = plugin_module(
        register_layers={"dense_copy": type("DenseCopy", (dense,), {"check_cases": None})}
    )
    with pytest.raises(
        AssertionError,
        match=r"layers/dense_copy: could not be checked with case \{\}.*give it a case",
    ):
        testing.check_plugin(module)
    report = testing.check_plugin(
        module, cases={"dense_copy": {"params": {"units": 2}, "input_shape": (3,)}}
    )
    assert report["layers/dense_copy"] < 1e-6


def test_check_plugin_rejects_a_misspelt_hook():
    module = types.ModuleType("typo_plugin")
    module.register_layer = hookimpl(lambda: {})
    with pytest.raises(AssertionError, match="plugin typo_plugin: .*register_layer"):
        testing.check_plugin(module)


@pytest.mark.parametrize("module", ["plugins.layers", "plugins.activations", "plugins.losses"])
def test_builtin_plugins_pass_check_plugin_on_their_own(module):
    """As a third-party author would call it: no cases given, the classes' check_cases and
    defaults are enough."""
    import importlib

    report = testing.check_plugin(importlib.import_module(module))
    assert report and max(report.values()) < 1e-6
