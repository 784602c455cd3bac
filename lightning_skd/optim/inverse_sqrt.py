"""``InverseSquareRootLR``: linear warm-up, then decay with the inverse square root of the step (Vaswani et al.)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from typing_extensions import override


class InverseSquareRootLR(LRScheduler):
    """The Transformer schedule, normalised so that the configured learning rate is the peak.

    For the ``s``-th optimizer step (``s = 1, 2, ...``) the learning rate is::

        lr_s = lr * min(s ** -0.5, s * warmup_steps ** -1.5) * warmup_steps ** 0.5
             = lr * min(s / warmup_steps, sqrt(warmup_steps / s))

    i.e. Vaswani et al.'s ``d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)`` with the constant
    ``d_model ** -0.5`` replaced by ``lr * warmup_steps ** 0.5``: a linear ramp from ``lr / warmup_steps`` to
    ``lr`` at step ``warmup_steps``, then ``lr * sqrt(warmup_steps / s)`` (fairseq's ``inverse_sqrt`` with
    ``warmup_init_lr = 0``). Step it after every optimizer step (Lightning: ``interval: "step"``; the
    :class:`~lightning_skd.models.Translator` does so by default).

    Args:
        optimizer: The optimizer; its ``lr`` (per parameter group) is the peak learning rate.
        warmup_steps: Steps of the linear warm-up (fairseq's IWSLT recipe: 4000).
        last_epoch: Index of the last step taken (``-1``: start), as for every ``torch`` scheduler.

    Example:
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> scheduler = InverseSquareRootLR(optimizer, warmup_steps=4)
        >>> lrs = []
        >>> for _ in range(8):
        ...     lrs.append(round(optimizer.param_groups[0]["lr"], 4))
        ...     optimizer.step()
        ...     scheduler.step()
        >>> lrs  # steps 1..8: ramp to the peak at step 4, then sqrt(4 / s)
        [0.25, 0.5, 0.75, 1.0, 0.8944, 0.8165, 0.7559, 0.7071]

    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 4000, last_epoch: int = -1) -> None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
            raise ValueError(f"InverseSquareRootLR: `warmup_steps` must be an integer >= 1, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """``lr_s / lr`` for the 1-based optimizer step ``step``."""
        return min(step / self.warmup_steps, math.sqrt(self.warmup_steps / step))

    @override
    def get_lr(self) -> list[float]:
        """Learning rates of the next optimizer step (``last_epoch`` steps have been taken)."""
        factor = self.factor(self.last_epoch + 1)
        return [base_lr * factor for base_lr in self.base_lrs]
