"""Tutorial notebooks: MONAI-tutorial conventions (checked without running), and each one executed headless with
papermill on a tiny phantom (1 epoch, a temporary folder), failing on any cell error.

A notebook meant for a GPU (too long on 2 CPU cores) sets ``metadata.monai_osteo.requires_gpu = true`` and is
skipped where CUDA is absent; none does yet.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "tutorials").rglob("[0-9][0-9]_*.ipynb"))
PARAMETERS = {"max_epochs": 1, "tiny": True, "seed": 0}
MAX_OUTPUT_LINES = 100


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT / "tutorials"))


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_there_are_hand_osteo_notebooks():
    assert [p.name for p in NOTEBOOKS if p.parent.name == "hand_osteo"][:2] == [
        "01_radiograph_to_screening_report.ipynb", "02_building_blocks.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_conventions(path):
    nb = _read(path)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Apache License, Version 2.0" in first.source
    assert any(line.startswith("# ") for line in first.source.splitlines()), "a title in the first cell"
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown" and c.source]
    assert "## Setup environment" in headings and "## Setup imports" in headings
    imports = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source == "## Setup imports")
    assert nb.cells[imports + 1].source.rstrip().endswith("monai.config.print_config()")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    for key in PARAMETERS:
        assert f"{key} = " in tagged[0].source, key
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None, "commit notebooks with outputs stripped"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_runs_headless(path, tmp_path):
    papermill = pytest.importorskip("papermill")
    nb = _read(path)
    if nb.metadata.get("monai_osteo", {}).get("requires_gpu"):
        import torch

        if not torch.cuda.is_available():
            pytest.skip("a GPU notebook (metadata monai_osteo.requires_gpu)")
    out = tmp_path / path.name
    start = time.perf_counter()
    papermill.execute_notebook(str(path), str(out), parameters={**PARAMETERS, "data_dir": str(tmp_path / "work")},
                               cwd=str(path.parent), kernel_name="python3", progress_bar=False, log_output=False,
                               execution_timeout=600)
    print(f"{_id(path)}: {time.perf_counter() - start:.1f} s")
    executed = _read(out)
    for c in executed.cells:
        if c.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in c.outputs if o.get("output_type") == "stream")
        lines = text.count("\n")  # progress bars redraw one line with "\r"
        assert lines <= MAX_OUTPUT_LINES, f"a cell prints {lines} lines:\n{text[-2000:]}"
    figures = sum("image/png" in o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert figures >= 3, "the notebook shows its results as figures"
