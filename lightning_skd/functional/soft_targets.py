"""Self-KD soft targets (Kim et al., Eq. 6) and the cross-entropies of the task modules on soft and hard targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_skd._constants import IGNORE_INDEX


def _as_per_sample_alpha(alpha: float | Tensor, batch_size: int, reference: Tensor) -> Tensor:
    alpha = torch.as_tensor(alpha, dtype=torch.float32, device=reference.device)
    if alpha.ndim == 0:
        alpha = alpha.expand(batch_size)
    if alpha.shape != (batch_size,):
        raise ValueError(f"`alpha` must be a scalar or have shape ({batch_size},), got shape {tuple(alpha.shape)}.")
    return alpha


def self_kd_targets(target: Tensor, teacher_probs: Tensor, alpha: float | Tensor) -> Tensor:
    """Soft targets ``(1 - alpha) * onehot(target) + alpha * teacher_probs`` (Kim et al., Eq. 6).

    Args:
        target: Class indices, shape ``(N,)``.
        teacher_probs: Teacher probabilities, shape ``(N, C)``.
        alpha: Weight of the teacher, a scalar or one value per sample ``(N,)``.

    Returns:
        Soft targets, shape ``(N, C)``, float32.

    Example:
        >>> target = torch.tensor([0, 2])
        >>> teacher = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
        >>> self_kd_targets(target, teacher, alpha=0.5)
        tensor([[0.7500, 0.2500, 0.0000],
                [0.0000, 0.0000, 1.0000]])

    """
    num_samples, num_classes = teacher_probs.shape
    alpha = _as_per_sample_alpha(alpha, num_samples, teacher_probs)[:, None]  # (N, 1)
    onehot = F.one_hot(target, num_classes).float()  # (N, C)
    return (1.0 - alpha) * onehot + alpha * teacher_probs.float()


def soft_target_cross_entropy(logits: Tensor, soft_targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy ``H(q, softmax(logits)) = -sum_c q_c log p_c`` against a full target distribution.

    Args:
        logits: Student logits, shape ``(N, C)``.
        soft_targets: Target distribution, shape ``(N, C)``, rows summing to one.
        reduction: ``"mean"`` over samples, ``"sum"`` or ``"none"`` (one value per sample).

    Returns:
        The loss, a scalar or shape ``(N,)``.

    Example:
        >>> logits = torch.zeros(1, 4)
        >>> soft_target_cross_entropy(logits, torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # log(4)
        tensor(1.3863)

    """
    per_sample = -(soft_targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)  # (N,)
    return _reduce(per_sample, reduction)


def hard_target_cross_entropy(
    logits: Tensor,
    target: Tensor,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """``torch.nn.functional.cross_entropy`` in float32 of class ``(N, C)`` or token ``(B, T, V)`` logits.

    Args:
        logits: Logits ``(N, C)``, or ``(B, T, V)`` for token targets (the classes go to dimension 1 for PyTorch).
        target: Class indices ``(N,)`` or token ids ``(B, T)``, ``ignore_index`` at padding.
        ignore_index: Target value of padding.
        label_smoothing: ``ε``: the target mass ``ε`` spread uniformly over all classes (0: plain cross-entropy).
        reduction: ``"mean"`` over the non-padding targets, ``"sum"`` or ``"none"`` (shape of ``target``, 0 at
            padding).

    Returns:
        The loss.

    Example:
        >>> hard_target_cross_entropy(torch.zeros(1, 3, 4), torch.tensor([[0, 1, -100]]))  # ln 4 over two tokens
        tensor(1.3863)

    """
    logits = logits.float()
    if logits.ndim == 3:
        logits = logits.transpose(1, 2)  # (B, V, T)
    return F.cross_entropy(
        logits, target, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )


def self_kd_cross_entropy(
    logits: Tensor,
    target: Tensor,
    teacher_probs: Tensor | None,
    alpha: float | Tensor,
    reduction: str = "mean",
    teacher_class_ids: Tensor | None = None,
) -> Tensor:
    """Cross-entropy against the Self-KD soft targets, without building the one-hot matrix.

    Uses ``H((1 - a) y + a P, p) = (1 - a) CE(y, p) + a H(P, p)``, which equals
    ``soft_target_cross_entropy(logits, self_kd_targets(target, teacher_probs, alpha))``.

    Args:
        logits: Student logits, shape ``(N, C)``.
        target: Class indices, shape ``(N,)``.
        teacher_probs: Teacher probabilities ``(N, C)``, or ``None`` for no teacher (plain cross-entropy); with
            ``teacher_class_ids`` the ``(N, k)`` probabilities of those classes (all other classes have zero).
        alpha: Teacher weight, a scalar or ``(N,)``; a sample with alpha 0 is trained on its hard label alone.
        reduction: ``"mean"`` over samples, ``"sum"`` or ``"none"``.
        teacher_class_ids: Class ids ``(N, k)`` of a sparse (top-k) teacher; the full ``(N, C)`` teacher matrix is
            then never built (a vocabulary-sized output makes it as large as the logits).

    Returns:
        The loss, a scalar or shape ``(N,)``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
        >>> self_kd_cross_entropy(logits, torch.tensor([0, 1]), teacher, alpha=0.0)
        tensor(0.1269)
        >>> self_kd_cross_entropy(logits, torch.tensor([0, 1]), teacher, alpha=1.0)
        tensor(1.1269)
        >>> ids = torch.tensor([[0, 1], [1, 0]])  # the same teacher, stored sparsely
        >>> self_kd_cross_entropy(logits, torch.tensor([0, 1]), teacher, alpha=1.0, teacher_class_ids=ids)
        tensor(1.1269)

    """
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (N, C)
    hard = -log_probs.gather(1, target[:, None]).squeeze(1)  # (N,)
    if teacher_probs is None:
        return _reduce(hard, reduction)
    alpha = _as_per_sample_alpha(alpha, logits.shape[0], logits)
    teacher_log_probs = log_probs if teacher_class_ids is None else log_probs.gather(1, teacher_class_ids.long())
    soft = -(teacher_probs.float() * teacher_log_probs).sum(dim=-1)  # (N,)
    return _reduce((1.0 - alpha) * hard + alpha * soft, reduction)


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"`reduction` must be one of 'mean', 'sum', 'none', got {reduction!r}.")
