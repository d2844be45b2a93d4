"""glibc's malloc thresholds (`framework.allocator`): fixed for training, a freed array's
memory is reused, not faulted in again; a setting of the user's is left alone."""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's"
)

PROBE = """
import json, resource, sys
import numpy as np
from framework.allocator import keep_freed_memory
did = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(3):  # a 16 MiB array, every page written, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(4 * 2**20, np.float32)
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"did": did, "faults": faults}))
"""


def run_python(code, *args, **env):
    """The last line ``code`` prints, run in a fresh process without malloc settings of
    the environment's own (but with ``env``'s)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MALLOC_", "GLIBC_TUNABLES"))
    }
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def probe(mode, **env):
    return json.loads(run_python(PROBE, mode, **env))


def test_a_freed_array_is_reused_without_faults():
    kept = probe("keep")
    assert kept["did"] is True
    assert kept["faults"][1] < 50  # the second array: the first one's memory, no new pages
    default = probe("default")  # glibc's rule: the second array comes from fresh pages
    assert default["faults"][1] > 10 * max(kept["faults"][1], 1)


def test_the_users_own_malloc_settings_are_left_alone():
    assert probe("keep", MALLOC_TRIM_THRESHOLD_="1000000")["did"] is False


def test_training_keeps_freed_memory():
    code = (
        "import numpy as np, framework.allocator as a\n"
        "from framework import Sequential, Trainer\n"
        "model = Sequential([{'type': 'dense', 'units': 2}], input_shape=(3,))\n"
        "Trainer(model, 'mse').fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=1)\n"
        "print(a.keep_freed_memory.cache_info().misses)"
    )
    assert run_python(code) == "1"  # fit called it, once
