"""Progressive self-knowledge distillation (PS-KD) as a Lightning callback.

Kim et al., "Self-Knowledge Distillation: A Simple Way for Better Generalization", Sec. 2.2, Eq. 6.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import override

from lightning_skd._constants import IGNORE_INDEX
from lightning_skd._lightning import Callback, check_trainer, pl, rank_zero_warn
from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.callbacks._checkpoint_format import migrate_self_kd_state
from lightning_skd.callbacks._statistics import EpochStatistics
from lightning_skd.callbacks.alpha_schedules import NAMED_SCHEDULES, AlphaSchedule
from lightning_skd.callbacks.prediction_table import TeacherRows
from lightning_skd.callbacks.teachers import BatchRows, CachedTeacher, SnapshotTeacher, Teacher
from lightning_skd.functional.soft_targets import (
    hard_target_cross_entropy,
    self_kd_cross_entropy,
    self_kd_targets,
    soft_target_cross_entropy,
)
from lightning_skd.regularizers.mixing import MixInfo


@dataclass
class SelfKDBatch:
    """The parts of a training batch the callback needs."""

    inputs: Any  # what the model's forward takes; used by the snapshot teacher
    target: Tensor  # (B,) class indices, or (B, T) token ids with padding at the callback's ignore_index
    index: Tensor | None  # (B,) position of each sample in the training dataset; required in cache mode


@dataclass
class _Step:
    """What the callback knows about the current training step."""

    batch: BatchRows
    teacher: TeacherRows | None
    nonfinite_teachers: Tensor | None = None  # () teacher rows dropped for being NaN / inf
    predictions: Tensor | None = None  # (R, C) detached student logits, once self_kd_loss ran
    finite: Tensor | None = None  # (R,) which of those rows are finite (only those may become teachers)
    mixed: bool = False  # the batch's images were mixed: its predictions are no sample's own
    loss_calls: int = 0


class SelfKDCallback(Callback):
    r"""Train with soft targets ``(1 - alpha_t) * onehot(y) + alpha_t * P_{t-1}(x)`` (Kim et al., Eq. 6).

    ``P_{t-1}(x)`` is the model's own prediction from the previous epoch, obtained in one of two ways:

    * ``mode="cache"`` (default, as the official PS-KD code; :class:`~lightning_skd.callbacks.teachers.CachedTeacher`):
      the softmax output the model produced for each training sample during epoch ``t-1`` is kept in a table keyed
      by the sample's dataset index, and is that sample's teacher at epoch ``t``. Every training batch must carry the
      sample indices. Under DDP each rank all-gathers the ``(index, prediction)`` rows of every training step (one
      collective per payload tensor, on the device), so every rank holds the complete table.
    * ``mode="snapshot"`` (:class:`~lightning_skd.callbacks.teachers.SnapshotTeacher`): a frozen copy of the model,
      refreshed at the end of each epoch (and every ``refresh_every_n_steps`` optimizer steps if set), predicts the
      teacher distribution on the current batch in eval mode. It never gets gradients, is not in the optimizer, not
      wrapped by DDP and holds no trainer.
    * ``teacher=``: any :class:`~lightning_skd.callbacks.teachers.Teacher` of your own (e.g. an EMA of the weights).

    The callback owns alpha, the row layout of batches, the loss, the statistics and their logging; the teacher owns
    where ``P_{t-1}`` comes from and its own checkpoint state.

    At the first epoch there is no teacher and the target is the hard label. ``alpha_t`` follows ``schedule``:
    ``"linear"`` (the paper's ``alpha_T * t / T`` with ``T = trainer.max_epochs``), ``"constant"``, ``"step"``, an
    :class:`~lightning_skd.callbacks.AlphaSchedule`, or any callable ``(epoch, max_epochs) -> alpha`` with the 1-based
    epoch. Logged each epoch: ``skd/alpha``, ``skd/teacher_acc`` (teacher argmax agrees with the label passed to
    :func:`self_kd_loss`), ``skd/teacher_coverage`` (fraction of training rows that had a teacher),
    ``skd/nonfinite_rows`` (rows of the model's own predictions that were NaN / inf: never kept as teachers, the
    sample keeps its older one) and ``skd/nonfinite_teacher_rows`` (teacher rows that were NaN / inf: not used, the row
    trains on its hard label); a warning names the epoch when either is non-zero.

    The labels trained on are the ``target`` passed to :func:`self_kd_loss` (a ``training_step`` may remap them); the
    batch's own target (:meth:`unpack_batch`) only lays out the rows and must mark the same positions as ignored.
    Class targets equal to ``ignore_index`` are skipped as :func:`torch.nn.functional.cross_entropy` skips them: no
    loss, no gradient, no cache row, no teacher statistics.

    Sequence outputs (translation, language modelling) distil per token: with ``logits (B, T, V)`` and
    ``target (B, T)`` every non-padding token (``target != ignore_index``) gets its own soft target
    ``(1 - alpha_t) * onehot(y_t) + alpha_t * P_teacher(y_t | x, y_<t)``; padding adds no loss, no gradient and no
    cache row. The snapshot teacher runs with teacher forcing on the same batch inputs; the cache keeps each token's
    past prediction in a table keyed by (sample index, position) (:class:`~lightning_skd.callbacks.row_keys.TokenKeys`),
    sized from the training set's target lengths (:meth:`target_lengths`). Use ``cache_topk`` (e.g. 8) and
    ``cache_dtype="float16"`` there: a dense row per token would cost ``4 * V`` bytes.

    The module's side of the contract is one call in ``training_step``::

        def training_step(self, batch, batch_idx):
            inputs, target, index = batch
            logits = self(inputs)
            return lightning_skd.self_kd_loss(self, logits, target)

    Batches are ``(inputs, target, index)`` sequences or mappings with keys ``"input"``, ``"target"``, ``"index"``;
    override :meth:`unpack_batch` for other layouts and :meth:`teacher_logits` for a teacher forward other than
    ``teacher(inputs)``. The snapshot teacher runs once on the first training batch (with no weight in the loss), so
    a forward that does not fit the batch fails at step 0. A module compiled with ``torch.compile`` (the
    LightningModule or an inner module) gets a teacher that is an independent compiled copy.

    Args:
        mode: ``"cache"`` or ``"snapshot"``.
        alpha_T: Teacher weight at the last epoch, used by the named schedules.
        schedule: A schedule name, an :class:`~lightning_skd.callbacks.AlphaSchedule` or a callable.
        num_classes: Classes of the model output; inferred from the first logits when ``None``.
        cache_dtype: Storage dtype of cached probabilities: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        cache_topk: Keep only the ``k`` largest cached probabilities per sample (renormalised over those ``k``).
        cache_device: Device of the cache table; ``None`` keeps it on the model's device.
        cache_dir: Keep the cache in memory-mapped files under this folder (one ``rank<r>`` subfolder per process),
            committed atomically at each epoch end (see
            :class:`~lightning_skd.callbacks.memmap_prediction_table.MemmapPredictionTable`).
        cache_keep_generations: With ``cache_dir``: finished epochs kept on disk, so older checkpoints can resume.
        refresh_every_n_steps: Snapshot mode only: also refresh the teacher every this many optimizer steps.
        snapshot_batch_norm: Snapshot mode only: ``"running"`` (the teacher's BatchNorm in eval mode) or ``"batch"``
            (normalised by the teacher's batch statistics; see :class:`~lightning_skd.callbacks.SnapshotTeacher`).
        ignore_index: Target value of ignored samples in ``(B,)`` class targets and of padding in ``(B, T)``
            sequence targets.
        teacher: A teacher strategy of your own, instead of ``mode`` and its options.

    """

    def __init__(
        self,
        mode: Literal["cache", "snapshot"] = "cache",
        alpha_T: float = 0.8,  # noqa: N803 - the paper's symbol
        schedule: str | AlphaSchedule | Callable[[int, int | None], float] = "linear",
        num_classes: int | None = None,
        cache_dtype: str = "float32",
        cache_topk: int | None = None,
        cache_device: str | None = None,
        cache_dir: str | None = None,
        cache_keep_generations: int = 2,
        refresh_every_n_steps: int | None = None,
        snapshot_batch_norm: Literal["running", "batch"] = "running",
        ignore_index: int = IGNORE_INDEX,
        teacher: Teacher | None = None,
    ) -> None:
        if mode not in ("cache", "snapshot"):
            raise ValueError(f"`mode` must be 'cache' or 'snapshot', got {mode!r}.")
        if not (isinstance(alpha_T, (int, float)) and 0.0 <= alpha_T <= 1.0):
            raise ValueError(f"`alpha_T` must be a number in [0, 1], got {alpha_T!r}.")
        if isinstance(schedule, str):
            if schedule not in NAMED_SCHEDULES:
                raise ValueError(
                    f"`schedule` must be one of {sorted(NAMED_SCHEDULES)}, an AlphaSchedule or a callable, "
                    f"got {schedule!r}."
                )
            schedule = NAMED_SCHEDULES[schedule](alpha_T)
        elif not callable(schedule):
            raise ValueError(f"`schedule` must be a name, an AlphaSchedule or a callable, got {schedule!r}.")
        if num_classes is not None and not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"`num_classes` must be an integer >= 2 or None, got {num_classes!r}.")
        if num_classes is not None and cache_topk is not None and cache_topk > num_classes:
            raise ValueError(f"`cache_topk` must be at most num_classes={num_classes}, got {cache_topk}.")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ValueError(f"`ignore_index` must be an integer, got {ignore_index!r}.")
        cache_options = {
            "cache_dtype": cache_dtype != "float32",
            "cache_topk": cache_topk is not None,
            "cache_device": cache_device is not None,
            "cache_dir": cache_dir is not None,
            "cache_keep_generations": cache_keep_generations != 2,
        }
        given = [name for name, set_ in cache_options.items() if set_]
        if teacher is not None:
            if not isinstance(teacher, Teacher):
                raise ValueError(f"`teacher` must be a lightning_skd.callbacks.teachers.Teacher, got {teacher!r}.")
            if mode != "cache" or given or refresh_every_n_steps is not None or snapshot_batch_norm != "running":
                raise ValueError(
                    "`teacher` replaces `mode` and its options; got it together with "
                    f"mode={mode!r}, {given} and refresh_every_n_steps={refresh_every_n_steps!r}."
                )
            self.mode = type(teacher).__name__
        elif mode == "snapshot":
            if given:
                raise ValueError(f"{', '.join(f'`{name}`' for name in given)} only apply to mode='cache'.")
            teacher = SnapshotTeacher(refresh_every_n_steps, self.teacher_logits, snapshot_batch_norm)
            self.mode = mode
        else:
            if refresh_every_n_steps is not None or snapshot_batch_norm != "running":
                raise ValueError("`refresh_every_n_steps` and `snapshot_batch_norm` only apply to mode='snapshot'.")
            teacher = CachedTeacher(
                cache_dtype, cache_topk, cache_device, cache_dir, cache_keep_generations, self.target_lengths
            )
            if cache_dir is not None:
                _check_cache_dir(cache_dir)
            self.mode = mode
        self.alpha_T = alpha_T
        self.schedule = schedule
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.teacher = teacher

        self.alpha: float = 0.0  # alpha_t of the current epoch
        self._finished_epoch = -1  # last epoch whose end-of-epoch work (the teacher's end_epoch) is done
        self._step: _Step | None = None
        self._statistics = EpochStatistics()
        self._warned_teacher_worse = False

    # ---------------------------------------------------------------- policy: override to adapt to other modules
    def unpack_batch(self, batch: Any) -> SelfKDBatch:
        """Split a training batch into inputs, targets and sample indices.

        Accepts ``(inputs, target[, index])`` sequences and mappings with keys ``"input"``, ``"target"`` and
        ``"index"``. Override for other batch layouts.
        """
        if isinstance(batch, Mapping):
            if "input" not in batch or "target" not in batch:
                raise ValueError(
                    f"SelfKDCallback needs training batches with keys 'input' and 'target' (and 'index' in cache mode)"
                    f", got keys {sorted(batch)}. Override SelfKDCallback.unpack_batch for other layouts."
                )
            return SelfKDBatch(batch["input"], batch["target"], batch.get("index"))
        if isinstance(batch, Sequence) and len(batch) in (2, 3):
            return SelfKDBatch(batch[0], batch[1], batch[2] if len(batch) == 3 else None)
        raise ValueError(
            "SelfKDCallback needs training batches `(inputs, target, index)` or a mapping with 'input', 'target' "
            f"and 'index', got {type(batch).__name__}. Override SelfKDCallback.unpack_batch for other layouts."
        )

    def teacher_logits(self, teacher: torch.nn.Module, inputs: Any) -> Tensor:
        """Snapshot mode: the teacher's logits ``(B, C)`` (or ``(B, T, V)`` with teacher forcing) for the inputs.

        Override if the forward differs.
        """
        return teacher(inputs)

    def target_lengths(self, trainer: pl.Trainer) -> Tensor:
        """Cache mode with sequence targets: the number of target tokens of every training sample, ``(N,)``.

        Taken from ``trainer.datamodule.train_target_lengths()`` or, without a DataModule, from the training dataset's
        ``target_lengths`` attribute. Override to take it from elsewhere.
        """
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and callable(getattr(datamodule, "train_target_lengths", None)):
            return torch.as_tensor(datamodule.train_target_lengths(), dtype=torch.long)
        loader = trainer.train_dataloader
        lengths = getattr(getattr(loader, "dataset", None), "target_lengths", None)
        if lengths is not None:
            return torch.as_tensor(lengths, dtype=torch.long)
        raise ValueError(
            "SelfKDCallback(mode='cache') with sequence targets (B, T) needs the number of target tokens of every "
            "training sample to lay out its token cache: give the DataModule a `train_target_lengths()` method "
            "(lightning_skd.data.ParallelTextDataModule has one) or the training dataset a `target_lengths` tensor, "
            "override SelfKDCallback.target_lengths, or use mode='snapshot'."
        )

    def teacher_is_worse(self, summary: dict[str, float], teacher_rows: float) -> bool:
        """Whether an epoch's statistics show a teacher clearly worse than the student while alpha > 0.

        The rule: the applied alpha is at least 0.1 (below it the teacher barely moves the targets), at least 50 rows
        had a teacher, and the teacher's accuracy on them is more than 10 points below the student's own accuracy on
        the same rows. Override for another rule.
        """
        if summary["alpha"] < 0.1 or teacher_rows < 50 or "teacher_acc" not in summary or "student_acc" not in summary:
            return False
        return summary["teacher_acc"] < summary["student_acc"] - 0.10

    def alpha_for_epoch(self, epoch: int, max_epochs: int | None) -> float:
        """Teacher weight for the 1-based ``epoch``; validated to lie in [0, 1]."""
        alpha = float(self.schedule(epoch, max_epochs))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"The alpha schedule returned {alpha} for epoch {epoch}; alpha must lie in [0, 1].")
        return alpha

    # ---------------------------------------------------------------- the loss the module calls
    def loss(self, logits: Tensor, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """Self-KD cross-entropy of the current training batch; called through :func:`self_kd_loss`.

        ``logits (B, C)`` with ``target (B,)``, or token logits ``(B, T, V)`` with ``target (B, T)`` (the mean over
        rows: non-ignored samples or non-padding tokens). With ``mix`` (the batch's images were mixed by CutMix /
        Mixup) the target of sample ``i`` is ``mix.lam * s_i + (1 - mix.lam) * s_perm[i]``, ``s`` the Self-KD soft
        targets of the *un-mixed* samples (see :meth:`soft_targets`), and the batch's predictions are not cached.
        """
        if self._step is None:
            raise RuntimeError(
                "SelfKDCallback.loss was called outside a training batch; call lightning_skd.self_kd_loss from "
                "training_step only."
            )
        step = self._step
        self._check_loss_inputs(logits, target, mix)
        if self.num_classes is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"SelfKDCallback(num_classes={self.num_classes}) but the model outputs {logits.shape[-1]} classes."
            )
        step.loss_calls += 1
        rows = step.batch.rows(logits)  # (R, C)
        target_rows = step.batch.rows(target)  # (R,) the labels trained on: the ones passed here
        step.predictions, step.mixed = rows.detach(), mix is not None
        step.finite = torch.isfinite(step.predictions).all(dim=-1)
        teacher = step.teacher
        self._statistics.add(
            target_rows, step.predictions, step.finite, teacher, self.alpha, step.mixed, step.nonfinite_teachers
        )
        if teacher is not None and teacher.class_ids is None and teacher.values.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"The teacher predicts {teacher.values.shape[-1]} classes but the model outputs {logits.shape[-1]}."
            )
        if mix is not None:  # (B, C) mixed soft targets; predictions on mixed images never become teachers
            return soft_target_cross_entropy(logits, self.soft_targets(target, mix=mix))
        if teacher is None:  # no teacher at all yet (cache mode before the first write)
            return F.cross_entropy(rows.float(), target_rows)
        alpha = self.alpha * teacher.valid.float()  # (R,): no teacher -> hard label (alpha 0 is plain CE)
        return self_kd_cross_entropy(rows, target_rows, teacher.values, alpha, teacher_class_ids=teacher.class_ids)

    def soft_targets(self, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """The current training batch's soft targets ``s_i = (1 - a_i) onehot(y_i) + a_i P_teacher(x_i)``.

        ``(B, C)`` for class targets; ``(B, T, V)`` for token targets; zero rows at ignored positions. ``a_i`` is
        ``alpha_t`` for rows with a teacher and 0 for the others. With ``mix`` the rows are mixed as the images were:
        ``mix.lam * s_i + (1 - mix.lam) * s_perm[i]``. :meth:`loss` uses this matrix for mixed batches and computes
        the same cross-entropy without building it otherwise.
        """
        if self._step is None:
            raise RuntimeError("SelfKDCallback.soft_targets is only available during a training batch.")
        batch, teacher = self._step.batch, self._step.teacher
        predictions = self._step.predictions
        num_classes = predictions.shape[-1] if predictions is not None else self.num_classes
        if num_classes is None:
            raise RuntimeError("Call soft_targets after self_kd_loss (the number of classes is not known yet).")
        target_rows = batch.rows(target)  # (R,)
        if teacher is None or not bool(teacher.valid.any()):
            rows = F.one_hot(target_rows, num_classes).float()  # (R, C)
        else:
            rows = self_kd_targets(target_rows, teacher.dense(num_classes), self.alpha * teacher.valid.float())
        targets = rows.new_zeros(batch.mask.numel(), num_classes)  # (B, C) or (B * T, V), zeros at ignored rows
        targets.index_copy_(0, batch.positions, rows)
        targets = targets.view(*batch.mask.shape, num_classes)
        return targets if mix is None else mix.mix(targets)

    # ---------------------------------------------------------------- hooks, in lifecycle order
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer and start afresh; a resumed checkpoint's state is loaded after this."""
        check_trainer(trainer, "SelfKDCallback")
        if stage != "fit":
            return
        if sum(isinstance(cb, SelfKDCallback) for cb in trainer.callbacks) > 1:
            raise ValueError("Only one SelfKDCallback can be attached to a Trainer.")
        if getattr(self.schedule, "requires_max_epochs", False) and (
            trainer.max_epochs is None or trainer.max_epochs < 1
        ):
            raise ValueError(
                f"The {type(self.schedule).__name__} alpha schedule needs the total number of epochs T: pass "
                f"Trainer(max_epochs=...) (got max_epochs={trainer.max_epochs}), or use schedule='constant'."
            )
        self.teacher.check_trainer(trainer)
        self.alpha, self._finished_epoch, self._warned_teacher_worse = 0.0, -1, False
        self.teacher.reset()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the teacher (the module's own setup has run: some modules build their layers there)."""
        self.teacher.start(trainer, pl_module)
        self._statistics = EpochStatistics(pl_module.device)  # a mid-epoch restart skips on_train_epoch_start

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set ``alpha_t`` for this epoch and reset the epoch's statistics."""
        self.alpha = self.alpha_for_epoch(trainer.current_epoch + 1, trainer.max_epochs)
        self.teacher.start_epoch(trainer)
        self._statistics = EpochStatistics(pl_module.device)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Lay the batch out as rows and ask the teacher for theirs."""
        parts = self.unpack_batch(batch)
        mask = parts.target != self.ignore_index  # (B,) or (B, T): the rows; padding and ignored samples are not
        positions = mask.flatten().nonzero().squeeze(1)  # (R,); the one host sync of the row layout
        rows = BatchRows(parts.inputs, mask, positions, parts.index)
        teacher = self.teacher.rows(trainer, rows)
        nonfinite = None
        if teacher is not None:  # a NaN / inf teacher row is never used: that row trains on its hard label
            teacher, nonfinite = teacher.without_nonfinite()
        self._step = _Step(rows, teacher, nonfinite)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Show the teacher the step's predictions; finish the epoch after its last batch."""
        step, self._step = self._step, None
        if step.loss_calls == 0:
            raise RuntimeError(
                "SelfKDCallback is attached but training_step did not call lightning_skd.self_kd_loss(self, logits, "
                "target): without it the model trains on plain cross-entropy. See the README's minimal example."
            )
        if step.loss_calls > 1:
            raise RuntimeError(
                f"lightning_skd.self_kd_loss was called {step.loss_calls} times in one training step; call it once."
            )
        # a non-finite row never becomes a teacher, nor does a prediction on mixed images (no sample's own)
        keep = step.finite & (not step.mixed)  # (R,)
        self.teacher.observe(trainer, pl_module, step.batch, step.predictions, keep)
        if batch_idx + 1 >= trainer.num_training_batches:
            # Epoch-end validation and the checkpoints saved after it run before on_train_epoch_end: finish the
            # epoch here so that those checkpoints hold the next epoch's teacher.
            self._finish_epoch(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log the epoch's statistics (summed over processes) and warn where they show Self-KD going wrong."""
        summary = self._statistics.summary(trainer)
        teacher_rows = summary.pop("_teacher_rows")
        # Already global (summed over processes), identical on every rank: sync_dist=True says so to Lightning, and
        # its mean of identical values leaves them unchanged.
        for name, value in {"alpha_scheduled": self.alpha, **summary}.items():
            pl_module.log(f"skd/{name}", value, on_step=False, on_epoch=True, sync_dist=True)
        if summary["nonfinite_rows"] or summary["nonfinite_teacher_rows"]:
            rank_zero_warn(
                f"SelfKDCallback: in epoch {trainer.current_epoch}, {int(summary['nonfinite_rows'])} rows of the "
                f"model's predictions were non-finite (NaN/inf) and were not kept as teachers, and "
                f"{int(summary['nonfinite_teacher_rows'])} non-finite teacher rows were not used (those rows trained "
                "on their hard label). Check the learning rate, gradient clipping or mixed-precision loss scaling.",
                category=LightningSKDWarning,
            )
        if not self._warned_teacher_worse and self.teacher_is_worse(summary, teacher_rows):
            self._warned_teacher_worse = True
            rank_zero_warn(
                f"SelfKDCallback: in epoch {trainer.current_epoch} the teacher was right on "
                f"{summary['teacher_acc']:.1%} of the training rows, the student on {summary['student_acc']:.1%} of "
                f"the same rows, while alpha = {summary['alpha']:.2f} pulled the targets toward the teacher. "
                "Distilling from a teacher clearly worse than the student tends to hurt accuracy and calibration. "
                "Try a later start (schedule=LinearAlpha(alpha_T, start_epoch=...)), a smaller alpha_T, or the other "
                "teacher (the other `mode`; for a snapshot of a model with BatchNorm, snapshot_batch_norm='batch'). "
                "This warning is shown once.",
                category=LightningSKDWarning,
            )
        self._finish_epoch(trainer, pl_module)

    # ---------------------------------------------------------------- checkpointing
    @override
    def state_dict(self) -> dict[str, Any]:
        """Alpha, the end-of-epoch position and the teacher's own state."""
        return {
            "format": 1,
            "alpha": self.alpha,
            "finished_epoch": self._finished_epoch,
            "teacher": self.teacher.state_dict(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, or a checkpoint of an earlier format (migrated first)."""
        state = migrate_self_kd_state(state_dict)
        self.alpha = state["alpha"]
        self._finished_epoch = state["finished_epoch"]
        self.teacher.load_state_dict(state["teacher"])

    # ---------------------------------------------------------------- internals
    def _finish_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The teacher's end-of-epoch work, once per epoch."""
        if self._finished_epoch == trainer.current_epoch:
            return
        self._finished_epoch = trainer.current_epoch
        self.teacher.end_epoch(trainer, pl_module)

    def _check_loss_inputs(self, logits: Tensor, target: Tensor, mix: MixInfo | None) -> None:
        batch = self._step.batch
        classes = logits.ndim == 2 and target.ndim == 1
        tokens = logits.ndim == 3 and target.ndim == 2
        if not (classes or tokens) or logits.shape[: target.ndim] != target.shape:
            raise ValueError(
                "self_kd_loss expects logits (B, C) with target (B,), or token logits (B, T, V) with target (B, T), "
                f"got {tuple(logits.shape)} and {tuple(target.shape)}."
            )
        if target.shape != batch.mask.shape:
            raise ValueError(
                f"self_kd_loss got `target` of shape {tuple(target.shape)} but the training batch's target has shape "
                f"{tuple(batch.mask.shape)} (from SelfKDCallback.unpack_batch); pass a target of the batch's shape."
            )
        # The values passed here are trained on (a training_step may remap labels); the batch's target only lays
        # out the rows (and the cache keys), so the two must agree on which positions are ignored.
        passed_rows = target != self.ignore_index
        if not torch.equal(passed_rows, batch.mask.to(passed_rows.device)):
            differ = int((passed_rows != batch.mask.to(passed_rows.device)).sum())
            raise ValueError(
                f"self_kd_loss got a `target` whose ignored positions (== ignore_index={self.ignore_index}) differ "
                f"from those of the training batch's target (SelfKDCallback.unpack_batch) at {differ} of "
                f"{target.numel()} positions: `target` has {int((~passed_rows).sum())} ignored, the batch's target "
                f"{int((~batch.mask).sum())}. Remapping labels in training_step is fine; ignoring other positions is "
                "not: set them to ignore_index in the dataset (or in unpack_batch) instead."
            )
        if mix is not None and tokens:
            raise ValueError("`mix` (CutMix / Mixup) is defined for (B, C) classification, not for token targets.")
        if mix is not None and len(batch.positions) != target.numel():
            raise ValueError(
                f"`mix` (CutMix / Mixup) needs a class for every sample, but the batch has "
                f"{target.numel() - len(batch.positions)} samples with target == ignore_index={self.ignore_index}."
            )


def _check_cache_dir(cache_dir: str) -> None:
    """Raise early, naming ``cache_dir``, if the folder cannot be created or written by this process."""
    path = Path(cache_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"`cache_dir` must be a folder, got {cache_dir!r}, which exists and is not a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ValueError(
            f"`cache_dir` must be a folder this process can create and write, got {cache_dir!r}: "
            f"{type(error).__name__}: {error.strerror or error}."
        ) from error


def self_kd_loss(module: pl.LightningModule, logits: Tensor, target: Tensor, mix: MixInfo | None = None) -> Tensor:
    """The training loss of ``module``: Self-KD cross-entropy if a :class:`SelfKDCallback` is attached.

    Without the callback (a baseline run) this is plain cross-entropy, so one ``training_step`` serves both. Sequence
    outputs are distilled per token: ``logits (B, T, V)`` with ``target (B, T)``, the loss being the mean over the
    non-padding tokens (padding at the callback's ``ignore_index``; -100 without a callback).

    Args:
        module: The LightningModule whose ``training_step`` calls this.
        logits: Its logits for the batch, shape ``(B, C)``, or ``(B, T, V)`` for token targets.
        target: Class indices of the un-mixed samples, shape ``(B,)``, or token ids ``(B, T)``.
        mix: How the batch's images were mixed (CutMix / Mixup, :mod:`lightning_skd.regularizers`), or ``None``.
            The targets are then mixed with the same pairs and weight: Self-KD soft targets with the callback
            (:meth:`SelfKDCallback.soft_targets`), one-hot labels without it.

    Returns:
        The scalar loss.

    Example:
        >>> import pytorch_lightning as pl
        >>> self_kd_loss(pl.LightningModule(), torch.zeros(2, 4), torch.tensor([0, 1]))  # no trainer: plain CE
        tensor(1.3863)
        >>> self_kd_loss(pl.LightningModule(), torch.zeros(1, 3, 4), torch.tensor([[0, 1, -100]]))  # token CE
        tensor(1.3863)

    """
    trainer = module._trainer
    callbacks = [] if trainer is None else [cb for cb in trainer.callbacks if isinstance(cb, SelfKDCallback)]
    if callbacks and trainer.training:
        return callbacks[0].loss(logits, target, mix=mix)
    if mix is not None:
        return soft_target_cross_entropy(logits, mix.mix(F.one_hot(target, logits.shape[-1]).float()))
    return hard_target_cross_entropy(logits, target)
