"""Property-based tests (hypothesis): random layer stacks, mutated configs, corrupt files and
extreme logits either work or fail with plugnet's own one-line error — never a traceback."""

import gzip
import io
import json
import math
import os
import tempfile
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

import framework
from framework import DataError, PlugnetError, Sequential, create, read_idx
from framework.checkpoints import latest_whole_checkpoint, load_checkpoint
from framework.cli import main

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"]


# --- random layer stacks ---------------------------------------------------------------------

dimension = st.integers(1, 5)
layer_specs = st.one_of(
    st.builds(
        lambda units, activation: {"type": "dense", "units": units, "activation": activation},
        st.integers(1, 6),
        st.sampled_from(ACTIVATIONS),
    ),
    st.builds(lambda a: {"type": "activation", "activation": a}, st.sampled_from(ACTIVATIONS)),
    st.just({"type": "flatten"}),
    st.builds(
        lambda shape: {"type": "reshape", "target_shape": shape},
        st.lists(st.sampled_from([-1, 1, 2, 3, 4, 6]), min_size=1, max_size=3),
    ),
    st.builds(lambda rate: {"type": "dropout", "rate": rate}, st.floats(0, 0.9)),
)


@settings(max_examples=120, **SETTINGS)
@given(
    input_shape=st.lists(dimension, min_size=1, max_size=3).map(tuple),
    specs=st.lists(layer_specs, min_size=1, max_size=5),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_stacks_build_and_propagate_or_fail_clearly(input_shape, specs, batch, seed):
    try:
        model = Sequential(specs, input_shape=input_shape, dtype="float64", seed=seed)
    except PlugnetError as exc:
        assert str(exc)  # a framework error with a message: a stack that cannot be built
        return
    x = np.random.default_rng(seed).normal(size=(batch, *input_shape))
    y = model.forward(x, training=True)
    assert y.shape == (batch, *model.output_shape)
    assert np.isfinite(y).all()
    shape = input_shape
    for layer in model.layers:
        assert layer.input_shape == shape
        assert layer.activations.shape == (batch, *layer.output_shape)
        shape = layer.output_shape
    grad_x = model.backward(np.ones_like(y))
    assert grad_x.shape == x.shape and np.isfinite(grad_x).all()
    for layer in model.layers:
        assert sorted(layer.grads) == sorted(layer.params)
        for key, value in layer.params.items():
            assert layer.grads[key].shape == value.shape
    assert model.predict(x).shape == y.shape


# --- mutated configs through the CLI ----------------------------------------------------------

BASE = {
    "seed": 0,
    "data": {"type": "xor"},
    "model": {
        "layers": [
            {"type": "dense", "units": 3, "activation": "tanh"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ]
    },
    "train": {
        "loss": "cross_entropy",
        "optimizer": {"type": "sgd", "lr": 0.5, "momentum": 0.5},
        "epochs": 2,
        "batch_size": 2,
        "metrics": ["accuracy"],
        "callbacks": [{"type": "checkpoint", "every": 2}],
    },
    "logging": {"logdir": "runs/fuzz"},
}
NAMES = [
    "dense",
    "dropout",
    "relu",
    "softmax",
    "adam",
    "sgd",
    "mse",
    "cross_entropy",
    "xor",
    "moons",
    "mnist",
    "checkpoint",
    "accuracy",
    "he_normal",
    "reshape",
]


def paths(node, prefix=()):
    """Every key path of a config (list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    found = []
    for key, value in items:
        found.append((*prefix, key))
        if isinstance(value, (dict, list)):
            found.extend(paths(value, (*prefix, key)))
    return found


PATHS = [p for p in paths(BASE) if p[0] != "logging"]  # keep runs inside the test's directory

scalars = st.one_of(
    st.booleans(),
    st.integers(-3, 12),  # small: a huge epochs or units value is a legitimately huge run
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(NAMES),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["type", "units", "lr", "rate", "every", "zz"]), inner, max_size=3
        ),
    ),
    max_leaves=6,
)


def toml_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_literal(v)}" for k, v in value.items()) + "}"


def toml_document(config):
    return (
        "\n".join(f"{json.dumps(key)} = {toml_literal(value)}" for key, value in config.items())
        + "\n"
    )


def mutate(config, path, action, value):
    node = config
    for part in path[:-1]:
        node = node[part]
    key = path[-1]
    if action == "delete":
        del node[key]
    elif action == "set":
        node[key] = value
    elif isinstance(node, dict):  # "add": an unknown key beside it
        node[f"{key}_zz"] = value
    else:
        node.append(value)


def run_cli(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return code, err.getvalue()


def assert_clean(code, err):
    event(f"exit status {code}")
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("plugnet: ") or err.startswith("usage: "), err


@settings(max_examples=80, **SETTINGS)
@example(mutations=[(("seed",), "set", -1)])
@example(mutations=[(("model", "layers", 0, "units"), "set", 0)])
@example(mutations=[(("train", "optimizer", "lr"), "set", float("nan"))])
@example(mutations=[(("data", "type"), "set", [])])
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete", "add"]), values),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_configs_never_give_a_traceback(tmp_path, mutations):
    config = json.loads(json.dumps(BASE))
    for path, action, value in mutations:
        try:
            mutate(config, path, action, value)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed the path
            pass
    file = tmp_path / "fuzz.toml"
    file.write_text(toml_document(config))
    assert_clean(*run_cli(["train", str(file), "--quiet"]))


@settings(max_examples=60, **SETTINGS)
@given(
    key=st.one_of(st.sampled_from([".".join(map(str, p)) for p in PATHS]), st.text(max_size=12)),
    value=st.one_of(values.map(toml_literal), st.text(max_size=10)),
    extra=st.lists(
        st.sampled_from(["--epochs", "--seed", "-3", "x", "--resume", "--nope", "2"]), max_size=3
    ),
)
@example(key="seed", value="-3", extra=[])
@example(key="train.batch_size", value="2", extra=["--seed", "-3"])
def test_random_command_lines_never_give_a_traceback(key, value, extra):
    args = [
        "train",
        "--quiet",
        "--logdir",
        "runs/cli",
        "--epochs",
        "1",
        "--set",
        f"{key}={value}",
        *extra,
    ]
    code, err = run_cli(args)
    assert_clean(code, err)


# --- corrupt checkpoint and IDX files ---------------------------------------------------------

_checkpoint = {}


def checkpoint_bytes():
    """One real checkpoint (Adam state, dropout), made once."""
    if not _checkpoint:
        with tempfile.TemporaryDirectory() as logdir:
            config = json.loads(json.dumps(BASE))
            config["model"]["layers"].insert(1, {"type": "dropout", "rate": 0.5})
            config["train"]["optimizer"] = {"type": "adam"}
            config["logging"]["logdir"] = logdir
            framework.run(config)
            with open(os.path.join(logdir, "checkpoints", "step-4.npz"), "rb") as f:
                _checkpoint["bytes"] = f.read()
    return _checkpoint["bytes"]


corruptions = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(
        st.just("flip"),
        st.lists(
            st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
            min_size=1,
            max_size=4,
        ),
    ),
    st.tuples(st.just("random"), st.binary(max_size=600)),
)


def corrupt(data, corruption):
    kind, how = corruption
    if kind == "truncate":
        return data[: int(how * len(data))]
    if kind == "random":
        return how
    data = bytearray(data)
    for where, mask in how:
        data[int(where * len(data))] ^= mask
    return bytes(data)


@settings(max_examples=150, **SETTINGS)
@given(corruption=corruptions)
def test_corrupt_checkpoints_are_clear_data_errors(tmp_path, corruption):
    original = checkpoint_bytes()
    data = corrupt(original, corruption)
    path = tmp_path / "checkpoints" / "step-4.npz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    try:
        checkpoint = load_checkpoint(path)
    except DataError as exc:
        assert str(path) in str(exc)
    else:  # a change the format does not notice (zip padding, say) must leave it usable
        assert checkpoint["step"] == 4 and checkpoint["params"]
    if data != original:
        try:
            latest_whole_checkpoint(tmp_path)
        except DataError as exc:
            assert "no whole checkpoint" in str(exc)


def header_offsets(data):
    """Offsets of every byte of the archive's structure: each entry's local header with the
    start of its .npy header, and the central directory to the end of the file."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = archive.infolist()
        directory = archive.start_dir
    for entry in entries:
        yield from range(entry.header_offset, entry.header_offset + 30 + len(entry.filename) + 64)
    yield from range(directory, len(data))


def test_a_flipped_bit_in_any_checkpoint_header_is_a_clear_error(tmp_path):
    """Hypothesis samples; this walks every header byte (a flip there once surfaced as
    zipfile's 'encrypted' RuntimeError and numpy's TokenError)."""
    original = checkpoint_bytes()
    path = tmp_path / "step-4.npz"
    for offset in header_offsets(original):
        data = bytearray(original)
        data[offset] ^= 1
        path.write_bytes(data)
        try:
            checkpoint = load_checkpoint(path)
        except DataError as exc:
            assert str(path) in str(exc)
        else:
            assert checkpoint["step"] == 4 and checkpoint["params"], offset


def idx_bytes(array):
    codes = {
        np.uint8: 0x08,
        np.int8: 0x09,
        np.int16: 0x0B,
        np.int32: 0x0C,
        np.float32: 0x0D,
        np.float64: 0x0E,
    }
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += np.array(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@settings(max_examples=150, **SETTINGS)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
    corruption=corruptions,
    gzipped=st.booleans(),
)
def test_corrupt_idx_files_are_clear_data_errors(tmp_path, shape, dtype, corruption, gzipped):
    array = np.arange(math.prod(shape)).reshape(shape).astype(dtype)
    data = idx_bytes(array)
    path = tmp_path / ("x.idx.gz" if gzipped else "x.idx")
    assert np.array_equal(read_idx(write(path, data, gzipped)), array)
    if gzipped:
        data = gzip.compress(data)
    broken = corrupt(data, corruption)
    path.write_bytes(broken)
    try:
        result = read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc)
    else:  # a flipped data byte is still a well-formed file: its header must hold
        assume(broken != data)
        assert result.ndim >= 1 and math.prod(result.shape) == result.size


def write(path, data, gzipped):
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


# --- numerics at extreme logits ---------------------------------------------------------------

extreme_logits = st.lists(
    st.one_of(st.floats(-1e4, 1e4), st.sampled_from([-1e4, 1e4, 0.0])), min_size=2, max_size=5
)


@settings(max_examples=100, **SETTINGS)
@given(
    rows=st.lists(extreme_logits, min_size=1, max_size=4),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_softmax_and_cross_entropy_stay_finite_at_extreme_logits(rows, dtype, data):
    width = len(rows[0])
    z = np.array([(row * width)[:width] for row in rows], dtype=dtype)
    labels = np.array(
        data.draw(st.lists(st.integers(0, width - 1), min_size=len(z), max_size=len(z)))
    )
    softmax = create("activations", "softmax")
    p = softmax.forward(z)
    assert np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=1e-5)
    grad_a = np.random.default_rng(0).normal(size=z.shape).astype(dtype)
    assert np.isfinite(softmax.backward(z, p, grad_a)).all()
    for loss in (
        create("losses", "cross_entropy"),
        create("losses", "cross_entropy", from_logits=True),
    ):
        y_pred = z if loss.from_logits else p
        value = loss.forward(y_pred, labels)
        grad = loss.backward(y_pred, labels)
        assert math.isfinite(value) and value >= 0
        assert grad.shape == z.shape and np.isfinite(grad).all()
    fused = create("losses", "cross_entropy").backward_fused(p, labels)
    expected = (p - np.eye(width)[labels]) / len(z)
    np.testing.assert_allclose(fused, expected, atol=1e-7)
    logits = create("losses", "cross_entropy", from_logits=True)
    np.testing.assert_allclose(logits.backward(z, labels), expected, atol=1e-6)


@settings(max_examples=100, **SETTINGS)
@given(
    z=st.lists(
        st.one_of(st.floats(-1e4, 1e4), st.sampled_from([-1e4, 1e4])), min_size=1, max_size=8
    ),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_sigmoid_and_binary_cross_entropy_stay_finite_at_extreme_logits(z, dtype, data):
    z = np.array(z, dtype=dtype).reshape(-1, 1)
    y = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(z), max_size=len(z))),
        dtype=dtype,
    ).reshape(-1, 1)
    sigmoid = create("activations", "sigmoid")
    p = sigmoid.forward(z)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert np.isfinite(sigmoid.backward(z, p, np.ones_like(z))).all()
    for loss in (
        create("losses", "binary_cross_entropy"),
        create("losses", "binary_cross_entropy", from_logits=True),
    ):
        y_pred = z if loss.from_logits else p
        value = loss.forward(y_pred, y)
        assert math.isfinite(value) and value >= 0
        assert np.isfinite(loss.backward(y_pred, y)).all()
    np.testing.assert_allclose(
        create("losses", "binary_cross_entropy").backward_fused(p, y), (p - y) / len(z), atol=1e-7
    )
    # at ±1e4 the exact loss of a wrong confident answer is about 1e4: from logits it is kept
    from_logits = create("losses", "binary_cross_entropy", from_logits=True).forward(
        np.array([[1e4]], dtype=dtype), np.array([[0.0]], dtype=dtype)
    )
    assert from_logits == pytest.approx(1e4, rel=1e-6)
