"""Built-in datasets: toy sets from the founding examples, scikit-learn's generators and
bundled digits, and MNIST / Fashion-MNIST read from their IDX files.

Every dataset is an attrs class whose fields are its config parameters and whose
``load(rng)`` returns ``(x_train, y_train, x_test, y_test)``.  Generated data draw their
``random_state`` from ``rng`` (seeded by the config's ``seed``), so a seed reproduces the
data as well as the weights.  Classification labels are integer class indices of shape
``(N,)``; regression targets are ``(N, n_targets)`` floats.
"""

import os

import attrs
import numpy as np

from framework import (
    DataError,
    Dataset,
    Tokenizer,
    Windows,
    hookimpl,
    read_idx,
    read_text,
    split_train_test,
)
from framework.validators import boolean, fraction, non_negative, positive_int, whole_number

DATA_ENV = "PLUGNET_DATA"  # the root of file-based datasets, as framework.resolve_data_dir reads it

# --- parameter validators beyond framework.validators' --------------------------------------


def optional_positive_int(instance, attribute, value):
    if value is not None:
        positive_int(instance, attribute, value)


def one_of(*choices):
    def check(instance, attribute, value):
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise ValueError(f"{attribute.name} must be one of {listed}, got {value!r}")

    return check


def optional_path(instance, attribute, value):
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{attribute.name} must be a directory path, got {value!r}")


def sklearn_datasets():
    """scikit-learn's dataset functions, imported when data is first made: the import takes
    about half a second, which `plugnet plugins` and the IDX datasets need not pay."""
    from sklearn import datasets

    return datasets


def sklearn_seed(rng):
    """A ``random_state`` for scikit-learn drawn from the run's generator."""
    return int(rng.integers(2**31))


# --- toy sets from the founding examples -----------------------------------------------------


@attrs.define
class XOR(Dataset):
    """The four XOR points ``(a, b) -> a xor b``, in the order of the founding example.

    With ``test_fraction`` 0 (the default) all four points train and nothing is held out.
    """

    test_fraction: float = attrs.field(default=0.0, validator=fraction)

    def load(self, rng):
        x = np.array([[0, 0], [1, 1], [1, 0], [0, 1]], dtype=np.float64)
        y = np.array([0, 0, 1, 1], dtype=np.int64)
        return split_train_test(x, y, self.test_fraction, rng)


@attrs.define
class HoursStudied(Dataset):
    """Three students: (hours slept, hours studied) -> test score.

    Normalised as in the founding example: each input column divided by its maximum, scores
    divided by 100, so inputs and targets lie in [0, 1] where a sigmoid output can reach them.
    Targets have shape ``(3, 1)``.
    """

    test_fraction: float = attrs.field(default=0.0, validator=fraction)

    def load(self, rng):
        x = np.array([[3, 5], [5, 1], [10, 2]], dtype=np.float64)
        y = np.array([[75], [82], [93]], dtype=np.float64)
        return split_train_test(x / x.max(axis=0), y / 100, self.test_fraction, rng)


# --- scikit-learn generators -----------------------------------------------------------------

TARGET_SCALES = ("minmax", "standard", "none")


@attrs.define
class Regression(Dataset):
    """scikit-learn's ``make_regression``: Gaussian inputs, targets a noisy linear map of
    ``n_informative`` of them.

    Raw targets have a spread of hundreds, far outside what a sigmoid output can produce and
    large enough to swamp a squared loss, so they are rescaled with statistics of the
    training split (the held-out split is never looked at):

    - ``"minmax"`` (default): each target mapped to [0, 1], which sigmoid outputs can fit;
    - ``"standard"``: each target to zero mean and unit variance, for identity outputs;
    - ``"none"``: as scikit-learn made them.

    Inputs are left as generated (already zero-mean, unit-variance).
    """

    n_samples: int = attrs.field(default=100, validator=positive_int)
    n_features: int = attrs.field(default=30, validator=positive_int)
    n_informative: int = attrs.field(default=10, validator=positive_int)
    n_targets: int = attrs.field(default=1, validator=positive_int)
    noise: float = attrs.field(default=0.0, validator=non_negative)
    target_scale: str = attrs.field(default="minmax", validator=one_of(*TARGET_SCALES))
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        x, y = sklearn_datasets().make_regression(
            n_samples=self.n_samples,
            n_features=self.n_features,
            n_informative=min(self.n_informative, self.n_features),
            n_targets=self.n_targets,
            noise=self.noise,
            random_state=sklearn_seed(rng),
        )
        y = y.reshape(len(y), self.n_targets)
        x_train, y_train, x_test, y_test = split_train_test(x, y, self.test_fraction, rng)
        if self.target_scale == "minmax":
            low = y_train.min(axis=0)
            span = y_train.max(axis=0) - low
            scale = np.where(span > 0, span, 1.0)  # a constant target maps to 0
            y_train, y_test = (y_train - low) / scale, (y_test - low) / scale
        elif self.target_scale == "standard":
            mean = y_train.mean(axis=0)
            std = y_train.std(axis=0)
            scale = np.where(std > 0, std, 1.0)
            y_train, y_test = (y_train - mean) / scale, (y_test - mean) / scale
        return x_train, y_train, x_test, y_test


