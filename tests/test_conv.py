"""conv2d, maxpool2d and avgpool2d: values against loop-by-loop references (and PyTorch when
it is installed), gradients against finite differences, TensorFlow's "same" padding, the
max-pool's routing, errors; and the seed-002 MNIST network end to end on tiny IDX files."""

import gzip
import os

import numpy as np
import pytest

from framework import ConfigError, Sequential, ShapeError, Trainer, create, kernels, run
from framework.config import apply_overrides, flatten_config, load_config

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, "examples")


def layer_on(spec, input_shape, dtype="float64", seed=0):
    """The layer of a one-layer model built for ``input_shape`` (so it is named and built
    exactly as in a real model)."""
    return Sequential([spec], input_shape=input_shape, dtype=dtype, seed=seed).layers[0]


def tf_same(size, window, stride):
    """TensorFlow's SAME rule, written out independently of the layer: (out, before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return out, total // 2, total - total // 2


def reference_conv(x, weights, bias, strides, padding):
    """Cross-correlation by explicit loops over output pixels (the definition)."""
    kh, kw, _, filters = weights.shape
    if padding == "same":
        rows, cols = tf_same(x.shape[1], kh, strides[0]), tf_same(x.shape[2], kw, strides[1])
        x = np.pad(x, ((0, 0), rows[1:], cols[1:], (0, 0)))
    out_h = (x.shape[1] - kh) // strides[0] + 1
    out_w = (x.shape[2] - kw) // strides[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w, filters))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * strides[0] : i * strides[0] + kh, j * strides[1] : j * strides[1] + kw]
            out[:, i, j] = np.einsum("nhwc,hwcf->nf", patch, weights)
    return out + bias


def reference_pool(x, pool, strides, padding, reduce):
    """Pooling by explicit loops over output pixels; padding is NaN and ignored."""
    if padding == "same":
        rows, cols = (
            tf_same(x.shape[1], pool[0], strides[0]),
            tf_same(x.shape[2], pool[1], strides[1]),
        )
        x = np.pad(x, ((0, 0), rows[1:], cols[1:], (0, 0)), constant_values=np.nan)
    out_h = (x.shape[1] - pool[0]) // strides[0] + 1
    out_w = (x.shape[2] - pool[1]) // strides[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            window = x[
                :,
                i * strides[0] : i * strides[0] + pool[0],
                j * strides[1] : j * strides[1] + pool[1],
            ]
            out[:, i, j] = reduce(window, axis=(1, 2))
    return out


def numeric_grad(f, array, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to each entry of ``array``."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        plus = f()
        array[index] = saved - eps
        minus = f()
        array[index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


CONV_CASES = [
    # (kernel_size, strides, padding, input (H, W, C))
    (3, 1, "same", (5, 5, 2)),
    (3, 2, "same", (5, 5, 2)),
    (3, 1, "valid", (5, 5, 2)),
    (3, 2, "valid", (5, 6, 2)),
    ((2, 3), (2, 1), "same", (6, 5, 3)),
    (4, 1, "same", (5, 4, 1)),  # even kernel: TF pads 1 before, 2 after
    (2, 3, "same", (7, 7, 2)),  # stride larger than the kernel
    (1, 1, "valid", (3, 3, 4)),
]

# Every case by im2col, each stride-1 case by the Fourier transform as well, and each 3×3
# stride-1 case by Winograd's F(2×2, 3×3).
ALGORITHM_CASES = (
    [(*case, "im2col") for case in CONV_CASES]
    + [(*case, "fft") for case in CONV_CASES if case[1] == 1]
    + [(*case, "winograd") for case in CONV_CASES if case[:2] == (3, 1)]
)


@pytest.mark.parametrize("kernel_size, strides, padding, shape, algorithm", ALGORITHM_CASES)
def test_conv2d_forward_matches_the_loop_definition(
    kernel_size, strides, padding, shape, algorithm
):
    layer = layer_on(
        {
            "type": "conv2d",
            "filters": 3,
            "kernel_size": kernel_size,
            "strides": strides,
            "padding": padding,
            "bias_init": {"type": "normal", "stddev": 1.0},
            "algorithm": algorithm,
        },
        shape,
    )
    x = np.random.default_rng(1).normal(size=(2, *shape))
    y = layer.forward(x, training=True)
    expected = reference_conv(
        x, layer.params["weights"], layer.params["bias"], layer.strides, padding
    )
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel_size, strides, padding, shape, algorithm", ALGORITHM_CASES)
def test_conv2d_matches_pytorch(kernel_size, strides, padding, shape, algorithm):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    layer = layer_on(
        {
            "type": "conv2d",
            "filters": 4,
            "kernel_size": kernel_size,
            "strides": strides,
            "padding": padding,
            "bias_init": {"type": "normal"},
            "algorithm": algorithm,
        },
        shape,
    )
    x = np.random.default_rng(2).normal(size=(3, *shape))
    weights, bias = layer.params["weights"], layer.params["bias"]
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    if padding == "same":  # torch pads symmetrically; TF's extra row/column goes after
        _, top, bottom = tf_same(shape[0], weights.shape[0], layer.strides[0])
        _, left, right = tf_same(shape[1], weights.shape[1], layer.strides[1])
        xt = functional.pad(xt, (left, right, top, bottom))
    expected = (
        functional.conv2d(
            xt,
            torch.from_numpy(weights.transpose(3, 2, 0, 1).copy()),
            torch.from_numpy(bias),
            stride=layer.strides,
        )
        .numpy()
        .transpose(0, 2, 3, 1)
    )
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel_size, strides, padding, shape, algorithm", ALGORITHM_CASES)
@pytest.mark.parametrize("activation", [None, "tanh"])
def test_conv2d_gradients_match_finite_differences(
    kernel_size, strides, padding, shape, algorithm, activation
):
    layer = layer_on(
        {
            "type": "conv2d",
            "filters": 2,
            "kernel_size": kernel_size,
            "strides": strides,
            "padding": padding,
            "activation": activation,
            "bias_init": {"type": "normal"},
            "algorithm": algorithm,
        },
        shape,
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, *shape))
    grad_y = rng.normal(size=(2, *layer.output_shape))

    def objective():
        return float(np.sum(layer.forward(x, training=True) * grad_y))

    objective()
    grad_x = layer.backward(grad_y)
    analytic = {name: grad.copy() for name, grad in layer.grads.items()}
    np.testing.assert_allclose(grad_x, numeric_grad(objective, x), rtol=1e-6, atol=1e-8)
    for name, param in layer.params.items():
        np.testing.assert_allclose(
            analytic[name], numeric_grad(objective, param), rtol=1e-6, atol=1e-8
        )


def test_conv2d_records_net_input_and_activation():
    layer = layer_on(
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "activation": "relu"}, (4, 4, 1)
    )
    x = np.random.default_rng(4).normal(size=(3, 4, 4, 1))
    a = layer.forward(x)
    assert layer.preactivations.shape == (3, 4, 4, 2)
    np.testing.assert_array_equal(a, np.maximum(layer.preactivations, 0))
    assert layer.activations is a
    linear = layer_on({"type": "conv2d", "filters": 2}, (4, 4, 1))
    y = linear.forward(x)
    assert linear.preactivations is None and linear.activations is y


def test_conv2d_parameters_have_the_contract_shapes_and_initialisers():
    layer = layer_on(
        {
            "type": "conv2d",
            "filters": 5,
            "kernel_size": (3, 2),
            "bias_init": {"type": "constant", "value": 0.1},
        },
        (6, 6, 4),
    )
    assert layer.params["weights"].shape == (3, 2, 4, 5)
    assert layer.params["bias"].shape == (5,)
    np.testing.assert_array_equal(layer.params["bias"], np.full(5, 0.1))
    # glorot_uniform by default, with the receptive field in both fans: ±sqrt(6 / (24 + 30))
    assert np.abs(layer.params["weights"]).max() <= np.sqrt(6 / (3 * 2 * 4 + 3 * 2 * 5))
    no_bias = layer_on({"type": "conv2d", "filters": 2, "use_bias": False}, (4, 4, 1))
    assert set(no_bias.params) == set(no_bias.grads) == {"weights"}


def test_conv2d_first_layer_skips_the_input_gradient_but_fills_its_own():
    layer = layer_on({"type": "conv2d", "filters": 2, "kernel_size": 3}, (4, 4, 1))
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 1))
    grad_y = np.ones((2, 4, 4, 2))
    layer.forward(x, training=True)
    full = layer.backward(grad_y)
    weights_grad = layer.grads["weights"].copy()
    layer.needs_input_grad = False
    layer.grads["weights"][...] = 0
    assert layer.backward(grad_y) is None
    np.testing.assert_allclose(layer.grads["weights"], weights_grad)
    assert full.shape == x.shape


@pytest.mark.parametrize(
    "size, kernel, stride", [(5, 4, 1), (6, 3, 2), (7, 2, 3), (28, 5, 1), (5, 3, 2), (4, 1, 3)]
)
def test_same_padding_follows_tensorflow(size, kernel, stride):
    layer = layer_on(
        {"type": "conv2d", "filters": 1, "kernel_size": kernel, "strides": stride}, (size, size, 1)
    )
    out, before, after = tf_same(size, kernel, stride)
    assert layer.output_shape == (out, out, 1)
    assert layer.pads == ((before, after), (before, after))


def test_odd_same_padding_puts_the_extra_zeros_after():
    """A 2x2 all-ones kernel over an all-ones 3x3 image counts the real pixels under each
    window: TensorFlow pads one row and column after, so the last row and column see less."""
    layer = layer_on(
        {
            "type": "conv2d",
            "filters": 1,
            "kernel_size": 2,
            "weight_init": {"type": "constant", "value": 1.0},
        },
        (3, 3, 1),
    )
    y = layer.forward(np.ones((1, 3, 3, 1)))
    np.testing.assert_array_equal(y[0, :, :, 0], [[4, 4, 2], [4, 4, 2], [2, 2, 1]])


def test_conv2d_keeps_float32():
    layer = layer_on(
        {"type": "conv2d", "filters": 3, "activation": "relu"}, (6, 6, 2), dtype="float32"
    )
    x = np.random.default_rng(6).random((2, 6, 6, 2), dtype=np.float32)
    y = layer.forward(x, training=True)
    grad_x = layer.backward(np.ones_like(y))
    assert y.dtype == grad_x.dtype == layer.grads["weights"].dtype == np.float32


# --- pooling ----------------------------------------------------------------------------------

POOL_CASES = [
    # (pool_size, strides, padding, input (H, W, C))
    (2, None, "valid", (4, 4, 2)),
    (2, None, "valid", (5, 5, 1)),  # the last row and column fit no window
    (3, 2, "valid", (7, 6, 2)),  # overlapping windows
    (2, None, "same", (5, 5, 2)),
    (3, 2, "same", (5, 5, 2)),
    ((2, 3), (1, 2), "same", (4, 7, 1)),
]


@pytest.mark.parametrize("pool_size, strides, padding, shape", POOL_CASES)
@pytest.mark.parametrize("kind, reduce", [("maxpool2d", np.nanmax), ("avgpool2d", np.nanmean)])
def test_pooling_forward_matches_the_loop_definition(
    kind, reduce, pool_size, strides, padding, shape
):
    spec = {"type": kind, "pool_size": pool_size, "padding": padding}
    if strides is not None:
        spec["strides"] = strides
    layer = layer_on(spec, shape)
    x = np.random.default_rng(7).normal(size=(2, *shape))
    y = layer.forward(x, training=True)
    expected = reference_pool(x, layer.pool_size, layer.strides, padding, reduce)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert y.shape[1:] == layer.output_shape


@pytest.mark.parametrize("pool_size, strides, padding, shape", POOL_CASES)
@pytest.mark.parametrize("kind", ["maxpool2d", "avgpool2d"])
def test_pooling_gradients_match_finite_differences(kind, pool_size, strides, padding, shape):
    spec = {"type": kind, "pool_size": pool_size, "padding": padding}
    if strides is not None:
        spec["strides"] = strides
    layer = layer_on(spec, shape)
    rng = np.random.default_rng(8)
    x = rng.permutation(np.prod((2, *shape))).reshape(2, *shape) / 7.0  # distinct: no ties
    grad_y = rng.normal(size=(2, *layer.output_shape))

    def objective():
        return float(np.sum(layer.forward(x, training=True) * grad_y))

    objective()
    np.testing.assert_allclose(
        layer.backward(grad_y), numeric_grad(objective, x), rtol=1e-6, atol=1e-8
    )


def test_maxpool_strides_default_to_the_pool_size():
    assert create("layers", "maxpool2d", pool_size=3).strides == (3, 3)
    assert create("layers", "avgpool2d", pool_size=(2, 3), strides=1).strides == (1, 1)


def test_maxpool_routes_each_gradient_to_its_windows_maximum():
    layer = layer_on({"type": "maxpool2d", "pool_size": 2}, (4, 4, 1))
    image = np.array([[1, 9, 2, 3], [4, 5, 8, 7], [6, 0, 1, 1], [2, 3, 4, 0]], dtype=float)
    y = layer.forward(image[None, :, :, None], training=True)
    np.testing.assert_array_equal(y[0, :, :, 0], [[9, 8], [6, 4]])
    grad = layer.backward(np.array([[10.0, 20.0], [30.0, 40.0]])[None, :, :, None])
    np.testing.assert_array_equal(
        grad[0, :, :, 0], [[0, 10, 0, 0], [0, 0, 20, 0], [30, 0, 0, 0], [0, 0, 40, 0]]
    )


def test_maxpool_gives_a_tied_window_gradient_to_its_first_maximum_only():
    layer = layer_on({"type": "maxpool2d", "pool_size": 2}, (2, 4, 1))
    image = np.array([[5, 5, 0, 7], [5, 5, 7, 7]], dtype=float)
    layer.forward(image[None, :, :, None], training=True)
    grad = layer.backward(np.array([[1.0, 2.0]])[None, :, :, None])
    np.testing.assert_array_equal(grad[0, :, :, 0], [[1, 0, 0, 2], [0, 0, 0, 0]])


def test_overlapping_max_windows_add_up_at_a_shared_maximum():
    layer = layer_on({"type": "maxpool2d", "pool_size": 2, "strides": 1}, (3, 3, 1))
    image = np.zeros((3, 3))
    image[1, 1] = 1.0  # the maximum of all four windows
    layer.forward(image[None, :, :, None], training=True)
    grad = layer.backward(np.ones((1, 2, 2, 1)))
    assert grad[0, 1, 1, 0] == 4 and grad.sum() == 4


def test_same_max_padding_never_wins_over_negative_inputs():
    layer = layer_on({"type": "maxpool2d", "pool_size": 2, "padding": "same"}, (3, 3, 1))
    x = -np.arange(1, 10, dtype=float).reshape(1, 3, 3, 1)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -3], [-7, -9]])
    grad = layer.backward(np.ones((1, 2, 2, 1)))
    assert grad.sum() == 4


def test_same_avgpool_averages_only_real_pixels():
    layer = layer_on({"type": "avgpool2d", "pool_size": 2, "padding": "same"}, (3, 3, 1))
    x = np.arange(9, dtype=float).reshape(1, 3, 3, 1)
    y = layer.forward(x)
    np.testing.assert_allclose(
        y[0, :, :, 0], [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]]
    )


# --- errors -----------------------------------------------------------------------------------


def test_a_kernel_larger_than_a_valid_input_names_the_layer_and_shapes():
    with pytest.raises(ShapeError) as info:
        Sequential(
            [
                {"type": "conv2d", "filters": 2, "kernel_size": 3},
                {"type": "conv2d", "filters": 2, "kernel_size": 5, "padding": "valid"},
            ],
            input_shape=(4, 4, 1),
        )
    assert str(info.value) == (
        "layer conv2d_1: kernel 5x5 is larger than its input (None, 4, 4, 2) with padding "
        "'valid'; use padding 'same' or a smaller kernel"
    )


def test_a_pool_larger_than_a_valid_input_names_the_layer():
    with pytest.raises(
        ShapeError,
        match=r"layer maxpool2d_0: pool_size 3x3 is larger than its input \(None, 2, 5, 1\)",
    ):
        Sequential([{"type": "maxpool2d", "pool_size": 3}], input_shape=(2, 5, 1))


@pytest.mark.parametrize("kind", ["conv2d", "maxpool2d", "avgpool2d"])
def test_image_layers_refuse_flat_inputs(kind):
    spec = {"type": kind, "filters": 2} if kind == "conv2d" else {"type": kind}
    with pytest.raises(
        ShapeError,
        match=rf"layer {kind}_0 expects images shaped \(height, width, channels\), got input shape \(None, 784\)",
    ):
        Sequential([spec], input_shape=(784,))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"filters": 0}, "filters must be a positive integer, got 0"),
        ({"filters": 2, "padding": "full"}, "padding must be 'same' or 'valid', got 'full'"),
        (
            {"filters": 2, "kernel_size": [3, 3, 3]},
            "expected an integer or a pair of integers, got [3, 3, 3]",
        ),
        ({"filters": 2, "strides": 0}, "expected positive sizes, got 0"),
        ({"filters": 2, "kernel_size": 2.5}, "expected an integer or a pair of integers, got 2.5"),
        (
            {"filters": 2, "algorithm": "direct"},
            "'algorithm' must be in ('auto', 'im2col', 'fft', 'winograd')",
        ),
    ],
)
def test_bad_conv2d_parameters_are_config_errors_naming_the_layer(params, message):
    with pytest.raises(ConfigError) as info:
        create("layers", "conv2d", **params)
    assert str(info.value).startswith("layer 'conv2d': ") and message in str(info.value)


def test_fft_convolution_needs_stride_one():
    with pytest.raises(ShapeError, match="algorithm 'fft' needs strides 1, got \\(2, 2\\)"):
        layer_on({"type": "conv2d", "filters": 2, "strides": 2, "algorithm": "fft"}, (6, 6, 3))


@pytest.mark.parametrize(
    "params, shape, fft",
    [
        ({"kernel_size": 5}, (14, 14, 32), True),  # seed 002's second convolution
        ({"kernel_size": 5}, (28, 28, 1), False),  # its first: one channel
        ({"kernel_size": 3}, (14, 14, 32), False),
        ({"kernel_size": 5, "strides": 2}, (14, 14, 32), False),
        ({"kernel_size": 3, "algorithm": "fft"}, (14, 14, 32), True),
        ({"kernel_size": 5, "algorithm": "im2col"}, (14, 14, 32), False),
    ],
)
def test_auto_takes_the_fourier_path_where_it_needs_fewer_operations(params, shape, fft):
    assert layer_on({"type": "conv2d", "filters": 4, **params}, shape).uses_fft is fft


@pytest.mark.parametrize(
    "params, shape, winograd",
    [
        ({}, (14, 14, 32), True),  # the residual net's convolutions
        ({}, (28, 28, 1), False),  # its first: one channel
        ({}, (28, 28, 8), False),  # too few channels to gain
        ({}, (28, 28, 16), True),
        ({"strides": 2}, (14, 14, 32), False),
        ({"kernel_size": 5}, (14, 14, 32), False),  # the Fourier path's
        ({"algorithm": "im2col"}, (14, 14, 32), False),
        ({"algorithm": "winograd"}, (28, 28, 1), True),
    ],
)
def test_auto_takes_winograds_path_for_3x3_kernels_over_many_channels(params, shape, winograd):
    layer = layer_on({"type": "conv2d", "filters": 4, **params}, shape)
    assert layer.winograd_fits is winograd
    layer.forward(np.zeros((2, *shape), layer.dtype))
    assert layer.by_winograd is winograd  # kernels are on here
    with kernels.use_kernels(False):  # numpy's reference: im2col
        layer.forward(np.zeros((2, *shape), layer.dtype))
        assert not layer.by_winograd


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_a_float32_conv_given_float64_inputs_gives_float32_gradients(algorithm):
    """Called directly (the trainer casts the data first), a float32 layer may get float64
    inputs: its gradients stay float32, the input's gradient follows the input."""
    layer = layer_on(
        {"type": "conv2d", "filters": 4, "algorithm": algorithm}, (6, 6, 16), "float32"
    )
    layer.needs_input_grad = True
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 16))
    y = layer.forward(x, training=True)
    grad_x = layer.backward(np.ones_like(y))
    assert layer.grads["weights"].dtype == np.float32 and grad_x.shape == x.shape
    reference = layer_on({"type": "conv2d", "filters": 4, "algorithm": "im2col"}, (6, 6, 16))
    reference.needs_input_grad = True
    reference.params["weights"][...] = layer.params["weights"]
    reference.backward(np.ones_like(reference.forward(x, training=True)))
    np.testing.assert_allclose(layer.grads["weights"], reference.grads["weights"], rtol=1e-5)


