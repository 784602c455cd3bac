"""Progressive self-knowledge distillation (PS-KD) as a Lightning callback.

Kim et al., "Self-Knowledge Distillation: A Simple Way for Better Generalization", Sec. 2.2, Eq. 6.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import override

from lightning_skd.callbacks.alpha_schedules import NAMED_SCHEDULES, AlphaSchedule
from lightning_skd.callbacks.disk_prediction_cache import DiskPredictionCache
from lightning_skd.callbacks.prediction_cache import PredictionCache, TeacherRows, check_index_range
from lightning_skd.callbacks.token_prediction_cache import TokenPredictionCache
from lightning_skd.functional.soft_targets import self_kd_cross_entropy, self_kd_targets, soft_target_cross_entropy
from lightning_skd.regularizers.mixing import MixInfo

_CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy")


@dataclass
class SelfKDBatch:
    """The parts of a training batch the callback needs."""

    inputs: Any  # what the model's forward takes; used by the snapshot teacher
    target: Tensor  # (B,) class indices, or (B, T) token ids with padding at the callback's ignore_index
    index: Tensor | None  # (B,) position of each sample in the training dataset; required in cache mode


@dataclass
class _TeacherForBatch:
    """The current batch as rows: one per sample, or one per non-padding target token (row-major)."""

    teacher: TeacherRows | None  # None: no teacher table yet (cache mode before the first write)
    target: Tensor  # (R,) class of each row
    mask: Tensor | None  # (B, T) token positions that are rows; None for (B,) targets
    index: Tensor | None  # (B,) dataset indices (cache mode)
    keys: Tensor | None  # (R,) cache rows; None until the cache exists


def _as_rows(scores: Tensor, mask: Tensor | None) -> Tensor:
    """``(B, C)`` scores as they are; ``(B, T, C)`` token scores -> ``(R, C)`` rows of the positions in ``mask``."""
    return scores if mask is None else scores[mask]


class SelfKDCallback(Callback):
    r"""Train with soft targets ``(1 - alpha_t) * onehot(y) + alpha_t * P_{t-1}(x)`` (Kim et al., Eq. 6).

    ``P_{t-1}(x)`` is the model's own prediction from the previous epoch, obtained in one of two ways:

    * ``mode="cache"`` (default, as the official PS-KD code): the softmax output the model produced for each training
      sample during epoch ``t-1`` is kept in a table keyed by the sample's dataset index, and is that sample's teacher
      at epoch ``t``. Every training batch must carry the sample indices. Under DDP each rank all-gathers the
      ``(index, prediction)`` rows of every training step (one collective per payload tensor, on the device), so
      every rank holds the complete table and reads its teachers locally whichever rank made them.
    * ``mode="snapshot"``: a frozen copy of the model, refreshed at the end of each epoch (and every
      ``refresh_every_n_steps`` optimizer steps if set), predicts the teacher distribution on the current batch in
      eval mode. It never gets gradients, is not in the optimizer, not wrapped by DDP and holds no trainer.

    At the first epoch there is no teacher and the target is the hard label. ``alpha_t`` follows ``schedule``:
    ``"linear"`` (the paper's ``alpha_T * t / T`` with ``T = trainer.max_epochs``), ``"constant"``, ``"step"``, an
    :class:`~lightning_skd.callbacks.AlphaSchedule`, or any callable ``(epoch, max_epochs) -> alpha`` with the 1-based
    epoch. Logged each epoch: ``skd/alpha``, ``skd/teacher_acc`` (teacher argmax agrees with the label) and
    ``skd/teacher_coverage`` (fraction of training samples that had a teacher).

    Sequence outputs (translation, language modelling) distil per token: with ``logits (B, T, V)`` and
    ``target (B, T)`` every non-padding token (``target != ignore_index``) gets its own soft target
    ``(1 - alpha_t) * onehot(y_t) + alpha_t * P_teacher(y_t | x, y_<t)``; padding adds no loss, no gradient and no
    cache row. The snapshot teacher runs with teacher forcing on the same batch inputs; the cache keeps each token's
    past prediction in a :class:`~lightning_skd.callbacks.TokenPredictionCache` keyed by (sample index, position),
    sized from the training set's target lengths (:meth:`target_lengths`). Use ``cache_topk`` (e.g. 8) and
    ``cache_dtype="float16"`` there: a dense row per token would cost ``4 * V`` bytes.

    The module's side of the contract is one call in ``training_step``::

        def training_step(self, batch, batch_idx):
            inputs, target, index = batch
            logits = self(inputs)
            return lightning_skd.self_kd_loss(self, logits, target)

    Batches are ``(inputs, target, index)`` sequences or mappings with keys ``"input"``, ``"target"``, ``"index"``;
    override :meth:`unpack_batch` for other layouts and :meth:`teacher_logits` for a teacher forward other than
    ``teacher(inputs)``.

    Args:
        mode: ``"cache"`` or ``"snapshot"``.
        alpha_T: Teacher weight at the last epoch, used by the named schedules.
        schedule: A schedule name, an :class:`~lightning_skd.callbacks.AlphaSchedule` or a callable.
        num_classes: Classes of the model output; inferred from the first logits when ``None``.
        cache_dtype: Storage dtype of cached probabilities: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        cache_topk: Keep only the ``k`` largest cached probabilities per sample (renormalised over those ``k``).
        cache_device: Device of the cache table; ``None`` keeps it on the model's device.
        cache_dir: Keep the cache in memory-mapped files under this folder (one ``rank<r>`` subfolder per process),
            committed atomically at each epoch end; see :class:`~lightning_skd.callbacks.DiskPredictionCache`.
        cache_keep_generations: With ``cache_dir``: finished epochs kept on disk, so older checkpoints can resume.
        refresh_every_n_steps: Snapshot mode only: also refresh the teacher every this many optimizer steps.
        ignore_index: Target value of padding in ``(B, T)`` sequence targets.

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
        ignore_index: int = -100,
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
        if cache_dtype not in _CACHE_DTYPES:
            raise ValueError(f"`cache_dtype` must be one of {sorted(_CACHE_DTYPES)}, got {cache_dtype!r}.")
        if cache_topk is not None and not (isinstance(cache_topk, int) and cache_topk >= 1):
            raise ValueError(f"`cache_topk` must be a positive integer or None, got {cache_topk!r}.")
        if num_classes is not None and cache_topk is not None and cache_topk > num_classes:
            raise ValueError(f"`cache_topk` must be at most num_classes={num_classes}, got {cache_topk}.")
        cache_options = cache_topk is not None or cache_dtype != "float32" or cache_device or cache_dir
        if mode == "snapshot" and cache_options:
            raise ValueError("`cache_dtype`, `cache_topk`, `cache_device` and `cache_dir` only apply to mode='cache'.")
        if cache_dir is not None and (cache_device is not None or cache_dtype == "bfloat16"):
            raise ValueError(
                "`cache_dir` keeps the cache on disk in float32 or float16: drop `cache_device` and use "
                f"cache_dtype='float32' or 'float16' (got cache_device={cache_device!r}, cache_dtype={cache_dtype!r})."
            )
        if not (isinstance(cache_keep_generations, int) and cache_keep_generations >= 1):
            raise ValueError(f"`cache_keep_generations` must be a positive integer, got {cache_keep_generations!r}.")
        if refresh_every_n_steps is not None:
            if mode != "snapshot":
                raise ValueError("`refresh_every_n_steps` only applies to mode='snapshot'.")
            if not (isinstance(refresh_every_n_steps, int) and refresh_every_n_steps >= 1):
                raise ValueError(
                    f"`refresh_every_n_steps` must be a positive integer or None, got {refresh_every_n_steps!r}."
                )
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ValueError(f"`ignore_index` must be an integer, got {ignore_index!r}.")
        self.mode = mode
        self.alpha_T = alpha_T
        self.schedule = schedule
        self.num_classes = num_classes
        self.cache_dtype = _CACHE_DTYPES[cache_dtype]
        self.cache_topk = cache_topk
        self.cache_device = cache_device
        self.cache_dir = cache_dir
        self.cache_keep_generations = cache_keep_generations
        self.refresh_every_n_steps = refresh_every_n_steps
        self.ignore_index = ignore_index

        self.alpha: float = 0.0  # alpha_t of the current epoch
        self.cache: PredictionCache | TokenPredictionCache | None = None
        self.teacher: pl.LightningModule | None = None
        self._has_teacher = False  # snapshot mode: the teacher holds weights from a finished epoch or refresh
        self._last_refresh_step = 0
        self._num_samples: int | None = None
        self._pending_state: dict[str, Any] | None = None
        self._disk_state: dict[str, Any] | None = None  # a checkpoint's disk-cache pointer, opened in on_train_start
        self._finished_epoch = -1  # last epoch whose end-of-epoch work (teacher refresh, cache commit) is done
        self._restored = False  # load_state_dict ran since the last fit started: keep that state
        self._global_rank = 0
        self._batch_teacher: _TeacherForBatch | None = None
        self._predictions: Tensor | None = None  # (R, C) detached student logits of the current batch's rows
        self._batch_mixed = False  # the current batch's images were mixed: its predictions are not cached
        self._loss_calls = 0
        self._teacher_correct = torch.zeros(())
        self._teacher_count = torch.zeros(())
        self._seen = torch.zeros(())

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

    def teacher_logits(self, teacher: pl.LightningModule, inputs: Any) -> Tensor:
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
        non-padding tokens). With ``mix`` (the batch's images were mixed by CutMix / Mixup) the target of sample
        ``i`` is ``mix.lam * s_i + (1 - mix.lam) * s_perm[i]``, ``s`` the Self-KD soft targets of the *un-mixed*
        samples (see :meth:`soft_targets`), and the batch's predictions are not written to the cache.
        """
        if self._batch_teacher is None:
            raise RuntimeError(
                "SelfKDCallback.loss was called outside a training batch; call lightning_skd.self_kd_loss from "
                "training_step only."
            )
        batch = self._batch_teacher
        self._check_loss_inputs(logits, target, mix)
        if self.num_classes is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"SelfKDCallback(num_classes={self.num_classes}) but the model outputs {logits.shape[-1]} classes."
            )
        self._loss_calls += 1
        rows = _as_rows(logits, batch.mask)  # (R, C)
        self._predictions = rows.detach()
        self._batch_mixed = mix is not None
        teacher = batch.teacher
        if teacher is not None and teacher.class_ids is None and teacher.values.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"The teacher predicts {teacher.values.shape[-1]} classes but the model outputs {logits.shape[-1]}."
            )
        if mix is not None:  # (B, C) mixed soft targets; predictions on mixed images never enter the cache
            return soft_target_cross_entropy(logits, self.soft_targets(target, mix=mix))
        if teacher is None:  # no teacher tensor yet (first epoch before the cache exists)
            return F.cross_entropy(rows.float(), batch.target)
        alpha = self.alpha * teacher.valid.float()  # (R,): no teacher -> hard label (alpha 0 is plain CE)
        return self_kd_cross_entropy(rows, batch.target, teacher.values, alpha, teacher_class_ids=teacher.class_ids)

    def soft_targets(self, target: Tensor, mix: MixInfo | None = None) -> Tensor:
        """The current training batch's soft targets ``s_i = (1 - a_i) onehot(y_i) + a_i P_teacher(x_i)``.

        ``(B, C)`` for class targets; ``(B, T, V)`` for token targets, with zero rows at padding. ``a_i`` is
        ``alpha_t`` for rows with a teacher and 0 for the others; ``P_teacher(x_i)`` is row ``i``'s own teacher (its
        cached prediction, or the snapshot teacher on the un-mixed input). With ``mix`` the rows are mixed as the
        images were: ``mix.lam * s_i + (1 - mix.lam) * s_perm[i]``. :meth:`loss` uses this matrix for mixed
        batches and computes the same cross-entropy without building it otherwise.
        """
        if self._batch_teacher is None:
            raise RuntimeError("SelfKDCallback.soft_targets is only available during a training batch.")
        batch = self._batch_teacher
        teacher = batch.teacher
        num_classes = self._predictions.shape[-1] if self._predictions is not None else self.num_classes
        if num_classes is None:
            raise RuntimeError("Call soft_targets after self_kd_loss (the number of classes is not known yet).")
        if teacher is None or not bool(teacher.valid.any()):
            rows = F.one_hot(batch.target, num_classes).float()  # (R, C)
        else:
            rows = self_kd_targets(batch.target, teacher.dense(num_classes), self.alpha * teacher.valid.float())
        if batch.mask is not None:
            tokens = rows.new_zeros(*batch.mask.shape, num_classes)  # (B, T, V), zeros at padding
            tokens[batch.mask] = rows
            return tokens
        return rows if mix is None else mix.mix(rows)

    # ---------------------------------------------------------------- hooks, in lifecycle order
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer when fitting starts (the snapshot teacher is copied in ``on_train_start``)."""
        if stage != "fit":
            return
        self._global_rank = trainer.global_rank
        if sum(isinstance(cb, SelfKDCallback) for cb in trainer.callbacks) > 1:
            raise ValueError("Only one SelfKDCallback can be attached to a Trainer.")
        if getattr(self.schedule, "requires_max_epochs", False) and (
            trainer.max_epochs is None or trainer.max_epochs < 1
        ):
            raise ValueError(
                f"The {type(self.schedule).__name__} alpha schedule needs the total number of epochs T: pass "
                f"Trainer(max_epochs=...) (got max_epochs={trainer.max_epochs}), or use schedule='constant'."
            )
        if self.mode == "snapshot":
            strategy = type(trainer.strategy).__name__
            if strategy in _SHARDED_STRATEGIES:
                raise ValueError(
                    f"SelfKDCallback(mode='snapshot') copies the whole model and cannot work with the sharded "
                    f"{strategy}; use mode='cache' (or a DDP strategy)."
                )
            # The teacher is copied in on_train_start, once the module's own setup has run (modules such as the
            # Translator or LanguageModel(vocab_size=None) build their layers there, after the callbacks' setup).
        if self._pending_state is not None:
            self._apply_state(self._pending_state)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start afresh unless a checkpoint was restored; move the teacher; size the cache from the training set."""
        if not self._restored:  # a new run (e.g. the same callback in a second trainer.fit): nothing carries over
            self._start_afresh()
        self._restored = False
        if self.mode == "snapshot" and self.teacher is None:
            self.teacher = self._make_teacher(pl_module)
            if self._pending_state is not None:  # restored from a checkpoint before the teacher existed
                self._apply_state(self._pending_state)
        if self.teacher is not None:
            self.teacher.to(pl_module.device)
        if self.mode == "cache":
            self._num_samples = self._train_dataset_length(trainer)
            if self._disk_state is not None:
                rows_state = self._disk_state.get("rows", self._disk_state)
                token_level = self._disk_state.get("layout") == "token"
                self._create_cache(rows_state["num_classes"], pl_module, token_level, restore=self._disk_state)
                self._disk_state = None
            elif self.cache is not None:  # restored from a checkpoint's in-memory table
                self._check_cache_matches_dataset()
                self._warn_if_resumed_mid_epoch(trainer.current_epoch)
                self.cache.to(self._cache_device(pl_module))
            if isinstance(self.cache, TokenPredictionCache):
                self.cache.check_lengths(self.target_lengths(trainer))
            rank_zero_info(f"SelfKDCallback: cache mode over {self._num_samples} training samples.")

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set ``alpha_t`` for this epoch and check the training set did not change size."""
        self.alpha = self.alpha_for_epoch(trainer.current_epoch + 1, trainer.max_epochs)
        if self.mode == "cache" and trainer.current_epoch > 0:
            self._num_samples = self._train_dataset_length(trainer)
            self._check_cache_matches_dataset()
        self._teacher_correct = torch.zeros((), device=pl_module.device)
        self._teacher_count = torch.zeros((), device=pl_module.device)
        self._seen = torch.zeros((), device=pl_module.device)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Look up (cache) or compute (snapshot) the teacher distribution of this batch's rows."""
        parts = self.unpack_batch(batch)
        mask = None if parts.target.ndim == 1 else parts.target != self.ignore_index  # (B, T) token rows
        target = _as_rows(parts.target, mask)  # (R,)
        teacher, index, keys = None, None, None
        if self.mode == "cache":
            if parts.index is None:
                raise ValueError(
                    "SelfKDCallback(mode='cache') needs the dataset index of every training sample: make the "
                    "training batches `(inputs, target, index)` (wrap the dataset in lightning_skd.data.IndexedDataset)"
                    " or use mode='snapshot'."
                )
            index = parts.index.long()
            if self.cache is None:
                if self._num_samples is not None:
                    check_index_range(index, self._num_samples)
            else:
                keys = self.cache.keys(index, mask)
                teacher = self.cache.read_teacher(keys, trainer.current_epoch)
        elif self._has_teacher:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                logits = _as_rows(self.teacher_logits(self.teacher, parts.inputs), mask)  # (R, C)
            valid = torch.ones_like(target, dtype=torch.bool)
            teacher = TeacherRows(logits.float().softmax(dim=-1), None, valid)
        self._batch_teacher = _TeacherForBatch(teacher=teacher, target=target, mask=mask, index=index, keys=keys)
        self._predictions = None
        self._batch_mixed = False
        self._loss_calls = 0
        if teacher is not None:  # accumulated on the device: no host sync per step
            agree = teacher.argmax() == target
            self._teacher_correct += (agree & teacher.valid).sum()
            self._teacher_count += teacher.valid.sum()
        self._seen += len(target)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Store this batch's predictions (cache) or refresh the teacher every n steps (snapshot)."""
        if self._loss_calls == 0:
            raise RuntimeError(
                "SelfKDCallback is attached but training_step did not call lightning_skd.self_kd_loss(self, logits, "
                "target): without it the model trains on plain cross-entropy. See the README's minimal example."
            )
        if self._loss_calls > 1:
            raise RuntimeError(
                f"lightning_skd.self_kd_loss was called {self._loss_calls} times in one training step; call it once."
            )
        if self.mode == "cache":
            batch = self._batch_teacher
            if self.cache is None:
                self._create_cache(self._predictions.shape[-1], pl_module, token_level=batch.mask is not None)
            keys = batch.keys if batch.keys is not None else self.cache.keys(batch.index, batch.mask)
            predictions = self._predictions
            if self._batch_mixed:  # predictions on mixed images are no sample's prediction: write no row
                predictions, keys = predictions[:0], keys[:0]
            payload = self.cache.compress_logits(predictions)
            # every rank takes part in the gather, also with no rows (another rank's batch may be un-mixed)
            keys, payload = self._all_gather_rows(trainer, keys, payload)
            if len(keys):
                self.cache.write(keys, payload, trainer.current_epoch)
        elif self.refresh_every_n_steps and trainer.global_step > self._last_refresh_step:
            if trainer.global_step % self.refresh_every_n_steps == 0:
                self._refresh_teacher(pl_module, trainer.global_step)
        self._batch_teacher = None
        self._predictions = None
        self._batch_mixed = False
        if batch_idx + 1 >= trainer.num_training_batches:
            # Epoch-end validation and the checkpoints saved after it run before on_train_epoch_end: finish the
            # epoch here so that those checkpoints hold the next epoch's teacher.
            self._finish_epoch(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log alpha and teacher statistics; snapshot mode: the end-of-epoch weights become the next teacher."""
        stats = torch.stack([self._teacher_correct, self._teacher_count, self._seen]).float()
        correct, count, seen = trainer.strategy.reduce(stats, reduce_op="sum").tolist()
        # Already global (summed over processes above), identical on every rank: sync_dist=True says so to Lightning,
        # and its mean of identical values leaves them unchanged.
        pl_module.log("skd/alpha", self.alpha, on_step=False, on_epoch=True, sync_dist=True)
        pl_module.log("skd/teacher_coverage", count / max(seen, 1.0), on_step=False, on_epoch=True, sync_dist=True)
        if count > 0:
            pl_module.log("skd/teacher_acc", correct / count, on_step=False, on_epoch=True, sync_dist=True)
        self._finish_epoch(trainer, pl_module)

    # ---------------------------------------------------------------- checkpointing
    @override
    def state_dict(self) -> dict[str, Any]:
        """Alpha, the cache table or teacher weights, and the refresh position."""
        return {
            "mode": self.mode,
            "alpha": self.alpha,
            "num_classes": self.num_classes,
            "cache": None if self.cache is None else self.cache.state_dict(),
            "teacher": None if self.teacher is None else {k: v.cpu() for k, v in self.teacher.state_dict().items()},
            "has_teacher": self._has_teacher,
            "last_refresh_step": self._last_refresh_step,
            "finished_epoch": self._finished_epoch,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the teacher is filled once it exists (after ``setup``)."""
        if state_dict["mode"] != self.mode:
            raise ValueError(
                f"The checkpoint was made with SelfKDCallback(mode={state_dict['mode']!r}) but this callback has "
                f"mode={self.mode!r}."
            )
        self._pending_state = state_dict
        self._apply_state(state_dict)
        self._restored = True

    # ---------------------------------------------------------------- internals
    def _apply_state(self, state: dict[str, Any]) -> None:
        self.alpha = state["alpha"]
        self.num_classes = self.num_classes or state["num_classes"]
        self._has_teacher = state["has_teacher"]
        self._last_refresh_step = state["last_refresh_step"]
        self._finished_epoch = state.get("finished_epoch", -1)
        cache_state = state["cache"]
        rows_state = cache_state.get("rows", cache_state) if cache_state is not None else None
        if rows_state is not None and "committed_epoch" in rows_state:
            self._disk_state = cache_state  # opened in on_train_start, once this process's rank is known
        elif cache_state is not None and cache_state.get("layout") == "token":
            self.cache = TokenPredictionCache(cache_state["lengths"], PredictionCache.from_state_dict(rows_state))
        elif cache_state is not None:
            self.cache = PredictionCache.from_state_dict(cache_state)
        if state["teacher"] is not None and self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
            self._pending_state = None
        elif state["teacher"] is None:
            self._pending_state = None

    def _start_afresh(self) -> None:
        self.alpha = 0.0
        self.cache = None
        self._disk_state = None
        self._has_teacher = False
        self._last_refresh_step = 0
        self._finished_epoch = -1

    def _make_teacher(self, pl_module: pl.LightningModule) -> pl.LightningModule:
        # LightningModule.__getstate__ drops the trainer reference. Plain callables held by the module (optimizer /
        # scheduler factories from LightningCLI) are shared, not copied: the teacher only runs forward passes, and
        # under DDP such factories can reach objects that cannot be copied (thread locks).
        shared = {
            id(value): value
            for value in vars(pl_module).values()
            if callable(value) and not isinstance(value, (torch.nn.Module, type))
        }
        teacher = copy.deepcopy(pl_module, memo=shared)
        teacher.requires_grad_(False)
        return teacher.eval()

    @torch.no_grad()
    def _refresh_teacher(self, pl_module: pl.LightningModule, step: int) -> None:
        self.teacher.load_state_dict(pl_module.state_dict())
        self.teacher.to(pl_module.device).eval()
        self._has_teacher = True
        self._last_refresh_step = step

    def _cache_device(self, pl_module: pl.LightningModule) -> torch.device:
        return torch.device(self.cache_device) if self.cache_device is not None else pl_module.device

    def _finish_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """End-of-epoch work, once per epoch: commit the cache's epoch, or make the current weights the teacher."""
        if self._finished_epoch == trainer.current_epoch:
            return
        self._finished_epoch = trainer.current_epoch
        if self.mode == "snapshot":
            self._refresh_teacher(pl_module, trainer.global_step)
        elif self.cache is not None:
            self.cache.end_epoch(trainer.current_epoch)

    def _create_cache(
        self,
        num_classes: int,
        pl_module: pl.LightningModule,
        token_level: bool = False,
        restore: dict[str, Any] | None = None,
    ) -> None:
        """One row per sample, or (``token_level``) a token cache over the training set's target lengths."""
        lengths = None
        num_rows = self._num_samples
        if token_level:
            lengths = restore["lengths"] if restore is not None else self.target_lengths(pl_module.trainer)
            num_rows = int(torch.as_tensor(lengths).sum())
            if len(lengths) != self._num_samples:
                raise ValueError(
                    f"The training set's target lengths cover {len(lengths)} samples but the training dataset has "
                    f"{self._num_samples}: SelfKDCallback.target_lengths must give one length per training sample."
                )
        if self.cache_dir is None:
            device = self._cache_device(pl_module)
            rows = PredictionCache(num_rows, num_classes, self.cache_dtype, self.cache_topk, device)
        else:
            folder = Path(self.cache_dir) / f"rank{self._global_rank}"
            rows = DiskPredictionCache(
                folder, num_rows, num_classes, self.cache_dtype, self.cache_topk, self.cache_keep_generations
            )
            if restore is not None:
                rows.restore(restore.get("rows", restore))
            elif rows.holds_generations:
                raise FileExistsError(
                    f"SelfKDCallback(cache_dir={self.cache_dir!r}): {folder} holds a prediction cache from another "
                    "run. Resume that run from its checkpoint (ckpt_path=...), or delete the folder / choose a new "
                    "cache_dir."
                )
        self.cache = rows if lengths is None else TokenPredictionCache(lengths, rows)
        if token_level and restore is None:
            rank_zero_info(
                f"SelfKDCallback: token cache over {num_rows} target tokens of {len(lengths)} samples "
                f"({self.cache.nbytes / 2**20:.1f} MiB)."
            )

    def _check_loss_inputs(self, logits: Tensor, target: Tensor, mix: MixInfo | None) -> None:
        batch = self._batch_teacher
        classes = logits.ndim == 2 and target.ndim == 1
        tokens = logits.ndim == 3 and target.ndim == 2
        if not (classes or tokens) or logits.shape[: target.ndim] != target.shape:
            raise ValueError(
                "self_kd_loss expects logits (B, C) with target (B,), or token logits (B, T, V) with target (B, T), "
                f"got {tuple(logits.shape)} and {tuple(target.shape)}."
            )
        if (batch.mask is not None) != tokens or (tokens and target.shape != batch.mask.shape):
            raise ValueError(
                f"self_kd_loss got target of shape {tuple(target.shape)} but the training batch's target has "
                f"{'shape ' + str(tuple(batch.mask.shape)) if batch.mask is not None else 'one class per sample'}; "
                "pass the batch's own target."
            )
        if tokens and mix is not None:
            raise ValueError("`mix` (CutMix / Mixup) is defined for (B, C) classification, not for token targets.")

    def _check_cache_matches_dataset(self) -> None:
        if self.cache is not None and self.cache.num_samples != self._num_samples:
            raise ValueError(
                f"The training dataset has {self._num_samples} samples but the Self-KD prediction cache was built "
                f"for {self.cache.num_samples}. Cache mode needs a fixed training set with stable indices; use "
                "mode='snapshot' for datasets whose length changes."
            )

    def _warn_if_resumed_mid_epoch(self, epoch: int) -> None:
        already_written = self.cache.rows_written_in(epoch)
        if already_written:
            unit = "target tokens" if isinstance(self.cache, TokenPredictionCache) else "samples"
            rank_zero_warn(
                f"SelfKDCallback: the checkpoint was taken during epoch {epoch}; {already_written} {unit} already "
                "hold their prediction of this epoch. If the restarted epoch meets them again they are trained on "
                "their hard label (their epoch-(t-1) prediction was overwritten) and keep that prediction. Resume "
                "from an end-of-epoch checkpoint for bit-exact Self-KD."
            )

    @staticmethod
    def _train_dataset_length(trainer: pl.Trainer) -> int:
        loader = trainer.train_dataloader
        if isinstance(loader, DataLoader):
            return len(loader.dataset)
        raise ValueError(
            "SelfKDCallback(mode='cache') needs a single training DataLoader over a map-style dataset to size its "
            f"prediction cache, got {type(loader).__name__}; use mode='snapshot' for other loaders."
        )

    @staticmethod
    def _all_gather_rows(
        trainer: pl.Trainer, index: Tensor, payload: dict[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """All ranks' ``(index, payload)`` rows in rank order; pads uneven batches. One collective per tensor."""
        if trainer.world_size == 1:
            return index, payload
        strategy = trainer.strategy
        sizes = strategy.all_gather(torch.tensor([len(index)], device=index.device)).reshape(-1)  # (W,)
        width = int(sizes.max())
        if width == 0:  # no rank has rows (all batches mixed): nothing to gather
            return index, payload
        keep = torch.arange(width, device=index.device)[None, :] < sizes[:, None]  # (W, width)

        def gather(rows: Tensor) -> Tensor:
            padded = torch.cat([rows, rows.new_zeros((width - len(rows), *rows.shape[1:]))]).contiguous()
            if padded.dtype in (torch.float32, torch.float64, torch.int32, torch.int64):
                return strategy.all_gather(padded)[keep]  # (W, width, ...) -> (sum of sizes, ...)
            # 16-bit payloads (float16/bfloat16 values, int16 class ids) travel as bytes: NCCL has no int16 and gloo
            # no bfloat16, but both move uint8.
            as_bytes = padded.view(torch.uint8)  # (width, k * itemsize)
            return strategy.all_gather(as_bytes)[keep].view(padded.dtype)

        return gather(index), {name: gather(rows) for name, rows in payload.items()}


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
    if logits.ndim == 3:  # (B, T, V) tokens: cross_entropy wants the classes in dimension 1
        return F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=-100)
    return F.cross_entropy(logits.float(), target)
