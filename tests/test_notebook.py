"""docs/notebooks/tour.ipynb runs from top to bottom on fresh sample stores (nbclient, a real
IPython kernel): any error in any cell fails the test."""

from __future__ import annotations

import shutil
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "tour.ipynb"


def test_the_tour_notebook_runs_and_ends_with_a_training_batch(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    notebook = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit it cleared"
    NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for cell in outputs for o in cell)
    html = "\n".join(str(o.get("data", {}).get("text/html", "")) for cell in outputs for o in cell)
    assert "error" not in {o.get("output_type") for cell in outputs for o in cell}
    assert "<b>Catalog</b>" in html and "<b>Selection</b> (frames)" in html and "data:image/png;base64," in html
    assert "grid times have a Bz frame within 3 minutes" in text
    assert "batch (4, 2, 64, 64) torch.float32" in text
    assert (tmp_path / "tour-output" / "catalog" / "manifest.json").is_file()
