"""Graph models: `Input` and `Model`, merge and normalisation layers, graph configs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import framework
from framework import (
    ConfigError,
    DataError,
    Input,
    Model,
    Sequential,
    ShapeError,
    Trainer,
    create,
    testing,
)
from framework.checkpoints import latest_whole_checkpoint

# --- building --------------------------------------------------------------------------------


def residual_model(dtype="float32", seed=0, units=6):
    x = Input((4,), name="features")
    h = create("layers", "dense", units=units, activation="tanh")(x)
    branch = create("layers", "dense", units=units)(h)
    branch = create("layers", "batch_norm")(branch)
    h = create("layers", "add", activation="relu")([h, branch])
    y = create("layers", "dense", units=3, activation="softmax")(h)
    return Model(x, y, dtype=dtype, seed=seed)


def test_a_residual_model_is_ordered_named_and_wired():
    model = residual_model()
    assert [layer.name for layer in model.layers] == [
        "dense_0",
        "dense_1",
        "batch_norm_2",
        "add_3",
        "dense_4",
    ]
    assert model.inbound == {
        "dense_0": ["features"],
        "dense_1": ["dense_0"],
        "batch_norm_2": ["dense_1"],
        "add_3": ["dense_0", "batch_norm_2"],
        "dense_4": ["add_3"],
    }
    assert model.output_shape == (3,) and model.input_shape == (4,)
    summary = model.summary()
    assert (
        "features (input)" in summary and "dense_0, batch_norm_2" in summary and "inputs" in summary
    )
    # running statistics are state: saved with the weights, not parameters
    assert "batch_norm_2/running_mean" in model.state_dict()
    assert model.num_params == 4 * 6 + 6 + 6 * 6 + 6 + 6 + 6 + 6 * 3 + 3


def test_sequential_is_the_chain_case_of_model():
    model = Sequential(
        [{"type": "dense", "units": 3}, {"type": "dense", "units": 2}], input_shape=(4,)
    )
    assert isinstance(model, Model) and model.chain
    assert model.inbound == {"dense_0": ["input"], "dense_1": ["dense_0"]}


def test_named_layers_keep_their_names():
    x = Input((3,))
    y = create("layers", "dense", units=2, name="head")(
        create("layers", "dense", units=4, name="body")(x)
    )
    model = Model(x, y)
    assert [layer.name for layer in model.layers] == ["body", "head"]


# --- the maths: whole graphs against finite differences ---------------------------------------


def graph_gradient_error(model, loss, x, y):
    """The model's loss gradient (parameters and inputs) against central differences."""
    loss = framework.resolve("losses", loss)
    errors = []

    def value():
        return loss.forward(model.forward(x, False), y)

    y_pred = model.forward(x, False)
    grad_x = model.backward(loss.backward(y_pred, y), input_grad=True)
    analytic = model.get_grads()
    theta = model.get_params()

    def at(vector):
        model.set_params(vector)
        return value()

    numeric = np.zeros_like(theta)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric[i] = (at(up) - at(down)) / 2e-6
    model.set_params(theta)
    errors.append(testing.compare(analytic, numeric, "parameters"))
    for i, (xi, gi) in enumerate(
        zip(
            x if isinstance(x, list) else [x],
            grad_x if isinstance(x, list) else [grad_x],
            strict=True,
        )
    ):
        errors.append(testing.compare(gi, testing.numeric_gradient(value, xi, 1e-6), f"input {i}"))
    return max(errors)


def test_residual_graph_gradient_matches_finite_differences():
    model = residual_model(dtype="float64", seed=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4))
    y = rng.integers(0, 3, size=5)
    assert graph_gradient_error(model, "cross_entropy", x, y) < 1e-6