@attrs.define
class Moons(Dataset):
    """scikit-learn's ``make_moons``: two interleaving half circles, labels 0 and 1."""

    n_samples: int = attrs.field(default=1000, validator=positive_int)
    noise: float = attrs.field(default=0.2, validator=non_negative)
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        x, y = sklearn_datasets().make_moons(
            n_samples=self.n_samples, noise=self.noise, random_state=sklearn_seed(rng)
        )
        return split_train_test(x, y.astype(np.int64), self.test_fraction, rng)


@attrs.define
class Circles(Dataset):
    """scikit-learn's ``make_circles``: a small circle (label 1) inside a large one (label 0).

    ``factor`` is the inner radius relative to the outer; the defaults (0.1, noise 0.1) are
    the founding example's.
    """

    n_samples: int = attrs.field(default=1000, validator=positive_int)
    noise: float = attrs.field(default=0.1, validator=non_negative)
    factor: float = attrs.field(default=0.1, validator=fraction)
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        x, y = sklearn_datasets().make_circles(
            n_samples=self.n_samples,
            noise=self.noise,
            factor=self.factor,
            random_state=sklearn_seed(rng),
        )
        return split_train_test(x, y.astype(np.int64), self.test_fraction, rng)


@attrs.define
class Digits(Dataset):
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, labels 0–9).

    Pixels (0–16 in the data) are scaled to [0, 1].  ``flatten`` (default) gives ``(N, 64)``
    rows for dense nets; ``flatten = false`` gives ``(N, 8, 8, 1)`` images for conv nets.
    """

    flatten: bool = attrs.field(default=True, validator=boolean)
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        digits = sklearn_datasets().load_digits()
        x = (digits.images / 16.0).astype(np.float32)
        x = x.reshape(len(x), 64) if self.flatten else x[..., np.newaxis]
        return split_train_test(x, digits.target.astype(np.int64), self.test_fraction, rng)


# --- sequence tasks --------------------------------------------------------------------------


@attrs.define
class AddingProblem(Dataset):
    """Hochreiter & Schmidhuber's adding problem (1997; in the form of Le et al., 2015):
    remember two numbers seen far apart and output their sum.

    x is ``(N, length, 2)`` float32: channel 0 holds values drawn uniformly from [0, 1),
    channel 1 is 0 except for two markers (1), one at a random step of the first half and
    one in the second half.  y ``(N, 1)`` is the sum of the two marked values.  The sum of
    two uniform values has variance 1/6, so always predicting the mean scores an MSE of
    about 0.167; a net that solves the task goes far below it.
    """

    length: int = attrs.field(default=50, validator=whole_number(2))
    n_samples: int = attrs.field(default=10000, validator=positive_int)
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        n, half = self.n_samples, self.length // 2
        values = rng.random((n, self.length))
        markers = np.zeros((n, self.length))
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, self.length, size=n)
        rows = np.arange(n)
        markers[rows, first] = markers[rows, second] = 1
        x = np.stack([values, markers], axis=-1).astype(np.float32)
        y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, np.newaxis]
        return split_train_test(x, y, self.test_fraction, rng)


@attrs.define
class ReverseSequence(Dataset):
    """A token task for attention: reverse a sequence.

    x is ``(N, length)`` integer token ids drawn uniformly from ``[0, vocab)``; y is the same
    ids in reverse order, ``y[:, t] = x[:, length − 1 − t]`` — a per-token classification
    (``(N, T, vocab)`` predictions against ``(N, T)`` labels) that each position can only
    solve by looking at another one.  ``tokens`` marks x as token ids, so a model that
    reads them with a float layer (not an ``embedding``) is refused before training.
    """

    tokens = True  # x holds token ids, not integer-valued measurements

    length: int = attrs.field(default=10, validator=whole_number(2))
    vocab: int = attrs.field(default=10, validator=whole_number(2))
    n_samples: int = attrs.field(default=10000, validator=positive_int)
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        x = rng.integers(0, self.vocab, size=(self.n_samples, self.length), dtype=np.int64)
        return split_train_test(x, x[:, ::-1].copy(), self.test_fraction, rng)


@attrs.define
class TwoInputs(Dataset):
    """A toy task for a model of two inputs: is the sum of ``a``'s features above the sum of
    ``b``'s?

    x is a dict, ``{"a": (N, a_features), "b": (N, b_features)}`` standard-normal floats
    (a model's inputs named ``a`` and ``b`` take them); y is ``1`` where ``Σ a > Σ b``,
    else ``0``, so neither input alone does better than chance.
    """

    a_features: int = attrs.field(default=3, validator=positive_int)
    b_features: int = attrs.field(default=2, validator=positive_int)
    n_samples: int = attrs.field(default=1000, validator=positive_int)
    test_fraction: float = attrs.field(default=0.2, validator=fraction)

    def load(self, rng):
        a = rng.normal(size=(self.n_samples, self.a_features)).astype(np.float32)
        b = rng.normal(size=(self.n_samples, self.b_features)).astype(np.float32)
        y = (a.sum(axis=1) > b.sum(axis=1)).astype(np.int64)
        order = rng.permutation(self.n_samples)
        n_test = int(round(self.n_samples * self.test_fraction))
        test, train = order[:n_test], order[n_test:]
        return {"a": a[train], "b": b[train]}, y[train], {"a": a[test], "b": b[test]}, y[test]


# --- IDX image sets --------------------------------------------------------------------------

# Each file by its official name; some mirrors write a dot before "idx", and either may be
# gzipped, so every spelling is tried.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_file(directory, name):
    for candidate in idx_spellings(name):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise DataError(f"missing file {name} (or {name}.gz) in {directory}")


def read_images(path):
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{path} must hold uint8 images of shape (N, rows, cols), "
            f"got {images.dtype} of shape {images.shape}"
        )
    # [0, 1] float32, with the channel axis the NHWC layers expect.
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def read_labels(path, n_classes=10):
    labels = read_idx(path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path} must hold one integer label per image, got {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{path} has labels outside 0..{n_classes - 1}")
    return labels.astype(np.int64)


def read_pair(images_path, labels_path):
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return images, labels


def subset(x, y, count, rng):
    """A random ``count`` of the samples (all of them when ``count`` is None or too large),
    kept in file order."""
    if count is None or count >= len(x):
        return x, y
    keep = np.sort(rng.choice(len(x), size=count, replace=False))
    return x[keep], y[keep]


def optional_urls(instance, attribute, value):
    if value is None or isinstance(value, str):
        return
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, str) for v in value)
    ):
        raise ValueError(f"{attribute.name} must be a base URL or a list of them, got {value!r}")


def optional_hashes(instance, attribute, value):
    if value is not None and not (
        isinstance(value, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise ValueError(
            f"{attribute.name} must map file names to digests ('md5:...' or 'sha256:...'), got {value!r}"
        )


def has_idx_files(directory):
    return all(
        any(os.path.isfile(os.path.join(directory, c)) for c in idx_spellings(name))
        for name in IDX_FILES.values()
    )


def idx_spellings(name):
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def download_failure(exc):
    """A short reason for one failed download: a line, not requests' page of text."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, ValueError) and "hash" in str(exc):
        return "its digest does not match the published one (a corrupt or changed file; not kept)"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


@attrs.define
class MNIST(Dataset):
    """MNIST handwritten digits from the four official IDX files (gzipped or not).

    Files are read from ``path``, else ``$PLUGNET_DATA/mnist``, else the user's cache
    directory (``~/.cache/plugnet/mnist`` on Linux).  Where none holds them, the four
    gzipped files are downloaded on first use, through `pooch <https://www.fatiando.org/pooch>`_:
    into ``path`` if given, else into the cache; from ``url`` (a base URL, or a list tried
    in turn; default: the public mirrors, one after another); each checked against its
    published MD5 digest (``hashes`` replaces them), written to a temporary file and renamed
    into place only when it matches, so a corrupt or cut-off download is never kept.

    The official test files are the held-out split.  Images are ``(N, 28, 28, 1)`` float32 in
    [0, 1] (``flatten = true`` gives ``(N, 784)``), labels integer classes 0–9.
    ``train_samples`` / ``test_samples`` use a random subset (drawn with the run's seed).
    """

    directory_name = "mnist"
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    # The digests published with the dataset (torchvision checks the same ones).
    digests = {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    }

    path: str | None = attrs.field(default=None, validator=optional_path)
    train_samples: int | None = attrs.field(default=None, validator=optional_positive_int)
    test_samples: int | None = attrs.field(default=None, validator=optional_positive_int)
    flatten: bool = attrs.field(default=False, validator=boolean)
    url: str | list | None = attrs.field(default=None, validator=optional_urls)
    hashes: dict | None = attrs.field(default=None, validator=optional_hashes)

    def load(self, rng):
        directory = self.files_directory()
        files = {key: find_idx_file(directory, name) for key, name in IDX_FILES.items()}
        x_train, y_train = read_pair(files["train_images"], files["train_labels"])
        x_test, y_test = read_pair(files["test_images"], files["test_labels"])
        x_train, y_train = subset(x_train, y_train, self.train_samples, rng)
        x_test, y_test = subset(x_test, y_test, self.test_samples, rng)
        if self.flatten:
            x_train = x_train.reshape(len(x_train), -1)
            x_test = x_test.reshape(len(x_test), -1)
        return x_train, y_train, x_test, y_test

    # --- where the files are, downloading them if nowhere -----------------------------------

    def cache_directory(self):
        import pooch

        return os.path.join(pooch.os_cache("plugnet"), self.directory_name)

    def files_directory(self):
        """The first of ``path``, ``$PLUGNET_DATA/<name>`` and the cache directory that holds
        the four files, else ``path`` (or the cache) after downloading them there."""
        if self.path is not None:
            candidates = [os.fspath(self.path)]
        else:
            root = os.environ.get(DATA_ENV)
            candidates = [os.path.join(root, self.directory_name)] if root else []
            candidates.append(self.cache_directory())
        for directory in candidates:
            if has_idx_files(directory):
                return directory
        self.download(candidates[-1])
        return candidates[-1]

    def download(self, directory):
        bases = [self.url] if isinstance(self.url, str) else list(self.url or self.mirrors)
        hashes = self.hashes if self.hashes is not None else self.digests
        created = not os.path.isdir(directory)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"dataset '{self.directory_name}' cannot download into {directory}: {exc.strerror or exc}"
            ) from exc
        missing = [
            name for name in IDX_FILES.values()
            if not any(os.path.isfile(os.path.join(directory, c)) for c in idx_spellings(name))
        ]  # fmt: skip
        try:
            for name in missing:
                self.download_file(
                    name, directory, bases, hashes, partial=len(missing) < len(IDX_FILES)
                )
        except DataError:
            if created and not os.listdir(directory):
                os.rmdir(directory)  # leave nothing behind
            raise

    def download_file(self, name, directory, bases, hashes, partial):
        import pooch

        filename = name + ".gz"
        if filename not in hashes:
            raise DataError(f"dataset '{self.directory_name}': hashes has no digest for {filename}")
        failures = []
        for base in bases:
            url = base.rstrip("/") + "/" + filename
            try:
                pooch.retrieve(
                    url,
                    known_hash=hashes[filename],
                    fname=filename,
                    path=directory,
                    progressbar=True,
                )
                return
            except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next mirror tried
                failures.append(f"{url}: {download_failure(exc)}")
        files = ", ".join(name + ".gz" for name in IDX_FILES.values())
        if partial:  # a directory of the user's with a file missing: name it first
            problem = f"missing file {name} (or {filename}) in {directory}, and it could not be downloaded"
        else:
            problem = f"dataset '{self.directory_name}' could not download {filename}"
        raise DataError(
            f"{problem} ({'; '.join(failures)}). Without a network, put its four files ({files}) "
            f'in {directory}, or give path = "DIR" in [data] or set ${DATA_ENV} to a directory '
            f"holding '{self.directory_name}/'"
        )


