import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "support"))  # throw-away plugin modules for tests


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own directory, so default log directories never collide."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PLUGNET_DATA", raising=False)
