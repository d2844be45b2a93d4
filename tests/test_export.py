"""ONNX export: every built-in layer and activation, alone and in the example models, runs in
ONNX Runtime to predict's outputs (max abs difference <= 1e-5 in float32)."""

import glob
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import framework
from framework import PluginError, Sequential, create
from framework.config import load_config
from framework.model import model_from_config
from framework.text import with_vocab

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from framework.onnx_export import OnnxBuilder, export_onnx, onnx_session, run_onnx, to_onnx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-5

# Layers that take token ids or several inputs: exported in the tests of graph and token models.
EXPORTED_IN_GRAPHS = {"add", "multiply", "concatenate", "embedding"}


def layer(kind, **params):
    return create("layers", kind, **params)


def onnx_difference(model, x):
    """Largest |ONNX Runtime - predict| over ``x``, the exported file checked and run."""
    proto = to_onnx(model)
    # As the model takes it (token ids kept integers), ids as the int64 the graph declares.
    fed = model.prepare(x)
    got = run_onnx(
        onnx_session(proto), fed.astype(np.int64) if np.issubdtype(fed.dtype, np.integer) else fed
    )
    expected = model.predict(x)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    return float(np.max(np.abs(got - expected)))


def random_inputs(shape, n=9, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def randomize(model, seed=1):
    """Weights (and biases) drawn at random, so a zero bias or a symmetric kernel cannot
    hide a layout mistake."""
    rng = np.random.default_rng(seed)
    for value in model.params_list():
        value[...] = rng.normal(scale=0.5, size=value.shape)
    return model


# Each built-in layer alone, on the inputs it takes; the conv and pooling cases cover TensorFlow
# "same" padding with odd totals (the extra row and column after: asymmetric ONNX pads),
# strides that leave pixels over, and avgpool's corner windows counting real pixels only.
LAYER_CASES = [
    ("dense", {"units": 5, "activation": "tanh"}, (4,)),
    ("dense", {"units": 3, "use_bias": False}, (6,)),
    ("activation", {"activation": "softmax"}, (7,)),
    ("dropout", {"rate": 0.5}, (6,)),
    ("flatten", {}, (3, 4, 2)),
    ("reshape", {"target_shape": [3, -1]}, (2, 6)),
    (
        "conv2d",
        {"filters": 3, "kernel_size": 3, "padding": "same", "activation": "relu"},
        (6, 7, 2),
    ),
    ("conv2d", {"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same"}, (7, 6, 3)),
    (
        "conv2d",
        {"filters": 2, "kernel_size": [2, 3], "strides": [1, 2], "padding": "valid"},
        (5, 8, 2),
    ),
    ("conv2d", {"filters": 2, "kernel_size": 5, "padding": "same", "use_bias": False}, (4, 4, 1)),
    ("maxpool2d", {"pool_size": 2}, (6, 6, 3)),
    ("maxpool2d", {"pool_size": 3, "strides": 2, "padding": "same"}, (6, 7, 2)),
    ("maxpool2d", {"pool_size": 2, "strides": 3, "padding": "valid"}, (7, 8, 1)),
    ("avgpool2d", {"pool_size": 2}, (6, 6, 3)),
    ("avgpool2d", {"pool_size": 3, "strides": 2, "padding": "same"}, (6, 7, 2)),
    ("avgpool2d", {"pool_size": 2, "strides": 1, "padding": "same"}, (5, 5, 2)),
    ("batch_norm", {}, (5,)),
    ("batch_norm", {}, (4, 3, 2)),
    ("layer_norm", {}, (3, 5)),
    ("global_avgpool2d", {}, (4, 3, 2)),
    ("global_maxpool2d", {}, (4, 3, 2)),
    ("global_avgpool1d", {}, (6, 3)),
    ("positional_embedding", {"max_length": 8}, (6, 3)),
    # Recurrent layers: ONNX's RNN / LSTM / GRU operators with the gates re-ordered; a
    # simple_rnn activation ONNX's RNN cannot name (softmax) unrolls its steps.
    ("simple_rnn", {"units": 4}, (6, 3)),
    ("simple_rnn", {"units": 4, "return_sequences": True}, (6, 3)),
    ("simple_rnn", {"units": 3, "activation": "relu", "return_sequences": True}, (5, 2)),
    ("simple_rnn", {"units": 3, "activation": "sigmoid"}, (5, 2)),
    ("simple_rnn", {"units": 3, "activation": "identity", "return_sequences": True}, (5, 2)),
    ("simple_rnn", {"units": 3, "activation": {"type": "leaky_relu", "alpha": 0.3}}, (5, 2)),
    ("simple_rnn", {"units": 3, "activation": "softmax", "return_sequences": True}, (5, 2)),
    ("simple_rnn", {"units": 5, "activation": "softmax"}, (4, 2)),
    ("lstm", {"units": 4}, (6, 3)),
    ("lstm", {"units": 4, "return_sequences": True}, (6, 3)),
    ("lstm", {"units": 3, "unit_forget_bias": False, "return_sequences": True}, (1, 2)),
    ("gru", {"units": 4}, (6, 3)),
    ("gru", {"units": 4, "return_sequences": True}, (6, 3)),
    ("gru", {"units": 3, "return_sequences": True}, (1, 2)),
    ("multi_head_attention", {"num_heads": 2}, (5, 8)),
    ("multi_head_attention", {"num_heads": 2, "causal": True}, (5, 8)),
    ("multi_head_attention", {"num_heads": 4, "causal": True}, (7, 4)),
    ("multi_head_attention", {"num_heads": 1}, (1, 3)),
    ("multi_head_attention", {"num_heads": 2, "causal": True, "use_bias": False}, (5, 8)),
    ("layer_norm", {"use_bias": False}, (5, 8)),
]


def test_every_builtin_layer_has_a_case():
    import plugins.layers

    covered = {kind for kind, _, _ in LAYER_CASES} | EXPORTED_IN_GRAPHS
    assert covered == set(plugins.layers.register_layers())  # the built-ins, not a test's plugins


@pytest.mark.parametrize(
    "kind, params, operator",
    [("simple_rnn", {"activation": "relu"}, "RNN"), ("lstm", {}, "LSTM"), ("gru", {}, "GRU")],
)
def test_recurrent_layers_export_as_onnx_operators(kind, params, operator):
    """One ONNX operator per layer (not unrolled steps), named after the layer, with its
    weights in ONNX's layout (1, k·H, F) and (1, k·H, H) and the bias (1, 2·k·H)."""
    model = randomize(Sequential([layer(kind, units=4, **params)], input_shape=(6, 3), seed=0))
    proto = to_onnx(model)
    (node,) = [n for n in proto.graph.node if n.op_type == operator]
    assert node.name == f"{kind}_0/{operator}"
    assert [n.op_type for n in proto.graph.node].count("MatMul") == 0
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[operator]
    assert [shapes[name] for name in node.input[1:4]] == [
        [1, gates * 4, 3],
        [1, gates * 4, 4],
        [1, 2 * gates * 4],
    ]


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru", "multi_head_attention"])
def test_sequence_layers_export_in_float64(kind):
    """ONNX Runtime's recurrent kernels are float32 only: a float64 model's steps are unrolled,
    and match predict to float64 precision."""
    if kind == "multi_head_attention":
        params = {"num_heads": 2, "causal": True}
    else:
        params = {"units": 4, "return_sequences": True}
    model = randomize(
        Sequential([layer(kind, **params)], input_shape=(5, 4), dtype="float64", seed=0)
    )
    proto = to_onnx(model)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert onnx_difference(model, np.random.default_rng(0).normal(size=(6, 5, 4))) <= 1e-12


def test_recurrent_layer_with_a_plugin_activation_unrolls_through_its_exporter(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples", "plugin"))
    framework.load_plugins(["plugnet_swish"])
    swish = {"type": "swish", "beta": 1.5}
    model = randomize(
        Sequential([layer("simple_rnn", units=3, activation=swish)], input_shape=(4, 2), seed=0)
    )
    assert onnx_difference(model, random_inputs((4, 2))) <= TOLERANCE
    cube = Sequential([layer("simple_rnn", units=3, activation=Cube())], input_shape=(4, 2))
    with pytest.raises(
        PluginError,
        match=r"activation 'cube' .* in layer simple_rnn_0 .*to_onnx\(self, builder, x\)",
    ):
        to_onnx(cube)


def test_stacked_recurrent_and_attention_model_exports():
    """Sequences through an LSTM, a causal attention over its states and a GRU, in one graph."""
    model = randomize(
        Sequential(
            [
                layer("lstm", units=8, return_sequences=True),
                layer("multi_head_attention", num_heads=2, causal=True),
                layer("layer_norm"),
                layer("gru", units=4, return_sequences=True),
                layer("simple_rnn", units=3),
                layer("dense", units=2),
            ],
            input_shape=(7, 3),
            seed=0,
        ),
        seed=2,
    )
    assert onnx_difference(model, random_inputs((7, 3), n=33)) <= TOLERANCE


def test_graph_models_export_merges_batch_norm_and_layer_norm():
    """A residual block with batch norm (running statistics trained away from 0 and 1), a
    concatenated and a multiplied branch, layer norm and global pooling, in ONNX Runtime."""
    x = framework.Input((6, 6, 2))
    stem = layer("conv2d", filters=4, kernel_size=3, activation="relu")(x)
    branch = layer("batch_norm")(layer("conv2d", filters=4, kernel_size=3)(stem))
    h = layer("add", activation="relu")([stem, branch])
    pooled = layer("concatenate")([layer("global_avgpool2d")(h), layer("global_maxpool2d")(h)])
    gated = layer("multiply", activation="tanh")([pooled, layer("dense", units=8)(pooled)])
    y = layer("dense", units=3, activation="softmax")(layer("layer_norm")(gated))
    model = randomize(framework.Model(x, y, seed=0))
    xs = random_inputs((6, 6, 2), n=16)
    framework.Trainer(model, "cross_entropy", "adam", seed=0).fit(
        xs, np.arange(16) % 3, epochs=2, batch_size=8
    )
    assert not np.allclose(model.layers[2].state["running_var"], 1)
    assert onnx_difference(model, random_inputs((6, 6, 2), seed=3)) <= TOLERANCE


def test_token_models_export_embedding_positions_and_pooling():
    ids = framework.Input((7,), name="tokens")
    h = layer("positional_embedding", max_length=10)(
        layer("embedding", input_dim=12, output_dim=4)(ids)
    )
    model = randomize(
        framework.Model(ids, layer("dense", units=2)(layer("global_avgpool1d")(h)), seed=0)
    )
    tokens = np.random.default_rng(0).integers(0, 12, size=(5, 7))
    session = onnx_session(to_onnx(model))
    got = session.run(None, {"tokens": tokens.astype(np.int64)})[0]
    assert np.max(np.abs(got - model.predict(tokens))) <= TOLERANCE


@pytest.mark.parametrize(
    "kind, params, shape", LAYER_CASES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(LAYER_CASES)]
)
def test_each_builtin_layer_alone(kind, params, shape):
    model = randomize(Sequential([layer(kind, **params)], input_shape=shape, seed=0))
    assert onnx_difference(model, random_inputs(shape)) <= TOLERANCE


ACTIVATIONS = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    {"type": "leaky_relu", "alpha": 0.3},
    "gelu",
    {"type": "gelu", "approximate": "tanh"},
    "softmax",
]


