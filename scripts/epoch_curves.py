r"""Per-epoch training curves of a ``lightning-skd compare`` output folder, averaged over seeds.

Reads every run's CSV log (``runs/<method>/seed<k>/lightning_logs/version_*/metrics.csv``, written when the sweep
keeps Lightning's default logger) with :func:`lightning_skd.compare.logs.read_epoch_metrics` and, per method and
epoch, averages over seeds the ``--columns``: by default the training error and what ``SelfKDCallback`` logged (the
student's and the teacher's accuracy on the training batches, the teacher's mean confidence, the applied α). Writes
``epoch_curves.csv`` (one row per method × epoch) into the folder and prints a markdown table of every ``--every``-th
epoch (and the last).

    python scripts/epoch_curves.py results/fashion_mnist_overconfident --every 5
    python scripts/epoch_curves.py results/message_catalogs_converged --every 5 \
        --columns val/bleu val/nll val/ece skd/student_acc skd/teacher_acc skd/alpha
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from lightning_skd.compare.logs import epoch_means, read_epoch_metrics

COLUMNS = ("train/top1_err", "skd/student_acc", "skd/teacher_acc", "skd/teacher_confidence", "skd/alpha")


def method_curves(method_dir: Path, columns: tuple[str, ...] = COLUMNS) -> list[dict[str, float]]:
    """Per epoch: the mean over the method's seeds of each column (NaN where no seed logged it), and the seed count."""
    runs = [read_epoch_metrics(seed_dir, columns) for seed_dir in sorted(method_dir.glob("seed*"))]
    return epoch_means([run for run in runs if run], columns)


def main() -> None:
    """Write ``epoch_curves.csv`` and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path, help="a compare output folder (holds runs/)")
    parser.add_argument("--every", type=int, default=5, help="print every this many epochs (and the last)")
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), help="logged names to average")
    args = parser.parse_args()
    columns = tuple(args.columns)
    curves = {d.name: method_curves(d, columns) for d in sorted((args.output_dir / "runs").iterdir()) if d.is_dir()}
    with open(args.output_dir / "epoch_curves.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["method", "epoch", "seeds", *columns])
        writer.writeheader()
        for method, rows in curves.items():
            writer.writerows({"method": method, **row} for row in rows)
    print("| method | epoch | " + " | ".join(columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for method, rows in curves.items():
        for i, row in enumerate(rows):
            if row["epoch"] % args.every and i != len(rows) - 1:
                continue
            cells = ["–" if math.isnan(row[key]) else f"{row[key]:.4g}" for key in columns]
            print(f"| {method} | {row['epoch']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