@attrs.define
class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando's clothing images): MNIST's file names, shapes and labels,
    read from ``path``, ``$PLUGNET_DATA/fashion_mnist`` or the cache, downloaded there on
    first use as MNIST is."""

    directory_name = "fashion_mnist"
    mirrors = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    )
    digests = {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }


# --- text for language models ------------------------------------------------------------------


def url_file_name(url):
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path) or "download.txt"


def optional_url(instance, attribute, value):
    if value is not None and not (isinstance(value, str) and "://" in value):
        raise ValueError(f"{attribute.name} must be a URL (https://...), got {value!r}")


def optional_digest(instance, attribute, value):
    if value is not None and not (isinstance(value, str) and ":" in value):
        raise ValueError(
            f"{attribute.name} must be a digest such as 'md5:...' or 'sha256:...', got {value!r}"
        )


def find_text_file(dataset, path, url=None, known_hash=None, what="path"):
    """The file a text dataset reads, found as MNIST's are: ``path`` itself, else its name in
    ``$PLUGNET_DATA/text/``, else in the user cache (``~/.cache/plugnet/text``); where none
    holds it, fetched from ``url`` (pooch, checked against ``known_hash`` when given) into
    ``path``'s directory if ``path`` names one, else into the cache."""
    import pooch

    if path is None and url is None:
        raise DataError(f"dataset '{dataset}' needs {what} = \"FILE\" (or a url to fetch it from)")
    name = os.path.basename(os.fspath(path)) if path is not None else url_file_name(url)
    candidates = [os.fspath(path)] if path is not None else []
    root = os.environ.get(DATA_ENV)
    if root:
        candidates.append(os.path.join(root, "text", name))
    cache = os.path.join(pooch.os_cache("plugnet"), "text")
    candidates.append(os.path.join(cache, name))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    if url is None:
        raise DataError(
            f"dataset '{dataset}': file not found: {path} (looked in {', '.join(candidates)}); give "
            f'{what} = "FILE", put {name} in ${DATA_ENV}/text/, or give a url to fetch it from'
        )
    directory = os.path.dirname(os.fspath(path)) if path is not None else ""
    directory = directory or cache
    try:
        os.makedirs(directory, exist_ok=True)
        return pooch.retrieve(
            url, known_hash=known_hash, fname=name, path=directory, progressbar=True
        )
    except Exception as exc:  # noqa: BLE001 - one line naming the failure, not requests' page
        raise DataError(
            f"dataset '{dataset}' could not fetch {url} into {directory} ({download_failure(exc)}). "
            f'Without a network, put {name} in {directory}, or give {what} = "FILE" or set '
            f"${DATA_ENV} to a directory holding 'text/{name}'"
        ) from exc


