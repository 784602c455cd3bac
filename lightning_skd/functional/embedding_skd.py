"""Self-knowledge distillation from the word-embedding space (Hahn & Choi, 2019), as pure functions.

For a position with target ``t`` and current prediction ``n = argmax_k z_k``, the soft target of Eq. (8) is

    q_n = min(exp(-sigma * ||w_t - w_n||_2), 0.5),    q_t = 1 - q_n,

with ``w_k`` the rows of the output word-embedding matrix ``W`` (the softmax layer's weight, shape ``(V, d)``), and
the objective of Eq. (12) (Eq. (11) when ``lam`` is given) is

    J = -(1 - alpha * lam * q_n) log p_t - alpha * lam * q_n log p_n.

``q_n`` is a *target*: it is computed under ``torch.no_grad`` from a detached ``W``, so no gradient reaches ``W`` (or
anything else) through it, exactly as the teacher probabilities of ordinary knowledge distillation are constants.
Gradients reach the logits only through ``log p_t`` and ``log p_n``.

Memory: besides the logits the model already holds, the loss keeps only ``O(N)`` values for the backward pass (the
log-partition, ``n`` and the weight ``alpha * lam * q_n``) and gathers two ``(N, d)`` row sets ``W[t]``, ``W[n]``
(freed before returning). The log-softmax is never materialised: the forward pass works through the logits one row
chunk at a time (a temporary of at most 30 MiB on CPU, 256 MiB elsewhere) and the backward pass writes the single
``(N, V)`` gradient of the logits directly, ``g * softmax(z)`` minus the two sparse target weights, so no
soft-target, one-hot or log-probability ``(N, V)`` tensor ever exists. (Plain ``F.cross_entropy`` keeps its
``(N, V)`` log-softmax for the backward pass and allocates two more ``(N, V)`` tensors in it.) Contiguous logits
avoid a copy in ``reshape``.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lightning_skd._constants import IGNORE_INDEX

__all__ = [
    "EmbeddingSKDOutput",
    "embedding_skd_loss_with_stats",
    "embedding_skd_loss",
    "embedding_skd_soft_target",
    "mean_nearest_neighbour_distance",
    "sigma_from_nearest_neighbours",
    "skd_alpha",
]

Reduction = Literal["none", "mean", "sum", "sequence"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum", "sequence")


class EmbeddingSKDOutput(NamedTuple):
    """The SKD loss and the statistics of Fig. 3a of the paper, all reduced as asked (statistics detached).

    Attributes:
        loss: The reduced loss (shape depends on ``reduction``).
        q_n: Mean clipped ``q_n`` over the non-padding positions where the prediction is wrong (``n != t``); ``0.``
            when there is none. Where ``n == t`` the objective is plain cross-entropy and ``q_n`` plays no role.
        mismatch: Fraction of the non-padding positions where ``n != t`` (the training error rate).
        q_n_clipped: Number of those mismatched positions whose ``q_n`` sits at the clip ``q_max`` (there the soft
            target is a fixed ``1 - q_max`` / ``q_max`` split, whatever the distance: ``sigma`` is too small).
        num_mismatched: Number of mismatched non-padding positions.

    """

    loss: Tensor
    q_n: Tensor
    mismatch: Tensor
    q_n_clipped: Tensor
    num_mismatched: Tensor


def skd_alpha(step: int, warmup_steps: int, eta: float, max_alpha: float = 1.0) -> float:
    """Return the ``alpha`` used at optimizer step ``step`` (0-based) by Algorithm 1 of the paper.

    Algorithm 1 trains ``K = warmup_steps`` steps with cross-entropy (``alpha = 0``), then repeats "train with Eq. (12),
    then ``alpha += eta``". Hence the step with 0-based index ``s`` uses::

        alpha(s) = clamp((s - K) * eta, 0, max_alpha)

    i.e. steps ``0 .. K`` use ``alpha = 0`` (step ``K`` is the first SKD step, still with ``alpha = 0``), step ``K + 1``
    uses ``eta``, step ``K + j`` uses ``j * eta``, and ``alpha`` saturates at ``max_alpha`` from step
    ``K + ceil(max_alpha / eta)`` on. ``step`` is the number of optimizer steps already taken (Lightning's
    ``trainer.global_step`` at the start of a batch).

    Args:
        step: Number of optimizer steps already completed (``>= 0``).
        warmup_steps: ``K``, the number of cross-entropy-only steps (``>= 0``).
        eta: Per-step increment of ``alpha`` (``> 0``).
        max_alpha: Final value of ``alpha`` (the paper: 1).

    Returns:
        ``alpha`` as a Python float.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> [skd_alpha(s, warmup_steps=500, eta=0.0002) for s in (499, 500, 501, 502)]
        [0.0, 0.0, 0.0002, 0.0004]
        >>> skd_alpha(10**6, warmup_steps=500, eta=0.0002)
        1.0

    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    check_schedule_args(warmup_steps, eta, max_alpha)
    return float(min(max(step - warmup_steps, 0) * eta, max_alpha))


