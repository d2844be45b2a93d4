"""Data utilities for dataset plugins: held-out splits, data directories, IDX files."""

import gzip
import os
import zlib

import numpy as np

from framework.errors import ConfigError, DataError

DATA_ENV = "PLUGNET_DATA"

# IDX type codes (the third byte of the magic number) and the dtypes they store, big-endian.
IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def split_train_test(x, y, test_fraction, rng):
    """Shuffle with ``rng`` and hold out ``test_fraction`` of the samples.

    Returns ``(x_train, y_train, x_test, y_test)``; with a fraction of 0 the test arrays are
    empty (shaped like the data, with no rows).
    """
    if not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}")
    x, y = np.asarray(x), np.asarray(y)
    n = len(x)
    order = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def resolve_data_dir(path, name):
    """The directory a file-based dataset reads: ``path`` if given, else
    ``$PLUGNET_DATA/<name>``.  A missing directory is a `DataError` saying how to fix it."""
    if path is None:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise DataError(
                f"dataset '{name}' needs its files: give path = \"DIR\" in [data] or set "
                f"${DATA_ENV} to a directory holding '{name}/'"
            )
        path = os.path.join(root, name)
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"data directory not found for dataset '{name}': {path}")
    return path


def read_idx(path):
    """Read an IDX file (gzipped when its name ends in ``.gz``) into a numpy array.

    The header is checked against the file's length, so a truncated or corrupt file is a
    `DataError` naming it rather than a silently short array.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"IDX file not found: {path}")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt gzip stream
        raise DataError(f"{path} cannot be read: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header is incomplete")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path} is {'truncated' if len(raw) < expected else 'too long'}: "
            f"header says {shape} ({expected} bytes), file has {len(raw)} bytes"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def dataset_arrays(arrays, name):
    """A dataset's ``load`` result as ``(x_train, y_train, x_test, y_test)`` arrays or
    array-likes (kept as they are, never read whole); an ``x`` may be a dict of arrays keyed by input name (a model of several inputs), kept a dict."""

    from framework.text import is_array_like

    def one(value):  # an array-like (a memmap's view, lazy windows) stays as it is
        return value if is_array_like(value) or isinstance(value, np.ndarray) else np.asarray(value)

    def as_array(value):
        if isinstance(value, dict):
            return {key: one(item) for key, item in value.items()}
        return one(value)

    try:
        x_train, y_train, x_test, y_test = arrays
        return as_array(x_train), one(y_train), as_array(x_test), one(y_test)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"dataset '{name}' must return (x_train, y_train, x_test, y_test): {exc}"
        ) from exc