def token_kind(instance, attribute, value):
    if value not in ("chars", "bytes"):
        raise ValueError(f"{attribute.name} must be 'chars' or 'bytes', got {value!r}")


def text_ids(text, kind):
    """``(tokenizer, ids)`` of a whole text (a str, or bytes for ``"bytes"``): the ids in the
    smallest unsigned dtype that holds them, found with numpy rather than a loop over the
    characters (a 1 MB text: 30 ms instead of 200)."""
    if kind == "bytes":
        return Tokenizer(kind="bytes"), np.frombuffer(text, dtype=np.uint8)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    points, ids = np.unique(codes, return_inverse=True)
    tokenizer = Tokenizer("".join(map(chr, points)))
    dtype = np.uint8 if len(points) <= 256 else np.uint16 if len(points) <= 65536 else np.uint32
    return tokenizer, ids.astype(dtype)


def empty_windows(block_size):
    return np.zeros((0, block_size), dtype=np.int64), np.zeros((0, block_size), dtype=np.int64)


@attrs.define
class Text(Dataset):
    """A UTF-8 text file as a character-level language-modelling task (char-rnn, nanoGPT's
    shakespeare_char).

    The vocabulary is the text's sorted distinct characters (``tokens = "bytes"``: the 256
    byte values, for any file); ``tokenizer`` holds it once loaded.  The first
    1 − ``val_fraction`` of the ids train, the rest are held out (contiguous, as nanoGPT).
    Samples are every window of ``block_size`` ids: ``x`` is ``(N, block_size)`` and ``y``
    the same window one id later, both lazy `framework.Windows` over the one array of ids,
    so memory holds the text once.  The file is ``path``, else its name in
    ``$PLUGNET_DATA/text/`` or the user cache, else fetched from ``url`` (checked against
    ``hash``, e.g. ``"md5:..."``).
    """

    token_ids = True  # x holds token ids: a model must read them with an embedding

    path: str | None = attrs.field(default=None, validator=optional_path)
    block_size: int = attrs.field(default=64, validator=positive_int)
    val_fraction: float = attrs.field(default=0.1, validator=fraction)
    tokens: str = attrs.field(default="chars", validator=token_kind)
    url: str | None = attrs.field(default=None, validator=optional_url)
    hash: str | None = attrs.field(default=None, validator=optional_digest)
    tokenizer: Tokenizer | None = attrs.field(default=None, init=False, repr=False)

    def load(self, rng):
        path = find_text_file("text", self.path, self.url, self.hash)
        self.tokenizer, ids = text_ids(read_text(path, self.tokens), self.tokens)
        unit = "characters" if self.tokens == "chars" else "bytes"
        n_train = int(len(ids) * (1 - self.val_fraction))
        train, held_out = ids[:n_train], ids[n_train:]
        if len(train) <= self.block_size:
            raise DataError(
                f"block_size {self.block_size} is longer than the training part of {path} "
                f"({len(train)} {unit}): lower block_size (a window needs block_size + 1 ids)"
            )
        if self.val_fraction and len(held_out) <= self.block_size:
            raise DataError(
                f"block_size {self.block_size} is longer than the held-out part of {path} "
                f"({len(held_out)} {unit}, val_fraction {self.val_fraction}): lower block_size or "
                "raise val_fraction"
            )
        x_train, y_train = Windows(train, self.block_size), Windows(train, self.block_size, shift=1)
        if not self.val_fraction:
            return x_train, y_train, *empty_windows(self.block_size)
        x_test, y_test = (
            Windows(held_out, self.block_size),
            Windows(held_out, self.block_size, shift=1),
        )
        return x_train, y_train, x_test, y_test