def check_schedule_args(warmup_steps: int, eta: float, max_alpha: float = 1.0) -> None:
    """Raise a ``ValueError`` naming the argument when ``K``, ``eta`` or ``max_alpha`` is out of range."""
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps (K) must be an integer >= 0, got {warmup_steps!r}")
    if not isinstance(eta, (int, float)) or isinstance(eta, bool) or not math.isfinite(eta) or eta <= 0:
        raise ValueError(f"eta must be a finite float > 0, got {eta!r}")
    if not isinstance(max_alpha, (int, float)) or isinstance(max_alpha, bool) or not 0 < max_alpha <= 1:
        raise ValueError(f"max_alpha must be in (0, 1], got {max_alpha!r}")


def check_sigma(sigma: float) -> None:
    """Raise a ``ValueError`` unless ``sigma`` is a finite float ``> 0``."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a finite float > 0, got {sigma!r}")


def check_reduction(reduction: str) -> None:
    """Raise a ``ValueError`` unless ``reduction`` is one of ``"none"``, ``"mean"``, ``"sum"``, ``"sequence"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_unit_interval(name: str, value: float, *, allow_zero: bool = True) -> None:
    """Raise a ``ValueError`` unless ``value`` lies in ``[0, 1]`` (``(0, 1]`` when ``allow_zero`` is false)."""
    low_ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be a float in {interval}, got {value!r}")


def _check_shapes(logits: Tensor, targets: Tensor, weight: Tensor) -> None:
    if logits.ndim < 1:
        raise ValueError("logits must have shape (..., V), got a 0-dim tensor")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets must have the shape of logits without the class axis, expected {tuple(logits.shape[:-1])}, "
            f"got {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(f"targets must hold integer class indices, got dtype {targets.dtype}")
    if weight.ndim != 2 or weight.shape[0] != logits.shape[-1]:
        raise ValueError(
            f"weight must be the (V, d) output word-embedding matrix with V = logits.shape[-1] = {logits.shape[-1]}, "
            f"got shape {tuple(weight.shape)}"
        )


@torch.no_grad()
def embedding_skd_soft_target(
    targets: Tensor, predictions: Tensor, weight: Tensor, sigma: float | Tensor, q_max: float = 0.5
) -> Tensor:
    """``q_n = min(exp(-sigma * ||w_t - w_n||_2), q_max)`` of Eq. (8), without gradient.

    Args:
        targets: Target indices ``t``, any shape ``(...)``, values in ``[0, V)``.
        predictions: Predicted indices ``n``, same shape.
        weight: Output word-embedding matrix ``W``, shape ``(V, d)``; only read (detached).
        sigma: Scale ``sigma > 0`` (float or 0-dim tensor).
        q_max: Clip value (the paper: 0.5).

    Returns:
        ``q_n`` with the shape of ``targets``, in the dtype of ``weight`` (at least float32). It is ``q_max`` where
        ``n == t`` (distance 0).

    Example:
        >>> w = torch.tensor([[0.0, 0.0], [3.0, 4.0], [30.0, 40.0]])
        >>> embedding_skd_soft_target(torch.tensor([0, 0, 0]), torch.tensor([0, 1, 2]), w, sigma=0.1)
        tensor([0.5000, 0.5000, 0.0067])

    """
    w = weight.detach()
    dtype = torch.promote_types(w.dtype, torch.float32)
    w_t = w[targets].to(dtype)  # (..., d)
    w_n = w[predictions].to(dtype)  # (..., d)
    distance = torch.linalg.vector_norm(w_t - w_n, dim=-1)  # (...)
    return torch.exp(-sigma * distance).clamp_(max=q_max)


