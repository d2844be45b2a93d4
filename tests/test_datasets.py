import gzip

import numpy as np
import pytest
from sklearn import datasets as sklearn_datasets

from framework import ConfigError, DataError, create

GENERATED = ["moons", "circles", "regression"]


def load(name, seed=0, **params):
    return create("datasets", name, **params).load(np.random.default_rng(seed))


def sorted_rows(*arrays):
    """Rows of the arrays side by side, in a canonical order (splits shuffle samples)."""
    table = np.column_stack([np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in arrays])
    return table[np.lexsort(table.T[::-1])]


def sklearn_state(seed):
    """The random_state a dataset draws first from ``default_rng(seed)``."""
    return int(np.random.default_rng(seed).integers(2**31))


# --- toy sets --------------------------------------------------------------------------------


def test_xor_is_the_four_points_with_nothing_held_out():
    x, y, x_test, y_test = load("xor")
    assert x.shape == (4, 2) and y.shape == (4,) and y.dtype.kind == "i"
    assert np.array_equal(y, np.logical_xor(x[:, 0], x[:, 1]).astype(int))
    assert sorted_rows(x).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert x_test.shape == (0, 2) and y_test.shape == (0,)


def test_hours_studied_is_normalised_as_in_seed_000():
    x, y, x_test, y_test = load("hours_studied")
    raw = np.array([[3, 5], [5, 1], [10, 2]], dtype=float)
    expected = sorted_rows(raw / raw.max(axis=0), np.array([0.75, 0.82, 0.93]))
    assert y.shape == (3, 1)
    assert np.allclose(sorted_rows(x, y), expected)
    assert len(x_test) == 0 and y_test.shape == (0, 1)


# --- scikit-learn generators -----------------------------------------------------------------


def test_moons_are_make_moons_with_a_seeded_random_state():
    x, y, x_test, y_test = load("moons", seed=7, n_samples=300, noise=0.3, test_fraction=0.2)
    ref_x, ref_y = sklearn_datasets.make_moons(
        n_samples=300, noise=0.3, random_state=sklearn_state(7)
    )
    assert np.array_equal(
        sorted_rows(np.concatenate([x, x_test]), np.concatenate([y, y_test])),
        sorted_rows(ref_x, ref_y),
    )


def test_circles_are_make_circles_with_a_seeded_random_state():
    x, y, _, _ = load("circles", seed=3, n_samples=200, noise=0.05, factor=0.3, test_fraction=0)
    ref_x, ref_y = sklearn_datasets.make_circles(
        n_samples=200, noise=0.05, factor=0.3, random_state=sklearn_state(3)
    )
    assert np.array_equal(sorted_rows(x, y), sorted_rows(ref_x, ref_y))


def test_regression_is_make_regression_unscaled_with_target_scale_none():
    x, y, _, _ = load(
        "regression",
        seed=4,
        n_samples=50,
        n_features=6,
        n_informative=3,
        n_targets=2,
        noise=0.5,
        target_scale="none",
        test_fraction=0,
    )
    ref_x, ref_y = sklearn_datasets.make_regression(
        n_samples=50,
        n_features=6,
        n_informative=3,
        n_targets=2,
        noise=0.5,
        random_state=sklearn_state(4),
    )
    assert x.shape == (50, 6) and y.shape == (50, 2)
    assert np.array_equal(sorted_rows(x, y), sorted_rows(ref_x, ref_y))


def test_regression_targets_are_two_dimensional_for_one_target():
    _, y, _, y_test = load("regression", n_samples=40, n_features=3)
    assert y.shape == (32, 1) and y_test.shape == (8, 1)


def test_regression_minmax_scales_training_targets_to_unit_range():
    _, y, _, y_test = load("regression", n_samples=200, n_features=5, n_targets=3)
    assert np.allclose(y.min(axis=0), 0) and np.allclose(y.max(axis=0), 1)
    # The held-out targets use the training statistics, so they are not rescaled on their own.
    raw_train, raw_test = load(
        "regression", n_samples=200, n_features=5, n_targets=3, target_scale="none"
    )[1::2]
    low, span = raw_train.min(axis=0), raw_train.max(axis=0) - raw_train.min(axis=0)
    assert np.allclose(y_test, (raw_test - low) / span)


