"""The notebooks run top to bottom (with fewer epochs)."""

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_code_cells_run(path, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    cells = json.loads(path.read_text())["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    assert "EPOCHS = " in source
    source = source.replace("EPOCHS = 30", "EPOCHS = 2")
    namespace: dict = {}
    exec(compile(source, str(path), "exec"), namespace)
    assert set(namespace["baseline_results"]) >= {"test/top1_err", "test/ece", "test/aurc", "test/nll"}
    assert len(namespace["figures"]) == 2
