"""Every notebook runs top to bottom in its fast mode (DDGAN_NOTEBOOK_FAST=1) and is committed without outputs."""
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"quickstart", "trilemma", "editing"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs before committing"


def execute(path: Path) -> list:
    """Run a notebook in a fresh kernel started in notebooks/; returns its error outputs."""
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()
    return [o for cell in notebook.cells for o in cell.get("outputs", []) if o.output_type == "error"]


@pytest.fixture(scope="module")
def fast_runs(tmp_path_factory):
    """All notebooks at once (one kernel each, in threads: most of a kernel's time is importing), fast mode."""
    output = tmp_path_factory.mktemp("notebooks")
    environment = {"DDGAN_NOTEBOOK_FAST": "1", "DDGAN_NOTEBOOK_OUTPUT": str(output), "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        with ThreadPoolExecutor(len(NOTEBOOKS)) as pool:
            futures = {path.stem: pool.submit(execute, path) for path in NOTEBOOKS}
            return output, {name: future.exception() or future.result() for name, future in futures.items()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, fast_runs):
    output, results = fast_runs
    assert results[path.stem] == [], results[path.stem]
    assert any(p.suffix == ".png" for p in (output / path.stem).rglob("*"))
