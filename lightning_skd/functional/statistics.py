"""Input checking and the per-sample statistics that every calibration metric is computed from.

All metrics of this package reduce a batch of class probabilities ``(N, C)`` and integer targets ``(N,)`` to three
(or four) numbers per sample (:class:`SampleStatistics`):

* ``confidence``: the maximum probability, ``max_c p_c``;
* ``target_log_prob``: ``log p_target``;
* ``target_rank``: how many classes rank above the target class. A class ranks above the target if its probability is
  strictly larger, or equal with a smaller class index. ``target_rank == 0`` therefore means "the top-1 prediction is
  correct" with the same first-index tie rule as :func:`torch.argmax`, and ``target_rank < k`` means "the target is in
  the top k";
* ``squared_error`` (only when requested): ``sum_c (p_c - 1[c = target])^2``, the per-sample Brier score.

Computing these once and sharing them is what lets :class:`~lightning_skd.metrics.CalibrationMetrics` update all of
its metrics with a single pass over the ``(N, C)`` matrix.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

# On CPU the (N, C) comparisons of `_target_rank` run 3-5x faster on row blocks of ~1M elements than on the whole
# matrix (cache); much smaller blocks mean many small parallel regions, which stall badly on a busy machine.
_CPU_CHUNK_ELEMENTS = 1 << 20


class SampleStatistics(NamedTuple):
    """Per-sample sufficient statistics of a batch, shared by all calibration metrics.

    Attributes:
        confidence: ``(N,)`` maximum class probability, in the computation dtype (float32, or float64 for float64
            inputs).
        target_log_prob: ``(N,)`` log-probability of the target class (``-inf`` is never produced: see
            :func:`sample_statistics`).
        target_rank: ``(N,)`` int64 number of classes ranked above the target (``0`` = correct top-1 prediction), or
            ``None`` when it was not requested.
        squared_error: ``(N,)`` ``sum_c (p_c - 1[c = target])^2`` (the per-sample multi-class Brier score, in
            ``[0, 2]``) in the computation dtype, or ``None`` when it was not requested (the default).

    """

    confidence: Tensor
    target_log_prob: Tensor
    target_rank: Tensor | None
    squared_error: Tensor | None = None

    @property
    def correct(self) -> Tensor:
        """``(N,)`` bool, whether the top-1 prediction (first index among tied maxima) equals the target."""
        if self.target_rank is None:
            raise ValueError("These statistics were computed with `with_rank=False`; `correct` needs `target_rank`.")
        return self.target_rank == 0


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Pick the internal floating dtype: float64 for float64 inputs, float32 for float16/bfloat16/float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _sum_dtype(device: torch.device) -> torch.dtype:
    """Pick the dtype of accumulated sums: float64 (exact counts up to 2**53), except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _sum_tolerance(dtype: torch.dtype) -> float:
    """Return how far a row of probabilities of this dtype may sum away from 1.

    ``1e-2`` (``2 * eps``, i.e. ``0.0156``, for bfloat16): loose enough for probabilities rounded to half precision
    and cast back up (a bfloat16 softmax over 100 classes is off by up to ~3e-3), tight enough to catch logits,
    sigmoid outputs, truncated or unnormalised scores.
    """
    return max(1e-2, 2 * torch.finfo(dtype).eps)


