"""The interface between :class:`~lightning_skd.SelfKDCallback` and where its teacher distributions come from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lightning_skd._lightning import pl
from lightning_skd.callbacks.prediction_table import TeacherRows


@dataclass
class BatchRows:
    """A training batch as rows: one per non-ignored sample, or one per non-padding target token (row-major)."""

    inputs: Any  # what the model's forward takes (SelfKDCallback.unpack_batch)
    mask: Tensor  # (B,) or (B, T) bool: the positions that are rows (target != ignore_index)
    positions: Tensor  # (R,) flat positions of the rows in ``mask``
    index: Tensor | None  # (B,) dataset index of each sample, if the batch carries it

    @property
    def token_level(self) -> bool:
        """Whether the targets are ``(B, T)`` token sequences."""
        return self.mask.ndim == 2

    def rows(self, values: Tensor) -> Tensor:
        """``values`` of shape ``(*mask.shape, ...)`` at the row positions: ``(R, ...)``; differentiable, no sync."""
        return values.flatten(0, self.mask.ndim - 1).index_select(0, self.positions)


class Teacher(ABC):
    """Where Self-KD's teacher distribution ``P_{t-1}(x)`` comes from; :class:`~lightning_skd.SelfKDCallback` drives it.

    The callback calls, per ``trainer.fit``: :meth:`check_trainer` and :meth:`reset` in ``setup`` (a checkpoint, if
    the fit resumes one, is then given to :meth:`load_state_dict`), :meth:`start` once training starts (the module is
    set up), :meth:`start_epoch` at every epoch, :meth:`rows` before each training step and :meth:`observe` after it,
    and :meth:`end_epoch` once per epoch, before that epoch's checkpoints are saved. Implement :meth:`rows`, the
    others as the strategy needs, and keep every piece of state the next epoch needs in :meth:`state_dict`.
    """

    def check_trainer(self, trainer: pl.Trainer) -> None:
        """Refuse a trainer this teacher cannot work with (called in ``setup``)."""

    def reset(self) -> None:
        """A new fit begins: forget the teachers of an earlier fit."""

    def start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Training starts: the module is set up and a resumed checkpoint's state was loaded."""

    def start_epoch(self, trainer: pl.Trainer) -> None:
        """An epoch starts."""

    @abstractmethod
    def rows(self, trainer: pl.Trainer, batch: BatchRows) -> TeacherRows | None:
        """The teacher distributions of the batch's rows, ``None`` if there is no teacher at all yet.

        Rows without a teacher are marked invalid (they train on their hard label).
        """

    def observe(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: BatchRows, predictions: Tensor, keep: Tensor
    ) -> None:
        """After the training step: the student's detached logits of the batch's rows ``(R, C)``.

        ``keep`` ``(R,)`` marks the rows that may become teachers (finite, and not of a mixed batch).
        """

    def end_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The epoch's last training step is done."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to resume with the same teachers."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (before :meth:`start`)."""


def check_state_kind(state_dict: dict[str, Any], kind: str) -> None:
    """Refuse a checkpointed teacher state of another kind than ``kind`` (e.g. a cache state for a snapshot teacher)."""
    if state_dict.get("kind") != kind:
        raise ValueError(
            f"The checkpoint was made with SelfKDCallback(mode={state_dict.get('kind')!r}) but this callback has "
            f"mode={kind!r}."
        )
