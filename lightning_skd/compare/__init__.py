"""``lightning-skd compare``: run configs × seeds, resume unfinished sweeps, tabulate the methods against a baseline.

A sweep file names the methods (one ``lightning-skd`` config each), the seeds, the baseline and, optionally, the
metrics of the table (any task: the metrics are what the model logs at ``trainer.test``)::

    # configs/sweeps/digits.yaml
    output_dir: outputs/compare/digits        # relative to the working directory
    seeds: [0, 1, 2, 3, 4]
    baseline: Baseline                        # the method the others are compared with, seed by seed
    args: []                                  # extra lightning-skd arguments for every run
    test_ckpt_path: null                      # null: test the weights fit ended with; best / last: that checkpoint
    metrics:                                  # optional; default: the classification set (CLASSIFICATION_METRICS)
      - {key: test/top1_err, label: Top-1 err (%), scale: 100, lower_is_better: true}
      - {key: test/nll, label: NLL}             # label defaults to the key, scale to 1, lower_is_better to true
    methods:
      - {name: Baseline, config: ../digits/baseline.yaml}   # config paths are relative to the sweep file
      - {name: + Self-KD, config: ../digits/selfkd.yaml}

    lightning-skd compare configs/sweeps/digits.yaml [--seeds 0 1] [--output-dir DIR] [--max-epochs N] [ARGS ...]

Each run (method, seed) is ``fit`` then ``test`` of its config with ``--seed_everything seed`` (plus ``ARGS``, e.g.
``--trainer.limit_train_batches=0.5``), in this process, one after the other; its console output, model summary and
warnings go to ``<output_dir>/runs/<method>/seed<k>/run.log``, and one progress display covers the whole sweep. A
finished run writes ``result.json`` (every logged test metric; atomically, last); a rerun skips every run whose
``result.json`` exists with the same arguments and all the sweep's metrics, so an interrupted sweep resumes where it
stopped and deleting one ``result.json`` redoes that run only.

Outputs in ``output_dir``: ``results.md`` and ``results.csv`` (mean ± std over seeds of every metric, and each
method's paired difference to the baseline: mean over seeds of ``method - baseline`` with a 95 % Student-t
interval), ``runs.csv`` (every run's numbers) and, when the models predict class probabilities (``predict_step``
returns ``probs`` and ``target``, as :class:`~lightning_skd.models.ImageClassifier`), ``figures.png``
(reliability diagram and risk-coverage curve of every method's first seed, side by side).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

from lightning_skd.compare.figures import write_figures
from lightning_skd.compare.runner import RunSpec, run_once, run_sweep
from lightning_skd.compare.sweep import CLASSIFICATION_METRICS, Method, Metric, Sweep
from lightning_skd.compare.tables import (
    Summary,
    machine_description,
    markdown_table,
    paired_difference,
    rich_table,
    summarize,
    write_csv,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "Method",
    "Metric",
    "RunSpec",
    "Summary",
    "Sweep",
    "compare",
    "machine_description",
    "main",
    "markdown_table",
    "paired_difference",
    "parse_args",
    "rich_table",
    "run_once",
    "run_sweep",
    "summarize",
    "write_csv",
    "write_figures",
]


def compare(sweep: Sweep, console: Console | None = None) -> dict[str, dict[str, Summary]]:
    """Run (or resume) the sweep, write the tables and figures, print the table; return the summaries."""
    console = console or Console(width=max(Console().width, 150))
    runs = run_sweep(sweep, console)
    table = summarize(runs, sweep.baseline, sweep.metrics)
    machine = machine_description()
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
    parser = argparse.ArgumentParser(prog="lightning-skd compare", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep file (YAML): methods, seeds, baseline, metrics, output_dir")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the sweep's seeds")
    parser.add_argument("--output-dir", type=Path, help="override the sweep's output_dir")
    parser.add_argument("--max-epochs", type=int, help="override every config's trainer.max_epochs")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 is fastest for small models and on a busy machine)"
    )
    options, extra = parser.parse_known_args(list(argv))
    if options.threads is not None:
        if options.threads < 1:
            raise ValueError(f"lightning-skd compare: `--threads` must be >= 1, got {options.threads}.")
        torch.set_num_threads(options.threads)
    sweep = Sweep.from_file(options.sweep)
    if options.seeds:
        sweep.seeds = options.seeds
    if options.output_dir:
        sweep.output_dir = options.output_dir
    if options.max_epochs is not None:
        extra = [*extra, f"--trainer.max_epochs={options.max_epochs}"]
    sweep.args = [*sweep.args, *extra]
    return sweep


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Summary]]:
    """Entry point of ``lightning-skd compare``."""
    return compare(parse_args(sys.argv[1:] if argv is None else argv))