def _statistics_arg_validation(ignore_index: int | None, from_logits: bool, validate_args: bool) -> None:
    """Check the non-tensor arguments shared by every metric."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise ValueError(f"Expected argument `ignore_index` to be None or an int, but got {ignore_index!r}.")
    if not isinstance(from_logits, bool):
        raise ValueError(f"Expected argument `from_logits` to be a bool, but got {from_logits!r}.")
    if not isinstance(validate_args, bool):
        raise ValueError(f"Expected argument `validate_args` to be a bool, but got {validate_args!r}.")


def _probs_target_format_validation(probs: Tensor, target: Tensor, num_classes: int | None, from_logits: bool) -> None:
    """Check types, dtypes and shapes (no data-dependent checks, nothing synchronises with the device)."""
    name = "logits" if from_logits else "probabilities"
    if not isinstance(probs, Tensor):
        raise ValueError(f"Expected argument `probs` to be a torch.Tensor of {name}, but got {type(probs).__name__}.")
    if not isinstance(target, Tensor):
        raise ValueError(f"Expected argument `target` to be a torch.Tensor of class indices, but got {type(target)}.")
    if not probs.is_floating_point():
        raise ValueError(
            f"Expected argument `probs` to be a floating point tensor of {name}, but got dtype {probs.dtype}."
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"Expected argument `target` to be an integer tensor of class indices, but got {target.dtype}."
        )
    if probs.ndim < 2:
        raise ValueError(
            f"Expected argument `probs` to have shape (N, C) (or (..., C)), but got shape {tuple(probs.shape)}."
        )
    if target.shape != probs.shape[:-1]:
        raise ValueError(
            f"Expected argument `target` to have shape {tuple(probs.shape[:-1])} (the shape of `probs` without its "
            f"last, class dimension), but got shape {tuple(target.shape)}."
        )
    if probs.shape[-1] < 1:
        raise ValueError(f"Expected argument `probs` to have at least one class, but got shape {tuple(probs.shape)}.")
    if num_classes is not None and probs.shape[-1] != num_classes:
        raise ValueError(
            f"Expected argument `probs` to have num_classes={num_classes} entries in its last dimension, "
            f"but got shape {tuple(probs.shape)}."
        )
    if probs.device != target.device:
        raise ValueError(
            f"Expected arguments `probs` and `target` on the same device, but got {probs.device} and {target.device}."
        )


def _probs_target_value_validation(probs: Tensor, target: Tensor, from_logits: bool) -> None:
    """Check values: finiteness, range, rows summing to 1, targets in range (``probs``: (N, C), ``target``: (N,))."""
    num_classes = probs.shape[-1]
    if probs.numel() > 0:
        # One fused pass: NaN propagates through min/max and +-inf shows up in them, so `isfinite` over the whole
        # matrix (slow on CPU) is only needed to word the error message.
        lo, hi = (v.item() for v in torch.aminmax(probs))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            n_nan = int(torch.isnan(probs).sum())
            n_inf = int(torch.isinf(probs).sum())
            raise ValueError(
                f"Expected argument `probs` to contain only finite values, but got {n_nan} NaN and {n_inf} infinite "
                "entries."
            )
        if not from_logits:
            tol = _sum_tolerance(probs.dtype)
            if lo < 0 or hi > 1 + tol:
                raise ValueError(
                    f"Expected argument `probs` to contain probabilities in [0, 1], but got values in [{lo:.6g}, "
                    f"{hi:.6g}]. Pass `from_logits=True` if these are logits."
                )
            row_sums = probs.sum(dim=-1, dtype=_compute_dtype(probs.dtype))  # (N,)
            worst, row = (v.item() for v in (row_sums - 1).abs().max(dim=0))
            if worst > tol:
                raise ValueError(
                    f"Expected each row of argument `probs` to sum to 1 (within {tol:.3g} for {probs.dtype}), but row "
                    f"{row} sums to {row_sums[row].item():.6g}. Pass `from_logits=True` if these are logits."
                )
    if target.numel() > 0:
        t_lo, t_hi = (v.item() for v in torch.aminmax(target))
        if t_lo < 0 or t_hi >= num_classes:
            raise ValueError(
                f"Expected argument `target` to contain class indices in [0, {num_classes - 1}] (after dropping "
                f"`ignore_index`), but got values in [{t_lo}, {t_hi}]."
            )


def _drop_ignored(probs: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Flatten to ``(N, C)`` / ``(N,)`` and drop the samples whose target equals ``ignore_index``."""
    probs = probs.reshape(-1, probs.shape[-1])
    target = target.reshape(-1).long()  # int64: also lets uint8/int8 targets compare with e.g. -100
    if ignore_index is not None:
        keep = target != ignore_index  # (N,)
        if not bool(keep.all()):
            probs, target = probs[keep], target[keep]
    return probs, target


