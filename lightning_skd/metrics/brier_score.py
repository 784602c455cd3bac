"""Modular multi-class Brier score."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_skd.functional.calibration import _brier_compute, _brier_update
from lightning_skd.functional.statistics import SampleStatistics, _sum_dtype
from lightning_skd.metrics._base import SampleStatisticsMetric


class BrierScore(SampleStatisticsMetric):
    """Multi-class Brier score ``mean_i sum_c (p_ic - 1[y_i = c])^2``, accumulated over batches.

    See :func:`~lightning_skd.functional.brier_score` for the convention (summed over classes, in ``[0, 2]``). The
    state is two scalar sums, reduced with ``sum``. A :class:`SampleStatistics` passed to ``update`` must carry
    ``squared_error`` (``sample_statistics(..., with_squared_error=True)``).

    Args:
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = BrierScore()
        >>> metric.update(torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.2, 0.2, 0.6]]), torch.tensor([0]))
        >>> metric.compute()
        tensor(0.5133)

    """

    needs_rank = False
    needs_squared_error = True
    squared_error_sum: Tensor
    total: Tensor

    def __init__(
        self, ignore_index: int | None = None, from_logits: bool = False, validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        dtype = _sum_dtype(self.device)
        self.add_state("squared_error_sum", default=torch.tensor(0.0, dtype=dtype), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=dtype), dist_reduce_fx="sum")

    def update(self, probs: Tensor | SampleStatistics, target: Tensor | None = None) -> None:
        """Add a batch: ``probs`` ``(N, C)`` and ``target`` ``(N,)``, or a :class:`SampleStatistics` alone."""
        squared_error_sum, total = _brier_update(self.statistics(probs, target).squared_error)
        self.squared_error_sum += squared_error_sum.to(self.squared_error_sum.dtype)
        self.total += total.to(self.total.device, self.total.dtype)

    def compute(self) -> Tensor:
        """Brier score of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _brier_compute(self.squared_error_sum, self.total).float()