def test_two_branches_concatenated_gradient_matches_finite_differences():
    x = Input((3,))
    a = create("layers", "dense", units=4, activation="tanh")(x)
    b = create("layers", "dense", units=2, activation="sigmoid")(x)
    c = create("layers", "concatenate")([a, b])
    m = create("layers", "multiply")([c, create("layers", "dense", units=6)(x)])
    model = Model(x, create("layers", "dense", units=2)(m), dtype="float64", seed=1)
    rng = np.random.default_rng(1)
    assert (
        graph_gradient_error(model, "mse", rng.normal(size=(4, 3)), rng.normal(size=(4, 2))) < 1e-6
    )


def test_two_inputs_gradient_matches_finite_differences_and_data_by_name_or_order():
    a, b = Input((3,), name="a"), Input((2,), name="b")
    h = create("layers", "concatenate")(
        [create("layers", "dense", units=3, activation="tanh")(a), b]
    )
    model = Model([a, b], create("layers", "dense", units=1)(h), dtype="float64", seed=2)
    rng = np.random.default_rng(2)
    xa, xb = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    assert graph_gradient_error(model, "mse", [xa, xb], rng.normal(size=(6, 1))) < 1e-6
    np.testing.assert_array_equal(model.predict({"a": xa, "b": xb}), model.predict((xa, xb)))
    np.testing.assert_array_equal(model.predict((xa, xb), batch_size=4), model.predict((xa, xb)))
    trainer = Trainer(model, "mse", {"type": "sgd", "lr": 0.1}, seed=0)
    history = trainer.fit({"a": xa, "b": xb}, xa[:, :1] + xb[:, :1], epochs=20, batch_size=3)
    assert history["loss"][-1] < history["loss"][0]
    with pytest.raises(DataError, match="missing \\['b'\\]"):
        model.predict({"a": xa})


def test_a_tensor_read_by_two_layers_gets_the_sum_of_their_gradients():
    x = Input((2,))
    model = Model(x, create("layers", "add")([x, x]), dtype="float64")
    grad = (
        model.backward(np.ones((1, 2)), input_grad=True)
        if model.forward(np.ones((1, 2))) is not None
        else None
    )
    np.testing.assert_array_equal(grad, 2 * np.ones((1, 2)))


def test_the_testing_kit_checks_merge_layers_and_catches_a_wrong_one():
    class WrongAdd(framework.Layer):
        multi_input = True

        def build(self, shapes):
            return shapes[0]

        def forward(self, xs, training=False):
            return xs[0] + xs[1]

        def backward(self, g):
            return [g, 2 * g]  # the second is wrong

    assert testing.check_layer("add", input_shape=[(3,), (3,)]) < 1e-6
    with pytest.raises(AssertionError, match="input 1"):
        testing.check_layer(WrongAdd(), input_shape=[(3,), (3,)])


def test_the_testing_kit_catches_a_layer_that_changes_its_input_in_place():
    class Squash(framework.Layer):
        def forward(self, x, training=False):
            np.tanh(x, out=x)
            self.y = x
            return x

        def backward(self, g):
            return g * (1 - self.y**2)

    with pytest.raises(AssertionError, match="in place"):
        testing.check_layer(Squash(), input_shape=(3,))


# --- batch norm and layer norm ---------------------------------------------------------------


def test_batch_norm_training_and_evaluation_modes():
    layer = create("layers", "batch_norm", momentum=0.5)
    Sequential([layer], input_shape=(2,), dtype="float64")
    x = np.array([[1.0, 10.0], [3.0, 20.0], [5.0, 60.0]])
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-5))
    np.testing.assert_allclose(layer.state["running_mean"], 0.5 * x.mean(axis=0))
    np.testing.assert_allclose(layer.state["running_var"], 0.5 + 0.5 * x.var(axis=0, ddof=1))
    evaluated = layer.forward(x, training=False)
    expected = (x - layer.state["running_mean"]) / np.sqrt(layer.state["running_var"] + 1e-5)
    np.testing.assert_allclose(evaluated, expected)


