"""Modular area under the risk-coverage curve."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import dim_zero_cat

from lightning_skd.functional.selective import _aurc_compute, _aurc_update
from lightning_skd.functional.statistics import SampleStatistics
from lightning_skd.metrics._base import SampleStatisticsMetric


class _ConfidenceErrorStateMetric(SampleStatisticsMetric):
    """State and update shared by the metrics of the per-sample ``(confidence, error)`` pairs (``cat`` reduced).

    The state names are the same in every subclass, so inside a :class:`torchmetrics.MetricCollection` such metrics
    can share one state as a compute group.
    """

    confidence: list[Tensor]
    errors: list[Tensor]

    def __init__(
        self, ignore_index: int | None = None, from_logits: bool = False, validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        self.add_state("confidence", default=[], dist_reduce_fx="cat")
        self.add_state("errors", default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor | SampleStatistics, target: Tensor | None = None) -> None:
        """Add a batch: ``probs`` ``(N, C)`` and ``target`` ``(N,)``, or a :class:`SampleStatistics` alone."""
        stats = self.statistics(probs, target)
        confidence, errors = _aurc_update(stats.confidence, stats.correct)
        # Both in the metric's dtype (float32 unless `set_dtype`/`.double()`): uniform across ranks, including the
        # empty placeholder torchmetrics gathers from a rank that saw no data.
        self.confidence.append(confidence.to(self.dtype))
        self.errors.append(errors.to(self.dtype))

    def selective_state(self) -> tuple[Tensor, Tensor]:
        """Return the concatenated ``(confidence, errors)``, ``(N,)`` each (empty if nothing was seen)."""
        if isinstance(self.confidence, list) and not self.confidence:
            empty = torch.zeros(0, dtype=self.dtype, device=self.device)
            return empty, empty.clone()
        return dim_zero_cat(self.confidence), dim_zero_cat(self.errors)


class AURC(_ConfidenceErrorStateMetric):
    """Area under the risk-coverage curve (max probability as confidence), accumulated over batches.

    See :func:`~lightning_skd.functional.aurc` for the definition, the tie convention (ties in confidence averaged
    over their orders, so the value does not depend on how samples are split over batches or processes) and the
    units (a fraction; the PS-KD tables show ``1000 *`` it). The state is the per-sample ``(confidence, error)``
    pairs, stored in the metric's dtype (float32, i.e. 8 bytes per sample; ``metric.set_dtype(torch.float64)`` keeps
    float64 confidences unrounded) and concatenated across processes.

    Args:
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric` (``compute_on_cpu=True`` keeps the state off the GPU).

    Example:
        >>> import torch
        >>> metric = AURC()
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
        >>> metric.update(torch.tensor([[0.4, 0.6], [0.7, 0.3]]), torch.tensor([1, 1]))
        >>> metric.compute()
        tensor(0.4167)

    """

    def __init__(
        self, ignore_index: int | None = None, from_logits: bool = False, validate_args: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)

    def compute(self) -> Tensor:
        """AURC of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _aurc_compute(*self.selective_state()).float()
