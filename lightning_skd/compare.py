"""``lightning-skd compare``: run configs × seeds, resume unfinished sweeps, tabulate the methods against a baseline.

A sweep file names the methods (one ``lightning-skd`` config each), the seeds and the baseline::

    # configs/digits/compare.yaml
    output_dir: outputs/compare/digits        # relative to the working directory
    seeds: [0, 1, 2, 3, 4]
    baseline: Baseline                        # the method the others are compared with, seed by seed
    args: []                                  # extra lightning-skd arguments for every run
    methods:
      - {name: Baseline, config: baseline.yaml}       # config paths are relative to the sweep file
      - {name: + Self-KD, config: selfkd.yaml}

    lightning-skd compare configs/digits/compare.yaml [--seeds 0 1] [--output-dir DIR] [--max-epochs N] [ARGS ...]

Each run (method, seed) is ``fit`` then ``test`` of its config with ``--seed_everything seed`` (plus ``ARGS``, e.g.
``--trainer.limit_train_batches=0.5``), in this process, one after the other; its console output, model summary and
warnings go to ``<output_dir>/runs/<method>/seed<k>/run.log``, and one progress display covers the whole sweep. A
finished run writes ``result.json`` (atomically, last); a rerun skips every run whose ``result.json`` exists with the
same arguments, so an interrupted sweep resumes where it stopped and deleting one ``result.json`` redoes that run only.

Outputs in ``output_dir``: ``results.md`` and ``results.csv`` (mean ± std over seeds of top-1 / top-5 error, NLL, ECE,
AURC, E-AURC, and each method's paired difference to the baseline: mean over seeds of ``method - baseline`` with a
95 % Student-t interval), ``runs.csv`` (every run's numbers) and ``figures.png`` (reliability diagram and
risk-coverage curve of every method's first seed, side by side).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pytorch_lightning import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from scipy import stats as scipy_stats

# (metric key, column title, scale): fractions shown in the units of Kim et al.'s Table 1.
METRICS = [
    ("test/top1_err", "Top-1 err (%)", 100.0),
    ("test/top5_err", "Top-5 err (%)", 100.0),
    ("test/nll", "NLL", 1.0),
    ("test/ece", "ECE (%)", 100.0),
    ("test/aurc", "AURC (×10³)", 1000.0),
    ("test/eaurc", "E-AURC (×10³)", 1000.0),
]
_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


@dataclass
class Method:
    """One row of the table: a display name and the config that trains it."""

    name: str
    config: Path

    @property
    def slug(self) -> str:
        """Folder name of the method's runs."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower() or "method"


@dataclass
class Sweep:
    """A parsed sweep file (see the module docstring)."""

    methods: list[Method]
    seeds: list[int]
    baseline: str
    output_dir: Path
    args: list[str] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: Path) -> Sweep:
        """Read and check a sweep file; config paths are resolved relative to its folder."""
        spec = yaml.safe_load(Path(path).read_text())
        if not isinstance(spec, dict) or not isinstance(spec.get("methods"), list) or not spec["methods"]:
            raise ValueError(f"{path}: a sweep file needs a non-empty list `methods` of {{name, config}} entries.")
        methods = []
        for entry in spec["methods"]:
            if not isinstance(entry, dict) or set(entry) != {"name", "config"}:
                raise ValueError(
                    f"{path}: each entry of `methods` must have exactly `name` and `config`, got {entry!r}."
                )
            config = (Path(path).parent / entry["config"]).resolve()
            if not config.is_file():
                raise FileNotFoundError(f"{path}: the config of method {entry['name']!r} does not exist: {config}")
            methods.append(Method(str(entry["name"]), config))
        names = [m.name for m in methods]
        slugs = [m.slug for m in methods]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"{path}: method names must be distinct (also as folder names), got {names}.")
        seeds = spec.get("seeds", [0, 1, 2])
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
            raise ValueError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}.")
        baseline = spec.get("baseline", names[0])
        if baseline not in names:
            raise ValueError(f"{path}: `baseline` must be one of the method names {names}, got {baseline!r}.")
        args = spec.get("args", []) or []
        if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise ValueError(f"{path}: `args` must be a list of strings, got {args!r}.")
        output_dir = Path(spec.get("output_dir", f"outputs/compare/{Path(path).stem}"))
        return cls(methods, seeds, baseline, output_dir, args)