def test_batch_norm_refuses_one_value_per_channel_in_training():
    model = Sequential([{"type": "dense", "units": 2}, {"type": "batch_norm"}], input_shape=(3,))
    trainer = Trainer(model, "mse")
    with pytest.raises(DataError, match="batch_norm_1 got one value per channel"):
        trainer.fit(np.ones((4, 3)), np.ones((4, 2)), batch_size=1)
    model.predict(np.ones((1, 3)))  # evaluation of one sample is fine


def test_concatenate_axis_out_of_range_and_shapes_that_do_not_merge_are_named():
    x = Input((8,))
    with pytest.raises(ShapeError, match=r"axis 2 is out of range"):
        Model(x, create("layers", "concatenate", axis=2)([x, x]))
    a = create("layers", "dense", units=8)(x)
    b = create("layers", "dense", units=16)(x)
    with pytest.raises(
        ShapeError, match=r"add_2 cannot take input .*\(None, 8\), \(None, 16\) do not merge"
    ):
        Model(x, create("layers", "add")([a, b]))


def batch_norm_torch_pair(torch, rng, shape):
    channels = shape[-1]
    ours = Sequential(
        [{"type": "batch_norm", "momentum": 0.1}], input_shape=shape[1:], dtype="float64"
    )
    layer = ours.layers[0]
    layer.params["gamma"][...] = rng.normal(size=channels)
    layer.params["beta"][...] = rng.normal(size=channels)
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        channels, momentum=0.1
    ).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(layer.params["gamma"]))
        theirs.bias.copy_(torch.from_numpy(layer.params["beta"]))
    return layer, theirs


@pytest.mark.parametrize("shape", [(6, 3), (4, 5, 3, 2)])
def test_batch_norm_matches_pytorch_over_several_training_steps(shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer, theirs = batch_norm_torch_pair(torch, rng, shape)
    nchw = len(shape) == 4
    for step in range(3):
        x = rng.normal(loc=step, scale=1 + step, size=shape)
        g = rng.normal(size=shape)
        y = layer.forward(x, training=True)
        grad_x = layer.backward(g)
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy() if nchw else x).requires_grad_()
        theirs.train()
        yt = theirs(xt)
        gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy() if nchw else g)
        (yt * gt).sum().backward()
        to_ours = (
            (lambda t: t.detach().numpy().transpose(0, 2, 3, 1))
            if nchw
            else (lambda t: t.detach().numpy())
        )
        np.testing.assert_allclose(y, to_ours(yt), atol=1e-10)
        np.testing.assert_allclose(grad_x, to_ours(xt.grad), atol=1e-10)
        np.testing.assert_allclose(layer.grads["gamma"], theirs.weight.grad.numpy(), atol=1e-10)
        np.testing.assert_allclose(layer.grads["beta"], theirs.bias.grad.numpy(), atol=1e-10)
        theirs.weight.grad = theirs.bias.grad = None
        np.testing.assert_allclose(
            layer.state["running_mean"], theirs.running_mean.numpy(), atol=1e-12
        )
        np.testing.assert_allclose(
            layer.state["running_var"], theirs.running_var.numpy(), atol=1e-12
        )
    theirs.eval()
    x = rng.normal(size=shape)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy() if nchw else x)
    expected = theirs(xt).detach().numpy()
    np.testing.assert_allclose(
        layer.forward(x, training=False),
        expected.transpose(0, 2, 3, 1) if nchw else expected,
        atol=1e-10,
    )