def test_every_builtin_activation_is_covered():
    import plugins.activations

    named = {a if isinstance(a, str) else a["type"] for a in ACTIVATIONS}
    assert named == set(
        plugins.activations.register_activations()
    )  # the built-ins, not a test's plugins


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
def test_each_builtin_activation_in_dense_and_conv(activation):
    model = randomize(
        Sequential(
            [
                layer("conv2d", filters=3, kernel_size=3, activation=activation),
                layer("flatten"),
                layer("dense", units=4, activation=activation),
            ],
            input_shape=(5, 5, 2),
            seed=0,
        )
    )
    # Large inputs reach every region: sigmoid's tails, relu's negative side, softmax's max.
    assert onnx_difference(model, 3 * random_inputs((5, 5, 2))) <= TOLERANCE


def example_models():
    """Each example config's model, with the input shape its dataset gives."""
    cases = []
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.toml"))):
        config = load_config(path)
        if "model" not in config:
            continue
        if config["data"]["type"] in ("text", "lines", "tokens"):
            continue  # a corpus file the tests have not: test_gpt_components exports the GPT
        cases.append(pytest.param(config, id=os.path.basename(path)))
    return cases


def example_inputs(config):
    """Five inputs of the example's data: random pixels for MNIST (the official files may be
    absent; their shape is known), else the dataset's own samples (token ids for a token model)."""
    if config["data"]["type"] in ("mnist", "fashion_mnist"):
        return np.random.default_rng(0).random((5, 28, 28, 1)).astype(np.float32)
    if config["data"]["type"] in ("text", "lines"):  # files the tests do not read: ids below 20
        return np.random.default_rng(0).integers(
            0, 20, size=(5, config["data"].get("block_size", 16))
        )
    small = {**config["data"]}
    if "n_samples" in small:
        small["n_samples"] = 50
    return create("datasets", small.pop("type"), **small).load(np.random.default_rng(0))[0][:5]


