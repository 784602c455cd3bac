"""Per-epoch values of a run folder's CSV logs (Lightning's ``CSVLogger``), for curves of teacher and student."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["epoch_means", "read_epoch_metrics"]


def read_epoch_metrics(run_dir: Path, keys: Iterable[str]) -> dict[int, dict[str, float]]:
    r"""Epoch (0-based) → the values of ``keys`` logged in that epoch, from every ``metrics.csv`` under ``run_dir``.

    Reads ``run_dir/**/version_*/metrics.csv`` in version order, so a resumed run's later version overrides what an
    earlier one logged for the same epoch. A key missing in an epoch is left out of that epoch's dict.

    Args:
        run_dir: A run's folder (``trainer.default_root_dir``; a ``compare`` run's ``runs/<method>/seed<k>/``).
        keys: The logged names to read, e.g. ``("val/bleu", "skd/teacher_acc")``.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / "lightning_logs" / "version_0").mkdir(parents=True)
        >>> _ = (folder / "lightning_logs" / "version_0" / "metrics.csv").write_text(
        ...     "epoch,step,train/loss_step,val/bleu\n0,9,2.5,\n0,9,,1.5\n1,19,,2.0\n"
        ... )
        >>> read_epoch_metrics(folder, ["val/bleu", "skd/alpha"])
        {0: {'val/bleu': 1.5}, 1: {'val/bleu': 2.0}}

    """
    keys = tuple(keys)
    files = sorted(run_dir.glob("**/version_*/metrics.csv"), key=lambda path: int(path.parent.name[len("version_") :]))
    epochs: dict[int, dict[str, float]] = {}
    for path in files:
        with open(path, newline="") as file:
            for row in csv.DictReader(file):
                values = {key: float(row[key]) for key in keys if row.get(key)}
                if values:
                    epochs.setdefault(int(row["epoch"]), {}).update(values)
    return epochs


def epoch_means(runs: Sequence[dict[int, dict[str, float]]], keys: Iterable[str]) -> list[dict[str, float]]:
    """Per epoch of any run: the mean over runs of each key (NaN where none logged it) and how many runs have the epoch.

    Args:
        runs: What :func:`read_epoch_metrics` returned for each seed of a method.
        keys: The names to average.

    Returns:
        One dict per epoch, in order: ``epoch`` (1-based), ``seeds`` and each key.

    Example:
        >>> epoch_means([{0: {"a": 1.0}, 1: {"a": 3.0}}, {0: {"a": 2.0}}], ["a", "b"])
        [{'epoch': 1, 'seeds': 2, 'a': 1.5, 'b': nan}, {'epoch': 2, 'seeds': 1, 'a': 3.0, 'b': nan}]

    """
    keys = tuple(keys)
    rows = []
    for epoch in sorted({epoch for run in runs for epoch in run}):
        row: dict[str, float] = {"epoch": epoch + 1, "seeds": sum(epoch in run for run in runs)}
        for key in keys:
            values = [run[epoch][key] for run in runs if key in run.get(epoch, {})]
            row[key] = sum(values) / len(values) if values else math.nan
        rows.append(row)
    return rows
