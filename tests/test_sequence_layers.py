"""Sequence layers (simple_rnn, lstm, gru, multi_head_attention, embedding,
positional_embedding, global_avgpool1d) and dense on sequences: gradients against finite
differences in float64 (through T >= 12 steps, return_sequences both ways), outputs and
gradients against PyTorch given the same weights, the contract's parameter layouts, and the
errors for input they cannot take."""

import numpy as np
import pytest

from framework import DataError, Sequential, ShapeError, create, testing

RECURRENT = ("simple_rnn", "lstm", "gru")


def layer_on(spec, input_shape, dtype="float64", seed=0):
    """The layer of a one-layer model built for ``input_shape``."""
    return Sequential([spec], input_shape=input_shape, dtype=dtype, seed=seed).layers[0]


def perturbed(layer, seed=1, scale=0.3):
    """Give every parameter random values (zero biases hide bias mistakes)."""
    rng = np.random.default_rng(seed)
    for value in layer.params.values():
        value[...] = scale * rng.normal(size=value.shape)
    return layer


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_gradients_through_many_steps(kind, return_sequences):
    layer = create("layers", kind, units=4, return_sequences=return_sequences)
    assert testing.check_layer(layer, input_shape=(13, 3), batch=2) < 1e-6


def test_simple_rnn_with_another_activation():
    layer = create("layers", "simple_rnn", units=3, activation="sigmoid", return_sequences=True)
    assert testing.check_layer(layer, input_shape=(12, 2), batch=2) < 1e-6


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_gradients(causal, heads):
    layer = create("layers", "multi_head_attention", num_heads=heads, causal=causal)
    assert testing.check_layer(layer, input_shape=(6, 8), batch=2) < 1e-6


@pytest.mark.parametrize(
    "kind, params, input_shape",
    [
        ("positional_embedding", {"max_length": 9}, (7, 3)),
        ("global_avgpool1d", {}, (7, 3)),
        ("dense", {"units": 3, "activation": "tanh"}, (7, 4)),
        ("dense", {"units": 2, "activation": "softmax"}, (5, 3)),
    ],
)
def test_sequence_helpers_gradients(kind, params, input_shape):
    assert testing.check_layer(create("layers", kind, **params), input_shape=input_shape) < 1e-6


def test_embedding_parameter_gradient_and_repeated_ids():
    assert (
        testing.check_layer(
            create("layers", "embedding", input_dim=5, output_dim=3), input_shape=(12,)
        )
        < 1e-6
    )
    layer = layer_on({"type": "embedding", "input_dim": 4, "output_dim": 2}, (3,))
    ids = np.array([[1, 1, 3]])
    y = layer.forward(ids)
    np.testing.assert_array_equal(y[0], layer.params["weights"][[1, 1, 3]])
    assert layer.backward(np.ones((1, 3, 2))) is None
    np.testing.assert_array_equal(layer.grads["weights"], [[0, 0], [2, 2], [0, 0], [1, 1]])


def test_plugin_check_covers_every_sequence_layer():
    import plugins.layers

    report = testing.check_plugin(plugins.layers)
    for name in (
        "embedding",
        "positional_embedding",
        "global_avgpool1d",
        *RECURRENT,
        "multi_head_attention",
    ):
        assert report[f"layers/{name}"] < 1e-6


def test_a_stack_of_recurrent_layers_checks_end_to_end():
    """lstm → gru → dense per step: gradients flow through both recurrences."""
    model = Sequential(
        [
            {"type": "lstm", "units": 3, "return_sequences": True},
            {"type": "gru", "units": 3, "return_sequences": True},
            {"type": "dense", "units": 2},
        ],
        input_shape=(12, 2),
        dtype="float64",
        seed=0,
    )
    for layer in model.layers:
        perturbed(layer)
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(2, 12, 2)), rng.normal(size=(2, 12, 2))
    model.forward(x, training=True)
    grad_x = model.backward(g)
    objective = lambda: np.vdot(g, model.forward(x, training=True))  # noqa: E731
    testing.compare(grad_x, testing.numeric_gradient(objective, x), "input")
    for layer in model.layers:
        analytic = {key: value.copy() for key, value in layer.grads.items()}
        for key, param in layer.params.items():
            testing.compare(
                analytic[key], testing.numeric_gradient(objective, param), f"{layer.name}/{key}"
            )


# --- layouts and behaviour ----------------------------------------------------------------


@pytest.mark.parametrize("kind, gates", [("simple_rnn", 1), ("lstm", 4), ("gru", 3)])
def test_recurrent_parameter_layouts(kind, gates):
    layer = layer_on({"type": kind, "units": 5}, (7, 3))
    assert layer.params["weights"].shape == (3, gates * 5)
    assert layer.params["recurrent_weights"].shape == (5, gates * 5)
    assert layer.params["bias"].shape == (gates * 5,)
    if kind == "gru":
        assert layer.params["recurrent_bias"].shape == (15,)
    assert set(layer.grads) == set(layer.params)