@pytest.mark.parametrize("config", example_models())
def test_example_models(config):
    model = config["model"]
    x = example_inputs(config)
    layers = with_vocab(model["layers"], SimpleNamespace(vocab_size=20))
    net = model_from_config(
        layers, input_shape=x.shape[1:], dtype=model.get("dtype", "float32"), seed=0
    )
    assert onnx_difference(net, x) <= TOLERANCE


def test_graph_has_a_dynamic_batch_and_nodes_named_after_layers():
    model = randomize(
        Sequential(
            [
                layer("conv2d", filters=2, kernel_size=3),
                layer("maxpool2d"),
                layer("flatten"),
                layer("dense", units=3, activation="softmax"),
            ],
            input_shape=(6, 6, 1),
            seed=0,
        )
    )
    proto = to_onnx(model)
    assert proto.opset_import[0].version >= 17
    (graph_input,) = proto.graph.input
    assert graph_input.name == "input"
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [6, 6, 1]
    layer_names = {layer.name for layer in model.layers}
    for node in proto.graph.node:
        assert node.name == "output" or node.name.split("/")[0] in layer_names
    assert {
        "conv2d_0/Conv",
        "maxpool2d_1/MaxPool",
        "flatten_2/Flatten",
        "dense_3/MatMul",
        "dense_3/Softmax",
    } <= {node.name for node in proto.graph.node}
    session = onnx_session(proto)
    for batch in (1, 33):
        x = random_inputs((6, 6, 1), n=batch)
        np.testing.assert_allclose(run_onnx(session, x), model.predict(x), atol=TOLERANCE)


