"""All calibration metrics of the PS-KD paper in one :class:`torchmetrics.MetricCollection`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MetricCollection

from lightning_skd.functional.calibration import _ece_arg_validation
from lightning_skd.functional.classification import _top_k_arg_validation
from lightning_skd.functional.statistics import SampleStatistics, _statistics_arg_validation, sample_statistics
from lightning_skd.metrics.adaptive_calibration_error import AdaptiveExpectedCalibrationError
from lightning_skd.metrics.aurc import AURC
from lightning_skd.metrics.brier_score import BrierScore
from lightning_skd.metrics.eaurc import EAURC
from lightning_skd.metrics.expected_calibration_error import (
    ExpectedCalibrationError,
    OverconfidenceError,
    UnderconfidenceError,
)
from lightning_skd.metrics.negative_log_likelihood import NegativeLogLikelihood
from lightning_skd.metrics.plots import _reliability_figure, _risk_coverage_figure
from lightning_skd.metrics.top_k_error import TopKError


class CalibrationMetrics(MetricCollection):
    """ECE (with its over/under-confidence split), adaptive ECE, Brier, AURC, E-AURC, NLL and top-k errors in one pass.

    ``compute()`` returns, each key with ``prefix`` in front:

    * ``ece``: expected calibration error over ``n_bins`` equal-width bins;
    * ``oce`` and ``uce``: its over- and under-confidence parts (same bins, ``oce + uce = ece``);
    * ``adaptive_ece``: the ECE over ``n_bins`` equal-mass bins;
    * ``brier``: the multi-class Brier score (summed over classes, in ``[0, 2]``);
    * ``aurc``, ``eaurc``, ``nll``, and ``top{k}_err`` for every ``k`` in ``top_k`` with ``k <= num_classes``.

    All are fractions (nats for the NLL, no unit for the Brier score; see the functional docstrings for the PS-KD
    units: ECE-like values and errors ``×100``, AURC/E-AURC ``×1000``).

    Each ``update(probs, target)`` checks the inputs, applies ``ignore_index`` and ``from_logits`` and computes the
    per-sample statistics (:func:`~lightning_skd.functional.sample_statistics`, squared errors included) once, then
    hands them to every member. ECE, OCE and UCE form one compute group sharing three ``(n_bins,)`` sums; the
    adaptive ECE, AURC and E-AURC another, sharing a single per-sample ``(confidence, error)`` state. States reduce
    across processes (``sum``, or ``cat`` for the per-sample state) when computing under DDP.

    Args:
        num_classes: Number of classes ``C``; inputs must be ``(N, C)``.
        n_bins: Number of bins of the ECE/OCE/UCE and of the adaptive ECE (15 as in torchmetrics; the PS-KD code uses
            10).
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the inputs of every update.
        prefix: Prepended to every key, e.g. ``"val/"``.
        top_k: The ``k`` of the top-k errors.
        oracle: Oracle of the E-AURC, ``"exact"`` or ``"closed_form"`` (see :func:`~lightning_skd.functional.eaurc`).
        kwargs: Passed to every member :class:`torchmetrics.Metric` (e.g. ``compute_on_cpu=True``).

    Example:
        >>> import torch
        >>> metrics = CalibrationMetrics(num_classes=3, prefix="val/", top_k=(1, 2, 5))
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
        >>> metrics.update(probs, torch.tensor([0, 1, 1, 1]))
        >>> {key: round(value.item(), 4) for key, value in metrics.compute().items()}  # doctest: +NORMALIZE_WHITESPACE
        {'val/adaptive_ece': 0.45, 'val/aurc': 0.3333, 'val/brier': 0.485, 'val/eaurc': 0.125, 'val/ece': 0.45,
         'val/nll': 0.7925, 'val/oce': 0.25, 'val/top1_err': 0.5, 'val/top2_err': 0.0, 'val/uce': 0.2}
        >>> sorted(metrics.plot_figures())
        ['reliability_diagram', 'risk_coverage']
        >>> metrics.reset()

    """

    def __init__(
        self,
        num_classes: int,
        n_bins: int = 15,
        ignore_index: int | None = None,
        from_logits: bool = False,
        validate_args: bool = True,
        prefix: str | None = None,
        top_k: Sequence[int] = (1, 5),
        oracle: Literal["exact", "closed_form"] = "exact",
        **kwargs: Any,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Expected argument `num_classes` to be an int >= 1, but got {num_classes!r}.")
        _ece_arg_validation(n_bins, "l1")
        _statistics_arg_validation(ignore_index, from_logits, validate_args)
        for k in top_k:
            _top_k_arg_validation(k)
        # The members get the already checked and reduced statistics: no checks, logits or ignore_index of their own.
        metrics = {
            "ece": ExpectedCalibrationError(n_bins=n_bins, validate_args=False, **kwargs),
            "oce": OverconfidenceError(n_bins=n_bins, validate_args=False, **kwargs),
            "uce": UnderconfidenceError(n_bins=n_bins, validate_args=False, **kwargs),
            "aurc": AURC(validate_args=False, **kwargs),
            "eaurc": EAURC(oracle=oracle, validate_args=False, **kwargs),
            "adaptive_ece": AdaptiveExpectedCalibrationError(n_bins=n_bins, validate_args=False, **kwargs),
            "brier": BrierScore(validate_args=False, **kwargs),
            "nll": NegativeLogLikelihood(validate_args=False, **kwargs),
        }
        for k in sorted(set(top_k)):
            if k <= num_classes:
                metrics[f"top{k}_err"] = TopKError(k=k, validate_args=False, **kwargs)
        # The first metric of each group holds the shared state, and must also come first in the collection's (sorted)
        # key order: `forward` runs the members one after the other, and torchmetrics (1.9) resets list states by
        # clearing them in place, so a member running before its leader would corrupt the leader's list state.
        groups = [["ece", "oce", "uce"], ["adaptive_ece", "aurc", "eaurc"]]
        super().__init__(metrics, prefix=prefix, compute_groups=groups)
        self.num_classes = num_classes
        self.n_bins = n_bins
        self.ignore_index = ignore_index
        self.from_logits = from_logits
        self.validate_args = validate_args

    def statistics(self, probs: Tensor, target: Tensor) -> SampleStatistics:
        """Per-sample statistics of a batch with this collection's ``ignore_index``, ``from_logits``, checks."""
        return sample_statistics(
            probs,
            target,
            ignore_index=self.ignore_index,
            from_logits=self.from_logits,
            validate_args=self.validate_args,
            num_classes=self.num_classes,
            with_squared_error=True,
        )

    def update(self, probs: Tensor, target: Tensor) -> None:  # type: ignore[override]
        """Add a batch: ``probs`` ``(N, C)`` (or ``(..., C)``) and integer ``target`` ``(N,)`` (or ``(...)``)."""
        super().update(self.statistics(probs, target))

    def forward(self, probs: Tensor, target: Tensor) -> dict[str, Any]:  # type: ignore[override]
        """Add a batch and return the metrics of that batch alone."""
        return super().forward(self.statistics(probs, target))

    def plot_figures(self, title: str | None = None) -> dict[str, Figure]:
        """Reliability diagram and risk-coverage curve of everything seen since the last reset.

        Built from the members' states, synchronised across processes under DDP (call it on every rank, like
        ``compute``; log the figures from rank 0).

        Args:
            title: Optional first title line of the reliability diagram, e.g. ``"val"`` (the ECE line follows).

        Returns:
            ``{"reliability_diagram": Figure, "risk_coverage": Figure}``.

        """
        ece = self._modules["ece"]  # leader of the ECE/OCE/UCE compute group
        with ece.sync_context(should_sync=ece._to_sync, should_unsync=True):
            bins = (ece.bin_count.clone(), ece.bin_confidence_sum.clone(), ece.bin_correct_sum.clone())
        leader = self._modules["adaptive_ece"]  # of the adaptive ECE/AURC/E-AURC compute group: holds the shared state
        with leader.sync_context(should_sync=leader._to_sync, should_unsync=True):
            confidence, errors = (state.clone() for state in leader.selective_state())
        return {
            "reliability_diagram": _reliability_figure(*bins, title=title),
            "risk_coverage": _risk_coverage_figure(confidence, errors),
        }
