"""The main job (``make demo``): baseline, label smoothing and Self-KD on the embedded digits data, side by side.

Each method is the matching config of ``configs/digits/`` run through the ``lightning-skd`` CLI, trained on CPU with
each of ``--seeds`` (same data split, different training randomness; the paper averages three runs) and evaluated
on the held-out test split. Prints one table of mean ± standard deviation (top-1 error, NLL, ECE, AURC) and writes
each method's reliability diagram and risk-coverage curve (first seed) as PNG under ``--output-dir``.

    python -m lightning_skd.demo [--max-epochs N] [--seeds 0 1 2] [--output-dir outputs/demo]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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
    ("test/nll", "NLL", 1.0),
    ("test/ece", "ECE (%)", 100.0),
    ("test/aurc", "AURC (×10³)", 1000.0),
    ("test/eaurc", "E-AURC (×10³)", 1000.0),
]


def run_method(config: Path, root: Path, max_epochs: int | None, seed: int) -> tuple[dict[str, float], Path]:
    """Fit and test one config with one seed; return its test metrics and the folder holding its figures."""
    args = ["--config", str(config), "--trainer.default_root_dir", str(root), "--seed_everything", str(seed)]
    if max_epochs is not None:
        args += ["--trainer.max_epochs", str(max_epochs)]
    cli = SelfKDCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return metrics, Path(cli.trainer.log_dir or root) / "figures"


def results_table(runs: dict[str, list[dict[str, float]]]) -> Table:
    """A rich table with one row per method, mean ± std over seeds; the best mean of each column in bold."""
    seeds = len(next(iter(runs.values())))
    table = Table(title=f"Digits test split, mean ± std over {seeds} seed(s), lower is better")
    table.add_column("Method")
    for _, title, _ in COLUMNS:
        table.add_column(title, justify="right")
    means = {
        method: {key: statistics.fmean(r[key] for r in results) for key, _, _ in COLUMNS}
        for method, results in runs.items()
    }
    best = {key: min(values[key] for values in means.values()) for key, _, _ in COLUMNS}
    for method, results in runs.items():
        cells = []
        for key, _, scale in COLUMNS:
            text = f"{means[method][key] * scale:.2f}"
            if len(results) > 1:
                text += f" ± {statistics.stdev(r[key] for r in results) * scale:.2f}"
            cells.append(f"[bold]{text}[/bold]" if means[method][key] == best[key] else text)
        table.add_row(method, *cells)
    return table


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict[str, float]]]:
    """Run the three methods and print the comparison; returns ``{method: [test metrics of each seed]}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configs' max_epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds to average over")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    options = parser.parse_args(argv)

    results: dict[str, list[dict[str, float]]] = {method: [] for method in METHODS}
    runs = [(method, config, seed) for method, config in METHODS.items() for seed in options.seeds]
    for position, (method, config_name, seed) in enumerate(runs, start=1):
        rank_zero_info(f"[{position}/{len(runs)}] {method}, seed {seed}: configs/digits/{config_name}")
        slug = config_name.removesuffix(".yaml")
        root = options.output_dir / slug / f"seed{seed}"
        metrics, figures = run_method(CONFIG_DIR / config_name, root, options.max_epochs, seed)
        results[method].append(metrics)
        if seed == options.seeds[0]:
            for png in sorted(figures.glob("test_*.png")):
                shutil.copyfile(png, options.output_dir / f"{slug}_{png.name.removeprefix('test_')}")

    console = Console(width=max(Console().width, 110))
    console.print(results_table(results))
    console.print(f"Reliability diagrams and risk-coverage curves: {options.output_dir}/*.png")
    return results


if __name__ == "__main__":
    main()