@attrs.define
class Lines(Dataset):
    """One item per line of a text file (makemore's names): a model learns to write new ones.

    Each non-empty line (stripped) is a sample ``[start, c₁ … cₙ, 0…] → [c₁ … cₙ, stop, −1…]``,
    padded to the longest line + 1; the start / stop token is id 0 (the tokenizer's ``stop``)
    and the targets past the stop are −1, which ``cross_entropy`` and ``accuracy`` skip.
    ``val_count`` lines drawn with the run's seed are held out.  Files are found as
    ``text``'s are.
    """

    token_ids = True

    path: str | None = attrs.field(default=None, validator=optional_path)
    val_count: int = attrs.field(default=1000, validator=whole_number(0))
    tokens: str = attrs.field(default="chars", validator=token_kind)
    url: str | None = attrs.field(default=None, validator=optional_url)
    hash: str | None = attrs.field(default=None, validator=optional_digest)
    tokenizer: Tokenizer | None = attrs.field(default=None, init=False, repr=False)

    def load(self, rng):
        path = find_text_file("lines", self.path, self.url, self.hash)
        text = read_text(path, "chars")
        items = [line.strip() for line in text.splitlines()]
        items = [line for line in items if line]
        if not items:
            raise DataError(
                f"{path} has no non-empty line: the lines dataset needs one item a line"
            )
        if self.val_count >= len(items):
            raise DataError(
                f"val_count {self.val_count} leaves no training line: {path} has {len(items)} "
                "non-empty lines; lower val_count"
            )
        joined = "".join(items)
        self.tokenizer = Tokenizer.from_text(
            joined if self.tokens == "chars" else "", self.tokens, stop=True
        )
        encoded = [self.tokenizer.encode(item) for item in items]
        width = max(len(ids) for ids in encoded) + 1
        x = np.zeros((len(items), width), dtype=np.int64)
        y = np.full((len(items), width), -1, dtype=np.int64)
        for row, ids in enumerate(encoded):
            x[row, 1 : len(ids) + 1] = ids
            y[row, : len(ids)] = ids
            y[row, len(ids)] = 0  # the stop token
        order = rng.permutation(len(items))
        held_out, train = order[: self.val_count], order[self.val_count :]
        return x[train], y[train], x[held_out], y[held_out]


