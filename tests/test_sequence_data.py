"""Sequence datasets (adding_problem, reverse_sequence) and per-token cross_entropy and
accuracy on (N, T, C) predictions with (N, T) labels."""

import numpy as np
import pytest

from framework import ConfigError, DataError, create, testing


def load(name, seed=0, **params):
    return create("datasets", name, **params).load(np.random.default_rng(seed))


def test_adding_problem_shapes_markers_and_targets():
    x, y, xt, yt = load("adding_problem", length=20, n_samples=500, test_fraction=0.2)
    assert x.shape == (400, 20, 2) and y.shape == (400, 1)
    assert xt.shape == (100, 20, 2) and yt.shape == (100, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    for inputs, targets in ((x, y), (xt, yt)):
        markers = inputs[..., 1]
        assert set(np.unique(markers)) == {0.0, 1.0}
        assert np.all(markers.sum(axis=1) == 2)
        assert np.all(markers[:, :10].sum(axis=1) == 1)  # one marker in each half
        assert np.all((inputs[..., 0] >= 0) & (inputs[..., 0] < 1))
        np.testing.assert_allclose(targets[:, 0], (inputs[..., 0] * markers).sum(axis=1), rtol=1e-6)
    # The mean predictor's MSE is the variance of a sum of two uniforms, 1/6.
    assert (
        abs(float(np.var(load("adding_problem", n_samples=20000, test_fraction=0)[1])) - 1 / 6)
        < 0.01
    )


def test_reverse_sequence_shapes_and_targets():
    x, y, xt, yt = load("reverse_sequence", length=6, vocab=5, n_samples=100, test_fraction=0.1)
    assert x.shape == (90, 6) and y.shape == (90, 6) and xt.shape == (10, 6)
    assert np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)
    assert x.min() >= 0 and x.max() < 5
    np.testing.assert_array_equal(y, x[:, ::-1])
    np.testing.assert_array_equal(yt, xt[:, ::-1])


@pytest.mark.parametrize(
    "name, params", [("adding_problem", {"length": 8}), ("reverse_sequence", {"length": 5})]
)
def test_sequence_datasets_come_from_the_seed(name, params):
    first, again, other = (
        load(name, 3, n_samples=50, **params),
        load(name, 3, n_samples=50, **params),
        load(name, 4, n_samples=50, **params),
    )
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("params", [{"length": 1}, {"n_samples": 0}, {"test_fraction": 1.0}])
def test_sequence_dataset_parameters_are_validated(params):
    with pytest.raises(ConfigError):
        create("datasets", "adding_problem", **params)


def test_reverse_sequence_needs_a_vocabulary_of_two():
    with pytest.raises(ConfigError, match="vocab"):
        create("datasets", "reverse_sequence", vocab=1)


# --- per-token loss and accuracy -------------------------------------------------------------


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_per_token_cross_entropy_is_the_mean_over_tokens():
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(size=(3, 4, 5)))
    labels = rng.integers(0, 5, size=(3, 4))
    loss = create("losses", "cross_entropy")
    expected = -np.mean(np.log(np.take_along_axis(p, labels[..., None], axis=-1)))
    assert loss.forward(p, labels) == pytest.approx(expected)
    # ...equal to the 2-D loss on the tokens as rows
    assert loss.forward(p, labels) == pytest.approx(loss.forward(p.reshape(12, 5), labels.ravel()))
    np.testing.assert_allclose(
        loss.backward_fused(p, labels).reshape(12, 5),
        loss.backward_fused(p.reshape(12, 5), labels.ravel()),
    )
    testing.check_loss(loss, y_pred=p, y_true=labels)
    testing.check_loss(loss, y_pred=p, y_true=np.eye(5)[labels])
    testing.check_loss(
        create("losses", "cross_entropy", from_logits=True),
        y_pred=rng.normal(size=(3, 4, 5)),
        y_true=labels,
    )


def test_per_token_targets_are_checked():
    loss = create("losses", "cross_entropy")
    loss.check_targets(np.zeros((2, 4), int), (4, 5))
    with pytest.raises(DataError, match="out of range"):
        loss.check_targets(np.full((2, 4), 5), (4, 5))
    with pytest.raises(DataError, match="got shape"):
        loss.check_targets(np.zeros((2, 3), int), (4, 5))


def test_per_token_accuracy_counts_every_token():
    y_pred = np.zeros((2, 3, 4))
    y_pred[..., 1] = 1  # predicts class 1 everywhere
    labels = np.array([[1, 1, 0], [1, 2, 3]])
    accuracy = create("metrics", "accuracy")
    assert accuracy(y_pred, labels) == pytest.approx(3 / 6)
    assert accuracy(y_pred, np.eye(4)[labels]) == pytest.approx(3 / 6)
