"""The docs site builds with warnings as errors (a broken link or docstring reference fails), and the worked
notebook runs from top to bottom on digits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "docs" / "notebooks" / "compare_strategies.ipynb"


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    smoothing_reference = (site / "api" / "smoothing" / "index.html").read_text()
    assert 'id="labelsmooth.smoothing.GammaSmoothing"' in smoothing_reference  # generated from the docstrings
    assert (site / "notebooks" / "compare_strategies.ipynb").is_file()


@pytest.mark.slow
def test_worked_notebook_trains_compares_loads_and_plots(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "{'none': 'completed', 'gamma 0.9': 'completed'}" in text
    assert "'_target_': 'labelsmooth.smoothing.GammaSmoothing'" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the reliability diagrams
    for job in ("0", "1"):  # one sweep, a complete run per job
        assert (tmp_path / "outputs" / "notebook" / job / "predictions" / "test.npz").is_file()
