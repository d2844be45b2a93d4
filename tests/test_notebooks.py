"""Every notebook in examples/notebooks runs from top to bottom without an error (nbclient, a
real Jupyter kernel), twice in the same kernel as "Run All" pressed again would, and leaves
nothing in its own directory (no runs/ in the checkout); a TensorBoard that one starts is
stopped afterwards, by its pid."""

import os
import signal
import tempfile
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("tensorboard")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "examples" / "notebooks").glob("*.ipynb"))


def tensorboards():
    from tensorboard import manager

    return {info.pid for info in manager.get_all()}


# The runs each notebook trains per "Run All": each goes to a fresh temporary directory.
RUNS = {"backpropagation_by_hand": 1, "gradient_check": 0, "tensorboard_in_jupyter": 1}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_twice_and_leaves_nothing_beside_it(path, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    folder = tmp_path / "notebook"  # the kernel starts here: the notebook's folder in a checkout
    temp = tmp_path / "temp"  # the kernel's temporary directory, so no run outlives the test
    folder.mkdir()
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where TensorBoard lists its servers
    before = tensorboards()
    client = nbclient.NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    try:
        with client.setup_kernel():
            for _ in range(2):  # "Run All", then "Run All" again in the same kernel
                for index, cell in enumerate(notebook.cells):
                    # raises CellExecutionError naming the cell on any error
                    client.execute_cell(cell, index)
    finally:
        for pid in tensorboards() - before:  # only the TensorBoard this notebook started
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    errors = [
        o
        for cell in notebook.cells
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    assert sorted(p.name for p in folder.iterdir()) == []
    assert len(list(temp.glob("plugnet-*"))) == 2 * RUNS[path.stem]


def test_there_are_three_notebooks():
    assert [p.stem for p in NOTEBOOKS] == [
        "backpropagation_by_hand",
        "gradient_check",
        "tensorboard_in_jupyter",
    ]