def _target_rank(scores: Tensor, target: Tensor, target_score: Tensor) -> Tensor:
    """Count the classes ranked above the target: strictly larger score, or equal score and smaller class index.

    Args:
        scores: ``(N, C)`` probabilities or log-probabilities, compared exactly as given.
        target: ``(N,)`` int64 class indices.
        target_score: ``(N,)`` ``scores[n, target[n]]``, same dtype as ``scores``.

    Returns:
        ``(N,)`` int64 ranks in ``[0, C - 1]``.

    """
    n, c = scores.shape
    classes = torch.arange(c, device=scores.device)  # (C,)
    rank = torch.empty(n, dtype=torch.int64, device=scores.device)
    # Row blocks (not a loop over samples): on CPU they keep the (rows, C) temporaries in cache; on GPUs one block.
    rows = max(1, _CPU_CHUNK_ELEMENTS // c) if scores.device.type == "cpu" else max(n, 1)
    for start in range(0, n, rows):
        block = scores[start : start + rows]  # (rows, C)
        s_t = target_score[start : start + rows, None]  # (rows, 1)
        before = classes < target[start : start + rows, None]  # (rows, C)
        rank[start : start + rows] = (block > s_t).sum(dim=1) + ((block == s_t) & before).sum(dim=1)
    return rank


def _squared_error(scores: Tensor, target: Tensor, from_logits: bool, dtype: torch.dtype) -> Tensor:
    """Per-sample ``sum_c (p_c - 1[c = target])^2`` (the multi-class Brier score of each sample).

    Args:
        scores: ``(N, C)`` probabilities, or log-probabilities if ``from_logits``.
        target: ``(N,)`` int64 class indices.
        from_logits: ``scores`` are log-probabilities (exponentiated first).
        dtype: Computation dtype (float32 or float64): the differences are formed and squared in it.

    Returns:
        ``(N,)`` values in ``dtype``; exactly 0 for a one-hot row on the target.

    """
    n, c = scores.shape
    out = torch.empty(n, dtype=dtype, device=scores.device)
    # Row blocks as in `_target_rank`: the (rows, C) difference matrix is a temporary copy.
    rows = max(1, _CPU_CHUNK_ELEMENTS // c) if scores.device.type == "cpu" else max(n, 1)
    for start in range(0, n, rows):
        block = scores[start : start + rows]  # (rows, C)
        diff = block.exp() if from_logits else block.to(dtype, copy=True)  # (rows, C) p, a fresh tensor
        t = target[start : start + rows, None]  # (rows, 1)
        diff.scatter_add_(1, t, torch.full(t.shape, -1.0, dtype=dtype, device=diff.device))  # p - one_hot(target)
        out[start : start + rows] = diff.square_().sum(dim=1)
    return out


def sample_statistics(
    probs: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    from_logits: bool = False,
    validate_args: bool = True,
    num_classes: int | None = None,
    with_rank: bool = True,
    with_squared_error: bool = False,
) -> SampleStatistics:
    """Reduce probabilities and targets to the per-sample statistics all calibration metrics are computed from.

    The inputs are detached (none of these metrics is differentiable). Order of operations: shape/dtype checks,
    then samples whose target is ``ignore_index`` are dropped (their rows are never looked at, so they may hold
    anything, e.g. NaN logits at padding positions), then value checks, then the statistics.

    ``log p_target`` is ``log(max(p_target, tiny))`` with ``tiny`` the smallest normal number of the computation
    dtype (float32: 1.1755e-38, so a target probability of exactly 0 costs ``-log(tiny) = 87.34`` nats instead of
    ``inf``). With ``from_logits=True`` it is taken from :func:`torch.log_softmax` instead (exact, no clamping: the
    NLL then equals :func:`torch.nn.functional.cross_entropy`), and the confidence is ``exp`` of the largest
    log-probability, i.e. the largest softmax probability.

    Args:
        probs: ``(N, C)`` (or ``(..., C)``) probabilities, or logits if ``from_logits``. Any floating dtype;
            float16/bfloat16 are computed in float32.
        target: ``(N,)`` (or ``(...)``) integer class indices.
        ignore_index: Target value whose samples are dropped before anything else (e.g. ``-100`` for padding tokens).
        from_logits: Apply a softmax over the last dimension first. Inputs are never guessed to be logits.
        validate_args: Check the inputs (NaN/Inf, shapes, dtypes, targets in range, probabilities in ``[0, 1]``
            with rows summing to 1 within ``1e-2``, ``1.6e-2`` for bfloat16). Raises
            ``ValueError`` naming the argument, what was expected and what was given. Costs a few passes over
            ``probs`` and a device synchronisation.
        num_classes: If given, ``probs`` must have this many classes (checked when ``validate_args``).
        with_rank: Compute ``target_rank`` (needed by everything except the NLL).
        with_squared_error: Compute ``squared_error`` (needed by the Brier score only; one more pass over ``probs``).

    Returns:
        :class:`SampleStatistics` with ``N`` entries (after dropping ``ignore_index``).

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6]])
        >>> target = torch.tensor([0, 1, 1])
        >>> stats = sample_statistics(probs, target)
        >>> stats.confidence
        tensor([0.7000, 0.4000, 0.6000])
        >>> stats.target_rank  # sample 1: class 0 ties with the target and has the smaller index
        tensor([0, 1, 1])
        >>> stats.correct
        tensor([ True, False, False])

    """
    if validate_args:
        _statistics_arg_validation(ignore_index, from_logits, validate_args)
        _probs_target_format_validation(probs, target, num_classes, from_logits)
    probs, target = _drop_ignored(probs.detach(), target.detach(), ignore_index)
    if validate_args:
        _probs_target_value_validation(probs, target, from_logits)
    dtype = _compute_dtype(probs.dtype)
    if from_logits:
        scores = torch.log_softmax(probs, dim=-1, dtype=dtype)  # (N, C) log-probabilities
        target_score = scores.gather(1, target[:, None]).squeeze(1)  # (N,)
        confidence = scores.amax(dim=1).exp()
        target_log_prob = target_score
    else:
        scores = probs  # kept in its own dtype: max, gather and comparisons are exact in float16/bfloat16 too
        target_score = scores.gather(1, target[:, None]).squeeze(1)
        confidence = scores.amax(dim=1).to(dtype)
        target_log_prob = target_score.to(dtype).clamp(min=torch.finfo(dtype).tiny).log()
    target_rank = _target_rank(scores, target, target_score) if with_rank else None
    squared_error = _squared_error(scores, target, from_logits, dtype) if with_squared_error else None
    return SampleStatistics(confidence, target_log_prob, target_rank, squared_error)