def test_regression_standard_scaling():
    _, y, _, _ = load(
        "regression", n_samples=200, n_features=5, n_targets=2, target_scale="standard"
    )
    assert np.allclose(y.mean(axis=0), 0) and np.allclose(y.std(axis=0), 1)


@pytest.mark.parametrize("name", GENERATED)
def test_same_seed_same_data_other_seed_other_data(name):
    first, again, other = load(name, seed=1), load(name, seed=1), load(name, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("name", ["moons", "circles"])
def test_classification_labels_are_class_indices(name):
    x, y, x_test, y_test = load(name, n_samples=500)
    assert x.shape == (400, 2) and x_test.shape == (100, 2)
    assert y.dtype.kind == "i" and set(np.unique(np.concatenate([y, y_test]))) == {0, 1}


@pytest.mark.parametrize("fraction, n_test", [(0.25, 25), (0.1, 10), (0.5, 50)])
def test_split_sizes(fraction, n_test):
    x, y, x_test, y_test = load("moons", n_samples=100, test_fraction=fraction)
    assert (len(x), len(y), len(x_test), len(y_test)) == (
        100 - n_test,
        100 - n_test,
        n_test,
        n_test,
    )


@pytest.mark.parametrize("name", ["moons", "circles", "regression", "digits"])
def test_test_fraction_zero_gives_empty_test_arrays(name):
    x, y, x_test, y_test = load(name, test_fraction=0)
    assert len(x_test) == 0 and len(y_test) == 0
    assert x_test.shape[1:] == x.shape[1:] and y_test.shape[1:] == y.shape[1:]


def test_digits_are_load_digits_scaled_to_unit_range():
    x, y, x_test, y_test = load("digits")
    reference = sklearn_datasets.load_digits()
    assert x.shape == (1438, 64) and x_test.shape == (359, 64) and x.dtype == np.float32
    assert np.array_equal(
        sorted_rows(np.concatenate([x, x_test]), np.concatenate([y, y_test])),
        sorted_rows((reference.data / 16).astype(np.float32), reference.target),
    )
    assert set(np.unique(y)) == set(range(10)) and y.dtype.kind == "i"


def test_digits_as_images():
    x, _, x_test, _ = load("digits", flatten=False, test_fraction=0.5)
    assert x.shape[1:] == (8, 8, 1) and x_test.shape[1:] == (8, 8, 1)
    assert 0 <= x.min() and x.max() == 1


BAD_PARAMS = [
    ("moons", {"n_samples": 0}, "dataset 'moons': n_samples must be a positive integer, got 0"),
    ("moons", {"n_samples": 2.5}, "n_samples must be a positive integer, got 2.5"),
    ("circles", {"noise": -0.1}, "dataset 'circles': noise must be a number >= 0, got -0.1"),
    ("circles", {"factor": 1.0}, "factor must be a number in [0, 1), got 1.0"),
    ("moons", {"test_fraction": 1.0}, "test_fraction must be a number in [0, 1), got 1.0"),
    ("xor", {"test_fraction": -0.5}, "test_fraction must be a number in [0, 1), got -0.5"),
    ("regression", {"test_fraction": True}, "test_fraction must be a number in [0, 1), got True"),
    (
        "regression",
        {"target_scale": "log"},
        "dataset 'regression': target_scale must be one of 'minmax', 'standard', 'none', got 'log'",
    ),
    ("digits", {"flatten": "yes"}, "flatten must be true or false, got 'yes'"),
    ("mnist", {"n_samples": 1}, "dataset 'mnist' has no parameter 'n_samples'"),
    ("mnist", {"train_samples": 0}, "train_samples must be a positive integer, got 0"),
]


@pytest.mark.parametrize("name, params, message", BAD_PARAMS)
def test_bad_parameters_are_config_errors(name, params, message):
    with pytest.raises(ConfigError) as info:
        create("datasets", name, **params)
    assert message in str(info.value)


# --- MNIST / Fashion-MNIST from IDX files ----------------------------------------------------


def idx_bytes(array):
    """An IDX file's bytes: zero, zero, a type code, the number of axes, big-endian sizes."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path, array, compress):
    data = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_mnist_dir(directory, n_train=6, n_test=3, compress=False, seed=0):
    """Small MNIST-format files with random pixels and labels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzipped"])
def test_mnist_round_trip(tmp_path, compress):
    arrays = make_mnist_dir(tmp_path / "m", compress=compress)
    x, y, x_test, y_test = load("mnist", path=str(tmp_path / "m"))
    assert x.shape == (6, 28, 28, 1) and x_test.shape == (3, 28, 28, 1)
    assert x.dtype == np.float32 and y.dtype.kind == "i"
    assert np.array_equal(x[..., 0], arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert np.array_equal(x_test[..., 0], arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)
    assert np.array_equal(y, arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


def test_mnist_flatten_and_subsets(tmp_path):
    arrays = make_mnist_dir(tmp_path, n_train=20, n_test=10)
    x, y, x_test, y_test = load(
        "mnist", seed=5, path=str(tmp_path), train_samples=8, test_samples=4, flatten=True
    )
    assert x.shape == (8, 784) and x_test.shape == (4, 784) and (len(y), len(y_test)) == (8, 4)
    # Each kept sample is a row of the file with its own label.
    images = arrays["train-images-idx3-ubyte"].reshape(20, 784).astype(np.float32) / 255
    rows = [int(np.flatnonzero((images == row).all(axis=1))[0]) for row in x]
    assert len(set(rows)) == 8 and rows == sorted(rows)
    assert np.array_equal(y, arrays["train-labels-idx1-ubyte"][rows])
    again = load("mnist", seed=5, path=str(tmp_path), train_samples=8, test_samples=4, flatten=True)
    assert np.array_equal(again[0], x)


def test_mnist_reads_from_plugnet_data(tmp_path, monkeypatch):
    make_mnist_dir(tmp_path / "mnist", n_train=2, n_test=1)
    make_mnist_dir(tmp_path / "fashion_mnist", n_train=5, n_test=4, compress=True)
    monkeypatch.setenv("PLUGNET_DATA", str(tmp_path))
    assert len(load("mnist")[0]) == 2
    x, _, x_test, _ = load("fashion_mnist")
    assert (len(x), len(x_test)) == (5, 4)


def test_mnist_without_path_or_env_or_network_says_how_to_fix():
    # no files anywhere: a download from the mirrors, here a closed port (conftest)
    with pytest.raises(
        DataError,
        match=r"dataset .mnist. could not download .* put its four files .* \$PLUGNET_DATA",
    ):
        load("mnist")


def test_missing_file_is_named(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataError, match=r"missing file t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte.gz\)"
    ):
        load("mnist", path=str(tmp_path))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzipped"])
def test_truncated_file_is_named(tmp_path, compress):
    make_mnist_dir(tmp_path)
    name = "train-images-idx3-ubyte"
    path = write_idx(tmp_path / name, np.zeros((6, 28, 28)), compress=False)
    data = path.read_bytes()[:-100]
    if compress:
        path.unlink()
        path = tmp_path / (name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    with pytest.raises(DataError) as info:
        load("mnist", path=str(tmp_path))
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_image_and_label_counts_must_match(tmp_path):
    make_mnist_dir(tmp_path, n_train=6)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5), compress=False)
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte has 6 images but .*train-labels-idx1-ubyte has 5 labels",
    ):
        load("mnist", path=str(tmp_path))


def test_labels_out_of_range(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 10, 3]), compress=False)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte has labels outside 0..9"):
        load("mnist", path=str(tmp_path))


def test_mnist_trains_from_generated_files(tmp_path):
    from framework import run

    make_mnist_dir(tmp_path / "mnist", n_train=16, n_test=8)
    config = {
        "data": {"type": "mnist", "path": str(tmp_path / "mnist")},
        "model": {
            "layers": [{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]
        },
        "train": {"loss": "cross_entropy", "epochs": 1, "batch_size": 8, "metrics": ["accuracy"]},
        "logging": {"logdir": str(tmp_path / "run")},
    }
    summary = run(config)
    assert summary["steps"] == 2 and set(summary["test"]) == {"loss", "accuracy"}
