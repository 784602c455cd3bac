"""Modular expected calibration error."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_skd.functional.calibration import _ece_arg_validation, _ece_compute, _ece_update
from lightning_skd.functional.statistics import SampleStatistics, _sum_dtype
from lightning_skd.metrics._base import SampleStatisticsMetric


class ExpectedCalibrationError(SampleStatisticsMetric):
    """Expected calibration error over equal-width confidence bins, accumulated over batches.

    See :func:`~lightning_skd.functional.expected_calibration_error` for the definition (bins ``(lo, hi]``,
    confidence 1 in the last bin), the norms and the units (a fraction; the PS-KD tables show ``100 *`` it).
    The state is three ``(n_bins,)`` sums (count, confidence, correct), reduced with ``sum`` across processes.

    Args:
        n_bins: Number of equal-width bins over ``[0, 1]``.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMS calibration error) or ``"max"`` (MCE).
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = ExpectedCalibrationError(n_bins=10)
        >>> metric.update(torch.tensor([[0.95, 0.05], [0.85, 0.15]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.35, 0.65], [0.45, 0.55]]), torch.tensor([1, 0]))
        >>> metric.compute()
        tensor(0.4500)

    """

    bin_count: Tensor
    bin_confidence_sum: Tensor
    bin_correct_sum: Tensor

    def __init__(
        self,
        n_bins: int = 15,
        norm: Literal["l1", "l2", "max"] = "l1",
        ignore_index: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        _ece_arg_validation(n_bins, norm)
        self.n_bins = n_bins
        self.norm = norm
        dtype = _sum_dtype(self.device)
        for name in ("bin_count", "bin_confidence_sum", "bin_correct_sum"):
            self.add_state(name, default=torch.zeros(n_bins, dtype=dtype), dist_reduce_fx="sum")

    def update(self, probs: Tensor | SampleStatistics, target: Tensor | None = None) -> None:
        """Add a batch: ``probs`` ``(N, C)`` and ``target`` ``(N,)``, or a :class:`SampleStatistics` alone."""
        stats = self.statistics(probs, target)
        count, confidence_sum, correct_sum = _ece_update(stats.confidence, stats.correct, self.n_bins)
        self.bin_count += count.to(self.bin_count.dtype)
        self.bin_confidence_sum += confidence_sum.to(self.bin_count.dtype)
        self.bin_correct_sum += correct_sum.to(self.bin_count.dtype)

    def compute(self) -> Tensor:
        """ECE of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _ece_compute(self.bin_count, self.bin_confidence_sum, self.bin_correct_sum, self.norm).float()