def check_token_file(path):
    """The number of uint16 ids in ``path``: a `DataError` for an empty file or one that is
    not a whole number of them."""
    size = os.path.getsize(path)
    if size == 0:
        raise DataError(f"{path} is empty: a token file holds uint16 ids")
    if size % 2:
        raise DataError(
            f"{path} is {size} bytes, not a whole number of uint16 ids (2 bytes each): it is "
            "not a token file, or it is cut short"
        )
    return size // 2


def largest_id(path, chunk=1 << 22):
    """The largest id in a token file, read in chunks of ``chunk`` ids with ordinary reads, so
    the file is never resident whole (a memory map's pages would count as the process's)."""
    largest = 0
    with open(path, "rb") as f:
        while True:
            block = np.fromfile(f, dtype=np.uint16, count=chunk)
            if not len(block):
                return largest
            largest = max(largest, int(block.max()))


@attrs.define
class Tokens(Dataset):
    """nanoGPT's prepared token files: flat little-endian uint16 ids (``train.bin``,
    ``val.bin``), opened as ``np.memmap`` and never read whole, so a corpus larger than memory
    trains (`framework.text.write_token_files` writes them from a text).

    ``vocab_size`` is the number of ids (``"vocab"`` in a config means it); an id at or above it
    is refused when the files are opened.  Samples are every window of ``block_size`` ids, as
    for ``text``; ``val_path`` holds the held-out ids (none: nothing held out).  Files are found
    as ``text``'s are.  A ``meta.json`` beside ``path`` (a tokenizer's JSON, which
    ``write_token_files`` writes) becomes the ``tokenizer``, so samples read as text.
    """

    token_ids = True

    path: str | None = attrs.field(default=None, validator=optional_path)
    val_path: str | None = attrs.field(default=None, validator=optional_path)
    vocab_size: int | None = attrs.field(default=None, validator=optional_positive_int)
    block_size: int = attrs.field(default=64, validator=positive_int)
    tokenizer: Tokenizer | None = attrs.field(default=None, init=False, repr=False)

    def open(self, path, what):
        path = find_text_file("tokens", path, what=what)
        count = check_token_file(path)
        if count <= self.block_size:
            raise DataError(
                f"block_size {self.block_size} is longer than {path} ({count} ids): lower block_size"
            )
        largest = largest_id(path)
        if largest >= self.vocab_size:
            raise DataError(
                f"{path} holds id {largest}, beyond vocab_size {self.vocab_size}: raise vocab_size "
                "to the tokenizer's vocabulary size"
            )
        return np.memmap(path, dtype="<u2", mode="r"), path

    def load(self, rng):
        path = find_text_file("tokens", self.path)
        meta = os.path.join(os.path.dirname(path), "meta.json")
        if os.path.isfile(meta):
            with open(meta, encoding="utf-8") as f:
                self.tokenizer = Tokenizer.from_json(f.read(), meta)
            if self.vocab_size is None:
                self.vocab_size = self.tokenizer.vocab_size
        if self.vocab_size is None:
            raise DataError(
                f"dataset 'tokens' needs vocab_size, the number of distinct ids in {path} (no "
                "meta.json beside it says)"
            )
        if self.vocab_size > 65536:
            raise DataError(
                f"vocab_size {self.vocab_size} does not fit uint16 token files (at most 65536)"
            )
        ids, path = self.open(path, "path")
        x_train, y_train = Windows(ids, self.block_size), Windows(ids, self.block_size, shift=1)
        if self.val_path is None:
            return x_train, y_train, *empty_windows(self.block_size)
        held_out, _ = self.open(self.val_path, "val_path")
        return (
            x_train,
            y_train,
            Windows(held_out, self.block_size),
            Windows(held_out, self.block_size, shift=1),
        )


@hookimpl
def register_datasets():
    return {
        "xor": XOR,
        "hours_studied": HoursStudied,
        "regression": Regression,
        "moons": Moons,
        "circles": Circles,
        "digits": Digits,
        "mnist": MNIST,
        "fashion_mnist": FashionMNIST,
        "adding_problem": AddingProblem,
        "reverse_sequence": ReverseSequence,
        "two_inputs": TwoInputs,
        "text": Text,
        "lines": Lines,
        "tokens": Tokens,
    }
