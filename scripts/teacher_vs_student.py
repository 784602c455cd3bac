"""Teacher vs student accuracy per epoch of a Self-KD config, for each teacher (cache, snapshot, snapshot + batch BN).

Runs ``lightning-skd fit --config CONFIG`` once per variant (one torch thread, no validation, no checkpoints) with a
CSV logger and prints, per epoch, what ``SelfKDCallback`` logged: ``skd/student_acc``, ``skd/teacher_acc``,
``skd/teacher_confidence`` and the applied ``skd/alpha``.

    python scripts/teacher_vs_student.py configs/digits/demo/selfkd.yaml --out outputs/teacher_vs_student/digits
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from lightning_skd.compare.logs import read_epoch_metrics

VARIANTS = {
    "cache": ["--trainer.callbacks.init_args.mode=cache"],
    "snapshot": ["--trainer.callbacks.init_args.mode=snapshot"],
    "snapshot, batch BN": [
        "--trainer.callbacks.init_args.mode=snapshot",
        "--trainer.callbacks.init_args.snapshot_batch_norm=batch",
    ],
}
COLUMNS = ("skd/student_acc", "skd/teacher_acc", "skd/teacher_confidence", "skd/alpha")


def run(config: str, name: str, extra: list[str], out: Path) -> list[dict[str, float]]:
    """Fit ``config`` with the variant's arguments; the per-epoch ``skd/*`` values of its metrics.csv."""
    folder = out / name.replace(" ", "_").replace(",", "")
    metrics = folder / "lightning_logs" / "version_0" / "metrics.csv"
    if not metrics.exists():
        command = [
            sys.executable, "-m", "lightning_skd.cli", "fit", "--config", config, *extra,
            "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={folder}", "--trainer.limit_val_batches=0",
            "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
        ]  # fmt: skip
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    epochs = read_epoch_metrics(folder, COLUMNS)
    return [epochs[epoch] for epoch in sorted(epochs) if "skd/student_acc" in epochs[epoch]]


def main() -> None:
    """Run the variants and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--every", type=int, default=1, help="print every this many epochs (and the last)")
    args = parser.parse_args()
    tables = {name: run(args.config, name, VARIANTS[name], args.out) for name in args.variants}
    header = "| epoch | " + " | ".join(f"{name}: student / teacher acc, teacher conf, alpha" for name in tables) + " |"
    print(header)
    print("|" + " --- |" * (len(tables) + 1))
    epochs = len(next(iter(tables.values())))
    for epoch in range(epochs):
        if epoch % args.every and epoch != epochs - 1:
            continue
        cells = []
        for rows in tables.values():
            row = rows[epoch]
            values = [row.get(c, float("nan")) for c in COLUMNS]
            cells.append("{:.3f} / {:.3f}, {:.2f}, {:.2f}".format(*values))
        print(f"| {epoch + 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