@pytest.mark.parametrize("kind", RECURRENT)
def test_return_sequences_shapes_and_activations(kind):
    x = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)
    last = Sequential([{"type": kind, "units": 5}], input_shape=(7, 3), seed=0)
    every = Sequential(
        [{"type": kind, "units": 5, "return_sequences": True}], input_shape=(7, 3), seed=0
    )
    assert last.output_shape == (5,) and every.output_shape == (7, 5)
    y_last, y_every = last.predict(x), every.predict(x)
    assert y_last.shape == (4, 5) and y_every.shape == (4, 7, 5)
    assert y_every.dtype == np.float32
    np.testing.assert_allclose(y_every[:, -1], y_last, rtol=1e-6)
    # TensorBoard's `activations`: the whole hidden-state sequence either way.
    assert last.layers[0].activations.shape == (4, 7, 5)


def test_lstm_forget_bias_starts_at_one_by_default():
    bias = layer_on({"type": "lstm", "units": 3}, (4, 2)).params["bias"]
    np.testing.assert_array_equal(bias, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    off = layer_on({"type": "lstm", "units": 3, "unit_forget_bias": False}, (4, 2)).params["bias"]
    np.testing.assert_array_equal(off, np.zeros(12))


def test_causal_attention_ignores_later_positions():
    layer = perturbed(
        layer_on({"type": "multi_head_attention", "num_heads": 2, "causal": True}, (6, 4))
    )
    x = np.random.default_rng(0).normal(size=(2, 6, 4))
    y = layer.forward(x)
    changed = x.copy()
    changed[:, 4:] += 1.0
    y_changed = layer.forward(changed)
    np.testing.assert_allclose(y_changed[:, :4], y[:, :4], rtol=1e-12)
    assert not np.allclose(y_changed[:, 4:], y[:, 4:])
    assert np.allclose(np.triu(layer.attention_weights[0, 0], 1), 0)


def test_dense_on_sequences_is_dense_per_step():
    layer = perturbed(layer_on({"type": "dense", "units": 3}, (5, 4)))
    x = np.random.default_rng(0).normal(size=(2, 5, 4))
    y = layer.forward(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y[1, 2], x[1, 2] @ layer.params["weights"] + layer.params["bias"])


def test_positional_embedding_adds_a_row_per_position_and_allows_shorter_sequences():
    layer = perturbed(layer_on({"type": "positional_embedding", "max_length": 8}, (5, 3)))
    x = np.zeros((2, 5, 3))
    np.testing.assert_array_equal(layer.forward(x)[1], layer.params["weights"][:5])
    layer.backward(np.ones((2, 5, 3)))
    np.testing.assert_array_equal(layer.grads["weights"][:5], 2)
    np.testing.assert_array_equal(layer.grads["weights"][5:], 0)


def test_global_avgpool1d_is_the_mean_over_time():
    layer = layer_on("global_avgpool1d", (4, 3))
    x = np.arange(24.0).reshape(2, 4, 3)
    np.testing.assert_array_equal(layer.forward(x), x.mean(axis=1))


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [*RECURRENT, "multi_head_attention", "positional_embedding", "global_avgpool1d"]
)
def test_a_sequence_layer_given_flat_input_names_itself_the_shape_and_the_need(kind):
    params = (
        {"units": 3}
        if kind in RECURRENT
        else {"num_heads": 1}
        if kind == "multi_head_attention"
        else {}
    )
    if kind == "positional_embedding":
        params = {"max_length": 4}
    with pytest.raises(ShapeError) as info:
        Sequential([{"type": kind, **params}], input_shape=(4,))
    message = str(info.value)
    assert (
        f"{kind}_0" in message
        and "(None, 4)" in message
        and "(None, timesteps, features)" in message
    )


def test_num_heads_must_divide_the_feature_size():
    with pytest.raises(ShapeError, match=r"num_heads = 3 does not divide the feature size 8"):
        Sequential([{"type": "multi_head_attention", "num_heads": 3}], input_shape=(5, 8))


def test_a_causal_mask_needs_a_sequence():
    with pytest.raises(ShapeError, match="a causal mask needs a sequence"):
        Sequential(
            [{"type": "multi_head_attention", "num_heads": 1, "causal": True}], input_shape=(8,)
        )


def test_a_positional_embedding_shorter_than_the_sequence():
    with pytest.raises(
        ShapeError, match=r"sequences are 12 steps long but positional_embedding has max_length 10"
    ):
        Sequential([{"type": "positional_embedding", "max_length": 10}], input_shape=(12, 4))


def test_embedding_refuses_float_and_out_of_range_ids():
    layer = layer_on({"type": "embedding", "input_dim": 5, "output_dim": 2}, (3,))
    with pytest.raises(DataError, match=r"layer embedding_0 takes integer token ids, got float64"):
        layer.forward(np.array([[0.0, 1.0, 2.0]]))
    with pytest.raises(DataError, match=r"token id 5 is outside \[0, 5\)"):
        layer.forward(np.array([[0, 5, 1]]))
    with pytest.raises(DataError, match=r"token id -1 is outside"):
        layer.forward(np.array([[0, -1, 1]]))