class _SweepProgress(Callback):
    """Advances the sweep's progress display by one step per training epoch."""

    def __init__(self, progress: Progress, task: int, label: str) -> None:
        self.progress, self.task, self.label = progress, task, label

    def on_train_start(self, trainer, pl_module) -> None:
        self.progress.update(self.task, total=trainer.max_epochs, completed=trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.progress.update(self.task, advance=1, description=f"{self.label} epoch {trainer.current_epoch + 1}")


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send stdout, stderr, warnings and Lightning's log records of the block to ``log_path`` only."""
    with open(log_path, "a") as log, warnings.catch_warnings():
        warnings.simplefilter("default")
        handler = logging.StreamHandler(log)
        saved = {}
        for name in _LIGHTNING_LOGGERS:
            logger = logging.getLogger(name)
            saved[name] = (logger.handlers[:], logger.propagate)
            logger.handlers, logger.propagate = [handler], False
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            for name, (handlers, propagate) in saved.items():
                logger = logging.getLogger(name)
                logger.handlers, logger.propagate = handlers, propagate


def run_once(
    method: Method,
    seed: int,
    run_dir: Path,
    args: list[str],
    progress: Progress | None = None,
    task: int = 0,
    save_predictions: bool = True,
) -> dict[str, Any]:
    """Fit and test one config with one seed in ``run_dir``; return its record (also saved as ``result.json``).

    With ``save_predictions`` the test-set probabilities are also predicted and saved (``test_predictions.pt``, for
    the figures).
    """
    from lightning_skd.cli import SelfKDCLI

    run_dir.mkdir(parents=True, exist_ok=True)
    cli_args = _run_args(method, seed, run_dir, args)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with _quiet(run_dir / "run.log"):
        cli = SelfKDCLI(args=cli_args, run=False)
        if progress is not None:
            cli.trainer.callbacks.append(_SweepProgress(progress, task, f"{method.name}, seed {seed}:"))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
        if save_predictions:
            outputs = cli.trainer.predict(cli.model, dataloaders=cli.datamodule.test_dataloader())
            probs = torch.cat([o["probs"] for o in outputs]).float()  # (N, C)
            target = torch.cat([o["target"] for o in outputs])  # (N,)
            torch.save({"probs": probs, "target": target}, run_dir / "test_predictions.pt")
    record = {
        "method": method.name,
        "seed": seed,
        "config": str(method.config),
        "args": cli_args,
        "metrics": {key: float(metrics[key]) for key, _, _ in METRICS},
        "wall_s": time.perf_counter() - start_wall,
        "cpu_s": time.process_time() - start_cpu,
    }
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, run_dir / "result.json")  # atomic: a run counts as finished only once this exists
    return record


