"""Modular expected calibration error and its over- and under-confidence parts."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_skd.functional.calibration import (
    _calibration_split_compute,
    _ece_arg_validation,
    _ece_compute,
    _ece_update,
)
from lightning_skd.functional.statistics import SampleStatistics, _sum_dtype
from lightning_skd.metrics._base import SampleStatisticsMetric


class _ConfidenceBinsMetric(SampleStatisticsMetric):
    """State and update shared by the equal-width-bin metrics: three ``(n_bins,)`` sums, reduced with ``sum``.

    The state names are the same in every subclass, so inside a :class:`torchmetrics.MetricCollection` metrics with
    the same ``n_bins`` can share it as one compute group.
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


class ExpectedCalibrationError(_ConfidenceBinsMetric):
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

    def __init__(
        self,
        n_bins: int = 15,
        norm: Literal["l1", "l2", "max"] = "l1",
        ignore_index: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bins, norm, ignore_index, from_logits, validate_args, **kwargs)
        self.norm = norm

    def compute(self) -> Tensor:
        """ECE of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        return _ece_compute(self.bin_count, self.bin_confidence_sum, self.bin_correct_sum, self.norm).float()


class OverconfidenceError(_ConfidenceBinsMetric):
    """Over-confidence part of the (L1) ECE over equal-width confidence bins, accumulated over batches.

    See :func:`~lightning_skd.functional.overconfidence_error`: ``sum_b |B_b| / n * max(conf_b - acc_b, 0)`` over
    the bins of :class:`ExpectedCalibrationError`; with :class:`UnderconfidenceError` it sums to the ECE. Same state
    as :class:`ExpectedCalibrationError` (three ``(n_bins,)`` sums reduced with ``sum``), so the three can share it
    as one compute group.

    Args:
        n_bins: Number of equal-width bins over ``[0, 1]``.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = OverconfidenceError(n_bins=10)
        >>> metric.update(torch.tensor([[0.95, 0.05], [0.85, 0.15]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.35, 0.65], [0.45, 0.55]]), torch.tensor([1, 0]))
        >>> metric.compute()
        tensor(0.3500)

    """

    def compute(self) -> Tensor:
        """Over-confidence error of everything seen since the last reset (``nan`` if nothing), as float32."""
        over, _ = _calibration_split_compute(self.bin_count, self.bin_confidence_sum, self.bin_correct_sum)
        return over.float()


class UnderconfidenceError(_ConfidenceBinsMetric):
    """Under-confidence part of the (L1) ECE over equal-width confidence bins, accumulated over batches.

    See :func:`~lightning_skd.functional.underconfidence_error`: ``sum_b |B_b| / n * max(acc_b - conf_b, 0)`` over
    the bins of :class:`ExpectedCalibrationError`; with :class:`OverconfidenceError` it sums to the ECE. Same state
    as :class:`ExpectedCalibrationError`.

    Args:
        n_bins: Number of equal-width bins over ``[0, 1]``.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric`.

    Example:
        >>> import torch
        >>> metric = UnderconfidenceError(n_bins=10)
        >>> metric.update(torch.tensor([[0.95, 0.05], [0.85, 0.15]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.35, 0.65], [0.45, 0.55]]), torch.tensor([1, 0]))
        >>> metric.compute()
        tensor(0.1000)

    """

    def compute(self) -> Tensor:
        """Under-confidence error of everything seen since the last reset (``nan`` if nothing), as float32."""
        _, under = _calibration_split_compute(self.bin_count, self.bin_confidence_sum, self.bin_correct_sum)
        return under.float()
