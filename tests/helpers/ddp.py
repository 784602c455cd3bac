"""Shared pieces of the end-to-end DDP suite: CLI runs with a CSV logger, their metrics, single-process references."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from lightning_skd.cli import SelfKDCLI, main
from tests.helpers.multiprocess import QUIET_ARGS, REPO, run_cli

CONFIGS = REPO / "configs"
TEMPERATURE_SCALING_CONFIG = CONFIGS / "digits" / "temperature_scaling.yaml"


def logger_args(root: Path, name: str) -> list[str]:
    """A CSV logger writing to ``root/logs/name``, so each run's files are known in advance."""
    return [
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={root}",
        "--trainer.logger.init_args.name=logs",
        f"--trainer.logger.init_args.version={name}",
    ]


def cli_run(subcommand: str, config: Path, root: Path, name: str, *args: str, ddp: bool = True) -> Path:
    """``lightning-skd <subcommand> --config <config>`` logging to ``root/logs/name``; returns that folder."""
    run_cli(
        subcommand,
        "--config",
        str(config),
        f"--trainer.default_root_dir={root / name}",
        *logger_args(root, name),
        *args,
        cwd=root,
        ddp=ddp,
    )
    return root / "logs" / name


def logged(folder: Path) -> dict[str, list[float]]:
    """Every metric in ``folder/metrics.csv``: its values in logging order."""
    values: dict[str, list[float]] = {}
    with open(folder / "metrics.csv", newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if value not in ("", None) and key not in ("epoch", "step"):
                    values.setdefault(key, []).append(float(value))
    return values


def single_process(subcommand: str, config: Path, root: Path, checkpoint: Path, *args: str) -> dict[str, float]:
    """``validate``/``test`` of ``checkpoint`` in this process (1 device), through the same CLI class and config."""
    cli = SelfKDCLI(
        args=[
            "--config",
            str(config),
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            *args,
        ],
        run=False,
    )
    run = {"validate": cli.trainer.validate, "test": cli.trainer.test}[subcommand]
    (metrics,) = run(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint), verbose=False)
    return {key: float(value) for key, value in metrics.items()}


def assert_metrics_equal(distributed: dict[str, float], reference: dict[str, float], prefix: str) -> None:
    """Every ``prefix*`` value: finite, present in both, equal up to float summation order."""
    keys = {k for k in reference if k.startswith(prefix)}
    assert keys, f"no {prefix}* metric in {sorted(reference)}"
    assert keys == {k for k in distributed if k.startswith(prefix)}
    for key in sorted(keys):
        assert math.isfinite(distributed[key]), key
        assert math.isclose(distributed[key], reference[key], rel_tol=1e-5, abs_tol=1e-6), (
            key,
            distributed[key],
            reference[key],
        )


def last_values(values: dict[str, list[float]], prefix: str) -> dict[str, float]:
    """The last logged value of every ``prefix*`` metric."""
    return {key: series[-1] for key, series in values.items() if key.startswith(prefix)}


def load_predictions(folder: Path) -> dict[str, torch.Tensor]:
    """The merged file of :class:`~lightning_skd.callbacks.PredictionWriter` in a run's log folder."""
    return torch.load(folder / "predictions.pt", weights_only=True)


def fit_temperature_scaling(root: Path) -> tuple[Path, Path]:
    """``lightning-skd fit`` (in this process, one torch thread) of the temperature-scaling digits config, 8 steps,
    logging to ``root/logs/fit``; returns ``root`` and the checkpoint."""
    quick = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1", *QUIET_ARGS]
    config = TEMPERATURE_SCALING_CONFIG
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(["fit", "--config", str(config), f"--trainer.default_root_dir={root}", *logger_args(root, "fit"), *quick])
    finally:
        torch.set_num_threads(threads)
    (checkpoint,) = root.rglob("*.ckpt")
    return root, checkpoint