def test_float64_model_exports_in_float64():
    model = randomize(
        Sequential(
            [layer("dense", units=3, activation="tanh"), layer("dense", units=2)],
            input_shape=(4,),
            dtype="float64",
        )
    )
    proto = to_onnx(model)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    x = np.random.default_rng(0).normal(size=(6, 4))
    assert onnx_difference(model, x) <= 1e-12


class Doubler(framework.Layer):
    """A plugin layer without an exporter."""

    def forward(self, x, training=False):
        return 2 * x

    def backward(self, grad_y):
        return 2 * grad_y


class Cube(framework.Activation):
    def forward(self, z):
        return z**3

    def backward(self, z, a, grad_a):
        return 3 * z**2 * grad_a


def test_layer_without_exporter_is_one_clear_error(tmp_path):
    model = Sequential([layer("dense", units=3), Doubler()], input_shape=(2,))
    with pytest.raises(PluginError) as caught:
        export_onnx(model, tmp_path / "m.onnx")
    message = str(caught.value)
    assert (
        "layer doubler_1" in message
        and "Doubler" in message
        and "to_onnx(self, builder, x)" in message
    )
    assert os.listdir(tmp_path) == []


def test_activation_without_exporter_names_it_and_its_layer():
    model = Sequential([create("layers", "dense", units=3, activation=Cube())], input_shape=(2,))
    with pytest.raises(
        PluginError, match=r"activation 'cube' .* in layer dense_0 .*to_onnx\(self, builder, x\)"
    ):
        to_onnx(model)


