"""Selective classification: risk-coverage curve, AURC and excess AURC (E-AURC).

Definitions (Geifman et al. 2019, as used by the PS-KD paper): sort the ``n`` samples by confidence, highest first;
the risk at coverage ``i / n`` is the error rate of the ``i`` most confident samples; AURC is the mean of these ``n``
risks. E-AURC subtracts the AURC of an oracle that ranks every correct prediction above every error.

Ties in confidence: the order of tied samples is not defined by the confidences, so each risk is the expectation
over a uniformly random order of every group of tied samples (equivalently, the errors of a tie group are spread
evenly over its positions). This convention is deterministic, does not depend on the order of the samples (so DDP
gives the same value however the data is sharded), and equals the sorted-order definition whenever there are no ties.
Note that float16/bfloat16 confidences tie a lot. The PS-KD code sorts with ``np.argsort`` (no defined tie order),
codes derived from Moon et al. 2020 with Python's stable ``sorted(reverse=True)`` (ties in input order); both
differ from this convention, and from each other, only when there are ties.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lightning_skd.functional.statistics import _compute_dtype, _statistics_arg_validation, sample_statistics

_ORACLES = ("exact", "closed_form")


def _eaurc_arg_validation(oracle: str) -> None:
    """Check the E-AURC-specific argument."""
    if oracle not in _ORACLES:
        raise ValueError(f"Expected argument `oracle` to be one of {_ORACLES}, but got {oracle!r}.")


def _aurc_update(confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample state kept for AURC: ``(confidence, errors)``, ``(N,)`` each, errors as uint8 (1 = wrong)."""
    return confidence, (~correct).to(torch.uint8)


def _risk_coverage_compute(confidence: Tensor, errors: Tensor) -> tuple[Tensor, Tensor]:
    """Risk at every coverage ``i / n``, ties in confidence averaged (see the module docstring).

    Args:
        confidence: ``(N,)`` confidences.
        errors: ``(N,)`` 1 for a wrong prediction, 0 for a correct one.

    Returns:
        ``(coverage, risk)``, both ``(N,)`` float64: ``coverage[i - 1] = i / n`` and ``risk[i - 1]`` the (expected)
        error rate of the ``i`` most confident samples.

    """
    n = confidence.numel()
    device = confidence.device
    dtype = torch.float32 if device.type == "mps" else torch.float64
    position = torch.arange(1, n + 1, dtype=dtype, device=device)  # (N,) 1-based coverage counts
    if n == 0:
        return position, position.clone()
    sorted_conf, order = torch.sort(confidence, descending=True)
    sorted_err = errors[order].to(dtype)  # (N,)
    _, group_size = torch.unique_consecutive(sorted_conf, return_counts=True)  # (G,) tie groups
    group_end = group_size.cumsum(0)  # (G,) 1-based position of the last sample of each group
    errors_through = sorted_err.cumsum(0)[group_end - 1]  # (G,) errors up to the end of each group
    errors_before = torch.cat([errors_through.new_zeros(1), errors_through[:-1]])  # (G,)
    group_rate = (errors_through - errors_before) / group_size  # (G,) error rate inside each group
    group_start = (group_end - group_size).to(dtype)  # (G,) samples before each group
    # Expected number of errors among the first i samples: errors before the group + (i - start) * group error rate.
    expected_errors = errors_before.repeat_interleave(group_size) + (
        position - group_start.repeat_interleave(group_size)
    ) * group_rate.repeat_interleave(group_size)  # (N,)
    return position / n, expected_errors / position


def _aurc_compute(confidence: Tensor, errors: Tensor) -> Tensor:
    """AURC from the per-sample state: mean risk over the ``n`` coverages (``nan`` for no samples)."""
    _, risk = _risk_coverage_compute(confidence, errors)
    return risk.mean()


def _oracle_aurc(n: int, n_errors: int, oracle: Literal["exact", "closed_form"], dtype: torch.dtype) -> Tensor:
    """AURC of the oracle ordering (every correct sample first) with ``n_errors`` errors among ``n`` samples.

    ``"exact"``: the discrete AURC of that ordering, ``(1/n) * sum_{j=1..e} j / (n - e + j)``, as in the PS-KD code
    (``opt_aurc``). ``"closed_form"``: its continuous limit ``r + (1 - r) ln(1 - r)`` with ``r = e / n`` (Geifman et
    al. 2019, eq. for the optimal AURC; used by Moon et al. 2020's code), which is smaller by about ``r / (2n)``.
    """
    if n == 0:
        return torch.tensor(float("nan"), dtype=dtype)
    if oracle == "exact":
        j = torch.arange(1, n_errors + 1, dtype=dtype)  # (e,)
        return (j / (n - n_errors + j)).sum() / n
    r = torch.tensor(n_errors / n, dtype=dtype)
    return r + torch.xlogy(1 - r, 1 - r)  # xlogy(0, 0) = 0: all wrong -> 1


def _eaurc_compute(confidence: Tensor, errors: Tensor, oracle: Literal["exact", "closed_form"] = "exact") -> Tensor:
    """E-AURC from the per-sample state: AURC minus the oracle's AURC (``nan`` for no samples)."""
    aurc_value = _aurc_compute(confidence, errors)
    optimum = _oracle_aurc(errors.numel(), int(errors.sum(dtype=torch.float64)), oracle, aurc_value.dtype).to(
        aurc_value.device
    )
    return aurc_value - optimum


