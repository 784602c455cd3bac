"""``TemperatureScaling``: post-hoc temperature scaling (Guo et al., ICML 2017) of a module's test metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DistributedSampler
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import Callback, check_trainer, is_overridden, pl, rank_zero_info, rank_zero_warn
from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.functional.temperature import check_temperature_bounds, fit_temperature

__all__ = ["TemperatureScaling"]


class TemperatureScaling(Callback):
    """Fit one temperature ``T`` on the validation split at test time; report the test metrics with and without it.

    At the start of every test (``trainer.test``, ``lightning-skd test``, the test after ``fit`` in
    ``lightning-skd compare``), with the weights being tested, the callback runs the module over the whole validation
    loader (``trainer.datamodule.val_dataloader()``, else the module's ``val_dataloader()``; the trainer's
    ``limit_val_batches`` does not apply) and fits ``T`` by minimising the NLL of ``softmax(logits / T)``
    (:func:`~lightning_skd.functional.fit_temperature`: exact, deterministic, ``T`` in ``[min_temperature,
    max_temperature]``). It then sets ``pl_module.temperature = T`` for the test: the module reports its usual test
    metrics unchanged (``test/nll``, ``test/ece``, ...) and the same ones of ``logits / T`` under ``test_ts/``
    (``test_ts/nll``, ``test_ts/ece``, ...); the callback logs ``test/temperature``. Dividing by ``T > 0`` keeps the
    arg-max, so ``test_ts/top1_err`` equals ``test/top1_err``. The module's ``temperature`` is restored when the test
    ends.

    The module must have ``evaluation_logits(batch) -> (logits, target)`` (the logits its metrics are made of,
    padding targets at ``-100``) and a ``temperature`` attribute its ``test_step`` honours
    (:mod:`lightning_skd.models.temperature_scaled_metrics`): :class:`~lightning_skd.models.ImageClassifier`, and
    :class:`~lightning_skd.models.Translator` for its teacher-forced token metrics.

    **DDP.** Each process runs its own share of the validation loader and ``T`` is the fit on the union of the
    shares: the search reduces two float64 sums over all processes per step, so ``T`` equals the single-process
    fit (up to float64 rounding of the sums) and is the same number on every rank (broadcast from rank 0). A
    loader with a ``DistributedSampler`` (the DataModules of :mod:`lightning_skd.data` give each validation sample to
    exactly one process) is taken as sharded; a loader without one is run by rank 0 alone.

    **Memory.** The validation logits are kept (on the module's device, in their dtype) until ``T`` is fitted:
    ``N × C`` values per process, for token models one row of ``V`` per non-padding target token.

    **Where the validation split is the test set** (e.g. ``CIFAR100DataModule(val_size=0)``, the PS-KD protocol), ``T``
    is fitted on the test set and the ``test_ts/`` numbers are optimistic: hold out a validation split for them.

    YAML (``lightning-skd fit`` / ``test`` config)::

        trainer:
          callbacks:
            - class_path: lightning_skd.callbacks.TemperatureScaling

    Args:
        min_temperature: Smallest ``T`` fitted (``> 0``).
        max_temperature: Largest ``T`` fitted.

    Raises:
        ValueError: On bad bounds (``__init__``); at test start (``setup``), if the module lacks
            ``evaluation_logits`` or ``temperature``, or there is no validation loader.

    Example:
        >>> callback = TemperatureScaling()
        >>> callback.temperature is None, callback.state_dict()
        (True, {'temperature': None})

    """

    def __init__(self, min_temperature: float = 0.01, max_temperature: float = 100.0) -> None:
        check_temperature_bounds(type(self).__name__, min_temperature, max_temperature)
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)
        #: The ``T`` of the last test (``None`` before the first).
        self.temperature: float | None = None
        self._saved_temperature: float | None = None  # the module's own value, restored after the test
        self._applied = False

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer; before a test, that the module supports temperature scaling and has validation data."""
        check_trainer(trainer, "TemperatureScaling")
        if stage != "test":
            return
        name = type(pl_module).__name__
        if not callable(getattr(pl_module, "evaluation_logits", None)) or not hasattr(pl_module, "temperature"):
            raise ValueError(
                f"TemperatureScaling needs a module with `evaluation_logits(batch) -> (logits, target)` and a "
                f"`temperature` attribute its test_step honours (ImageClassifier and Translator have both, see "
                f"lightning_skd.models.temperature_scaled_metrics); {name} has not"
            )
        _validation_source(trainer, pl_module, build=False)

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fit ``T`` on the validation split with the weights under test, and hand it to the module."""
        logits, target = self._validation_logits(trainer, pl_module)

        def sum_across_processes(total: Tensor) -> Tensor:
            return trainer.strategy.reduce(total, reduce_op="sum")

        temperature = fit_temperature(
            logits,
            target,
            ignore_index=IGNORE_INDEX,
            min_temperature=self.min_temperature,
            max_temperature=self.max_temperature,
            sum_across_processes=sum_across_processes if trainer.world_size > 1 else None,
        )
        del logits, target
        self.temperature = float(trainer.strategy.broadcast(temperature, src=0))
        self._saved_temperature, self._applied = pl_module.temperature, True
        pl_module.temperature = self.temperature
        if self.temperature in (self.min_temperature, self.max_temperature):
            rank_zero_warn(
                f"TemperatureScaling: T = {self.temperature:g} is a bound of [min_temperature, max_temperature]: the "
                "validation NLL keeps falling beyond it ("
                + (
                    "every validation prediction is right: the sharpest T wins)"
                    if self.temperature == self.min_temperature
                    else "the logits are no better than uniform on the validation split)"
                ),
                category=LightningSKDWarning,
            )
        rank_zero_info(f"TemperatureScaling: T = {self.temperature:.6g} (fitted on the validation split)")

    @override
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log ``test/temperature`` (the same number on every rank)."""
        pl_module.log("test/temperature", self.temperature, sync_dist=True)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Give the module its own ``temperature`` back."""
        self._restore(pl_module)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Give the module its own ``temperature`` back if the test failed."""
        self._restore(pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The ``T`` of the last test."""
        return {"temperature": self.temperature}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``temperature`` (a test refits it anyway, for the weights it tests)."""
        self.temperature = state_dict.get("temperature")

    def _restore(self, pl_module: pl.LightningModule) -> None:
        if self._applied:
            pl_module.temperature, self._applied = self._saved_temperature, False

    def _validation_logits(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Tensor, Tensor]:
        """The validation logits of this process's share, ``(N, C)`` and targets ``(N,)``, padding dropped."""
        rows: list[Tensor] = []
        targets: list[Tensor] = []
        num_classes = None
        with torch.no_grad():
            for loader in _loaders(_validation_source(trainer, pl_module)):
                if trainer.world_size > 1 and not _is_sharded(loader) and trainer.global_rank != 0:
                    continue  # every process would see the whole split: rank 0 counts it once
                for batch in loader:
                    logits, target = pl_module.evaluation_logits(trainer.strategy.batch_to_device(batch))
                    num_classes = logits.shape[-1]
                    keep = target != IGNORE_INDEX
                    rows.append(logits.detach()[keep])
                    targets.append(target[keep])
        if not rows:  # an empty share (DDP) or an empty loader: fit_temperature counts over all processes
            empty = torch.empty(0, num_classes or 1, device=pl_module.device)
            return empty, torch.empty(0, dtype=torch.long, device=pl_module.device)
        return torch.cat(rows), torch.cat(targets)


def _validation_source(trainer: pl.Trainer, pl_module: pl.LightningModule, build: bool = True) -> Any:
    """``trainer.datamodule.val_dataloader()`` or ``pl_module.val_dataloader()``; an error naming both if neither.

    With ``build=False`` only checks that one exists (returns ``None``).
    """
    datamodule = trainer.datamodule
    for owner in (datamodule, pl_module):
        if owner is not None and is_overridden("val_dataloader", owner):
            return owner.val_dataloader() if build else None
    where = f"the datamodule {type(datamodule).__name__}" if datamodule is not None else "the trainer (no datamodule)"
    raise ValueError(
        "TemperatureScaling fits T on the validation split, but there is no validation dataloader: neither "
        f"{where} nor the module {type(pl_module).__name__} defines `val_dataloader()`; test with a datamodule that "
        "has a validation split (e.g. `trainer.test(model, datamodule=dm)`)"
    )


def _loaders(source: Any) -> Iterable[Any]:
    if isinstance(source, dict):
        return list(source.values())
    if isinstance(source, (list, tuple)):
        return list(source)
    return [source]


def _is_sharded(loader: Any) -> bool:
    """Whether the loader gives this process its own share (a ``DistributedSampler`` as sampler or batch sampler)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    candidates = (getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None))
    return any(isinstance(sampler, DistributedSampler) for sampler in candidates)
