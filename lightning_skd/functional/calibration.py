"""Calibration metrics of the top-1 prediction and the Brier score.

* Expected calibration error (ECE) over equal-width bins, its root-mean-square (``norm="l2"``) and maximum (MCE,
  ``norm="max"``) variants;
* its over-confidence and under-confidence parts (OCE + UCE = L1 ECE, same bins);
* the adaptive ECE over equal-mass bins;
* the multi-class Brier score.
"""

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


def _calibration_split_compute(
    bin_count: Tensor, bin_confidence_sum: Tensor, bin_correct_sum: Tensor
) -> tuple[Tensor, Tensor]:
    """Over- and under-confidence parts of the L1 calibration error from the per-bin sums; ``nan`` for no samples.

    Args:
        bin_count: ``(n_bins,)`` number of samples per bin.
        bin_confidence_sum: ``(n_bins,)`` sum of confidences per bin.
        bin_correct_sum: ``(n_bins,)`` number of correct predictions per bin.

    Returns:
        ``(over, under)``: ``sum_b |B_b| / n * max(conf_b - acc_b, 0)`` and
        ``sum_b |B_b| / n * max(acc_b - conf_b, 0)``, scalars in the dtype of the sums. ``over + under`` is the L1
        calibration error of ``_ece_compute``, exactly (it is computed as that sum).

    """
    total = bin_count.sum()
    signed_gap = (bin_confidence_sum - bin_correct_sum) / bin_count.clamp(min=1)  # (n_bins,) conf_b - acc_b, 0 if empty
    weight = bin_count / total  # (n_bins,) |B_b| / n
    return (weight * signed_gap.clamp(min=0)).sum(), (weight * (-signed_gap).clamp(min=0)).sum()


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
    if norm == "l1":
        over, under = _calibration_split_compute(bin_count, bin_confidence_sum, bin_correct_sum)
        return over + under  # the same as sum_b |B_b| / n * |acc_b - conf_b|, and exactly OCE + UCE
    total = bin_count.sum()
    nonempty = bin_count > 0
    safe_count = bin_count.clamp(min=1)
    gap = (bin_correct_sum - bin_confidence_sum).abs() / safe_count  # (n_bins,) |acc_b - conf_b|, 0 for empty bins
    weight = bin_count / total  # (n_bins,) |B_b| / n
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

    The L1 ECE splits into its over- and under-confidence parts, :func:`overconfidence_error` plus
    :func:`underconfidence_error`; :func:`adaptive_expected_calibration_error` uses equal-mass bins instead.

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


