import os
import socket
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "support"))  # throw-away plugin modules, test helpers


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own directory, so default log directories never collide."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PLUGNET_DATA", raising=False)


@pytest.fixture(autouse=True)
def _no_downloads(tmp_path, monkeypatch):
    """Datasets that download on first use (mnist, fashion_mnist) see a closed port on
    loopback for their mirrors and the test's own cache directory: no test reaches the
    network or the user's cache.  Tests of downloading pass their own `url`."""
    from plugins.datasets import MNIST, FashionMNIST

    with socket.socket() as s:  # a port nothing listens on: connecting is refused at once
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for dataset in (MNIST, FashionMNIST):
        monkeypatch.setattr(dataset, "mirrors", (closed,))
