"""examples/compose.py, the model composed in Python, run as a user would run it."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "compose.py"


def test_compose_script_trains_moons_to_090():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", "40"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "dense_0" in out and "dropout_1" in out and "total parameters: 354" in out
    match = re.search(r"^test loss (\S+)  accuracy (\S+)$", out, re.MULTILINE)
    assert match, out
    assert float(match.group(2)) >= 0.9, out
