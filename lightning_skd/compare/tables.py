"""Summaries over seeds, paired differences to the baseline, and the tables (Markdown, CSV, console)."""

from __future__ import annotations

import contextlib
import csv
import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table
from scipy import stats as scipy_stats

from lightning_skd.compare.sweep import CLASSIFICATION_METRICS, Method, Metric, scaled_key


@dataclass
class Summary:
    """Mean ± std of one metric of one method, and its paired difference to the baseline (``None`` for it)."""

    mean: float
    std: float  # sample standard deviation over seeds (nan for one seed)
    diff: float | None = None  # mean over seeds of (method - baseline)
    diff_low: float | None = None  # 95 % Student-t interval of that mean
    diff_high: float | None = None


def paired_difference(
    values: Sequence[float], baseline: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values - baseline`` (paired by seed) and its two-sided Student-t confidence interval.

    Example:
        >>> mean, low, high = paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 1.0])
        >>> round(mean, 4), round(low, 4), round(high, 4)
        (1.3333, -0.1009, 2.7676)

    """
    if len(values) != len(baseline):
        raise ValueError(f"paired_difference: {len(values)} values but {len(baseline)} baseline values.")
    diffs = np.asarray(values, dtype=float) - np.asarray(baseline, dtype=float)
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
    return mean, mean - half, mean + half


def with_temperature_scaling_rows(
    runs: dict[str, list[dict[str, Any]]], methods: Sequence[Method], metrics: Sequence[Metric]
) -> dict[str, list[dict[str, Any]]]:
    """The table's rows: ``runs``, each method with ``temperature_scaling`` followed by its ``+ TS`` row.

    A ``+ TS`` row holds the records of the same runs with the values of the ``test_ts/`` keys under the sweep's
    ``test/`` keys, so it is summarised, and paired seed by seed with the baseline, like any other row.

    Example:
        >>> record = {"seed": 0, "metrics": {"test/nll": 0.5, "test_ts/nll": 0.4}}
        >>> rows = with_temperature_scaling_rows(
        ...     {"Baseline": [record]}, [Method("Baseline", Path("b.yaml"), True)], [Metric("test/nll", "NLL")]
        ... )
        >>> {name: [r["metrics"] for r in records] for name, records in rows.items()}
        {'Baseline': [{'test/nll': 0.5, 'test_ts/nll': 0.4}], 'Baseline + TS': [{'test/nll': 0.4}]}

    """
    rows: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        rows[method.name] = runs[method.name]
        if method.temperature_scaling:
            rows[method.scaled_name] = [
                {
                    **r,
                    "method": method.scaled_name,
                    "metrics": {m.key: r["metrics"][scaled_key(m.key)] for m in metrics},
                }
                for r in runs[method.name]
            ]
    return rows


def summarize(
    runs: dict[str, list[dict[str, Any]]], baseline: str, metrics: Sequence[Metric] = CLASSIFICATION_METRICS
) -> dict[str, dict[str, Summary]]:
    """Per method and metric: mean, std and (except for the baseline) the paired difference to the baseline.

    Args:
        runs: ``{method: [record of each seed, in the same seed order for every method]}``.
        baseline: The method the others are compared with.
        metrics: The metrics to summarise (keys of each record's ``metrics``).

    Returns:
        ``{method: {metric key: Summary}}``, methods in the order of ``runs``.

    """
    table: dict[str, dict[str, Summary]] = {}
    base = {m.key: [r["metrics"][m.key] for r in runs[baseline]] for m in metrics}
    for method, records in runs.items():
        table[method] = {}
        for metric in metrics:
            values = [r["metrics"][metric.key] for r in records]
            std = statistics.stdev(values) if len(values) > 1 else math.nan
            summary = Summary(statistics.fmean(values), std)
            if method != baseline:
                summary.diff, summary.diff_low, summary.diff_high = paired_difference(values, base[metric.key])
            table[method][metric.key] = summary
    return table


def machine_description(threads: int | None = None, jobs: int = 1) -> str:
    """CPU model and count, torch version and threads (of each run, and runs at a time): which machine made a table.

    Args:
        threads: Torch threads of each run (``None``: this process's).
        jobs: Runs at a time.

    """
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    threads = torch.get_num_threads() if threads is None else threads
    text = f"{cpu}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, torch threads: {threads}"
    return text if jobs == 1 else f"{text} per run, {jobs} runs at a time"


def _fmt(value: float, scale: float) -> str:
    return "–" if math.isnan(value) else f"{value * scale:.2f}"


def _mean_std_text(summary: Summary, scale: float) -> str:
    return f"{_fmt(summary.mean, scale)} ± {_fmt(summary.std, scale)}"


def _diff_text(summary: Summary, scale: float) -> str:
    if summary.diff is None:
        return "(baseline)"
    if summary.diff_low is None or math.isnan(summary.diff_low):
        return f"{summary.diff * scale:+.2f}"
    excludes_zero = summary.diff_low > 0 or summary.diff_high < 0
    text = f"{summary.diff * scale:+.2f} [{summary.diff_low * scale:+.2f}, {summary.diff_high * scale:+.2f}]"
    return text + (" *" if excludes_zero else "")


def direction_note(metrics: Sequence[Metric]) -> str:
    """Which way is better, in words.

    Example:
        >>> direction_note([Metric("test/bleu", "BLEU", lower_is_better=False), Metric("test/nll", "NLL")])
        'higher is better for BLEU, lower for the others'

    """
    higher = [m.label for m in metrics if not m.lower_is_better]
    if not higher:
        return "lower is better"
    if len(higher) == len(metrics):
        return "higher is better"
    return f"higher is better for {', '.join(higher)}, lower for the others"


def markdown_table(
    table: dict[str, dict[str, Summary]],
    baseline: str,
    seeds: Sequence[int],
    machine: str,
    metrics: Sequence[Metric] = CLASSIFICATION_METRICS,
) -> str:
    """Two Markdown tables: mean ± std per method, then paired differences to the baseline with 95 % intervals."""
    titles = [m.label for m in metrics]
    lines = [
        f"Test split, mean ± std over seeds {list(seeds)}; {direction_note(metrics)}. Machine: {machine}.",
        "",
        "| method | " + " | ".join(titles) + " |",
        "| --- |" + " --- |" * len(titles),
    ]
    for method, row in table.items():
        lines.append(f"| {method} | " + " | ".join(_mean_std_text(row[m.key], m.scale) for m in metrics) + " |")
    lines += [
        "",
        f"Paired difference to {baseline} (mean over seeds of method − baseline, same seed), 95 % Student-t interval;"
        " * marks an interval that excludes 0.",
        "",
        "| method | " + " | ".join(f"Δ {t}" for t in titles) + " |",
        "| --- |" + " --- |" * len(titles),
    ]
    for method, row in table.items():
        if method != baseline:
            lines.append(f"| {method} | " + " | ".join(_diff_text(row[m.key], m.scale) for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def write_csv(
    path: Path,
    table: dict[str, dict[str, Summary]],
    runs: dict[str, list[dict[str, Any]]],
    metrics: Sequence[Metric] = CLASSIFICATION_METRICS,
) -> None:
    """``results.csv`` (one row per method and metric, unscaled values) and ``runs.csv`` next to it."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "metric", "n_seeds", "mean", "std", "diff_to_baseline", "diff_ci95_low",
                         "diff_ci95_high"])  # fmt: skip
        for method, row in table.items():
            for metric in metrics:
                s = row[metric.key]
                writer.writerow([method, metric.key, len(runs[method]), s.mean, s.std, s.diff, s.diff_low, s.diff_high])
    keys = [m.key for m in metrics]
    with open(path.with_name("runs.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seed", *keys, "wall_s", "cpu_s"])
        for method, records in runs.items():
            for r in records:
                writer.writerow([method, r["seed"], *[r["metrics"][k] for k in keys], r["wall_s"], r["cpu_s"]])


def rich_table(
    table: dict[str, dict[str, Summary]],
    baseline: str,
    seeds: Sequence[int],
    metrics: Sequence[Metric] = CLASSIFICATION_METRICS,
) -> Table:
    """The console version of the two Markdown tables, in one."""
    out = Table(title=f"Test split, mean ± std over {len(seeds)} seed(s); Δ: paired difference to {baseline}, 95 % CI")
    out.add_column("Method")
    for metric in metrics:
        out.add_column(metric.label, justify="right")
    for method, row in table.items():
        out.add_row(method, *[_mean_std_text(row[m.key], m.scale) for m in metrics])
        if method != baseline:
            out.add_row("  Δ", *[_diff_text(row[m.key], m.scale) for m in metrics], style="dim")
    return out
