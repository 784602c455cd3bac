"""Running a sweep's (method, seed) runs: one run, and every unfinished run with one progress display."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lightning_skd.compare.sweep import METRICS, Method, Sweep

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


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
