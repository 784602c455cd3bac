"""Logging of the end-of-epoch evaluation values of the task modules, the same way under DDP and in one process."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from torch import Tensor

from lightning_skd._lightning import pl

__all__ = ["log_evaluation"]


def log_evaluation(
    module: pl.LightningModule,
    values: Mapping[str, Tensor | float],
    prog_bar: Collection[str] = (),
    reset: Iterable[object] = (),
) -> None:
    """Log global evaluation ``values`` (e.g. ``{"val/loss": ..., "val/ece": ...}``), then reset their metrics.

    The values come from torchmetrics' ``compute()``, which gathers every process's states: they are global and the
    same on every rank. ``sync_dist=True`` tells Lightning so (no per-metric warning); its mean of identical values
    leaves them unchanged (``(x + x) / 2 == x``). Tensors are logged as float32 (float64 cannot be logged on every
    device).

    Args:
        module: The LightningModule that logs, in ``on_validation_epoch_end`` / ``on_test_epoch_end``.
        values: Name -> value.
        prog_bar: Names also shown in the progress bar.
        reset: Metrics (anything with ``reset()``) to reset once the values are logged.

    """
    for name, value in values.items():
        value = value.float() if isinstance(value, Tensor) else value
        module.log(name, value, prog_bar=name in prog_bar, sync_dist=True)
    for metric in reset:
        metric.reset()