def test_layer_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    ours = Sequential([{"type": "layer_norm"}], input_shape=(3, 5), dtype="float64").layers[0]
    ours.params["gamma"][...] = rng.normal(size=5)
    ours.params["beta"][...] = rng.normal(size=5)
    theirs = torch.nn.LayerNorm(5).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.params["gamma"]))
        theirs.bias.copy_(torch.from_numpy(ours.params["beta"]))
    x, g = rng.normal(size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
    xt = torch.from_numpy(x).requires_grad_()
    (theirs(xt) * torch.from_numpy(g)).sum().backward()
    np.testing.assert_allclose(ours.forward(x, True), theirs(xt).detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.grads["gamma"], theirs.weight.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.grads["beta"], theirs.bias.grad.numpy(), atol=1e-10)


def test_a_small_residual_network_trains_like_pytorch():
    """conv → batch norm → add (relu) → global average pool → dense softmax, SGD with
    momentum for a few steps: the same weights as PyTorch's from the same start."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x_in = Input((6, 6, 2))
    stem = create("layers", "conv2d", filters=3, kernel_size=3, activation="relu")(x_in)
    branch = create("layers", "batch_norm")(
        create("layers", "conv2d", filters=3, kernel_size=3)(stem)
    )
    h = create("layers", "global_avgpool2d")(
        create("layers", "add", activation="relu")([stem, branch])
    )
    model = Model(
        x_in, create("layers", "dense", units=4, activation="softmax")(h), dtype="float64", seed=0
    )
    trainer = Trainer(model, "cross_entropy", {"type": "sgd", "lr": 0.1, "momentum": 0.9}, seed=0)

    class Torch(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(2, 3, 3, padding=1)
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.dense = nn.Linear(3, 4)

        def forward(self, x):
            s = torch.relu(self.stem(x))
            h = torch.relu(s + self.bn(self.conv(s)))
            return self.dense(h.mean(dim=(2, 3)))

    net = Torch().double()
    layers = {layer.name: layer for layer in model.layers}
    assert list(layers) == [
        "conv2d_0",
        "conv2d_1",
        "batch_norm_2",
        "add_3",
        "global_avgpool2d_4",
        "dense_5",
    ]
    with torch.no_grad():
        for ours, theirs in (("conv2d_0", net.stem), ("conv2d_1", net.conv)):
            theirs.weight.copy_(
                torch.from_numpy(layers[ours].params["weights"].transpose(3, 2, 0, 1).copy())
            )
            theirs.bias.copy_(torch.from_numpy(layers[ours].params["bias"]))
        net.dense.weight.copy_(torch.from_numpy(layers["dense_5"].params["weights"].T.copy()))
        net.dense.bias.copy_(torch.from_numpy(layers["dense_5"].params["bias"]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 6, 2))
    y = rng.integers(0, 4, size=8)
    trainer.fit(x, y, epochs=3, batch_size=8, shuffle=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        optimizer.step()
    np.testing.assert_allclose(
        layers["conv2d_1"].params["weights"],
        net.conv.weight.detach().numpy().transpose(2, 3, 1, 0),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        layers["batch_norm_2"].params["gamma"], net.bn.weight.detach().numpy(), atol=1e-9
    )
    np.testing.assert_allclose(
        layers["dense_5"].params["weights"], net.dense.weight.detach().numpy().T, atol=1e-9
    )
    np.testing.assert_allclose(
        layers["batch_norm_2"].state["running_var"], net.bn.running_var.numpy(), atol=1e-9
    )


# --- training, checkpoints, configs ----------------------------------------------------------


def test_fit_called_again_trains_that_many_more_epochs():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), rng.integers(0, 3, size=20)
    trainer = Trainer(residual_model(), "cross_entropy", "adam", seed=0)
    trainer.fit(x, y, epochs=2, batch_size=5)
    trainer.fit(x, y, epochs=3, batch_size=5)
    assert trainer.epoch == 5 and trainer.step == 20 and len(trainer.history["loss"]) == 5
    with pytest.raises(ConfigError, match="initial_epoch=1, but this trainer is at epoch 5"):
        trainer.fit(x, y, epochs=6, initial_epoch=1)


GRAPH_CONFIG = {
    "seed": 0,
    "data": {"type": "digits", "flatten": False, "test_fraction": 0.2},
    "model": {
        "layers": [
            {
                "type": "conv2d",
                "name": "stem",
                "filters": 8,
                "kernel_size": 3,
                "activation": "relu",
            },
            {"type": "conv2d", "filters": 8, "kernel_size": 3},
            # momentum 0.5: the running statistics keep up with Adam's large early steps, so
            # evaluation after these few steps sees the statistics training ended with
            {"type": "batch_norm", "name": "bn", "momentum": 0.5},
            {"type": "add", "inputs": ["stem", "bn"], "activation": "relu"},
            {"type": "global_avgpool2d"},
            {"type": "dense", "units": 10, "activation": "softmax"},
        ]
    },
    "train": {
        "loss": "cross_entropy",
        "optimizer": {"type": "adam", "lr": 0.03},
        "epochs": 3,
        "batch_size": 64,
        "metrics": ["accuracy"],
        "callbacks": [
            {"type": "checkpoint", "every": 10},
            {"type": "tensorboard", "histogram_every": 10},
        ],
    },
}


def config_with(tmp_path, name="run", **train):
    config = json.loads(json.dumps(GRAPH_CONFIG))
    config["logging"] = {"logdir": str(tmp_path / name)}
    config["train"].update(train)
    return config


def test_a_graph_config_trains_checkpoints_and_logs_every_parameter(tmp_path):
    config = config_with(tmp_path)
    summary = framework.run(config)
    # 69 steps of a small net: 0.44-0.84 held-out over seeds 0-7 (Python 3.11 and 3.13),
    # chance is 0.1
    assert summary["test"]["accuracy"] > 0.3 and summary["steps"] == 69
    saved = latest_whole_checkpoint(tmp_path / "run")["params"]
    assert {"bn/gamma", "bn/beta", "bn/running_mean", "bn/running_var", "add_3/x"} - set(saved) == {
        "add_3/x"
    }
    events = EventAccumulator(
        str(tmp_path / "run" / "train"), size_guidance={"scalars": 0, "histograms": 0}
    )
    events.Reload()
    tags = events.Tags()
    for tag in ("bn/gamma/mean", "bn/beta/stddev", "bn/gamma_grad/max", "stem/weights/min"):
        assert tag in tags["scalars"], tag
    assert "bn/gamma" in tags["histograms"] and "add_3/activations" in tags["histograms"]
    nodes = {node.name: node for node in events.Graph().node}
    assert list(nodes["add_3/add"].input) == ["stem/relu", "bn/batch_norm"]
    assert list(nodes["bn/batch_norm"].input) == ["conv2d_1/bias_add", "bn/gamma", "bn/beta"]
    assert list(nodes["add_3/relu"].input) == ["add_3/add"]


def test_resuming_a_graph_with_batch_norm_is_exact(tmp_path):
    straight = framework.run(config_with(tmp_path, "straight"))
    config = config_with(tmp_path, "crashed")

    class Crash(framework.Callback):
        @framework.hookimpl
        def on_batch_end(self, trainer):
            if trainer.step == 35:
                raise RuntimeError("crash")

    experiment = framework.run.__globals__["build"](config)
    experiment.trainer.add_callback(Crash())
    with pytest.raises(RuntimeError):
        experiment.fit()
    resumed = framework.run(config, resume=tmp_path / "crashed")
    assert resumed["steps"] == straight["steps"]
    a = latest_whole_checkpoint(tmp_path / "straight")["params"]
    b = latest_whole_checkpoint(tmp_path / "crashed")["params"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_set_addresses_graph_layers_by_index(tmp_path):
    config = framework.config.apply_overrides(
        config_with(tmp_path), ["model.layers.1.filters=8", "train.epochs=1"]
    )
    assert framework.run(config)["epochs"] == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda layers: layers[3].update(inputs=["stem", "nothing"]),
            "no layer or model input named 'nothing'",
        ),
        (
            lambda layers: (
                layers[3].update(inputs=["stem", "later"]) or layers[5].update(name="later")
            ),
            "comes later",
        ),
        (lambda layers: layers[1].update(name="stem"), "the name 'stem' is used twice"),
        (
            lambda layers: layers[3].pop("inputs"),
            "merges several inputs.*give 'inputs' in the config",
        ),
        (
            lambda layers: layers[4].update(inputs=["stem"]),
            "conv2d_1, bn, add_3 do not lead to the output",
        ),
        (
            lambda layers: layers[1].update(filters=5),
            r"\(None, 8, 8, 8\) from stem and \(None, 8, 8, 5\) from bn",
        ),
    ],
)
def test_a_wrong_graph_config_is_one_clear_error_and_exit_2(tmp_path, change, message):
    config = config_with(tmp_path)
    change(config["model"]["layers"])
    with pytest.raises(framework.PlugnetError, match=message):
        framework.run(config)
    assert not (tmp_path / "run").exists()
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    toml = tmp_path / "bad.toml"
    toml.write_text(to_toml(config))
    done = subprocess.run(
        [sys.executable, "-m", "framework", "train", str(toml)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def to_toml(config):
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"seed = {config['seed']}"]
    for section in ("data", "model", "train", "logging"):
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {value(v)}" for k, v in config[section].items())
    return "\n".join(lines) + "\n"


def test_layer_used_twice_and_outputs_not_reachable_are_errors():
    x = Input((3,))
    dense = create("layers", "dense", units=3)
    h = dense(x)
    with pytest.raises(ConfigError, match="dense is already used in a model"):
        dense(h)
    other = Input((3,), name="other")
    with pytest.raises(ConfigError, match="depends on input 'other'"):
        Model(x, create("layers", "add")([h, other]))
    with pytest.raises(ConfigError, match="'other' does not reach the model's output"):
        Model([x, other], create("layers", "dense", units=1)(x))


def test_a_state_array_of_the_wrong_shape_in_a_weights_file_is_named(tmp_path):
    model = residual_model()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    arrays = dict(np.load(path))
    arrays["batch_norm_2/running_var"] = np.ones(7, np.float32)
    np.savez(path, **arrays)
    before = model.state_dict()["batch_norm_2/running_var"].copy()
    with pytest.raises(
        ShapeError, match="batch_norm_2/running_var has shape \\(7,\\), the model's is \\(6,\\)"
    ):
        model.load_weights(path)
    np.testing.assert_array_equal(model.state_dict()["batch_norm_2/running_var"], before)


# --- the examples ----------------------------------------------------------------------------

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples"


def tiny_mnist(directory, n_train=96, n_test=32):
    import gzip

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files = {
            "images-idx3": rng.integers(0, 256, (n, 28, 28)),
            "labels-idx1": rng.integers(0, 10, n),
        }
        for name, array in files.items():
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
            (directory / f"{prefix}-{name}-ubyte.gz").write_bytes(
                gzip.compress(header + array.astype(np.uint8).tobytes())
            )


def test_the_resnet_example_config_and_script_build_the_same_model_and_train(tmp_path):
    tiny_mnist(tmp_path / "data" / "mnist")
    env = {**__import__("os").environ, "PLUGNET_DATA": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "framework", "train", str(EXAMPLES / "resnet_mnist.toml"), "--epochs", "1",
         "--logdir", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 3 and "accuracy" in summary["test"]
    script = subprocess.run(
        [sys.executable, str(EXAMPLES / "compose_graph.py"), "--epochs", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert script.returncode == 0, script.stderr
    assert "add_7" in script.stdout and "test:" in script.stdout
    config = framework.config.load_config(EXAMPLES / "resnet_mnist.toml")
    from framework.model import model_from_config

    from_config = model_from_config(config["model"]["layers"], input_shape=(28, 28, 1))
    sys.path.insert(0, str(EXAMPLES))
    try:
        from compose_graph import build_model
    finally:
        sys.path.pop(0)
    in_python = build_model()
    assert from_config.num_params == in_python.num_params == 37_770  # 320 + 4·9·32·32 + 4·64 + 330
    assert [kind(layer) for layer in from_config.layers] == [
        kind(layer) for layer in in_python.layers
    ]


def kind(layer):
    return framework.kind_of(layer)
