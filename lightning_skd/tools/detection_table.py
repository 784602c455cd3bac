"""The layout of Kim et al. Table 5: one row per backbone, AP of every class and the VOC07 mAP, as Markdown and CSV.

Command line: ``lightning-skd detection-table NAME=METRICS.json [NAME=METRICS.json ...] --out PREFIX`` reads the
``test_detection_metrics.json`` files that :class:`~lightning_skd.models.Detector` writes after ``test`` and
writes ``PREFIX.md`` and ``PREFIX.csv``. Values are AP in % (two decimals), as the paper prints them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path


def read_detection_metrics(path: str | Path) -> dict:
    """Load one run's ``test_detection_metrics.json``; a missing or incomplete file is refused, naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no detection metrics file at {str(path)!r}; run `lightning-skd test` first")
    data = json.loads(path.read_text())
    missing = [key for key in ("class_names", "voc07_ap", "voc07_map") if key not in data]
    if missing:
        raise ValueError(f"{str(path)!r} is not a Detector test metrics file: it lacks {missing}")
    return data


def detection_table(runs: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (AP in %, two decimals): ``method``, one column per class, ``mAP``, ``COCO AP50``, ``COCO AP``.

    Example:
        >>> header, rows = detection_table({"baseline": {"class_names": ["cat", "dog"],
        ...     "voc07_ap": {"cat": 0.5, "dog": 0.25}, "voc07_map": 0.375, "coco_map_50": 0.4, "coco_map": 0.2}})
        >>> header
        ['method', 'cat', 'dog', 'mAP', 'COCO AP50', 'COCO AP']
        >>> rows
        [['baseline', '50.00', '25.00', '37.50', '40.00', '20.00']]

    """
    if not runs:
        raise ValueError("detection_table: no runs given")
    names = None
    rows = []
    for method, data in runs.items():
        if names is None:
            names = list(data["class_names"])
        elif list(data["class_names"]) != names:
            raise ValueError(f"detection_table: run {method!r} has classes {data['class_names']}, others {names}")
        values = [data["voc07_ap"][n] for n in names] + [data["voc07_map"]]
        values += [data.get("coco_map_50", float("nan")), data.get("coco_map", float("nan"))]
        rows.append([method, *(f"{100 * v:.2f}" for v in values)])
    return ["method", *names, "mAP", "COCO AP50", "COCO AP"], rows


def to_markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def main(args: Sequence[str] | None = None) -> None:
    """``lightning-skd detection-table NAME=FILE ... --out PREFIX``."""
    parser = argparse.ArgumentParser(
        prog="lightning-skd detection-table",
        description="Kim et al. Table 5 layout (rows = backbones, columns = per-class AP + mAP) as Markdown and CSV.",
    )
    parser.add_argument("runs", nargs="+", help="NAME=path/to/test_detection_metrics.json, one per backbone")
    parser.add_argument("--out", required=True, help="output prefix: writes PREFIX.md and PREFIX.csv")
    parsed = parser.parse_args(args)
    runs = {}
    for item in parsed.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"runs must look like NAME=FILE, got {item!r}")
        try:
            runs[name] = read_detection_metrics(path)
        except (FileNotFoundError, ValueError) as err:
            parser.exit(2, f"lightning-skd detection-table: error: {err}\n")
    header, rows = detection_table(runs)
    out = Path(parsed.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(header, rows)
    out.with_suffix(".md").write_text(markdown)
    out.with_suffix(".csv").write_text(to_csv(header, rows))
    print(markdown, end="")