# --- PyTorch -------------------------------------------------------------------------------


def torch_recurrent(torch, kind, layer, features):
    hidden = layer.units
    cls = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    net = cls(features, hidden, batch_first=True).double()
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(layer.params["weights"].T))
        net.weight_hh_l0.copy_(torch.from_numpy(layer.params["recurrent_weights"].T))
        net.bias_ih_l0.copy_(torch.from_numpy(layer.params["bias"]))
        recurrent_bias = layer.params.get("recurrent_bias", np.zeros_like(layer.params["bias"]))
        net.bias_hh_l0.copy_(torch.from_numpy(recurrent_bias))
    return net


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_recurrent_layers_match_pytorch(kind, return_sequences):
    torch = pytest.importorskip("torch")
    n, steps, features, hidden = 3, 12, 4, 5
    layer = perturbed(
        layer_on(
            {"type": kind, "units": hidden, "return_sequences": return_sequences}, (steps, features)
        )
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, steps, features))
    y = layer.forward(x, training=True)
    g = rng.normal(size=y.shape)
    grad_x = layer.backward(g)

    net = torch_recurrent(torch, kind, layer, features)
    xt = torch.tensor(x, requires_grad=True)
    out = net(xt)[0]
    out = out if return_sequences else out[:, -1]
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        layer.grads["weights"], net.weight_ih_l0.grad.numpy().T, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        layer.grads["recurrent_weights"], net.weight_hh_l0.grad.numpy().T, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        layer.grads["bias"], net.bias_ih_l0.grad.numpy(), rtol=1e-9, atol=1e-12
    )
    if kind == "gru":
        np.testing.assert_allclose(
            layer.grads["recurrent_bias"], net.bias_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12
        )


def test_embedding_matches_pytorch():
    torch = pytest.importorskip("torch")
    layer = perturbed(layer_on({"type": "embedding", "input_dim": 6, "output_dim": 3}, (5,)))
    ids = np.random.default_rng(0).integers(0, 6, size=(4, 5))
    y = layer.forward(ids)
    g = np.random.default_rng(1).normal(size=y.shape)
    layer.backward(g)
    net = torch.nn.Embedding(6, 3).double()
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(layer.params["weights"]))
    out = net(torch.from_numpy(ids))
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, out.detach().numpy())
    np.testing.assert_allclose(layer.grads["weights"], net.weight.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_pytorch(causal):
    torch = pytest.importorskip("torch")
    n, steps, size, heads = 3, 7, 8, 2
    layer = perturbed(
        layer_on(
            {"type": "multi_head_attention", "num_heads": heads, "causal": causal}, (steps, size)
        )
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, steps, size))
    y = layer.forward(x, training=True)
    g = rng.normal(size=y.shape)
    grad_x = layer.backward(g)

    net = torch.nn.MultiheadAttention(size, heads, batch_first=True).double()
    p = layer.params
    with torch.no_grad():
        net.in_proj_weight.copy_(
            torch.from_numpy(
                np.concatenate([p["query_weights"].T, p["key_weights"].T, p["value_weights"].T])
            )
        )
        net.in_proj_bias.copy_(
            torch.from_numpy(np.concatenate([p["query_bias"], p["key_bias"], p["value_bias"]]))
        )
        net.out_proj.weight.copy_(torch.from_numpy(p["output_weights"].T))
        net.out_proj.bias.copy_(torch.from_numpy(p["output_bias"]))
    xt = torch.tensor(x, requires_grad=True)
    mask = torch.triu(torch.ones(steps, steps, dtype=torch.bool), 1) if causal else None
    out, weights = net(xt, xt, xt, attn_mask=mask, need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        layer.attention_weights, weights.detach().numpy(), rtol=1e-10, atol=1e-12
    )
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(grad_x, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    in_grad = net.in_proj_weight.grad.numpy()
    for index, name in enumerate(("query", "key", "value")):
        np.testing.assert_allclose(
            layer.grads[f"{name}_weights"],
            in_grad[index * size : (index + 1) * size].T,
            rtol=1e-9,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            layer.grads[f"{name}_bias"],
            net.in_proj_bias.grad.numpy()[index * size : (index + 1) * size],
            rtol=1e-9,
            atol=1e-12,
        )
    np.testing.assert_allclose(
        layer.grads["output_weights"], net.out_proj.weight.grad.numpy().T, rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        layer.grads["output_bias"], net.out_proj.bias.grad.numpy(), rtol=1e-9, atol=1e-12
    )


def test_the_cli_refuses_a_recurrent_net_on_flat_data_with_one_message(tmp_path, capsys):
    from framework.cli import main

    config = tmp_path / "bad.toml"
    config.write_text(
        '[data]\ntype = "moons"\nn_samples = 50\n[model]\nlayers = [{ type = "lstm", units = 4 }, { type = "dense", units = 2, activation = "softmax" }]\n'
        '[train]\nloss = "cross_entropy"\nepochs = 1\n[logging]\nlogdir = "run"\n'
    )
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "lstm_0" in err and "(None, 2)" in err and "needs sequences" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "summary.json").exists()
