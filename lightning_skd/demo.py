"""The main job (``make demo``): baseline, label smoothing and Self-KD on the embedded digits data, side by side.

Each method is the matching config of ``configs/digits/`` run through the ``lightning-skd`` CLI, trained on CPU and
evaluated on the held-out test split. Prints one table (top-1 error, NLL, ECE, AURC) and writes each method's
reliability diagram and risk-coverage curve as PNG under ``--output-dir``.

    python -m lightning_skd.demo [--max-epochs N] [--output-dir outputs/demo]
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

from pytorch_lightning.utilities import rank_zero_info
from rich.console import Console
from rich.table import Table

from lightning_skd.cli import SelfKDCLI

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "digits"
METHODS = {"Baseline": "baseline.yaml", "+ Label smoothing": "label_smoothing.yaml", "+ Self-KD": "selfkd.yaml"}
# (metric key, column title, scale): fractions shown in the units of Kim et al.'s Table 1.
COLUMNS = [
    ("test/top1_err", "Top-1 err (%)", 100.0),
    ("test/top5_err", "Top-5 err (%)", 100.0),
    ("test/nll", "NLL", 1.0),
    ("test/ece", "ECE (%)", 100.0),
    ("test/aurc", "AURC (×10³)", 1000.0),
    ("test/eaurc", "E-AURC (×10³)", 1000.0),
]


def run_method(config: Path, root: Path, max_epochs: int | None) -> tuple[dict[str, float], Path]:
    """Fit and test one config; return its test metrics and the folder holding its figures."""
    args = ["--config", str(config), "--trainer.default_root_dir", str(root)]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    cli = SelfKDCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return metrics, Path(cli.trainer.log_dir or root) / "figures"


def results_table(results: dict[str, dict[str, float]]) -> Table:
    """A rich table with one row per method; the best value of each column in bold."""
    table = Table(title="Digits test split (lower is better)")
    table.add_column("Method")
    for _, title, _ in COLUMNS:
        table.add_column(title, justify="right")
    best = {key: min(values[key] for values in results.values()) for key, _, _ in COLUMNS}
    for method, values in results.items():
        cells = []
        for key, _, scale in COLUMNS:
            text = f"{values[key] * scale:.2f}"
            cells.append(f"[bold]{text}[/bold]" if values[key] == best[key] else text)
        table.add_row(method, *cells)
    return table


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the three methods and print the comparison; returns ``{method: test metrics}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configs' max_epochs")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    options = parser.parse_args(argv)

    results: dict[str, dict[str, float]] = {}
    for position, (method, config_name) in enumerate(METHODS.items(), start=1):
        rank_zero_info(f"[{position}/{len(METHODS)}] {method}: configs/digits/{config_name}")
        slug = config_name.removesuffix(".yaml")
        metrics, figures = run_method(CONFIG_DIR / config_name, options.output_dir / slug, options.max_epochs)
        results[method] = metrics
        for png in sorted(figures.glob("test_*.png")):
            shutil.copyfile(png, options.output_dir / f"{slug}_{png.name.removeprefix('test_')}")

    console = Console()
    console.print(results_table(results))
    console.print(f"Reliability diagrams and risk-coverage curves: {options.output_dir}/*.png")
    return results


if __name__ == "__main__":
    main()
