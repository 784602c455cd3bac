"""Modular adaptive (equal-mass) expected calibration error."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from lightning_skd.functional.calibration import _adaptive_ece_update, _ece_arg_validation, _ece_compute
from lightning_skd.metrics.aurc import _ConfidenceErrorStateMetric


class AdaptiveExpectedCalibrationError(_ConfidenceErrorStateMetric):
    """Expected calibration error over equal-mass confidence bins, accumulated over batches.

    See :func:`~lightning_skd.functional.adaptive_expected_calibration_error` for the bins (the confidence-sorted
    samples cut into ``n_bins`` consecutive chunks as :func:`torch.tensor_split` does) and the tie convention (tie
    groups counted at their accuracy, so the value does not depend on how samples are split over batches or
    processes). Equal-mass bins need every confidence: the state is the per-sample ``(confidence, error)`` pairs of
    :class:`~lightning_skd.metrics.AURC` (same names, dtype and ``cat`` reduction, so the two can share it as one
    compute group).

    Args:
        n_bins: Number of equal-mass bins.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMS calibration error) or ``"max"`` (MCE).
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        kwargs: Passed to :class:`torchmetrics.Metric` (``compute_on_cpu=True`` keeps the state off the GPU).

    Example:
        >>> import torch
        >>> metric = AdaptiveExpectedCalibrationError(n_bins=2)
        >>> metric.update(torch.tensor([[0.95, 0.05], [0.85, 0.15]]), torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([[0.35, 0.65], [0.45, 0.55]]), torch.tensor([1, 0]))
        >>> metric.compute()
        tensor(0.2500)

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
        super().__init__(ignore_index=ignore_index, from_logits=from_logits, validate_args=validate_args, **kwargs)
        _ece_arg_validation(n_bins, norm)
        self.n_bins = n_bins
        self.norm = norm

    def compute(self) -> Tensor:
        """Adaptive ECE of everything seen since the last reset (``nan`` if nothing), as a float32 scalar."""
        bins = _adaptive_ece_update(*self.selective_state(), self.n_bins)
        return _ece_compute(*bins, norm=self.norm).float()
