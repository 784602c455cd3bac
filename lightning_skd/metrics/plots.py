"""Reliability diagram and risk-coverage curve as :class:`matplotlib.figure.Figure` objects.

The figures are built with the object-oriented API (``Figure(...)``, no ``pyplot`` state), so they work with any
backend (Agg on servers), are garbage collected normally, and can be logged directly (e.g.
``logger.experiment.add_figure(name, fig)`` for TensorBoard).
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from torch import Tensor

from lightning_skd.functional.calibration import _calibration_split_compute, _ece_arg_validation, _ece_update
from lightning_skd.functional.selective import _aurc_update, _oracle_aurc, _risk_coverage_compute
from lightning_skd.functional.statistics import _statistics_arg_validation, sample_statistics


def _reliability_figure(
    bin_count: Tensor, bin_confidence_sum: Tensor, bin_correct_sum: Tensor, title: str | None = None
) -> Figure:
    """Reliability diagram from per-bin sums (``(n_bins,)`` each, see ``_ece_update``).

    The title has two lines: ``title`` (default ``"Reliability diagram (<n_bins> bins)"``), then the ECE with its
    over- and under-confidence parts, ``"ECE = 12.34% (over 11.00%, under 1.34%)"`` (or ``"no samples"``).
    """
    count = bin_count.detach().double().cpu()
    n_bins = count.numel()
    safe = count.clamp(min=1)
    accuracy = (bin_correct_sum.detach().double().cpu() / safe).numpy()  # (n_bins,), 0 for empty bins
    confidence = (bin_confidence_sum.detach().double().cpu() / safe).numpy()
    nonempty = (count > 0).numpy()
    total = float(count.sum())
    over, under = _calibration_split_compute(
        count, bin_confidence_sum.detach().double().cpu(), bin_correct_sum.detach().double().cpu()
    )
    ece = float(over + under)  # the L1 ECE, exactly as `_ece_compute` computes it
    left = torch.arange(n_bins, dtype=torch.float64).numpy() / n_bins
    width = 1.0 / n_bins

    fig = Figure(figsize=(5.0, 6.0), layout="constrained")
    ax, ax_count = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    ax.bar(left[nonempty], accuracy[nonempty], width=width, align="edge", color="tab:blue", edgecolor="black",
           label="accuracy")  # fmt: skip
    gap = confidence - accuracy
    # Gap bars run from the bin's accuracy to its mean confidence (up: over-confident, down: under-confident);
    # hatched and unfilled so the accuracy bar stays visible underneath.
    ax.bar(left[nonempty], gap[nonempty], bottom=accuracy[nonempty], width=width, align="edge", facecolor="none",
           edgecolor="tab:red", hatch="//", linewidth=1.0, label="gap to mean confidence")  # fmt: skip
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy")
    ece_text = (
        f"ECE = {100 * ece:.2f}% (over {100 * float(over):.2f}%, under {100 * float(under):.2f}%)"
        if total > 0
        else "no samples"
    )
    ax.set_title(f"{title or f'Reliability diagram ({n_bins} bins)'}\n{ece_text}")
    ax.legend(loc="upper left")
    fraction = count.numpy() / total if total > 0 else count.numpy()
    ax_count.bar(left, fraction, width=width, align="edge", color="tab:gray", edgecolor="black")
    ax_count.set_xlabel("confidence (max probability)")
    ax_count.set_ylabel("fraction of samples")
    return fig


def _risk_coverage_figure(
    confidence: Tensor, errors: Tensor, title: str | None = None, max_points: int = 2000
) -> Figure:
    """Risk-coverage curve (and the oracle's) from the per-sample state ``(confidence, errors)``, ``(N,)`` each."""
    confidence, errors = confidence.detach().cpu(), errors.detach().cpu()
    coverage, risk = _risk_coverage_compute(confidence, errors)  # (N,) each
    n, n_errors = errors.numel(), int(errors.sum(dtype=torch.float64))
    fig = Figure(figsize=(5.0, 4.0), layout="constrained")
    ax = fig.subplots()
    if n == 0:
        ax.set_title(title or "Risk-coverage curve: no samples")
        return fig
    aurc = float(risk.mean())
    oracle_aurc = float(_oracle_aurc(n, n_errors, "exact", torch.float64))
    position = torch.arange(1, n + 1, dtype=torch.float64)
    oracle_risk = (position - (n - n_errors)).clamp(min=0) / position  # all correct samples first
    # Plot at most `max_points` evenly spaced coverages (a million-point line is slow and looks the same).
    keep = torch.linspace(0, n - 1, min(n, max_points)).round().long().unique()
    ax.plot(coverage[keep].numpy(), risk[keep].numpy(), color="tab:blue",
            label=f"model: AURC = {1000 * aurc:.2f}e-3")  # fmt: skip
    ax.plot(coverage[keep].numpy(), oracle_risk[keep].numpy(), color="gray", linestyle="--",
            label=f"oracle: AURC = {1000 * oracle_aurc:.2f}e-3")  # fmt: skip
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("coverage")
    ax.set_ylabel("risk (error rate of the covered samples)")
    ax.set_title(title or f"Risk-coverage curve, E-AURC = {1000 * (aurc - oracle_aurc):.2f}e-3")
    ax.legend(loc="upper left")
    return fig


def reliability_diagram(
    probs: Tensor,
    target: Tensor,
    n_bins: int = 15,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
    title: str | None = None,
) -> Figure:
    """Reliability diagram: accuracy per confidence bin, gap bars to the bin's mean confidence, ECE in the title.

    The bins are those of :func:`~lightning_skd.functional.expected_calibration_error`; a lower panel shows the
    fraction of samples per bin. The title's second line gives the ECE and its split into the over- and
    under-confidence parts (:func:`~lightning_skd.functional.overconfidence_error` and
    :func:`~lightning_skd.functional.underconfidence_error`, which sum to it), in %.

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``).
        target: ``(N,)`` integer class indices.
        n_bins: Number of equal-width bins.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors.
        title: First line of the title (default ``"Reliability diagram (<n_bins> bins)"``); the ECE line follows.

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.95, 0.05], [0.85, 0.15], [0.35, 0.65], [0.45, 0.55]])
        >>> fig = reliability_diagram(probs, torch.tensor([0, 1, 1, 0]), n_bins=10)
        >>> print(fig.axes[0].get_title())
        Reliability diagram (10 bins)
        ECE = 45.00% (over 35.00%, under 10.00%)

    """
    _ece_arg_validation(n_bins, "l1")
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    return _reliability_figure(*_ece_update(stats.confidence, stats.correct, n_bins), title=title)


def risk_coverage_curve(
    probs: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
    title: str | None = None,
    max_points: int = 2000,
) -> Figure:
    """Risk-coverage curve of the model and of the oracle ordering, with AURC values (×10³) in the legend.

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``).
        target: ``(N,)`` integer class indices.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors.
        title: Figure title (default: the E-AURC).
        max_points: At most this many evenly spaced coverages are drawn.

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
        >>> fig = risk_coverage_curve(probs, torch.tensor([0, 0, 1, 1]))
        >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
        ['model: AURC = 416.67e-3', 'oracle: AURC = 208.33e-3']

    """
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    return _risk_coverage_figure(*_aurc_update(stats.confidence, stats.correct), title=title, max_points=max_points)