def run_sweep(sweep: Sweep, console: Console | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run every (method, seed) not finished yet; return ``{method name: [record of each seed, in seed order]}``."""
    console = console or Console(width=max(Console().width, 150))
    jobs = [(method, seed) for method in sweep.methods for seed in sweep.seeds]
    records: dict[tuple[str, int], dict[str, Any]] = {}
    todo = []
    for method, seed in jobs:
        run_dir = sweep.output_dir / "runs" / method.slug / f"seed{seed}"
        done = run_dir / "result.json"
        if done.is_file():
            record = json.loads(done.read_text())
            if record.get("args") == _run_args(method, seed, run_dir, sweep.args):
                records[(method.name, seed)] = record
                continue
        todo.append((method, seed, run_dir))
    console.print(
        f"compare: {len(jobs)} runs ({len(sweep.methods)} methods × {len(sweep.seeds)} seeds), "
        f"{len(jobs) - len(todo)} already finished in {sweep.output_dir}"
    )
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if not todo:
        return {m.name: [records[(m.name, s)] for s in sweep.seeds] for m in sweep.methods}
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("runs", total=len(todo))
        epochs = progress.add_task("", total=None)
        for position, (method, seed, run_dir) in enumerate(todo, start=1):
            progress.update(overall, description=f"run {position}/{len(todo)}: {method.name}, seed {seed}")
            progress.reset(epochs, total=None, description=f"{method.name}, seed {seed}:")
            first = seed == sweep.seeds[0]  # figures show the first seed
            record = run_once(method, seed, run_dir, sweep.args, progress, epochs, save_predictions=first)
            records[(method.name, seed)] = record
            progress.advance(overall)
    return {m.name: [records[(m.name, s)] for s in sweep.seeds] for m in sweep.methods}


def _run_args(method: Method, seed: int, run_dir: Path, args: list[str]) -> list[str]:
    return [
        "--config", str(method.config),
        "--seed_everything", str(seed),
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *args,
    ]  # fmt: skip


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


def summarize(runs: dict[str, list[dict[str, Any]]], baseline: str) -> dict[str, dict[str, Summary]]:
    """Per method and metric: mean, std and (except for the baseline) the paired difference to the baseline."""
    table: dict[str, dict[str, Summary]] = {}
    base = {key: [r["metrics"][key] for r in runs[baseline]] for key, _, _ in METRICS}
    for method, records in runs.items():
        table[method] = {}
        for key, _, _ in METRICS:
            values = [r["metrics"][key] for r in records]
            std = statistics.stdev(values) if len(values) > 1 else math.nan
            summary = Summary(statistics.fmean(values), std)
            if method != baseline:
                summary.diff, summary.diff_low, summary.diff_high = paired_difference(values, base[key])
            table[method][key] = summary
    return table


def machine_description() -> str:
    """Host, CPU model and count, torch threads: which machine made a table."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, torch threads: {torch.get_num_threads()}"


def _fmt(value: float, scale: float) -> str:
    return "–" if math.isnan(value) else f"{value * scale:.2f}"


def _diff_text(summary: Summary, scale: float) -> str:
    if summary.diff is None:
        return "(baseline)"
    if summary.diff_low is None or math.isnan(summary.diff_low):
        return f"{summary.diff * scale:+.2f}"
    excludes_zero = summary.diff_low > 0 or summary.diff_high < 0
    text = f"{summary.diff * scale:+.2f} [{summary.diff_low * scale:+.2f}, {summary.diff_high * scale:+.2f}]"
    return text + (" *" if excludes_zero else "")


def markdown_table(table: dict[str, dict[str, Summary]], baseline: str, seeds: Sequence[int], machine: str) -> str:
    """Two Markdown tables: mean ± std per method, then paired differences to the baseline with 95 % intervals."""
    titles = [title for _, title, _ in METRICS]
    lines = [
        f"Test split, mean ± std over seeds {list(seeds)}; lower is better. Machine: {machine}.",
        "",
        "| method | " + " | ".join(titles) + " |",
        "| --- |" + " --- |" * len(titles),
    ]
    for method, row in table.items():
        cells = [f"{_fmt(row[key].mean, scale)} ± {_fmt(row[key].std, scale)}" for key, _, scale in METRICS]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
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
            lines.append(f"| {method} | " + " | ".join(_diff_text(row[key], scale) for key, _, scale in METRICS) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, table: dict[str, dict[str, Summary]], runs: dict[str, list[dict[str, Any]]]) -> None:
    """``results.csv`` (one row per method and metric, unscaled fractions) and ``runs.csv`` next to it."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "metric", "n_seeds", "mean", "std", "diff_to_baseline", "diff_ci95_low",
                         "diff_ci95_high"])  # fmt: skip
        for method, row in table.items():
            for key, _, _ in METRICS:
                s = row[key]
                writer.writerow([method, key, len(runs[method]), s.mean, s.std, s.diff, s.diff_low, s.diff_high])
    with open(path.with_name("runs.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "seed", *[key for key, _, _ in METRICS], "wall_s", "cpu_s"])
        for method, records in runs.items():
            for r in records:
                writer.writerow([method, r["seed"], *[r["metrics"][k] for k, _, _ in METRICS], r["wall_s"], r["cpu_s"]])


def write_figures(path: Path, sweep: Sweep) -> None:
    """Reliability diagram (top) and risk-coverage curve (bottom) of each method's first seed, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lightning_skd.metrics.plots import reliability_diagram, risk_coverage_curve

    def render(figure: Figure) -> np.ndarray:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())

    seed = sweep.seeds[0]
    panels = []
    for method in sweep.methods:
        predictions = sweep.output_dir / "runs" / method.slug / f"seed{seed}" / "test_predictions.pt"
        if not predictions.is_file():  # that run finished in an earlier sweep where it was not the first seed
            continue
        saved = torch.load(predictions)
        title = f"{method.name} (seed {seed})"
        panels.append(
            (
                render(reliability_diagram(saved["probs"], saved["target"], title=title)),
                render(risk_coverage_curve(saved["probs"], saved["target"], title=title)),
            )
        )
    if not panels:
        return
    grid = Figure(figsize=(5 * len(panels), 10), layout="constrained")
    axes = grid.subplots(2, len(panels), squeeze=False, height_ratios=(6, 4))
    for column, images in enumerate(panels):
        for row, image in enumerate(images):
            axes[row][column].imshow(image)
            axes[row][column].set_axis_off()
    grid.savefig(path, dpi=100)


