"""The ``lightning-skd compare`` command: run (or resume) a sweep, then write and print its tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from lightning_skd.compare.figures import write_figures
from lightning_skd.compare.jobs import SweepFailed, default_threads, run_in_processes
from lightning_skd.compare.runner import pending_runs, run_in_process
from lightning_skd.compare.sweep import Sweep
from lightning_skd.compare.tables import (
    Summary,
    machine_description,
    markdown_table,
    rich_table,
    summarize,
    with_temperature_scaling_rows,
    write_csv,
)

_DESCRIPTION = (
    "Run configs × seeds of a sweep file (resuming an unfinished sweep) and tabulate the methods against a baseline; "
    "arguments not listed here go to every run."
)


def _console() -> Console:
    return Console(width=max(Console().width, 150))


def run_sweep(sweep: Sweep, console: Console | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run every (method, seed) not finished yet; return ``{method name: [record of each seed, in seed order]}``.

    With ``sweep.jobs == 1`` the runs go one after the other in this process, else ``sweep.jobs`` at a time in worker
    processes (:mod:`lightning_skd.compare.jobs`).

    Raises:
        SweepFailed: With ``sweep.jobs > 1``, after every run has ended, if any failed.

    """
    console = console or _console()
    records, todo = pending_runs(sweep)
    total = len(sweep.methods) * len(sweep.seeds)
    console.print(
        f"compare: {total} runs ({len(sweep.methods)} methods × {len(sweep.seeds)} seeds), "
        f"{total - len(todo)} already finished in {sweep.output_dir}"
    )
    if todo and sweep.jobs == 1:
        records.update(run_in_process(todo, sweep.threads, console))
    elif todo:
        records.update(run_in_processes(todo, sweep.jobs, _threads_per_run(sweep), console))
    return {m.name: [records[(m.name, s)] for s in sweep.seeds] for m in sweep.methods}


def _threads_per_run(sweep: Sweep) -> int:
    return sweep.threads if sweep.threads is not None else default_threads(sweep.jobs)


def compare(sweep: Sweep, console: Console | None = None) -> dict[str, dict[str, Summary]]:
    """Run (or resume) the sweep, write the tables and figures, print the table; return the summaries.

    The table has a row per method and, after each method with ``temperature_scaling``, its ``+ TS`` row (the same
    runs' ``test_ts/`` metrics).

    Raises:
        SweepFailed: With ``sweep.jobs > 1``, if runs failed (no tables are written then).

    """
    console = console or _console()
    return tabulate(sweep, run_sweep(sweep, console), console)


def tabulate(
    sweep: Sweep, records: dict[str, list[dict[str, Any]]], console: Console | None = None
) -> dict[str, dict[str, Summary]]:
    """Write the tables and figures of the finished runs ``records`` of ``sweep``; print the table, return its rows.

    Args:
        sweep: The sweep the runs belong to (methods, seeds, baseline, metrics, output folder).
        records: ``{method name: [record of each seed, in seed order]}``, as :func:`run_sweep` returns them.
        console: Where the table is printed.

    """
    console = console or _console()
    runs = with_temperature_scaling_rows(records, sweep.methods, sweep.metrics)
    table = summarize(runs, sweep.baseline, sweep.metrics)
    threads = sweep.threads if sweep.jobs == 1 else _threads_per_run(sweep)
    machine = machine_description(threads, sweep.jobs)
    markdown = markdown_table(table, sweep.baseline, sweep.seeds, machine, sweep.metrics)
    (sweep.output_dir / "results.md").write_text(markdown)
    write_csv(sweep.output_dir / "results.csv", table, runs, sweep.metrics)
    figures = write_figures(sweep.output_dir / "figures.png", sweep)
    console.print(rich_table(table, sweep.baseline, sweep.seeds, sweep.metrics))
    console.print(
        f"Machine: {machine}. Written: {sweep.output_dir}/results.md, results.csv, runs.csv"
        f"{', figures.png' if figures else ''}; per-run logs in {sweep.output_dir}/runs/."
    )
    return table


def parse_args(argv: Sequence[str]) -> Sweep:
    """The sweep file with the command-line overrides applied; unknown arguments go to every run."""
    parser = argparse.ArgumentParser(prog="lightning-skd compare", description=_DESCRIPTION)
    parser.add_argument("sweep", type=Path, help="sweep file (YAML): methods, seeds, baseline, metrics, output_dir")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the sweep's seeds")
    parser.add_argument("--output-dir", type=Path, help="override the sweep's output_dir")
    parser.add_argument("--max-epochs", type=int, help="override every config's trainer.max_epochs")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads of each run (1 is fastest for small models and on a busy machine; default: torch's, "
        "with --jobs N the visible CPUs divided by N)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each in a process of its own (one GPU each where there are GPUs); 1 (default): one "
        "after the other in this process",
    )
    options, extra = parser.parse_known_args(list(argv))
    for name in ("threads", "jobs"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ValueError(f"lightning-skd compare: `--{name}` must be >= 1, got {value}.")
    sweep = Sweep.from_file(options.sweep)
    sweep.jobs, sweep.threads = options.jobs, options.threads
    if options.seeds:
        sweep.seeds = options.seeds
    if options.output_dir:
        sweep.output_dir = options.output_dir
    if options.max_epochs is not None:
        extra = [*extra, f"--trainer.max_epochs={options.max_epochs}"]
    sweep.args = [*sweep.args, *extra]
    return sweep


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Summary]]:
    """Entry point of ``lightning-skd compare``; exits with status 1 after the others if runs of ``--jobs`` failed."""
    console = _console()
    try:
        return compare(parse_args(sys.argv[1:] if argv is None else argv), console)
    except SweepFailed as failed:
        console.print(
            f"compare: {failed}\nNo tables written: fix the failed runs and rerun (finished runs are kept).",
            markup=False,
            highlight=False,
            soft_wrap=True,  # log paths in one piece
        )
        raise SystemExit(1) from None