def test_winograd_needs_a_3x3_kernel_and_stride_one():
    with pytest.raises(ShapeError, match="algorithm 'winograd' needs a 3x3 kernel and strides 1"):
        layer_on({"type": "conv2d", "filters": 2, "strides": 2, "algorithm": "winograd"}, (6, 6, 3))


@pytest.mark.parametrize("shape", [(14, 14, 32), (7, 7, 32), (5, 8, 8)])
def test_winograd_agrees_with_im2col_in_float32(shape):
    """The residual net's layers (and odd sizes, whose last tiles reach past the edge): the
    same sums in another order."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    grad_y = rng.normal(size=(3, *shape[:2], 8)).astype(np.float32)
    results = {}
    for algorithm in ("im2col", "winograd"):
        spec = {"type": "conv2d", "filters": 8, "algorithm": algorithm}
        layer = layer_on(spec, shape, dtype="float32")
        y = layer.forward(x, training=True)
        grad_x = layer.backward(grad_y)
        results[algorithm] = y, grad_x, layer.grads["weights"], layer.grads["bias"]
        assert all(array.dtype == np.float32 for array in results[algorithm])
    for by_im2col, by_winograd in zip(results["im2col"], results["winograd"], strict=True):
        scale = np.abs(by_im2col).max()
        np.testing.assert_allclose(by_winograd, by_im2col, rtol=0, atol=2e-6 * scale)


def test_both_algorithms_agree_in_float32_on_the_seed_002_layer():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 14, 14, 32)).astype(np.float32)
    grad_y = rng.normal(size=(3, 14, 14, 8)).astype(np.float32)
    results = {}
    for algorithm in ("im2col", "fft"):  # the same seed: the same initial weights
        spec = {"type": "conv2d", "filters": 8, "kernel_size": 5, "algorithm": algorithm}
        layer = layer_on(spec, (14, 14, 32), dtype="float32")
        y = layer.forward(x, training=True)
        grad_x = layer.backward(grad_y)
        results[algorithm] = y, grad_x, layer.grads["weights"], layer.grads["bias"]
        assert all(array.dtype == np.float32 for array in results[algorithm])
    for by_im2col, by_fft in zip(results["im2col"], results["fft"], strict=True):
        np.testing.assert_allclose(by_fft, by_im2col, rtol=0, atol=1e-5 * np.abs(by_im2col).max())


# --- whole networks ---------------------------------------------------------------------------


def bars(n, rng):
    """8x8 images of one bright horizontal (class 0) or vertical (class 1) bar, in noise."""
    x = rng.normal(0, 0.2, size=(n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 2, n)
    where = rng.integers(1, 7, n)
    for label, index in ((0, 1), (1, 2)):
        chosen = np.flatnonzero(y == label)
        if index == 1:
            x[chosen, where[chosen], :, 0] += 1.0
        else:
            x[chosen, :, where[chosen], 0] += 1.0
    return x, y


def test_a_small_convnet_with_dropout_and_flatten_learns_bars():
    """conv -> maxpool -> conv -> avgpool -> flatten -> dropout -> dense on images: dropout and
    flatten take image-shaped inputs, and the whole stack trains."""
    rng = np.random.default_rng(9)
    x, y = bars(400, rng)
    x_test, y_test = bars(200, rng)
    model = Sequential(
        [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "maxpool2d", "pool_size": 2},
            {
                "type": "conv2d",
                "filters": 4,
                "kernel_size": 3,
                "activation": "relu",
                "padding": "valid",
            },
            {"type": "avgpool2d", "pool_size": 2},
            {"type": "dropout", "rate": 0.25},
            {"type": "flatten"},
            {"type": "dense", "units": 2, "activation": "softmax"},
        ],
        input_shape=(8, 8, 1),
        seed=0,
    )
    assert model.output_shape == (2,)
    trainer = Trainer(
        model, "cross_entropy", {"type": "adam", "lr": 0.02}, metrics=["accuracy"], seed=0
    )
    before = trainer.evaluate(x_test, y_test)["loss"]
    trainer.fit(x, y, epochs=15, batch_size=32)
    after = trainer.evaluate(x_test, y_test)
    assert after["loss"] < before / 2
    assert after["accuracy"] >= 0.95


def write_idx(path, array):
    """An IDX file (gzipped) of uint8 data, as MNIST ships."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def tiny_mnist(directory, rng, train=100, test=40):
    os.makedirs(directory)
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(
            os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"),
            rng.integers(0, 256, (n, 28, 28)),
        )
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), rng.integers(0, 10, n))