def _selective_statistics(
    probs: Tensor, target: Tensor, ignore_index: int | None, from_logits: bool, validate_args: bool
) -> tuple[Tensor, Tensor]:
    _statistics_arg_validation(ignore_index, from_logits, validate_args)
    stats = sample_statistics(probs, target, ignore_index, from_logits, validate_args)
    return _aurc_update(stats.confidence, stats.correct)


def risk_coverage(
    probs: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor]:
    """Risk-coverage curve of the top-1 prediction, with the max probability as the confidence score.

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        ``(coverage, risk)``, both ``(N,)`` float64 (float32 on MPS): ``risk[i - 1]`` is the error rate of the ``i``
        most confident samples at coverage ``i / N``, tied confidences averaged (module docstring).

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
        >>> target = torch.tensor([0, 0, 1, 1])
        >>> coverage, risk = risk_coverage(probs, target)
        >>> coverage
        tensor([0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
        >>> risk
        tensor([0.0000, 0.5000, 0.6667, 0.5000], dtype=torch.float64)

    """
    return _risk_coverage_compute(*_selective_statistics(probs, target, ignore_index, from_logits, validate_args))


def aurc(
    probs: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Area under the risk-coverage curve (AURC) of the top-1 prediction, max probability as confidence.

    .. math:: \mathrm{AURC} = \frac{1}{n} \sum_{i=1}^{n} \frac{\#\text{errors among the } i \text{ most confident}}{i}

    This is the PS-KD definition (``calc_aurc`` in its ``utils/metric.py``: ``mean(cumsum(errors) / arange(1, n+1))``
    after sorting by confidence, highest first). Ties in confidence are averaged over their possible orders (see
    :mod:`lightning_skd.functional.selective`).

    Units: the result is a fraction in ``[0, 1]``. The PS-KD code reports ``1000 *`` this value; the paper's tables
    label that column "AURC (×10²)", but their numbers (e.g. 85.18 for a ResNet-50 with 27.07% top-1 error, whose
    AURC must lie between 0.040 and 0.62) are ``10³ *`` AURC, as the code computes.

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
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
        >>> target = torch.tensor([0, 0, 1, 1])
        >>> aurc(probs, target)  # mean of the risks 0, 1/2, 2/3, 1/2
        tensor(0.4167)
        >>> aurc(probs, target) * 1000  # the unit of the PS-KD tables
        tensor(416.6667)

    """
    state = _selective_statistics(probs, target, ignore_index, from_logits, validate_args)
    return _aurc_compute(*state).to(_compute_dtype(probs.dtype))


def eaurc(
    probs: Tensor,
    target: Tensor,
    oracle: Literal["exact", "closed_form"] = "exact",
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
) -> Tensor:
    r"""Excess AURC: AURC minus the AURC of an oracle ordering with the same errors (all correct samples first).

    ``oracle="exact"`` (default) computes the oracle exactly on the ``n`` samples, with ``e`` errors:
    :math:`\frac{1}{n}\sum_{j=1}^{e} \frac{j}{n - e + j}`. This is what the PS-KD code does (``opt_aurc`` in its
    ``utils/metric.py``), and E-AURC is then ``>= 0`` (``0`` iff the confidences rank every correct prediction above
    every error). ``oracle="closed_form"`` uses the continuous limit :math:`r + (1 - r)\ln(1 - r)`, ``r = e / n``
    (the formula of Geifman et al. 2019, used by the code of Moon et al. 2020 and its many copies); it is smaller
    than the exact oracle by about ``r / (2n)``, so that variant's E-AURC is larger by that much (e.g. ``1e-5`` for
    ``n = 10000``, ``r = 0.2``) and can be slightly positive for a perfect ranking.

    Units: a fraction; the PS-KD code reports ``1000 *`` this value (see :func:`aurc`).

    Args:
        probs: ``(N, C)`` probabilities (or logits with ``from_logits=True``), any floating dtype.
        target: ``(N,)`` integer class indices.
        oracle: ``"exact"`` or ``"closed_form"``, see above.
        ignore_index: Samples with this target are dropped before anything else.
        from_logits: Apply a softmax over the last dimension first.
        validate_args: Check the tensors (see :func:`~lightning_skd.functional.sample_statistics`).

    Returns:
        Scalar tensor (float32, or float64 for float64 inputs); ``nan`` if there are no samples.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
        >>> target = torch.tensor([0, 0, 1, 1])
        >>> eaurc(probs, target)  # AURC 5/12 minus the oracle's (0 + 0 + 1/3 + 2/4) / 4 = 5/24
        tensor(0.2083)
        >>> eaurc(probs, target, oracle="closed_form")  # 5/12 - (0.5 + 0.5 * ln 0.5)
        tensor(0.2632)

    """
    _eaurc_arg_validation(oracle)
    state = _selective_statistics(probs, target, ignore_index, from_logits, validate_args)
    return _eaurc_compute(*state, oracle=oracle).to(_compute_dtype(probs.dtype))