class Scale(framework.Layer):
    """A plugin layer exporting through the public builder: y = x · factor."""

    def __init__(self, factor=3.0):
        self.factor = factor

    def forward(self, x, training=False):
        return x * self.dtype(self.factor)

    def backward(self, grad_y):
        return grad_y * self.dtype(self.factor)

    def to_onnx(self, builder, x):
        return builder.add("Mul", [x, builder.constant(self.factor, "factor")])


def test_plugin_layer_exports_through_its_method():
    model = Sequential([layer("dense", units=3), Scale()], input_shape=(2,))
    assert isinstance(OnnxBuilder(np.float32), OnnxBuilder)
    assert onnx_difference(model, random_inputs((2,))) <= TOLERANCE
    assert "scale_1/Mul" in {node.name for node in to_onnx(model).graph.node}


def test_example_plugin_layer_and_activation_export(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "examples", "plugin"))
    framework.load_plugins(["plugnet_swish"])
    model = randomize(
        Sequential(
            [
                layer("dense", units=4, activation={"type": "swish", "beta": 1.5}),
                layer("gaussian_noise"),
                layer("dense", units=2, activation="swish"),
            ],
            input_shape=(3,),
            seed=0,
        )
    )
    assert onnx_difference(model, 3 * random_inputs((3,))) <= TOLERANCE


def test_export_writes_atomically_and_unwritable_path_is_a_data_error(tmp_path):
    model = Sequential([layer("dense", units=2)], input_shape=(2,))
    path = export_onnx(model, tmp_path / "out" / "m.onnx")
    assert onnx.load(path).graph.node
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(framework.DataError, match="cannot write the ONNX file"):
        export_onnx(model, tmp_path / "file" / "m.onnx")
    with pytest.raises(framework.DataError, match="cannot write the ONNX file"):
        export_onnx(model, tmp_path / "out")  # a directory
    assert sorted(os.listdir(tmp_path / "out")) == ["m.onnx"]


def cli(*args, cwd):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    return subprocess.run(
        [sys.executable, "-m", "framework", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_cli_export_check_runs_the_file_on_held_out_data(tmp_path):
    from framework.run import build

    layers = [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "avgpool2d", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "flatten"},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ]
    build(
        {
            "seed": 0,
            "data": {"type": "digits", "flatten": False},
            "model": {"layers": layers},
            "train": {"loss": "cross_entropy", "epochs": 1, "batch_size": 64},
            "logging": {"logdir": str(tmp_path / "run")},
        }
    ).fit()
    result = cli("export", "run", "-o", "digits.onnx", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote digits.onnx" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if "largest difference" in ln)
    assert "359 held-out samples" in line  # a fifth of 1,797 digits
    assert float(line.rsplit(" ", 1)[1]) <= TOLERANCE

    blocked = cli("export", "run", "-o", "run/config.json/m.onnx", cwd=tmp_path)
    assert blocked.returncode == 2
    assert (
        blocked.stderr.startswith("plugnet: error: cannot write the ONNX file")
        and blocked.stderr.count("\n") == 1
    )
    assert "Traceback" not in blocked.stderr


def test_cli_export_check_on_a_trained_lstm_run(tmp_path):
    """A trained recurrent model (weights moved away from their initial values) through
    `plugnet export --check`: the LSTM operator's re-laid-out gates give predict's outputs."""
    from framework.run import build

    build(
        {
            "seed": 0,
            "data": {"type": "adding_problem", "length": 12, "n_samples": 300},
            "model": {
                "layers": [
                    {"type": "lstm", "units": 8, "return_sequences": True},
                    {"type": "gru", "units": 6},
                    {"type": "dense", "units": 1},
                ]
            },
            "train": {"loss": "mse", "epochs": 2, "batch_size": 32},
            "logging": {"logdir": str(tmp_path / "run")},
        }
    ).fit()
    result = cli("export", "run", "-o", "adding.onnx", "--check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "largest difference" in ln)
    assert float(line.rsplit(" ", 1)[1]) <= TOLERANCE
    assert {"lstm_0/LSTM", "gru_1/GRU"} <= {
        node.name for node in onnx.load(tmp_path / "adding.onnx").graph.node
    }
