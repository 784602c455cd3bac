"""Running a sweep's (method, seed) runs: one run, and every unfinished run with one progress display."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lightning_skd._lightning import Callback, LightningDataModule, LightningModule, Trainer
from lightning_skd.compare.sweep import Method, Sweep, scaled_key

_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
#: Called with (finished training epochs, max_epochs or ``None`` when training is bounded by steps only).
EpochReport = Callable[[int, "int | None"], None]


@dataclass
class RunSpec:
    """Everything one (method, seed) run needs; JSON-serialisable, so that a worker process can receive it.

    Attributes:
        method: The method's display name.
        config: Its ``lightning-skd`` config.
        seed: ``--seed_everything`` of the run.
        run_dir: The run's folder (``run.log``, ``result.json``, checkpoints).
        args: The complete ``lightning-skd`` arguments of the run (see :func:`run_args`).
        metric_keys: Test metrics the run must log (the sweep's columns).
        test_ckpt_path: Checkpoint ``trainer.test`` loads after ``fit`` (``None``: the final weights).
        save_predictions: Also save the test set's class probabilities (``test_predictions.pt``), for the figures,
            if the model predicts them.
        temperature_scaling: Test with a :class:`~lightning_skd.callbacks.TemperatureScaling` (added unless the
            config has one); ``metric_keys`` then hold the ``test_ts/`` keys too.

    """

    method: str
    config: Path
    seed: int
    run_dir: Path
    args: list[str]
    metric_keys: list[str]
    test_ckpt_path: str | None = None
    save_predictions: bool = False
    temperature_scaling: bool = False

    def to_json(self) -> str:
        """The spec as a JSON object (paths as strings)."""
        return json.dumps({**asdict(self), "config": str(self.config), "run_dir": str(self.run_dir)})

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        """Inverse of :meth:`to_json`."""
        fields = json.loads(text)
        return cls(**{**fields, "config": Path(fields["config"]), "run_dir": Path(fields["run_dir"])})

    @property
    def log_path(self) -> Path:
        """The run's console output, warnings and errors."""
        return self.run_dir / "run.log"

    @property
    def result_path(self) -> Path:
        """Written last, atomically: the run is finished once it exists."""
        return self.run_dir / "result.json"


def run_args(sweep: Sweep, method: Method, seed: int) -> list[str]:
    """The ``lightning-skd`` arguments of one run: its config, seed and folder, quiet, then the sweep's ``args``."""
    return [
        "--config", str(method.config),
        "--seed_everything", str(seed),
        "--trainer.default_root_dir", str(sweep.run_dir(method, seed)),
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *sweep.args,
    ]  # fmt: skip


def run_specs(sweep: Sweep) -> list[RunSpec]:
    """Every run of the sweep, method by method, seed by seed; the first seed's runs save predictions."""
    return [
        RunSpec(
            method=method.name,
            config=method.config,
            seed=seed,
            run_dir=sweep.run_dir(method, seed),
            args=run_args(sweep, method, seed),
            metric_keys=_metric_keys(sweep, method),
            test_ckpt_path=sweep.test_ckpt_path,
            save_predictions=seed == sweep.seeds[0],  # figures show the first seed
            temperature_scaling=method.temperature_scaling,
        )
        for method in sweep.methods
        for seed in sweep.seeds
    ]


def _metric_keys(sweep: Sweep, method: Method) -> list[str]:
    """The test metrics a run of ``method`` must log: the sweep's, plus their ``test_ts/`` keys with TS."""
    keys = [metric.key for metric in sweep.metrics]
    return keys + [scaled_key(key) for key in keys] if method.temperature_scaling else keys


def finished_record(spec: RunSpec) -> dict[str, Any] | None:
    """The run's ``result.json`` if it was made with the same arguments and has every metric, else ``None``."""
    if not spec.result_path.is_file():
        return None
    record = json.loads(spec.result_path.read_text())
    same = record.get("args") == spec.args and record.get("test_ckpt_path") == spec.test_ckpt_path
    return record if same and set(spec.metric_keys) <= set(record.get("metrics", {})) else None


class _SweepProgress(Callback):
    """Reports every finished training epoch."""

    def __init__(self, report: EpochReport) -> None:
        self.report = report

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Report the epoch training starts from."""
        self.report(trainer.current_epoch, _max_epochs(trainer))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Report one more finished epoch."""
        self.report(trainer.current_epoch + 1, _max_epochs(trainer))


def _max_epochs(trainer: Trainer) -> int | None:
    return trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send stdout, stderr, warnings and Lightning's log records of the block to ``log_path`` only.

    Warnings are written to the log by a ``showwarning`` of their own, so they stay there even when the caller has
    replaced it (pytest records warnings that way, and would otherwise collect every run's warnings).
    """
    with open(log_path, "a") as log, warnings.catch_warnings():
        warnings.simplefilter("default")

        def show_in_log(message, category, filename, lineno, file=None, line=None):
            log.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show_in_log  # restored by catch_warnings
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


def run_once(spec: RunSpec, report: EpochReport | None = None) -> dict[str, Any]:
    """Fit and test one config with one seed in ``spec.run_dir``; return its record (also saved as ``result.json``).

    The record holds every metric ``trainer.test`` returned; a metric of ``spec.metric_keys`` it lacks is an error
    (before ``result.json`` is written). With ``spec.save_predictions`` the test set's class probabilities are
    saved as ``test_predictions.pt`` if the model predicts them (see :func:`save_class_probabilities`).

    With ``spec.temperature_scaling`` the test has a :class:`~lightning_skd.callbacks.TemperatureScaling` (added
    unless the config has one), so the record also holds the ``test_ts/`` metrics.

    Args:
        spec: The run.
        report: Called at the start of training and after every training epoch (progress display).

    Returns:
        The record: method, seed, config, args, test_ckpt_path, metrics, wall_s and cpu_s.

    Raises:
        ValueError: If a metric of ``spec.metric_keys`` was not logged at test time.

    """
    from lightning_skd.callbacks.temperature_scaling import TemperatureScaling
    from lightning_skd.cli import SelfKDCLI

    spec.run_dir.mkdir(parents=True, exist_ok=True)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    with _quiet(spec.log_path):
        cli = SelfKDCLI(args=spec.args, run=False)
        if report is not None:
            cli.trainer.callbacks.append(_SweepProgress(report))
        if spec.temperature_scaling and not any(isinstance(cb, TemperatureScaling) for cb in cli.trainer.callbacks):
            cli.trainer.callbacks.append(TemperatureScaling())
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=spec.test_ckpt_path, verbose=False)
        metrics = {key: float(value) for key, value in tested[0].items()}
        missing = [key for key in spec.metric_keys if key not in metrics]
        if missing:
            scaling = " or `temperature_scaling` of the method" if spec.temperature_scaling else ""
            raise ValueError(
                f"{spec.method}, seed {spec.seed}: the sweep's metrics {missing} were not logged at test time "
                f"(logged: {sorted(metrics)}); fix `metrics` in the sweep file{scaling}."
            )
        if spec.save_predictions:
            save_class_probabilities(cli.trainer, cli.model, cli.datamodule, spec.run_dir / "test_predictions.pt")
    record = {
        "method": spec.method,
        "seed": spec.seed,
        "config": str(spec.config),
        "args": spec.args,
        "test_ckpt_path": spec.test_ckpt_path,
        "metrics": metrics,
        "wall_s": time.perf_counter() - start_wall,
        "cpu_s": time.process_time() - start_cpu,
    }
    tmp = spec.run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, spec.result_path)  # atomic: a run counts as finished only once this exists
    return record


def save_class_probabilities(
    trainer: Trainer, model: LightningModule, datamodule: LightningDataModule, path: Path
) -> bool:
    """Save the test set's ``probs (N, C)`` and ``target (N,)`` if the model's ``predict_step`` returns them.

    One batch is predicted first, so that a model that predicts something else (a translator's hypotheses) costs
    one batch, not a pass over the test set.

    Returns:
        Whether ``path`` was written.

    """
    loader = datamodule.test_dataloader()
    limit = trainer.limit_predict_batches
    trainer.limit_predict_batches = 1
    try:
        probe = trainer.predict(model, dataloaders=loader)
    finally:
        trainer.limit_predict_batches = limit
    if not probe or not _has_class_probabilities(probe[0]):
        return False
    outputs = trainer.predict(model, dataloaders=loader)
    probs = torch.cat([o["probs"] for o in outputs]).float()  # (N, C)
    target = torch.cat([o["target"] for o in outputs])  # (N,)
    torch.save({"probs": probs, "target": target}, path)
    return True


def _has_class_probabilities(output: Any) -> bool:
    if not isinstance(output, dict) or not {"probs", "target"} <= set(output):
        return False
    probs, target = output["probs"], output["target"]
    return (
        isinstance(probs, torch.Tensor)
        and isinstance(target, torch.Tensor)
        and probs.dim() == 2
        and probs.is_floating_point()
        and target.dim() == 1
        and len(target) == len(probs)
    )


def pending_runs(sweep: Sweep) -> tuple[dict[tuple[str, int], dict[str, Any]], list[RunSpec]]:
    """The records of the finished runs by (method, seed), and the specs of the others, in sweep order."""
    records, todo = {}, []
    for spec in run_specs(sweep):
        record = finished_record(spec)
        if record is None:
            todo.append(spec)
        else:
            records[(spec.method, spec.seed)] = record
    return records, todo


def progress_display(console: Console) -> Progress:
    """The sweep's progress display: description, bar, done / total, elapsed time."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=console, transient=False)


def epoch_reporter(progress: Progress, task: Any, label: str) -> EpochReport:
    """An :data:`EpochReport` that shows the epochs of one run in ``task`` of ``progress``."""

    def report(completed: int, total: int | None) -> None:
        description = f"{label} epoch {completed}" if completed else label
        progress.update(task, total=total, completed=completed, description=description)

    return report


def run_in_process(todo: list[RunSpec], threads: int | None, console: Console) -> dict[tuple[str, int], dict[str, Any]]:
    """Run ``todo`` one after the other in this process (with ``threads`` torch threads if given); records by run."""
    if threads is not None:
        torch.set_num_threads(threads)
    records = {}
    with progress_display(console) as progress:
        overall = progress.add_task("runs", total=len(todo))
        epochs = progress.add_task("", total=None)
        for position, spec in enumerate(todo, start=1):
            label = f"{spec.method}, seed {spec.seed}:"
            progress.update(overall, description=f"run {position}/{len(todo)}: {spec.method}, seed {spec.seed}")
            progress.reset(epochs, total=None, description=label)
            records[(spec.method, spec.seed)] = run_once(spec, epoch_reporter(progress, epochs, label))
            progress.advance(overall)
    return records