# Row chunks of the (N, V) passes. On CPU below glibc's largest mmap threshold (32 MiB), so the chunk buffer is reused
# from the heap instead of being page-faulted afresh on every call, yet large enough that few parallel regions run;
# elsewhere large, so that a GPU runs few, full kernels. Either way the forward pass never holds an (N, V) temporary.
_CHUNK_BYTES = {"cpu": 30 * 2**20}
_DEFAULT_CHUNK_BYTES = 256 * 2**20


def _chunk_rows(logits: Tensor) -> int:
    budget = _CHUNK_BYTES.get(logits.device.type, _DEFAULT_CHUNK_BYTES)
    return max(1, budget // (logits.shape[1] * logits.element_size()))


@torch.no_grad()
def _argmax_logsumexp(logits: Tensor, acc: torch.dtype) -> tuple[Tensor, Tensor]:
    """Row argmax ``n`` and log-partition ``lse`` of ``(N, V)`` logits; temporaries of one row chunk only."""
    num_rows, vocab = logits.shape
    predictions = torch.empty(num_rows, dtype=torch.long, device=logits.device)  # (N,)
    lse = torch.empty(num_rows, dtype=acc, device=logits.device)  # (N,)
    rows = min(_chunk_rows(logits), num_rows)
    buffer = torch.empty(rows, vocab, dtype=logits.dtype, device=logits.device)  # (chunk, V), reused
    for start in range(0, num_rows, rows):
        chunk = logits[start : start + rows]  # (c, V)
        maxes, predictions[start : start + rows] = chunk.max(dim=1)  # (c,)
        shifted = torch.sub(chunk, maxes.unsqueeze(1), out=buffer[: chunk.shape[0]]).exp_()  # (c, V)
        lse[start : start + rows] = shifted.sum(dim=1, dtype=acc).log_() + maxes.to(acc)
    return predictions, lse


class _SKDNLL(torch.autograd.Function):
    """Per-position ``lse(z) - (1 - a) z_t - a z_n`` with a hand-written backward that allocates one ``(N, V)`` tensor.

    ``a`` (the SKD weight ``alpha * lam * q_n``) and ``lse`` (the log-partition of ``z``) come in precomputed; ``a``
    is a constant. The gradient w.r.t. ``z`` is ``g * (softmax(z) - (1 - a) e_t - a e_n)``, written chunk by chunk
    straight into the gradient tensor.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, predictions: Tensor, lse: Tensor, coef: Tensor) -> Tensor:
        # logits (N, V); targets, predictions (N,) long; lse (N,) and coef (N,) in the accumulation dtype
        z_t = logits.gather(1, targets.unsqueeze(1)).squeeze(1).to(lse.dtype)  # (N,)
        z_n = logits.gather(1, predictions.unsqueeze(1)).squeeze(1).to(lse.dtype)  # (N,)
        ctx.save_for_backward(logits, lse, targets, predictions, coef)
        return lse - (1 - coef) * z_t - coef * z_n  # (N,)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        logits, lse, targets, predictions, coef = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        grad = grad.to(coef.dtype)  # (N,)
        grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format)  # (N, V): the only big tensor
        row_lse, row_grad = lse.to(logits.dtype).unsqueeze(1), grad.to(logits.dtype).unsqueeze(1)  # (N, 1)
        rows = _chunk_rows(logits)
        for start in range(0, logits.shape[0], rows):
            stop = start + rows
            out = torch.sub(logits[start:stop], row_lse[start:stop], out=grad_logits[start:stop])  # (c, V)
            out.exp_().mul_(row_grad[start:stop])  # g * softmax(z)
        grad_logits.scatter_add_(1, targets.unsqueeze(1), (-(1 - coef) * grad).to(logits.dtype).unsqueeze(1))
        grad_logits.scatter_add_(1, predictions.unsqueeze(1), (-coef * grad).to(logits.dtype).unsqueeze(1))
        return grad_logits, None, None, None, None


def embedding_skd_loss_with_stats(
    logits: Tensor,
    targets: Tensor,
    weight: Tensor,
    sigma: float | Tensor,
    alpha: float | Tensor = 1.0,
    lam: float | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
    q_max: float = 0.5,
) -> EmbeddingSKDOutput:
    """Compute the SKD objective of Eq. (12) (Eq. (11) with ``lam``) and its ``q_n`` / mismatch statistics.

    Args:
        logits: Unnormalised scores ``z``, shape ``(..., V)`` (e.g. ``(B, T, V)``).
        targets: Target indices ``t``, shape ``(...)``; ``ignore_index`` marks padding.
        weight: Output word-embedding matrix ``W`` of the softmax layer, shape ``(V, d)`` (tied or not). Only read
            under ``no_grad``: no gradient reaches it through ``q_n``.
        sigma: Scale of Eq. (8), ``> 0``.
        alpha: Schedule weight of Algorithm 1 in ``[0, 1]``; ``alpha = 0`` is plain cross-entropy.
        lam: Optional ``lambda`` of Eq. (11) in ``[0, 1]``; ``None`` means Eq. (12) (``lambda = 1``).
        ignore_index: Target value of positions that contribute neither loss nor gradient.
        reduction: ``"none"`` (per position, shape ``(...)``, 0 at padding), ``"mean"`` (over non-padding positions;
            0 when there is none), ``"sum"``, or ``"sequence"`` (sum over the last target axis, e.g. the time axis of
            ``(B, T)`` targets, giving the per-sentence NLL-like loss of shape ``(B,)``).
        q_max: Clip of ``q_n`` (the paper: 0.5), in ``(0, 1]``.

    Returns:
        An :class:`EmbeddingSKDOutput` ``(loss, q_n, mismatch)``.

    Raises:
        ValueError: On a bad ``sigma``, ``alpha``, ``lam``, ``q_max``, ``reduction`` or mismatched shapes.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> logits, weight = torch.randn(2, 3, 5), torch.randn(5, 4)
        >>> targets = torch.tensor([[1, 2, -100], [0, 4, 3]])
        >>> out = embedding_skd_loss_with_stats(logits, targets, weight, sigma=0.1, alpha=0.0)
        >>> bool(torch.allclose(out.loss, torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets)))
        True
        >>> embedding_skd_loss_with_stats(logits, targets, weight, sigma=0.1, reduction="sequence").loss.shape
        torch.Size([2])

    """
    if not isinstance(sigma, Tensor):  # tensors (module buffers) are validated by their owner, without a device sync
        check_sigma(sigma)
    if not isinstance(alpha, Tensor):
        check_unit_interval("alpha", alpha)
    if lam is not None:
        check_unit_interval("lam", lam)
    check_unit_interval("q_max", q_max, allow_zero=False)
    check_reduction(reduction)
    _check_shapes(logits, targets, weight)

    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab)  # (N, V), a view for contiguous logits
    flat_targets = targets.reshape(-1)  # (N,)
    acc = torch.promote_types(logits.dtype, torch.float32)
    with torch.no_grad():
        valid = flat_targets != ignore_index  # (N,)
        safe_targets = torch.where(valid, flat_targets, 0).long()  # (N,)
        predictions, lse = _argmax_logsumexp(flat_logits.detach(), acc)  # (N,), (N,)
        q_n = embedding_skd_soft_target(safe_targets, predictions, weight, sigma, q_max)  # (N,)
        coef = q_n.to(acc) * alpha * valid  # (N,)  alpha * lam * q_n, 0 at padding
        if lam is not None:
            coef = coef * lam

        mismatched = valid & (predictions != safe_targets)  # (N,)
        n_valid = valid.sum()
        n_mismatched = mismatched.sum()
        mismatch = n_mismatched.to(acc) / n_valid.clamp(min=1).to(acc)
        q_n_mean = (q_n.to(acc) * mismatched).sum() / n_mismatched.clamp(min=1).to(acc)
        q_n_clipped = ((q_n >= q_max) & mismatched).sum()

    per_position = _SKDNLL.apply(flat_logits, safe_targets, predictions, lse, coef)  # (N,)
    per_position = per_position * valid  # (N,) zero loss and zero gradient at padding

    if reduction == "none":
        loss = per_position.reshape(targets.shape)
    elif reduction == "sum":
        loss = per_position.sum()
    elif reduction == "mean":
        loss = per_position.sum() / n_valid.clamp(min=1).to(acc)
    else:  # "sequence"
        loss = per_position.reshape(targets.shape).sum(dim=-1) if targets.ndim > 0 else per_position.sum()
    return EmbeddingSKDOutput(loss, q_n_mean, mismatch, q_n_clipped, n_mismatched)


def embedding_skd_loss(
    logits: Tensor,
    targets: Tensor,
    weight: Tensor,
    sigma: float | Tensor,
    alpha: float | Tensor = 1.0,
    lam: float | None = None,
    ignore_index: int = IGNORE_INDEX,
    reduction: Reduction = "mean",
    q_max: float = 0.5,
) -> Tensor:
    """Compute the SKD objective of Eq. (12) / Eq. (11); see :func:`embedding_skd_loss_with_stats` for the arguments.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0, 0.0]])
        >>> weight = torch.tensor([[0.0, 0.0], [3.0, 4.0], [30.0, 40.0]])
        >>> # target 1, prediction 0, ||w_1 - w_0|| = 5, q_n = min(exp(-0.5), 0.5) = 0.5:
        >>> # J = -(1 - 0.5) log p_1 - 0.5 log p_0
        >>> round(float(embedding_skd_loss(logits, torch.tensor([1]), weight, sigma=0.1)), 4)
        0.9076

    """
    return embedding_skd_loss_with_stats(
        logits, targets, weight, sigma, alpha, lam, ignore_index, reduction, q_max
    ).loss


@torch.no_grad()
def mean_nearest_neighbour_distance(weight: Tensor, chunk_size: int = 1024) -> Tensor:
    """Mean over rows ``i`` of ``min_{j != i} ||w_i - w_j||_2``, computed ``chunk_size`` rows at a time.

    Memory stays ``O(chunk_size * V)``; time is ``O(V^2 d)``.

    Args:
        weight: Matrix ``W`` of shape ``(V, d)`` with ``V >= 2``.
        chunk_size: Rows per chunk (``>= 1``).

    Returns:
        A 0-dim float tensor.

    Example:
        >>> w = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
        >>> mean_nearest_neighbour_distance(w, chunk_size=2)  # (5 + 1 + 1) / 3
        tensor(2.3333)

    """
    if weight.ndim != 2 or weight.shape[0] < 2:
        raise ValueError(f"weight must have shape (V, d) with V >= 2, got {tuple(weight.shape)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    w = weight.detach().to(torch.promote_types(weight.dtype, torch.float32))  # (V, d)
    vocab = w.shape[0]
    total = torch.zeros((), dtype=w.dtype, device=w.device)
    for start in range(0, vocab, chunk_size):
        stop = min(start + chunk_size, vocab)
        rows = torch.arange(stop - start, device=w.device)
        distances = torch.cdist(w[start:stop], w)  # (chunk, V)
        distances[rows, rows + start] = float("inf")  # exclude i == j
        total += distances.min(dim=1).values.sum()
    return total / vocab


@torch.no_grad()
def sigma_from_nearest_neighbours(weight: Tensor, q_nn: float = 0.5, chunk_size: int = 1024) -> float:
    """Apply the ``sigma="auto"`` rule: ``sigma = -ln(q_nn) / mean_i min_{j != i} ||w_i - w_j||_2``.

    With this ``sigma`` a word at the *average nearest-neighbour distance* ``d_nn`` from the target gets
    ``exp(-sigma * d_nn) = q_nn``; with the default ``q_nn = 0.5`` (the clip of Eq. (8)), ``sigma = ln 2 / d_nn``: the
    typical nearest neighbour gets the full ``q_n = 0.5`` and ``q_n`` halves with every further ``d_nn`` of distance.
    This follows the paper's remark that sigma "depends on the average distance to the nearest neighbours".

    Args:
        weight: Output word-embedding matrix ``W``, shape ``(V, d)``.
        q_nn: ``q`` wanted at the mean nearest-neighbour distance, in ``(0, 1)``.
        chunk_size: Rows per chunk of the distance computation.

    Returns:
        ``sigma`` as a Python float.

    Raises:
        ValueError: If ``q_nn`` is out of range or all rows of ``W`` coincide (mean distance 0).

    Example:
        >>> w = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
        >>> round(sigma_from_nearest_neighbours(w), 4)  # ln 2 / (7 / 3)
        0.2971

    """
    if isinstance(q_nn, bool) or not isinstance(q_nn, (int, float)) or not 0 < q_nn < 1:
        raise ValueError(f"q_nn must be a float in (0, 1), got {q_nn!r}")
    distance = float(mean_nearest_neighbour_distance(weight, chunk_size))
    if not math.isfinite(distance) or distance <= 0:
        raise ValueError(
            f"sigma='auto' needs word embeddings at a positive finite mean nearest-neighbour distance, got {distance}"
        )
    return -math.log(q_nn) / distance
