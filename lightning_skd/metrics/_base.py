"""Common base of the modular calibration metrics: turns ``update(probs, target)`` into per-sample statistics."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import Metric

from lightning_skd.functional.statistics import SampleStatistics, _statistics_arg_validation, sample_statistics


class SampleStatisticsMetric(Metric):
    """A :class:`torchmetrics.Metric` updated from :class:`~lightning_skd.functional.SampleStatistics`.

    ``update`` accepts either ``(probs, target)``, which it reduces with
    :func:`~lightning_skd.functional.sample_statistics` (applying ``ignore_index``, ``from_logits`` and
    ``validate_args``), or an already computed :class:`~lightning_skd.functional.SampleStatistics` alone (how
    :class:`~lightning_skd.metrics.CalibrationMetrics` shares one pass over the inputs between all its metrics; the
    statistics are then used as they are).

    Args:
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric` (e.g. ``compute_on_cpu``, ``dist_sync_on_step``).

    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    #: Whether :meth:`statistics` needs ``target_rank`` (the NLL and the Brier score do not).
    needs_rank = True
    #: Whether :meth:`statistics` needs ``squared_error`` (the Brier score only).
    needs_squared_error = False

    def __init__(
        self, ignore_index: int | None = None, from_logits: bool = False, validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _statistics_arg_validation(ignore_index, from_logits, validate_args)
        self.ignore_index = ignore_index
        self.from_logits = from_logits
        self.validate_args = validate_args

    def statistics(self, probs: Tensor | SampleStatistics, target: Tensor | None = None) -> SampleStatistics:
        """Per-sample statistics of an ``update`` call's arguments (passed through if already computed)."""
        if isinstance(probs, SampleStatistics):
            if target is not None:
                raise ValueError(
                    "Expected argument `target` to be None when `probs` is a SampleStatistics, "
                    f"but got {type(target).__name__}."
                )
            if self.needs_rank and probs.target_rank is None:
                raise ValueError(
                    f"Expected argument `probs` to carry `target_rank` for {type(self).__name__}, but got "
                    "SampleStatistics computed with `with_rank=False`."
                )
            if self.needs_squared_error and probs.squared_error is None:
                raise ValueError(
                    f"Expected argument `probs` to carry `squared_error` for {type(self).__name__}, but got "
                    "SampleStatistics computed without `with_squared_error=True`."
                )
            return probs
        if target is None:
            raise ValueError("Expected argument `target` (class indices) together with `probs`, but got None.")
        return sample_statistics(
            probs,
            target,
            ignore_index=self.ignore_index,
            from_logits=self.from_logits,
            validate_args=self.validate_args,
            with_rank=self.needs_rank,
            with_squared_error=self.needs_squared_error,
        )
