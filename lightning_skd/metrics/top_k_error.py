"""Modular top-k error."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_skd.functional.classification import (
    _top_k_arg_validation,
    _top_k_error_compute,
    _top_k_error_update,
    _top_k_num_classes_validation,
)
from lightning_skd.functional.statistics import SampleStatistics, _sum_dtype
from lightning_skd.metrics._base import SampleStatisticsMetric


class TopKError(SampleStatisticsMetric):
    """Fraction of samples whose target is not among the ``k`` most probable classes, accumulated over batches.

    Ties are broken by class index (see :func:`~lightning_skd.functional.top_k_error`). A fraction; the PS-KD tables
    show ``100 *`` it. The state is two scalar sums, reduced with ``sum``.

    Args:
        k: Number of top classes that count as a hit.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update (including ``k <= C``).
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = TopKError(k=2)
        >>> metric.update(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]]), torch.tensor([2, 0]))
        >>> metric.update(torch.tensor([[0.4, 0.4, 0.2]]), torch.tensor([1]))
        >>> metric.compute()
        tensor(0.6667)

    """

    errors: Tensor
    total: Tensor

    def __init__(
        self,
        k: int = 1,
        ignore_index: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        _top_k_arg_validation(k)
        self.k = k
        dtype = _sum_dtype(self.device)
        self.add_state("errors", default=torch.tensor(0.0, dtype=dtype), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=dtype), dist_reduce_fx="sum")

    def update(self, probs: Tensor | SampleStatistics, target: Tensor | None = None) -> None:
        """Add a batch: ``probs`` ``(N, C)`` and ``target`` ``(N,)``, or a :class:`SampleStatistics` alone."""
        stats = self.statistics(probs, target)
        if self.validate_args and isinstance(probs, Tensor):
            _top_k_num_classes_validation(self.k, probs.shape[-1])
        errors, total = _top_k_error_update(stats.target_rank, self.k)
        self.errors += errors.to(self.errors.dtype)
        self.total += total.to(self.errors.device, self.errors.dtype)

    def compute(self) -> Tensor:
        """Top-k error of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _top_k_error_compute(self.errors, self.total).float()
