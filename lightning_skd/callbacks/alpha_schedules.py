"""Schedules for the teacher weight alpha_t of Self-KD (Kim et al., Eq. 5), as functions of the 1-based epoch t."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod


def _check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}.")


class AlphaSchedule(ABC):
    """Maps the 1-based epoch ``t`` (and the planned number of epochs ``T``) to the teacher weight alpha_t.

    Subclass it and implement :meth:`__call__` for a custom schedule; any plain callable
    ``(epoch, max_epochs) -> float`` is accepted by :class:`~lightning_skd.SelfKDCallback` as well.
    """

    #: Whether the schedule needs ``Trainer(max_epochs=...)``; checked when fitting starts.
    requires_max_epochs: bool = False

    @abstractmethod
    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return alpha for the 1-based ``epoch`` of ``max_epochs``."""


class LinearAlpha(AlphaSchedule):
    """The paper's linear growth ``alpha_t = alpha_T * t / T`` (Kim et al., Eq. 5).

    Example:
        >>> schedule = LinearAlpha(alpha_T=0.8)
        >>> [round(schedule(t, 4), 2) for t in range(1, 5)]
        [0.2, 0.4, 0.6, 0.8]

    """

    requires_max_epochs = True

    def __init__(self, alpha_T: float = 0.8) -> None:  # noqa: N803 - the paper's symbol
        _check_unit_interval("alpha_T", alpha_T)
        self.alpha_T = alpha_T

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return ``alpha_T * epoch / max_epochs``."""
        if not max_epochs or max_epochs < 1:
            raise ValueError(f"LinearAlpha needs a positive `max_epochs` (T), got {max_epochs!r}.")
        return self.alpha_T * min(epoch, max_epochs) / max_epochs


class ConstantAlpha(AlphaSchedule):
    """A fixed ``alpha_t = alpha`` at every epoch (the paper's Fig. 2 ablation).

    Example:
        >>> ConstantAlpha(0.3)(epoch=7, max_epochs=None)
        0.3

    """

    def __init__(self, alpha: float = 0.8) -> None:
        _check_unit_interval("alpha", alpha)
        self.alpha = alpha

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return the constant alpha."""
        return self.alpha


class StepAlpha(AlphaSchedule):
    """A staircase that reaches ``alpha_T`` at the last epoch in ``num_steps`` equal jumps.

    ``alpha_t = alpha_T * floor(num_steps * t / T) / num_steps``.

    Example:
        >>> schedule = StepAlpha(alpha_T=0.8, num_steps=2)
        >>> [schedule(t, 4) for t in range(1, 5)]
        [0.0, 0.4, 0.4, 0.8]

    """

    requires_max_epochs = True

    def __init__(self, alpha_T: float = 0.8, num_steps: int = 4) -> None:  # noqa: N803 - the paper's symbol
        _check_unit_interval("alpha_T", alpha_T)
        if not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"`num_steps` must be a positive integer, got {num_steps!r}.")
        self.alpha_T = alpha_T
        self.num_steps = num_steps

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return the staircase value for ``epoch``."""
        if not max_epochs or max_epochs < 1:
            raise ValueError(f"StepAlpha needs a positive `max_epochs` (T), got {max_epochs!r}.")
        level = math.floor(self.num_steps * min(epoch, max_epochs) / max_epochs)
        return self.alpha_T * level / self.num_steps


#: Schedules that can be named by a string in :class:`~lightning_skd.SelfKDCallback`, built with its ``alpha_T``.
NAMED_SCHEDULES: dict[str, type[AlphaSchedule]] = {"linear": LinearAlpha, "constant": ConstantAlpha, "step": StepAlpha}