def test_the_seed_002_network_is_the_one_the_seed_describes():
    config = load_config(os.path.join(EXAMPLES, "mnist_dcn.toml"))
    model = Sequential(config["model"]["layers"], input_shape=(28, 28, 1))
    shapes = [layer.output_shape for layer in model.layers]
    assert shapes == [
        (28, 28, 32),
        (14, 14, 32),
        (14, 14, 64),
        (7, 7, 64),
        (3136,),
        (1024,),
        (1024,),
        (10,),
    ]
    assert model.num_params == (25 * 32 + 32) + (25 * 32 * 64 + 64) + (3136 * 1024 + 1024) + (
        1024 * 10 + 10
    )
    weights = np.concatenate(
        [layer.params["weights"].ravel() for layer in model.layers if "weights" in layer.params]
    )
    assert np.abs(weights).max() <= 0.2  # truncated at two standard deviations of 0.1
    biases = np.concatenate(
        [layer.params["bias"] for layer in model.layers if "bias" in layer.params]
    )
    np.testing.assert_array_equal(biases, np.float32(0.1))
    train = config["train"]
    assert (train["batch_size"], train["evaluate_every"]) == (50, 1100)
    assert train["optimizer"] == {"type": "adam", "lr": 1e-4}


def test_the_mnist_convnet_trains_end_to_end_on_tiny_idx_files(tmp_path):
    """The seed-002 config, callbacks included, on 100 random 28x28 images: one epoch runs,
    writes its summary and logs, and evaluates the held-out images."""
    tiny_mnist(tmp_path / "data" / "mnist", np.random.default_rng(10))
    config = apply_overrides(
        load_config(os.path.join(EXAMPLES, "mnist_dcn.toml")),
        [
            f"data.path={str(tmp_path / 'data' / 'mnist')!r}",
            "train.epochs=1",
            "train.evaluate_every=1",
            f"logging.logdir={str(tmp_path / 'run')!r}",
        ],
    )
    summary = run(config)
    assert summary["steps"] == 2 and summary["epochs"] == 1
    assert 0 <= summary["test"]["accuracy"] <= 1 and np.isfinite(summary["train"]["loss"])
    assert (tmp_path / "run" / "summary.json").is_file()
    assert os.listdir(tmp_path / "run" / "test")  # the held-out writer's event file
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["step-2.npz"]
    # Seed 002's summaries: every layer's tensors, the pooled activations among them.
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "train"))
    events.Reload()
    histograms, scalars = set(events.Tags()["histograms"]), set(events.Tags()["scalars"])
    for layer in ("conv2d_0", "conv2d_2"):
        assert {
            f"{layer}/{t}" for t in ("weights", "bias", "preactivations", "activations")
        } <= histograms
        assert f"{layer}/preactivations/stddev" in scalars
    assert {"maxpool2d_1/activations", "maxpool2d_3/activations"} <= histograms
    assert {"maxpool2d_1/activations/max", "maxpool2d_3/activations/min"} <= scalars


