"""Per-epoch training curves of a ``lightning-skd compare`` output folder, averaged over seeds.

Reads every run's CSV log (``runs/<method>/seed<k>/lightning_logs/version_*/metrics.csv``, written when the sweep
keeps Lightning's default logger) and, per method and epoch, averages over seeds the training error and what
``SelfKDCallback`` logged: the student's and the teacher's accuracy on the training batches, the teacher's mean
confidence and the applied α. Writes ``epoch_curves.csv`` (one row per method × epoch) into the folder and prints a
markdown table of every ``--every``-th epoch (and the last).

    python scripts/epoch_curves.py results/fashion_mnist_overconfident --every 5
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

COLUMNS = ("train/top1_err", "skd/student_acc", "skd/teacher_acc", "skd/teacher_confidence", "skd/alpha")


def read_run(folder: Path) -> dict[int, dict[str, float]]:
    """Epoch → logged epoch-level values of one run (later versions, from a resume, override earlier ones)."""
    epochs: dict[int, dict[str, float]] = {}
    for metrics in sorted(folder.glob("lightning_logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with open(metrics) as file:
            for row in csv.DictReader(file):
                values = {key: float(row[key]) for key in COLUMNS if row.get(key)}
                if values:
                    epochs.setdefault(int(row["epoch"]), {}).update(values)
    return epochs


def method_curves(method_dir: Path) -> list[dict[str, float]]:
    """Per epoch: the mean over the method's seeds of each column (NaN where no seed logged it), and the seed count."""
    runs = [read_run(seed_dir) for seed_dir in sorted(method_dir.glob("seed*"))]
    runs = [run for run in runs if run]
    rows = []
    for epoch in sorted({epoch for run in runs for epoch in run}):
        row: dict[str, float] = {"epoch": epoch + 1, "seeds": sum(epoch in run for run in runs)}
        for key in COLUMNS:
            values = [run[epoch][key] for run in runs if key in run.get(epoch, {})]
            row[key] = sum(values) / len(values) if values else math.nan
        rows.append(row)
    return rows


def main() -> None:
    """Write ``epoch_curves.csv`` and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="a compare output folder (holds runs/)")
    parser.add_argument("--every", type=int, default=5, help="print every this many epochs (and the last)")
    args = parser.parse_args()
    curves = {d.name: method_curves(d) for d in sorted((args.output_dir / "runs").iterdir()) if d.is_dir()}
    with open(args.output_dir / "epoch_curves.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["method", "epoch", "seeds", *COLUMNS])
        writer.writeheader()
        for method, rows in curves.items():
            writer.writerows({"method": method, **row} for row in rows)
    print("| method | epoch | train err (%) | student acc | teacher acc | teacher confidence | α |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method, rows in curves.items():
        for i, row in enumerate(rows):
            if row["epoch"] % args.every and i != len(rows) - 1:
                continue
            err, student, teacher, confidence, alpha = (row[key] for key in COLUMNS)
            cells = [f"{100 * err:.1f}", *(f"{v:.3f}" if not math.isnan(v) else "–" for v in (student, teacher))]
            cells += [f"{v:.3f}" if not math.isnan(v) else "–" for v in (confidence, alpha)]
            print(f"| {method} | {row['epoch']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
