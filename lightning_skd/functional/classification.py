"""Negative log-likelihood and top-k error computed from class probabilities."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_skd.functional.statistics import (
    _compute_dtype,
    _statistics_arg_validation,
    _sum_dtype,
    sample_statistics,
)


def _top_k_arg_validation(k: int) -> None:
    """Check ``k``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"Expected argument `k` to be an int >= 1, but got {k!r}.")


def _top_k_num_classes_validation(k: int, num_classes: int) -> None:
    """Check that ``k`` does not exceed the number of classes."""
    if k > num_classes:
        raise ValueError(f"Expected argument `k` to be at most the number of classes {num_classes}, but got {k}.")


def _nll_update(target_log_prob: Tensor) -> tuple[Tensor, Tensor]:
    """Sum ``(-log p_target, number of samples)`` as float64 scalars (float32 on MPS)."""
    dtype = _sum_dtype(target_log_prob.device)
    return -target_log_prob.sum(dtype=dtype), torch.tensor(
        target_log_prob.numel(), dtype=dtype, device=target_log_prob.device
    )


def _nll_compute(nll_sum: Tensor, total: Tensor) -> Tensor:
    """Average the NLL (``nan`` for no samples)."""
    return nll_sum / total


def _top_k_error_update(target_rank: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Count ``(samples whose target is not in the top k, samples)`` as float64 scalars."""
    dtype = _sum_dtype(target_rank.device)
    return (target_rank >= k).sum().to(dtype), torch.tensor(target_rank.numel(), dtype=dtype, device=target_rank.device)


def _top_k_error_compute(errors: Tensor, total: Tensor) -> Tensor:
    """Divide errors by samples (``nan`` for no samples)."""
    return errors / total


def negative_log_likelihood(
    probs: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Compute the mean negative log-likelihood of the target, :math:`-\frac{1}{n}\sum_i \log p_{i, y_i}`, in nats.

    A target probability of exactly 0 is clamped to the smallest normal number of the computation dtype (float32:
    ``1.1755e-38``, i.e. ``87.34`` nats; float64 inputs: ``2.2251e-308``, i.e. ``708.40`` nats) instead of giving
    ``inf``. With ``from_logits=True`` the log-probabilities come from :func:`torch.log_softmax` without clamping, so
    the value equals :func:`torch.nn.functional.cross_entropy` (mean reduction, same ``ignore_index``).

    Units: nats per sample, as in the PS-KD paper's "NLL" column (no scaling).

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a (log-)softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
        >>> target = torch.tensor([0, 1, 0])
        >>> negative_log_likelihood(probs, target)  # (ln 2 + ln 4/3 + 0) / 3
        tensor(0.3269)
        >>> negative_log_likelihood(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))  # p = 0: clamped, not inf
        tensor(87.3365)

    """
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args, with_rank=False)
    return _nll_compute(*_nll_update(stats.target_log_prob)).to(_compute_dtype(probs.dtype))


def top_k_error(
    probs: Tensor,
    target: Tensor,
    k: int = 1,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    """Compute the fraction of samples whose target class is not among the ``k`` most probable classes.

    Ties are broken deterministically by class index: a class ranks above the target if its probability is larger,
    or equal with a smaller index (``k = 1`` is exactly ``argmax != target`` with :func:`torch.argmax`'s first-index
    rule). :func:`torch.topk` leaves ties unspecified, so it can disagree on tied inputs.

    Units: a fraction; the PS-KD paper's "Top-1/Top-5 Error (%)" columns are ``100 *`` this value.

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        k: Number of top classes that count as a hit, ``1 <= k <= C``.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`) and ``k <= C``.

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6], [0.4, 0.4, 0.2]])
        >>> target = torch.tensor([1, 2, 1])
        >>> top_k_error(probs, target, k=1)  # sample 2: class 0 ties with the target and has the smaller index
        tensor(0.6667)
        >>> top_k_error(probs, target, k=2)
        tensor(0.)

    """
    _top_k_arg_validation(k)
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    if validate_args:
        _top_k_num_classes_validation(k, probs.shape[-1])
    return _top_k_error_compute(*_top_k_error_update(stats.target_rank, k)).to(_compute_dtype(probs.dtype))
