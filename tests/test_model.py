import numpy as np
import pytest

from framework import DataError, Sequential, ShapeError, create


def small_model(**kwargs):
    return Sequential(
        [
            create("layers", "dense", units=4, activation="tanh"),
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
        **kwargs,
    )


def test_layers_are_named_by_kind_and_index():
    model = Sequential(
        ["flatten", {"type": "dense", "units": 3}, {"type": "dropout", "rate": 0.5}],
        input_shape=(2, 2),
    )
    assert [layer.name for layer in model.layers] == ["flatten_0", "dense_1", "dropout_2"]
    assert model.output_shape == (3,)


def test_float32_by_default_and_float64_selectable():
    assert small_model(input_shape=(3,)).params_list()[0].dtype == np.float32
    model = small_model(input_shape=(3,), dtype="float64")
    assert all(p.dtype == np.float64 for p in model.params_list())
    assert model.predict(np.ones((5, 3))).dtype == np.float64


def test_seed_makes_weights_reproducible():
    a = small_model(input_shape=(3,), seed=1).get_params()
    b = small_model(input_shape=(3,), seed=1).get_params()
    c = small_model(input_shape=(3,), seed=2).get_params()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_flat_params_round_trip_in_place():
    model = small_model(input_shape=(3,), seed=0)
    weights = model.layers[0].params["weights"]
    vector = np.arange(model.num_params, dtype=np.float64)
    model.set_params(vector)
    assert np.array_equal(model.get_params(), vector)
    assert model.layers[0].params["weights"] is weights  # written in place
    assert model.num_params == 3 * 4 + 4 + 4 * 2 + 2
    with pytest.raises(ShapeError, match="set_params got 3 values; the model has 26"):
        model.set_params(np.zeros(3))


def test_seed000_network_has_26048_weights():
    layers = [
        {"type": "dense", "units": n, "activation": "sigmoid", "use_bias": False}
        for n in (32, 20, 16)
    ]
    assert Sequential(layers, input_shape=(784,)).num_params == 26_048


def test_summary_lists_layers_shapes_and_counts():
    text = small_model(input_shape=(3,)).summary()
    assert "dense_0" in text and "(None, 4)" in text and "16" in text
    assert "total parameters: 26" in text


def test_shape_mismatch_names_layer_and_shapes():
    model = small_model(input_shape=(3,))
    with pytest.raises(
        ShapeError,
        match=r"input of layer dense_0 is incompatible: expected shape \(None, 3\), got \(None, 5\)",
    ):
        model.predict(np.ones((2, 5)))


def test_weights_save_and_load(tmp_path):
    model = small_model(input_shape=(3,), seed=0)
    model.save_weights(tmp_path / "w.npz")
    other = small_model(input_shape=(3,), seed=9)
    other.load_weights(tmp_path / "w.npz")
    assert np.array_equal(model.get_params(), other.get_params())
    wrong = Sequential([{"type": "dense", "units": 5}], input_shape=(3,))
    with pytest.raises((DataError, ShapeError)):
        wrong.load_weights(tmp_path / "w.npz")


def test_weights_file_with_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"dense_0/weights": np.array([object()], dtype=object)})
    model = small_model(input_shape=(3,))
    with pytest.raises(DataError, match="pickled"):
        model.load_weights(path)


def test_training_backward_stops_at_the_first_layer_with_parameters():
    """Layers before it (flatten here) and its own input gradient are skipped while
    training; asking for the input gradient afterwards gets it whole again."""
    model = Sequential(
        [
            {"type": "flatten"},
            {"type": "dense", "units": 3, "activation": "tanh"},
            {"type": "dense", "units": 2},
        ],
        input_shape=(2, 2),
        seed=0,
    )
    flatten = model.layers[0]
    calls = []
    flatten.backward = lambda grad: calls.append(grad.shape) or grad.reshape(-1, 2, 2)
    x = np.random.default_rng(0).normal(size=(5, 2, 2)).astype(np.float32)
    model.forward(x, True)
    assert model.backward(np.ones((5, 2), np.float32), input_grad=False) is None
    assert calls == [] and model.layers[1].needs_input_grad is False
    assert np.any(model.layers[1].grads["weights"])
    grad = model.backward(np.ones((5, 2), np.float32), input_grad=True)
    assert grad.shape == (5, 2, 2) and calls == [(5, 4)]
