"""Modular negative log-likelihood."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_skd.functional.classification import _nll_compute, _nll_update
from lightning_skd.functional.statistics import SampleStatistics, _sum_dtype
from lightning_skd.metrics._base import SampleStatisticsMetric


class NegativeLogLikelihood(SampleStatisticsMetric):
    """Mean negative log-likelihood of the target class in nats, accumulated over batches.

    See :func:`~lightning_skd.functional.negative_log_likelihood` for the handling of ``p = 0`` (clamped to the
    computation dtype's smallest normal number) and of logits. The state is two scalar sums, reduced with ``sum``.

    Args:
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a log-softmax over the last dimension first (then equal to the cross-entropy).
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = NegativeLogLikelihood(ignore_index=-100)
        >>> metric.update(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[1.0, 0.0], [0.3, 0.7]]), torch.tensor([0, -100]))
        >>> metric.compute()
        tensor(0.3269)

    """

    higher_is_better = False
    needs_rank = False
    nll_sum: Tensor
    total: Tensor

    def __init__(
        self, ignore_index: int | None = None, from_logits: bool = False, validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        dtype = _sum_dtype(self.device)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=dtype), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0, dtype=dtype), dist_reduce_fx="sum")

    def update(self, probs: Tensor | SampleStatistics, target: Tensor | None = None) -> None:
        """Add a batch: ``probs`` ``(N, C)`` and ``target`` ``(N,)``, or a :class:`SampleStatistics` alone."""
        nll_sum, total = _nll_update(self.statistics(probs, target).target_log_prob)
        self.nll_sum += nll_sum.to(self.nll_sum.dtype)
        self.total += total.to(self.nll_sum.device, self.nll_sum.dtype)

    def compute(self) -> Tensor:
        """Mean NLL of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _nll_compute(self.nll_sum, self.total).float()
