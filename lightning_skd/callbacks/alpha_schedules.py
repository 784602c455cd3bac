"""Schedules for the teacher weight alpha_t of Self-KD (Kim et al., Eq. 5), as functions of the 1-based epoch t."""

from __future__ import annotations

from abc import ABC, abstractmethod


def _check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}.")


def _check_start_epoch(start_epoch: int) -> None:
    if not (isinstance(start_epoch, int) and not isinstance(start_epoch, bool) and start_epoch >= 1):
        raise ValueError(f"`start_epoch` must be a positive integer (a 1-based epoch), got {start_epoch!r}.")


def _ramp(epoch: int, max_epochs: int | None, start_epoch: int, name: str) -> tuple[int, int]:
    """``(done, total)``: ``epoch`` (1-based) is epoch ``done`` of the ``total`` from ``start_epoch`` to ``max_epochs``.

    ``done`` is 0 before ``start_epoch``.
    """
    if not max_epochs or max_epochs < 1:
        raise ValueError(f"{name} needs a positive `max_epochs` (T), got {max_epochs!r}.")
    if start_epoch > max_epochs:
        raise ValueError(f"{name}(start_epoch={start_epoch}) starts after the last epoch T={max_epochs}.")
    return max(min(epoch, max_epochs) - start_epoch + 1, 0), max_epochs - start_epoch + 1


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
    """The paper's linear growth ``alpha_t = alpha_T * t / T`` (Kim et al., Eq. 5), optionally starting late.

    With ``start_epoch = s`` alpha is 0 before epoch ``s`` and then ramps linearly to ``alpha_T`` at the last epoch:
    ``alpha_t = alpha_T * (t - s + 1) / (T - s + 1)`` for ``t >= s`` (``s = 1`` is the paper's schedule). A late start
    keeps the model's own early, poor predictions out of its targets.

    Example:
        >>> schedule = LinearAlpha(alpha_T=0.8)
        >>> [round(schedule(t, 4), 2) for t in range(1, 5)]
        [0.2, 0.4, 0.6, 0.8]
        >>> [round(LinearAlpha(alpha_T=0.8, start_epoch=3)(t, 4), 2) for t in range(1, 5)]
        [0.0, 0.0, 0.4, 0.8]

    """

    requires_max_epochs = True

    def __init__(self, alpha_T: float = 0.8, start_epoch: int = 1) -> None:  # noqa: N803 - the paper's symbol
        _check_unit_interval("alpha_T", alpha_T)
        _check_start_epoch(start_epoch)
        self.alpha_T = alpha_T
        self.start_epoch = start_epoch

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return ``alpha_T`` times the ramp's progress at ``epoch``."""
        done, total = _ramp(epoch, max_epochs, self.start_epoch, "LinearAlpha")
        return self.alpha_T * done / total


class ConstantAlpha(AlphaSchedule):
    """A fixed ``alpha_t = alpha`` at every epoch from ``start_epoch`` on, 0 before (the paper's Fig. 2 ablation).

    Example:
        >>> ConstantAlpha(0.3)(epoch=7, max_epochs=None)
        0.3
        >>> [ConstantAlpha(0.3, start_epoch=2)(t, None) for t in (1, 2)]
        [0.0, 0.3]

    """

    def __init__(self, alpha: float = 0.8, start_epoch: int = 1) -> None:
        _check_unit_interval("alpha", alpha)
        _check_start_epoch(start_epoch)
        self.alpha = alpha
        self.start_epoch = start_epoch

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return the constant alpha (0 before ``start_epoch``)."""
        return self.alpha if epoch >= self.start_epoch else 0.0


class StepAlpha(AlphaSchedule):
    """A staircase that reaches ``alpha_T`` at the last epoch in ``num_steps`` equal jumps.

    ``alpha_t = alpha_T * floor(num_steps * p_t) / num_steps`` with ``p_t`` the progress of :class:`LinearAlpha`'s ramp
    (``t / T`` with ``start_epoch = 1``).

    Example:
        >>> schedule = StepAlpha(alpha_T=0.8, num_steps=2)
        >>> [schedule(t, 4) for t in range(1, 5)]
        [0.0, 0.4, 0.4, 0.8]

    """

    requires_max_epochs = True

    def __init__(self, alpha_T: float = 0.8, num_steps: int = 4, start_epoch: int = 1) -> None:  # noqa: N803
        _check_unit_interval("alpha_T", alpha_T)
        if not (isinstance(num_steps, int) and num_steps >= 1):
            raise ValueError(f"`num_steps` must be a positive integer, got {num_steps!r}.")
        _check_start_epoch(start_epoch)
        self.alpha_T = alpha_T
        self.num_steps = num_steps
        self.start_epoch = start_epoch

    def __call__(self, epoch: int, max_epochs: int | None) -> float:
        """Return the staircase value for ``epoch``."""
        done, total = _ramp(epoch, max_epochs, self.start_epoch, "StepAlpha")
        return self.alpha_T * (self.num_steps * done // total) / self.num_steps


#: Schedules that can be named by a string in :class:`~lightning_skd.SelfKDCallback`, built with its ``alpha_T``.
NAMED_SCHEDULES: dict[str, type[AlphaSchedule]] = {"linear": LinearAlpha, "constant": ConstantAlpha, "step": StepAlpha}