SHORT_RUN = {"train.epochs": 1, "train.evaluate_every": 200}


@pytest.mark.parametrize(
    "variant, changes",
    [
        ("tanh", {f"model.layers.{i}.activation": "tanh" for i in (0, 2, 5)}),
        ("sgd", {"train.optimizer.type": "sgd"}),
        ("glorot", {f"model.layers.{i}.weight_init": "glorot_uniform" for i in (0, 2, 5, 7)}),
    ],
)
def test_each_seed_002_variant_changes_one_thing_of_the_base_net(variant, changes):
    """The variants are the base config with one experiment's change (and the seed's shorter
    run, evaluated and checkpointed every 200 steps); everything else is the base net."""
    base = flatten_config(load_config(os.path.join(EXAMPLES, "mnist_dcn.toml")))
    config = flatten_config(load_config(os.path.join(EXAMPLES, f"mnist_dcn_{variant}.toml")))
    differing = {key for key in base.keys() | config.keys() if base.get(key) != config.get(key)}
    checkpoint_every = "train.callbacks.1.every"
    histogram_every = "train.callbacks.0.histogram_every"
    expected = {*changes, *SHORT_RUN, checkpoint_every, histogram_every, "logging.logdir"}
    if variant == "glorot":  # the truncated normal's table gives way to a name
        expected |= {
            f"model.layers.{i}.weight_init.{p}" for i in (0, 2, 5, 7) for p in ("type", "stddev")
        }
    for key, value in changes.items():
        assert config[key] == value
    assert differing == expected
    assert {key: config[key] for key in SHORT_RUN} == SHORT_RUN
    assert config[checkpoint_every] == 200
    Sequential(
        load_config(os.path.join(EXAMPLES, f"mnist_dcn_{variant}.toml"))["model"]["layers"],
        input_shape=(28, 28, 1),
    )
