"""The notebooks run top to bottom in a real Jupyter kernel, and what they computed is checked.

Each notebook is executed by ``nbclient`` in an ``ipykernel`` kernel started from this test's own Python (the
project's ``.venv``), cell by cell as Jupyter runs it. Short parameters go in a cell inserted right after the cell
tagged ``parameters`` (as papermill does), and a cell appended at the end writes the notebook's ``summary`` dict and
the kernel's ``sys.executable`` to a JSON file that the test reads back.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 240  # seconds per cell; the whole test also has a pytest-timeout below
KERNEL_NAME = "lightning-skd-test"


def write_kernelspec(folder: Path) -> Path:
    """A kernelspec that starts ipykernel with this interpreter, whatever kernels the machine has installed."""
    spec_dir = folder / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lightning_skd tests",
        "language": "python",
        "env": {
            # Headless and as in Jupyter: figures are rendered to PNG outputs (so drawing errors surface).
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            # The small models of the notebooks run fastest on one thread, and other processes share the cores.
            "OMP_NUM_THREADS": "1",
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return folder


def parameters_cell_index(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def run_notebook(name: str, parameters: dict, tmp_path: Path) -> tuple[nbformat.NotebookNode, dict, float]:
    """Execute a notebook in a fresh kernel (cwd ``tmp_path``); return it with its outputs, its summary, seconds."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    injected = "# Parameters injected by tests/test_notebooks.py\n" + "".join(
        f"{key} = {value!r}\n" for key, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(injected, id="injected-parameters")
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(parameters_cell_index(nb) + 1, cell)
    result_path = tmp_path / "notebook_result.json"
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import json as _json, sys as _sys\n"
            f"with open({str(result_path)!r}, 'w') as _file:\n"
            "    _json.dump({'sys_executable': _sys.executable, 'summary': summary}, _file)\n",
            id="injected-result",
        )
    )
    spec_manager = KernelSpecManager(kernel_dirs=[str(write_kernelspec(tmp_path / "kernels"))])
    kernel_manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager)
    client = NotebookClient(
        nb, km=kernel_manager, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute(cleanup_kc=True)  # shut the kernel down afterwards, also when a cell fails
    seconds = time.perf_counter() - start
    result = json.loads(result_path.read_text())
    # The kernel ran the project's Python (the one running the tests), not some other installed kernel.
    assert Path(result["sys_executable"]) == Path(sys.executable)
    print(f"{name}: {seconds:.1f} s in the kernel")
    return nb, result["summary"], seconds


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    """Every output of the executed notebook with this MIME type (``"stream"`` for printed text)."""
    found = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if mime == "stream" and output.output_type == "stream":
                found.append(output.text)
            elif mime in output.get("data", {}):
                found.append(output.data[mime])
    return found


def assert_finite_fraction(value: float, name: str) -> None:
    assert math.isfinite(value) and 0.0 <= value <= 1.0, f"{name} = {value}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    parameters_cell_index(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_notebooks_are_the_documented_three():
    assert NOTEBOOKS == ["01_self_kd_quickstart.ipynb", "02_embedding_skd.ipynb", "03_bring_your_own_model.ipynb"]


@pytest.mark.timeout(300)
def test_notebook_01_self_kd_quickstart(tmp_path):
    epochs, alpha_T, n_wrong = 3, 0.8, 3
    nb, summary, _ = run_notebook(
        "01_self_kd_quickstart.ipynb", {"EPOCHS": epochs, "ALPHA_T": alpha_T, "N_WRONG": n_wrong}, tmp_path
    )
    assert summary["epochs"] == epochs
    # Test metrics of both models, and the same values recomputed from the notebook's own test predictions.
    for model in ("baseline", "Self-KD"):
        results, recomputed = summary["test"][model], summary["recomputed"][model]
        for key in ("test/top1_err", "test/top5_err", "test/ece", "test/aurc", "test/eaurc"):
            assert_finite_fraction(results[key], f"{model} {key}")
            assert recomputed[key] == pytest.approx(results[key], abs=1e-5), key
        assert math.isfinite(results["test/nll"]) and results["test/nll"] > 0
        assert recomputed["test/nll"] == pytest.approx(results["test/nll"], rel=1e-4)
        assert results["test/top1_err"] < 0.5, f"{model} did not learn in {epochs} epochs"
    # The alpha ramp logged by the callback is the linear schedule alpha_T * t / T, t = 1..T.
    assert summary["alpha_per_epoch"] == pytest.approx([alpha_T * t / epochs for t in range(1, epochs + 1)], abs=1e-6)
    # No teacher in epoch 1; from epoch 2 on every training sample has one.
    assert summary["teacher_coverage_per_epoch"] == pytest.approx([0.0] + [1.0] * (epochs - 1))
    assert summary["teacher_acc_per_epoch"][0] is None
    for value in summary["teacher_acc_per_epoch"][1:]:
        assert 0.1 < value <= 1.0  # better than chance (10 classes) after one epoch
    # The student's accuracy is logged every epoch (over all rows in epoch 1, over the rows with a teacher after it),
    # the teacher's confidence from epoch 2 on.
    assert all(0.0 <= value <= 1.0 for value in summary["student_acc_per_epoch"])
    assert summary["teacher_confidence_per_epoch"][0] is None
    assert all(0.1 <= value <= 1.0 for value in summary["teacher_confidence_per_epoch"][1:])
    for model in ("baseline", "Self-KD"):  # the signed split of the ECE sums to it
        results = summary["test"][model]
        assert results["test/oce"] + results["test/uce"] == pytest.approx(results["test/ece"], abs=1e-6)
    # The most confident wrong predictions: really wrong, sorted by confidence, top-3 sorted and at most 1 in total.
    for model, entries in summary["confident_wrong"].items():
        n_errors = round(summary["test"][model]["test/top1_err"] * summary["test_size"])
        assert len(entries) == min(n_wrong, n_errors)
        confidences = [entry[model][0][1] for entry in entries]
        assert confidences == sorted(confidences, reverse=True)
        for entry in entries:
            for top3 in (entry["baseline"], entry["Self-KD"]):
                probs = [p for _, p in top3]
                assert len(top3) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3
            assert entry[model][0][0] != entry["label"]
    # Figures were drawn: the alpha / teacher plot and one row of mistakes per model with errors (inline PNGs), and
    # two side-by-side rows (reliability diagrams, risk-coverage curves) as HTML with embedded PNGs.
    rows_with_mistakes = sum(bool(entries) for entries in summary["confident_wrong"].values())
    assert len(outputs(nb, "image/png")) == 1 + rows_with_mistakes
    side_by_side = [html for html in outputs(nb, "text/html") if html.count("data:image/png;base64,") == 2]
    assert len(side_by_side) == 2
    assert "| Self-KD |" in "".join(outputs(nb, "text/markdown"))


@pytest.mark.timeout(300)
def test_notebook_02_embedding_skd(tmp_path):
    params = {"EPOCHS": 3, "N_TRAIN": 2000, "WARMUP_STEPS": 40, "ETA": 0.01, "SIGMA_UPDATE_EVERY": 50}
    nb, summary, _ = run_notebook("02_embedding_skd.ipynb", params, tmp_path)
    # The corpus the notebook wrote, read by TextLMDataModule from the kernel's working directory.
    corpus = Path(summary["corpus_dir"])
    assert corpus == (tmp_path / "lightning_logs" / "02_embedding_skd" / "corpus").resolve()
    assert len((corpus / "train.txt").read_text().splitlines()) == params["N_TRAIN"]
    # One logged row per optimizer step: 2000 sentences / batch 32 = 63 steps per epoch.
    steps = summary["steps"]
    assert steps == list(range(summary["global_step"])) and summary["global_step"] == 3 * 63
    # q_n (mean over mismatched positions) is a clipped similarity: within [0, 0.5]; mismatch is a fraction.
    assert all(math.isfinite(q) and 0.0 <= q <= 0.5 for q in summary["q_n"])
    assert max(summary["q_n"]) > 0.0
    for value in summary["mismatch"]:
        assert_finite_fraction(value, "mismatch")
    # Algorithm 1: alpha(s) = clamp((s - K) * eta, 0, 1), exactly as logged by SKDAlphaScheduler.
    k, eta = params["WARMUP_STEPS"], params["ETA"]
    expected = [min(max((s - k) * eta, 0.0), 1.0) for s in steps]
    assert summary["alpha"] == pytest.approx(expected, abs=1e-6)
    assert summary["alpha"][-1] == 1.0
    assert math.isfinite(summary["test"]["test/ppl"]) and summary["test"]["test/ppl"] < summary["vocab_size"]
    # Nearest neighbours: three per query word, never the word itself; training groups the word classes.
    for word, neighbours in summary["neighbours"].items():
        for when in ("before", "after"):
            assert len(neighbours[when]) == 3 and word not in neighbours[when]
    share = summary["same_class_share"]
    assert share["after"] > share["before"] + 0.3, share
    assert len(outputs(nb, "image/png")) == 1
    assert "same-class share" in "".join(outputs(nb, "text/markdown"))


@pytest.mark.timeout(300)
def test_notebook_03_bring_your_own_model(tmp_path):
    epochs, alpha_T = 3, 0.8
    nb, summary, _ = run_notebook(
        "03_bring_your_own_model.ipynb", {"EPOCHS": epochs, "ALPHA_T": alpha_T, "N_SAMPLES": 1000}, tmp_path
    )
    # The clear error of cache mode without indices, caught and shown in the notebook's output.
    error = summary["missing_index_error"]
    assert "needs the dataset index" in error and "IndexedDataset" in error and "mode='snapshot'" in error
    assert any(f"ValueError: {error}" in text for text in outputs(nb, "stream"))
    # The three runs that should work did, and both Self-KD modes followed the linear alpha ramp.
    assert set(summary["results"]) == {"baseline", "Self-KD (cache)", "Self-KD (snapshot)"}
    for name, metrics in summary["results"].items():
        for key in ("val/top1_err", "val/ece", "val/aurc"):
            assert_finite_fraction(metrics[key], f"{name} {key}")
        assert metrics["val/top1_err"] < 0.6, f"{name} did not learn (5 classes)"
    ramp = [alpha_T * t / epochs for t in range(1, epochs + 1)]
    for name in ("Self-KD (cache)", "Self-KD (snapshot)"):
        assert summary["alpha_per_epoch"][name] == pytest.approx(ramp, abs=1e-6)
        assert summary["teacher_coverage_per_epoch"][name] == pytest.approx([0.0] + [1.0] * (epochs - 1))
