"""Expected calibration error (ECE), its root-mean-square (``norm="l2"``) and maximum (MCE, ``norm="max"``) variants."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lightning_skd.functional.statistics import (
    _compute_dtype,
    _statistics_arg_validation,
    _sum_dtype,
    sample_statistics,
)

_NORMS = ("l1", "l2", "max")


def _ece_arg_validation(n_bins: int, norm: str) -> None:
    """Check the ECE-specific arguments."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"Expected argument `n_bins` to be an int >= 1, but got {n_bins!r}.")
    if norm not in _NORMS:
        raise ValueError(f"Expected argument `norm` to be one of {_NORMS}, but got {norm!r}.")


def _bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each confidence: bin ``b`` holds ``(b / n_bins, (b + 1) / n_bins]``, 0 goes to bin 0.

    The inner edges are the float64 numbers nearest to ``b / n_bins``; float32/float16 confidences compare exactly
    against them. Confidence ``1.0`` lands in the last bin (never in an extra one), values above 1 (allowed within
    the row-sum tolerance) too.

    Args:
        confidence: ``(N,)`` floating confidences.
        n_bins: Number of bins.

    Returns:
        ``(N,)`` int64 bin indices in ``[0, n_bins - 1]``.

    """
    edges = torch.arange(1, n_bins, dtype=torch.float64, device=confidence.device) / n_bins  # (n_bins - 1,)
    # right=False: index i such that edges[i - 1] < x <= edges[i], i.e. intervals closed on the right.
    return torch.bucketize(confidence.to(torch.float64), edges, right=False)


def _ece_update(confidence: Tensor, correct: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin sufficient statistics.

    Args:
        confidence: ``(N,)`` confidences.
        correct: ``(N,)`` bool, whether each top-1 prediction is correct.
        n_bins: Number of equal-width bins.

    Returns:
        ``(bin_count, bin_confidence_sum, bin_correct_sum)``, each ``(n_bins,)`` in float64 (float32 on MPS).

    """
    dtype = _sum_dtype(confidence.device)
    index = _bin_index(confidence, n_bins)  # (N,)
    sums = torch.zeros(3, n_bins, dtype=dtype, device=confidence.device)
    values = torch.stack([torch.ones_like(confidence, dtype=dtype), confidence.to(dtype), correct.to(dtype)])  # (3, N)
    # index_add_ has a deterministic CUDA kernel (2-D scatter_add_ and bincount with weights do not).
    sums.index_add_(1, index, values)
    return sums[0], sums[1], sums[2]


def _ece_compute(
    bin_count: Tensor, bin_confidence_sum: Tensor, bin_correct_sum: Tensor, norm: Literal["l1", "l2", "max"] = "l1"
) -> Tensor:
    """Calibration error from the per-bin sums; ``nan`` when there are no samples.

    Args:
        bin_count: ``(n_bins,)`` number of samples per bin.
        bin_confidence_sum: ``(n_bins,)`` sum of confidences per bin.
        bin_correct_sum: ``(n_bins,)`` number of correct predictions per bin.
        norm: ``"l1"`` (ECE), ``"l2"`` (RMS calibration error) or ``"max"`` (MCE, over non-empty bins only).

    Returns:
        Scalar tensor in the dtype of the sums.

    """
    total = bin_count.sum()
    nonempty = bin_count > 0
    safe_count = bin_count.clamp(min=1)
    gap = (bin_correct_sum - bin_confidence_sum).abs() / safe_count  # (n_bins,) |acc_b - conf_b|, 0 for empty bins
    weight = bin_count / total  # (n_bins,) |B_b| / n
    if norm == "l1":
        return (weight * gap).sum()
    if norm == "l2":
        return (weight * gap.square()).sum().sqrt()
    if norm == "max":
        if not bool(nonempty.any()):
            return total.new_tensor(float("nan"))
        return gap[nonempty].max()
    raise ValueError(f"Expected argument `norm` to be one of {_NORMS}, but got {norm!r}.")


def expected_calibration_error(
    probs: Tensor,
    target: Tensor,
    n_bins: int = 15,
    norm: Literal["l1", "l2", "max"] = "l1",
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Compute the expected calibration error of the top-1 prediction over equal-width confidence bins.

    The confidence of a sample is its largest probability; the prediction is its arg-max (first index among ties).
    Samples are put in ``n_bins`` bins :math:`B_b = (b/M, (b+1)/M]` (confidence exactly 0 in the first bin, exactly 1
    in the last bin). With :math:`\mathrm{acc}_b` and :math:`\mathrm{conf}_b` the accuracy and mean confidence of bin
    :math:`b` and :math:`n` samples:

    .. math::
        \mathrm{ECE} = \sum_b \frac{|B_b|}{n} |\mathrm{acc}_b - \mathrm{conf}_b| \quad (\texttt{"l1"}), \qquad
        \sqrt{\sum_b \frac{|B_b|}{n} (\mathrm{acc}_b - \mathrm{conf}_b)^2} \quad (\texttt{"l2"}), \qquad
        \max_{b: |B_b| > 0} |\mathrm{acc}_b - \mathrm{conf}_b| \quad (\texttt{"max"}, \text{MCE}).

    With ``n_bins=10`` this is the rule of the PS-KD code (Kim et al. 2021, ``utils/metric.py``: bins ``(lo, hi]`` of
    width 0.1); the PS-KD paper (Appendix A.1) states the same ``((m-1)/M, m/M]`` rule.

    Units: the result is a fraction in ``[0, 1]``. The PS-KD paper's "ECE (%)" column is ``100 *`` this value.

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        n_bins: Number of equal-width bins over ``[0, 1]``.
        norm: ``"l1"``, ``"l2"`` or ``"max"``, see above.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
        >>> target = torch.tensor([0, 1, 1, 0])
        >>> expected_calibration_error(probs, target, n_bins=10)
        tensor(0.4500)
        >>> expected_calibration_error(probs, target, n_bins=10, norm="max")
        tensor(0.8500)
        >>> expected_calibration_error(probs, target, n_bins=10) * 100  # the PS-KD tables' "ECE (%)"
        tensor(45.)

    """
    _ece_arg_validation(n_bins, norm)
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    bins = _ece_update(stats.confidence, stats.correct, n_bins)
    return _ece_compute(*bins, norm=norm).to(_compute_dtype(probs.dtype))
