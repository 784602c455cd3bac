"""``SKDAlphaScheduler``: the ``alpha`` schedule of Algorithm 1 of Hahn & Choi (2019) as a Lightning callback."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from lightning_skd._lightning import Callback, check_trainer, pl, rank_zero_warn
from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.functional.embedding_skd import check_schedule_args, skd_alpha
from lightning_skd.losses.embedding_skd import EmbeddingSKDLoss

__all__ = ["SKDAlphaScheduler"]


class SKDAlphaScheduler(Callback):
    """Drive ``alpha`` of every :class:`~lightning_skd.losses.EmbeddingSKDLoss` in the model by Algorithm 1.

    Algorithm 1 trains ``K = warmup_steps`` optimizer steps with cross-entropy, then repeats "train one step with
    Eq. (12), then ``alpha += eta``" (``alpha`` capped at ``max_alpha``, the paper: 1). With ``s`` the 0-based index of
    an optimizer step (``trainer.global_step`` when its first batch starts), that step uses::

        alpha(s) = clamp((s - K) * eta, 0, max_alpha)

    so steps ``K - 1`` and ``K`` use ``0`` (step ``K`` is the first SKD step, with ``alpha`` not yet increased),
    step ``K + 1`` uses ``eta`` and ``alpha`` reaches ``max_alpha`` at step ``K + ceil(max_alpha / eta)``.
    ``alpha`` is set in ``on_train_batch_start`` from ``trainer.global_step``, which counts optimizer steps, so all
    micro-batches of one gradient-accumulation step share one ``alpha`` and a resumed run continues the schedule
    exactly. ``skd/alpha`` is logged in ``on_train_batch_end``; ``skd/q_n_clipped``, the fraction of the epoch's
    mismatched training tokens whose ``q_n`` sat at the clip ``q_max``, at each epoch's end. When nearly all of them are
    clipped (:meth:`q_n_is_degenerate`) while ``alpha > 0``, the soft target is a fixed 50/50 split whatever the
    embeddings say, and a warning (once per fit) points to ``sigma="auto"``.

    The callback's state (``K``, ``eta``, ``max_alpha`` and the last ``step`` / ``alpha`` applied) is saved in
    checkpoints; on resume it is restored and a warning is emitted if the configured schedule differs from the saved
    one (the configured one is used). The losses' own ``alpha`` buffers are saved with the model too.

    Args:
        warmup_steps: ``K``, optimizer steps of plain cross-entropy (the paper: 500 for PTB, 900 for WikiText-2).
        eta: Per-step increment of ``alpha`` (the paper: 0.0002 PTB, 0.00011 WikiText-2).
        max_alpha: Final ``alpha``, in ``(0, 1]``.
        log: Whether to log ``skd/alpha``.

    Raises:
        ValueError: For a negative ``warmup_steps``, a non-positive ``eta`` or ``max_alpha`` outside ``(0, 1]``; in
            ``setup``, if the model holds no ``EmbeddingSKDLoss``.

    Example:
        >>> scheduler = SKDAlphaScheduler(warmup_steps=500, eta=0.0002)
        >>> [scheduler.alpha_at(s) for s in (499, 500, 501)]
        [0.0, 0.0, 0.0002]
        >>> scheduler.alpha_at(5500)
        1.0

    """

    def __init__(self, warmup_steps: int = 500, eta: float = 0.0002, max_alpha: float = 1.0, log: bool = True) -> None:
        check_schedule_args(warmup_steps, eta, max_alpha)
        self.warmup_steps = warmup_steps
        self.eta = float(eta)
        self.max_alpha = float(max_alpha)
        self.log = log
        self.step = 0
        self.alpha = 0.0
        self._warned_clip = False

    def alpha_at(self, step: int) -> float:
        """Return the ``alpha`` used by the optimizer step with 0-based index ``step``."""
        return skd_alpha(step, self.warmup_steps, self.eta, self.max_alpha)

    @staticmethod
    def _losses(pl_module: pl.LightningModule) -> list[EmbeddingSKDLoss]:
        return [m for m in pl_module.modules() if isinstance(m, EmbeddingSKDLoss)]

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.step = trainer.global_step
        self.alpha = self.alpha_at(self.step)
        for loss in self._losses(pl_module):
            loss.set_alpha(self.alpha)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer, and that the model holds an ``EmbeddingSKDLoss`` to drive."""
        check_trainer(trainer, "SKDAlphaScheduler")
        self._warned_clip = False
        if stage == "fit" and not self._losses(pl_module):
            raise ValueError(
                f"SKDAlphaScheduler needs an EmbeddingSKDLoss inside the model, got {type(pl_module).__name__} "
                "without one (for a LanguageModel set skd: true)"
            )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Apply the ``alpha`` of the current (possibly resumed) step."""
        self._apply(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Set ``alpha(trainer.global_step)`` on every ``EmbeddingSKDLoss`` of the model."""
        self._apply(trainer, pl_module)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Log ``skd/alpha``, the value this batch used."""
        if self.log:
            pl_module.log("skd/alpha", self.alpha, on_step=True, on_epoch=False, prog_bar=True)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the epoch's ``q_n`` clip counts."""
        for loss in self._losses(pl_module):
            loss.reset_clip_counts()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log ``skd/q_n_clipped`` (summed over processes) and warn once if ``q_n`` is degenerate while alpha > 0."""
        counts = sum(loss.clip_counts.to(pl_module.device) for loss in self._losses(pl_module))
        clipped, mismatched = trainer.strategy.reduce(counts.clone(), reduce_op="sum").tolist()
        fraction = clipped / mismatched if mismatched else 0.0
        if self.log:
            pl_module.log("skd/q_n_clipped", fraction, on_step=False, on_epoch=True, sync_dist=True)
        if self.alpha > 0 and not self._warned_clip and self.q_n_is_degenerate(fraction, mismatched):
            self._warned_clip = True
            rank_zero_warn(
                f"SKDAlphaScheduler: in epoch {trainer.current_epoch}, q_n sat at its clip for {fraction:.1%} of the "
                f"{int(mismatched)} mislabelled training tokens while alpha = {self.alpha:.3g}: the SKD target is a "
                "fixed split between the label and the predicted word, whatever their embedding distance (sigma is "
                "too small for these embeddings). Use sigma='auto' (q_n = 0.5 at the mean nearest-neighbour "
                "distance) or a larger sigma.",
                category=LightningSKDWarning,
            )

    def q_n_is_degenerate(self, clipped_fraction: float, mismatched: float) -> bool:
        """The warning rule: at least 100 mislabelled tokens in the epoch and 95 % or more of their ``q_n`` clipped."""
        return mismatched >= 100 and clipped_fraction >= 0.95

    @override
    def state_dict(self) -> dict[str, Any]:
        """Return the schedule and the last ``step`` / ``alpha`` applied."""
        return {
            "warmup_steps": self.warmup_steps,
            "eta": self.eta,
            "max_alpha": self.max_alpha,
            "step": self.step,
            "alpha": self.alpha,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the last ``step`` / ``alpha``; warn if the configured schedule differs from the saved one."""
        saved = (state_dict["warmup_steps"], state_dict["eta"], state_dict["max_alpha"])
        if saved != (self.warmup_steps, self.eta, self.max_alpha):
            rank_zero_warn(
                f"SKDAlphaScheduler: the checkpoint's schedule (warmup_steps, eta, max_alpha) = {saved} differs from "
                f"the configured {(self.warmup_steps, self.eta, self.max_alpha)}; continuing with the configured one.",
                category=LightningSKDWarning,
            )
            self.alpha = self.alpha_at(int(state_dict["step"]))
        else:
            self.alpha = float(state_dict["alpha"])
        self.step = int(state_dict["step"])
