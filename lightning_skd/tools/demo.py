"""The main job (``make demo``): baseline, label smoothing and Self-KD on the bundled digits data, through the runner.

It is ``lightning-skd compare configs/sweeps/digits.yaml --threads 1 --jobs 2`` (see :mod:`lightning_skd.compare`):
every method × seed is trained and tested, the table of mean ± std and paired differences to the baseline (95 %
t-interval over seeds) is printed and written to ``outputs/demo/results.md`` / ``.csv`` with the figures in
``outputs/demo/figures.png``. The demo then says in words, for NLL, ECE and ECE's over- and under-confidence parts,
whether Self-KD's paired difference is outside the seed-to-seed noise, and whether that verdict holds on each half of
the seeds on its own: a change of CPU perturbs a run about as much as a change of seed, so an effect that does not
hold on two disjoint seed sets would not be expected to hold on another machine either.

    lightning-skd demo [--seeds 0 1 ... 9] [--output-dir outputs/demo] [other compare options]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from lightning_skd.compare import (
    Summary,
    parse_args,
    run_sweep,
    summarize,
    tabulate,
    with_temperature_scaling_rows,
)
from lightning_skd.tools.configs import shipped_config

SWEEP = shipped_config("sweeps/digits.yaml")
SELF_KD = "+ Self-KD"
#: (metric key, name in the sentence, scale, unit) of the metrics the verdict speaks about.
VERDICT_METRICS = (
    ("test/nll", "NLL", 1.0, ""),
    ("test/ece", "ECE", 100.0, " %"),
    ("test/oce", "over-confidence (OCE)", 100.0, " %"),
    ("test/uce", "under-confidence (UCE)", 100.0, " %"),
)


def effect(summary: Summary) -> int:
    """``-1`` if the paired 95 % interval lies below 0, ``+1`` if above, ``0`` if it contains 0."""
    return -1 if summary.diff_high < 0 else 1 if summary.diff_low > 0 else 0


def _interval(summary: Summary, scale: float, unit: str) -> str:
    return (
        f"{summary.diff * scale:+.3f}{unit} (95 % interval [{summary.diff_low * scale:+.3f}, "
        f"{summary.diff_high * scale:+.3f}])"
    )


def verdict(table: dict[str, dict[str, Summary]], method: str = SELF_KD) -> list[str]:
    """One sentence per metric of :data:`VERDICT_METRICS` (those in the table) on ``method``'s paired difference."""
    lines = []
    for key, name, scale, unit in VERDICT_METRICS:
        if key not in table[method]:
            continue
        s = table[method][key]
        interval = _interval(s, scale, unit)
        sentence = {
            -1: f"{method} lowers {name}: {interval}; the interval excludes 0, beyond seed-to-seed noise.",
            1: f"{method} RAISES {name}: {interval}; the interval excludes 0, beyond seed-to-seed noise.",
            0: f"{method} changes {name} by {interval}: within seed-to-seed noise, no effect shown here.",
        }
        lines.append(sentence[effect(s)])
    return lines


def seed_halves(seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """The first and second half of ``seeds`` (the first half gets the middle seed of an odd count).

    Example:
        >>> seed_halves(range(10))
        ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])

    """
    seeds = list(seeds)
    middle = (len(seeds) + 1) // 2
    return seeds[:middle], seeds[middle:]


def _seed_range(seeds: Sequence[int]) -> str:
    consecutive = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}–{seeds[-1]}" if consecutive and len(seeds) > 2 else ", ".join(map(str, seeds))


def holds_on_both_halves(
    runs: dict[str, list[dict[str, Any]]],
    seeds: Sequence[int],
    baseline: str,
    metrics: Sequence[Any],
    method: str = SELF_KD,
) -> list[str]:
    """One sentence per verdict metric saying whether the verdict (lowers / raises / none) agrees on both seed halves.

    Args:
        runs: ``{method: [record of each seed, in the order of seeds]}`` as :func:`~lightning_skd.compare.summarize`
            takes them.
        seeds: The seeds of the records.
        baseline: The method the others are compared with.
        metrics: The sweep's metrics.
        method: The method whose paired differences are checked.

    """
    halves = seed_halves(seeds)
    if min(len(half) for half in halves) < 2:
        return [f"(Fewer than 4 seeds: the verdict cannot be checked on two halves of {list(seeds)}.)"]
    tables = []
    for half in halves:
        positions = [list(seeds).index(seed) for seed in half]
        tables.append(summarize({m: [records[i] for i in positions] for m, records in runs.items()}, baseline, metrics))
    words = {-1: "lowered", 1: "raised", 0: "no effect"}
    lines = []
    for key, name, scale, unit in VERDICT_METRICS:
        if key not in tables[0][method]:
            continue
        summaries = [table[method][key] for table in tables]
        effects = [effect(summary) for summary in summaries]
        detail = "; ".join(
            f"seeds {_seed_range(half)}: {words[effect(s)]}, {_interval(s, scale, unit)}"
            for s, half in zip(summaries, halves, strict=True)
        )
        if effects[0] == effects[1] != 0:
            conclusion = "holds on both halves"
        elif effects[0] == effects[1] == 0:
            conclusion = "no effect on either half"
        else:
            conclusion = "DOES NOT hold on both halves: do not rely on it (it may not hold on another machine)"
        lines.append(f"{name}: {conclusion} ({detail}).")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Summary]]:
    """Run the demo sweep and print the table, the verdict and its check on both halves of the seeds."""
    args = sys.argv[1:] if argv is None else list(argv)
    argparse.ArgumentParser(
        prog="lightning-skd demo",
        description="Baseline, label smoothing and Self-KD on the bundled digits data (scikit-learn's 8x8 images), "
        "10 seeds each, trained and tested on the CPU; then the table of each method against the baseline, a "
        "sentence per calibration metric on whether Self-KD differs beyond seed-to-seed noise, and whether that "
        "holds on each half of the seeds.",
        epilog="Any option of `lightning-skd compare` (--seeds, --output-dir, --max-epochs, --threads, --jobs) or "
        "trainer override is passed on; outputs go to outputs/demo in the working directory.",
    ).parse_known_args(args)  # only answers --help: every argument goes to the sweep
    if "--threads" not in args:
        args += ["--threads", "1"]  # the small CNN runs fastest on one thread, also on a busy machine
    if "--jobs" not in args:
        args += ["--jobs", str(min(2, os.cpu_count() or 1))]
    console = Console(width=max(Console().width, 150))
    sweep = parse_args([str(SWEEP), *args])
    records = run_sweep(sweep, console)
    table = tabulate(sweep, records, console)
    for line in verdict(table):
        console.print(line)
    runs = with_temperature_scaling_rows(records, sweep.methods, sweep.metrics)
    console.print("Does the verdict hold on each half of the seeds on its own?")
    for line in holds_on_both_halves(runs, sweep.seeds, sweep.baseline, sweep.metrics):
        console.print(f"  {line}")
    return table


if __name__ == "__main__":
    main()