def rich_table(table: dict[str, dict[str, Summary]], baseline: str, seeds: Sequence[int]) -> Table:
    """The console version of the two Markdown tables, in one."""
    out = Table(title=f"Test split, mean ± std over {len(seeds)} seed(s); Δ: paired difference to {baseline}, 95 % CI")
    out.add_column("Method")
    for _, title, _ in METRICS:
        out.add_column(title, justify="right")
    for method, row in table.items():
        out.add_row(method, *[f"{_fmt(row[k].mean, s)} ± {_fmt(row[k].std, s)}" for k, _, s in METRICS])
        if method != baseline:
            out.add_row("  Δ", *[_diff_text(row[k], s) for k, _, s in METRICS], style="dim")
    return out


def compare(sweep: Sweep, console: Console | None = None) -> dict[str, dict[str, Summary]]:
    """Run (or resume) the sweep, write the tables and figures, print the table; return the summaries."""
    console = console or Console(width=max(Console().width, 150))
    runs = run_sweep(sweep, console)
    table = summarize(runs, sweep.baseline)
    machine = machine_description()
    (sweep.output_dir / "results.md").write_text(markdown_table(table, sweep.baseline, sweep.seeds, machine))
    write_csv(sweep.output_dir / "results.csv", table, runs)
    write_figures(sweep.output_dir / "figures.png", sweep)
    console.print(rich_table(table, sweep.baseline, sweep.seeds))
    console.print(
        f"Machine: {machine}. Written: {sweep.output_dir}/results.md, results.csv, runs.csv, figures.png; "
        f"per-run logs in {sweep.output_dir}/runs/."
    )
    return table


def parse_args(argv: Sequence[str]) -> Sweep:
    """The sweep file with the command-line overrides applied; unknown arguments go to every run."""
    parser = argparse.ArgumentParser(prog="lightning-skd compare", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="sweep file (YAML): methods, seeds, baseline, output_dir")
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
