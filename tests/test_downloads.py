"""MNIST and Fashion-MNIST on first use: real downloads, through pooch, from an HTTP server on
loopback that serves small generated IDX files, checked against the test's own digests."""

import gzip
import hashlib
import http.server
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from framework import DataError, create
from framework.cli import main
from plugins.datasets import MNIST, FashionMNIST

pytest.importorskip("pooch")

NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def idx_gz(array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return gzip.compress(header + array.tobytes())


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving four small gzipped IDX files; ``requests`` lists
    the paths asked for, ``hashes`` the files' SHA-256 digests in pooch's form."""
    root = tmp_path / "served"
    root.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (12, 28, 28)),
        NAMES[1]: rng.integers(0, 10, 12),
        NAMES[2]: rng.integers(0, 256, (5, 28, 28)),
        NAMES[3]: rng.integers(0, 10, 5),
    }
    hashes = {}
    for name, array in arrays.items():
        data = idx_gz(array)
        (root / f"{name}.gz").write_bytes(data)
        hashes[f"{name}.gz"] = "sha256:" + hashlib.sha256(data).hexdigest()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format, *args):  # one call per request: count, print nothing
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            root=root,
            url=f"http://127.0.0.1:{httpd.server_address[1]}/",
            arrays=arrays,
            hashes=hashes,
            requests=requests,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def load(name="mnist", **params):
    return create("datasets", name, **params).load(np.random.default_rng(0))


def files_in(directory):
    return sorted(p.name for p in Path(directory).iterdir())


def test_first_use_downloads_into_path_then_reads_from_it(server, tmp_path):
    data = tmp_path / "data"
    x, y, x_test, y_test = load(path=str(data), url=server.url, hashes=server.hashes)
    assert x.shape == (12, 28, 28, 1) and x_test.shape == (5, 28, 28, 1)
    assert np.array_equal(x[..., 0], server.arrays[NAMES[0]].astype(np.float32) / 255)
    assert np.array_equal(y, server.arrays[NAMES[1]]) and np.array_equal(
        y_test, server.arrays[NAMES[3]]
    )
    assert files_in(data) == sorted(f"{name}.gz" for name in NAMES)  # no temporary files left
    assert sorted(server.requests) == sorted(f"/{name}.gz" for name in NAMES)

    load(path=str(data), url=server.url, hashes=server.hashes)
    assert len(server.requests) == 4  # the second run reads the files it has


def test_without_a_path_the_files_go_to_the_user_cache(server, tmp_path):
    # conftest points XDG_CACHE_HOME (pooch.os_cache's root on Linux) into tmp_path
    for name in ("mnist", "fashion_mnist"):
        x, *_ = load(name, url=server.url, hashes=server.hashes)
        assert len(x) == 12
        assert files_in(tmp_path / "cache" / "plugnet" / name) == sorted(f"{n}.gz" for n in NAMES)


def test_plugnet_data_that_holds_no_files_falls_back_to_the_cache(server, tmp_path, monkeypatch):
    (tmp_path / "root").mkdir()
    monkeypatch.setenv("PLUGNET_DATA", str(tmp_path / "root"))
    load(url=server.url, hashes=server.hashes)
    assert (tmp_path / "cache" / "plugnet" / "mnist" / f"{NAMES[0]}.gz").exists()
    assert files_in(tmp_path / "root") == []


def test_a_mirror_that_fails_is_followed_by_the_next(server, tmp_path):
    dead = MNIST.mirrors[0]  # conftest's closed port
    x, *_ = load(
        path=str(tmp_path / "d"),
        url=[dead, server.url + "missing/", server.url],
        hashes=server.hashes,
    )
    assert len(x) == 12
    assert "/missing/train-images-idx3-ubyte.gz" in server.requests  # a 404 there, then the next


def test_a_corrupt_download_fails_its_digest_and_is_not_kept(server, tmp_path):
    path = server.root / f"{NAMES[2]}.gz"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    target = tmp_path / "d"
    with pytest.raises(DataError) as info:
        load(path=str(target), url=server.url, hashes=server.hashes)
    message = str(info.value)
    assert f"could not download {NAMES[2]}.gz" in message
    assert "its digest does not match the published one" in message
    # the two files before it are whole and kept; the corrupt one, and any temporary file, are gone
    assert files_in(target) == sorted([f"{NAMES[0]}.gz", f"{NAMES[1]}.gz"])


def test_offline_the_message_says_where_to_put_the_files(tmp_path):
    target = tmp_path / "d"
    with pytest.raises(DataError) as info:
        load(path=str(target))  # the default mirrors: a closed port here (conftest)
    message = str(info.value)
    assert (
        "could not download train-images-idx3-ubyte.gz" in message
        and "could not connect" in message
    )
    assert "put its four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, " in message
    assert f"in {target}" in message and "$PLUGNET_DATA" in message
    assert "\n" not in message
    assert not target.exists()  # the directory it made for the download is removed again


def test_offline_from_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "m.toml"
    config.write_text(
        '[data]\ntype = "fashion_mnist"\n[model]\nlayers = [{ type = "flatten" }, '
        '{ type = "dense", units = 10, activation = "softmax" }]\n[train]\nloss = "cross_entropy"\n'
    )
    assert main(["train", str(config), "--logdir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("plugnet: error: dataset 'fashion_mnist' could not download")
        and err.count("\n") == 1
    )
    assert str(tmp_path / "cache" / "plugnet" / "fashion_mnist") in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"url": 3}, "url must be a base URL or a list of them, got 3"),
        ({"url": []}, "url must be a base URL or a list of them"),
        ({"hashes": ["md5:x"]}, "hashes must map file names to digests"),
        ({"hashes": {}}, "hashes has no digest for train-images-idx3-ubyte.gz"),
    ],
)
def test_bad_download_parameters(params, message, tmp_path, server):
    from framework import ConfigError

    with pytest.raises(
        (ConfigError, DataError), match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        load(path=str(tmp_path / "d"), **{"url": server.url, **params})


@pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason="no copy of the MNIST files beside the repository"
)
def test_the_built_in_mnist_digests_are_those_of_the_real_files():
    for name, digest in MNIST.digests.items():
        algorithm, value = digest.split(":")
        assert hashlib.new(algorithm, (SHARED_MNIST / name).read_bytes()).hexdigest() == value, name
    assert set(FashionMNIST.digests) == set(MNIST.digests)