def _binned_statistics(
    probs: Tensor, target: Tensor, n_bins: int, ignore_index: int | None, from_logits: bool, validate_args: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Check the arguments and return the equal-width per-bin sums of ``_ece_update``."""
    _ece_arg_validation(n_bins, "l1")
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    return _ece_update(stats.confidence, stats.correct, n_bins)


def overconfidence_error(
    probs: Tensor,
    target: Tensor,
    n_bins: int = 15,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Compute the over-confidence part of the (L1) expected calibration error.

    With the equal-width bins of :func:`expected_calibration_error` (same ``n_bins``, same ``(lo, hi]`` rule):

    .. math::
        \mathrm{OCE} = \sum_b \frac{|B_b|}{n} \max(\mathrm{conf}_b - \mathrm{acc}_b, 0),

    the part of the ECE due to bins whose mean confidence exceeds their accuracy.
    :func:`underconfidence_error` is the rest, so ``OCE + UCE = ECE`` (``norm="l1"``, same bins). Note that this is not
    the "overconfidence error" of Thulasidasan et al. 2019, which weights each bin's gap by ``conf_b`` as well.

    Units: a fraction in ``[0, 1]``, like the ECE (``100 *`` it in %).

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        n_bins: Number of equal-width bins over ``[0, 1]``.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
        >>> target = torch.tensor([0, 1, 1, 0])
        >>> overconfidence_error(probs, target, n_bins=10)  # (0.85 + 0.55) / 4: the two wrong predictions
        tensor(0.3500)
        >>> overconfidence_error(probs, target, n_bins=10) + underconfidence_error(probs, target, n_bins=10)
        tensor(0.4500)

    """
    over, _ = _calibration_split_compute(
        *_binned_statistics(probs, target, n_bins, ignore_index, from_logits, validate_args)
    )
    return over.to(_compute_dtype(probs.dtype))


def underconfidence_error(
    probs: Tensor,
    target: Tensor,
    n_bins: int = 15,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Compute the under-confidence part of the (L1) expected calibration error.

    With the equal-width bins of :func:`expected_calibration_error` (same ``n_bins``, same ``(lo, hi]`` rule):

    .. math::
        \mathrm{UCE} = \sum_b \frac{|B_b|}{n} \max(\mathrm{acc}_b - \mathrm{conf}_b, 0),

    the part of the ECE due to bins whose accuracy exceeds their mean confidence; ``OCE + UCE = ECE`` (see
    :func:`overconfidence_error`).

    Units: a fraction in ``[0, 1]``, like the ECE (``100 *`` it in %).

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        n_bins: Number of equal-width bins over ``[0, 1]``.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
        >>> target = torch.tensor([0, 1, 1, 0])
        >>> underconfidence_error(probs, target, n_bins=10)  # (0.05 + 0.35) / 4: the two right ones
        tensor(0.1000)

    """
    _, under = _calibration_split_compute(
        *_binned_statistics(probs, target, n_bins, ignore_index, from_logits, validate_args)
    )
    return under.to(_compute_dtype(probs.dtype))


def _adaptive_ece_update(confidence: Tensor, errors: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin sums of the equal-mass bins, with every sample of a tie group counted at the group's accuracy.

    Args:
        confidence: ``(N,)`` confidences, in any order.
        errors: ``(N,)`` 1 for a wrong prediction, 0 for a correct one (any numeric dtype).
        n_bins: Number of bins.

    Returns:
        ``(bin_count, bin_confidence_sum, bin_correct_sum)``, each ``(n_bins,)`` in float64 (float32 on MPS), as
        ``_ece_update``; ``bin_correct_sum`` may be fractional when a tie group straddles a bin boundary. The result
        does not depend on the order of the samples.

    """
    n = confidence.numel()
    device = confidence.device
    dtype = _sum_dtype(device)
    sorted_conf, order = torch.sort(confidence)  # (N,) ascending; the order among ties does not matter below
    correct = 1 - errors[order].to(dtype)  # (N,)
    sums = torch.zeros(3, n_bins, dtype=dtype, device=device)
    if n == 0:
        return sums[0], sums[1], sums[2]
    _, group_size = torch.unique_consecutive(sorted_conf, return_counts=True)  # (G,) tie groups
    correct_through = correct.cumsum(0)[group_size.cumsum(0) - 1]  # (G,) correct samples up to each group's end
    group_correct = torch.diff(correct_through, prepend=correct_through.new_zeros(1))  # (G,) exact: integers < 2**53
    correct = (group_correct / group_size).repeat_interleave(group_size)  # (N,) each sample at its group's accuracy
    # torch.tensor_split of the sorted order: the first n % n_bins bins get one sample more.
    size = torch.full((n_bins,), n // n_bins, dtype=torch.int64, device=device)
    size[: n % n_bins] += 1
    index = torch.arange(n_bins, device=device).repeat_interleave(size, output_size=n)  # (N,) bin of each position
    values = torch.stack([torch.ones_like(correct), sorted_conf.to(dtype), correct])  # (3, N)
    sums.index_add_(1, index, values)
    return sums[0], sums[1], sums[2]


def adaptive_expected_calibration_error(
    probs: Tensor,
    target: Tensor,
    n_bins: int = 15,
    norm: Literal["l1", "l2", "max"] = "l1",
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Compute the expected calibration error of the top-1 prediction over equal-mass (adaptive) confidence bins.

    The ``n`` samples are sorted by confidence (largest probability) in increasing order and the sorted order is cut
    into ``n_bins`` consecutive bins like :func:`torch.tensor_split` does: with ``n = q * n_bins + r``, the first
    ``r`` bins (lowest confidences) get ``q + 1`` samples, the others ``q`` (bins are empty when ``n < n_bins``; empty
    bins have weight 0 and are skipped by ``"max"``). The calibration error is then that of
    :func:`expected_calibration_error`, ``norm`` included, over these bins.

    Ties in confidence: a group of tied samples may straddle a bin boundary, and which of them land in which bin is
    not defined by the confidences. Each bin's accuracy is therefore its expectation over a uniformly random order of
    every tie group, i.e. every sample of a tie group counts with the accuracy of the whole group (as the tie
    convention of :func:`~lightning_skd.functional.aurc`). The value is deterministic, does not depend on the order of
    the samples (DDP gives the same value however the data is sharded) and equals the sorted-order definition when
    there are no ties.

    Units: a fraction in ``[0, 1]``, like the ECE (``100 *`` it in %).

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        n_bins: Number of equal-mass bins.
        norm: ``"l1"``, ``"l2"`` or ``"max"``, see :func:`expected_calibration_error`.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
        >>> target = torch.tensor([0, 1, 1, 0])
        >>> # bins {0.55 wrong, 0.65 right} and {0.85 wrong, 0.95 right}: (|0.5 - 0.6| + |0.5 - 0.9|) / 2
        >>> adaptive_expected_calibration_error(probs, target, n_bins=2)
        tensor(0.2500)

    """
    _ece_arg_validation(n_bins, norm)
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    bins = _adaptive_ece_update(stats.confidence, ~stats.correct, n_bins)
    return _ece_compute(*bins, norm=norm).to(_compute_dtype(probs.dtype))


def _brier_update(squared_error: Tensor) -> tuple[Tensor, Tensor]:
    """Sum ``(per-sample squared errors, number of samples)`` as float64 scalars (float32 on MPS)."""
    dtype = _sum_dtype(squared_error.device)
    return squared_error.sum(dtype=dtype), torch.tensor(squared_error.numel(), dtype=dtype, device=squared_error.device)


def _brier_compute(squared_error_sum: Tensor, total: Tensor) -> Tensor:
    """Average the per-sample Brier scores (``nan`` for no samples)."""
    return squared_error_sum / total


def brier_score(
    probs: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Compute the multi-class Brier score, :math:`\frac{1}{n} \sum_i \sum_c (p_{ic} - \mathbb{1}[y_i = c])^2`.

    Convention: the squared errors are summed over the ``C`` classes and averaged over the samples (Brier 1950's
    original definition), so the score lies in ``[0, 2]`` (0: every sample one-hot on its target). It equals
    ``sklearn.metrics.brier_score_loss(target, probs, labels=range(C), scale_by_half=False)`` (scikit-learn >= 1.7,
    whose default halves it for two classes: the usual binary Brier score, squared error of the positive class only).
    Other conventions exist: averaging over the classes too divides it by ``C``. torchmetrics (1.9) has no multi-class
    Brier score.

    Units: no scaling (lower is better).

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])
        >>> target = torch.tensor([0, 1, 0])
        >>> brier_score(probs, target)  # (0 + (0.25 + 0.25) + (0.64 + 0.04 + 0.36)) / 3
        tensor(0.5133)

    """
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(
        probs, target, ignore_index, from_logits, validate_args, with_rank=False, with_squared_error=True
    )
    return _brier_compute(*_brier_update(stats.squared_error)).to(_compute_dtype(probs.dtype))
