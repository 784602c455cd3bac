"""Progressive self-knowledge distillation (PS-KD) as a Lightning callback.

Kim et al., "Self-Knowledge Distillation: A Simple Way for Better Generalization", Sec. 2.2, Eq. 6.
"""

from __future__ import annotations

import copy
import inspect
import tempfile
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
# LightningModule methods that torch.compile(LightningModule) replaces by instance attributes wrapping the bound method
_COMPILED_METHODS = ("forward", "training_step", "validation_step", "test_step", "predict_step")
# Per-epoch counts, accumulated on the device and summed over processes at the epoch's end.
_EPOCH_COUNTS = ("teacher_correct", "teacher_rows", "rows", "nonfinite_predictions", "nonfinite_teachers")


@dataclass
class SelfKDBatch:
    """The parts of a training batch the callback needs."""

    inputs: Any  # what the model's forward takes; used by the snapshot teacher
    target: Tensor  # (B,) class indices, or (B, T) token ids with padding at the callback's ignore_index
    index: Tensor | None  # (B,) position of each sample in the training dataset; required in cache mode


@dataclass
class _TeacherForBatch:
    """The current batch as rows: one per non-padding sample, or one per non-padding target token (row-major)."""

    teacher: TeacherRows | None  # None: no teacher table yet (cache mode before the first write)
    mask: Tensor  # (B,) or (B, T) bool: the positions that are rows (target != ignore_index)
    positions: Tensor  # (R,) flat positions of the rows in ``mask``
    index: Tensor | None  # (B,) dataset indices (cache mode)
    keys: Tensor | None  # (R,) cache rows; None until the cache exists
    nonfinite_teachers: Tensor | None = None  # () teacher rows dropped for being NaN / inf

    @property
    def token_level(self) -> bool:
        """Whether the targets are ``(B, T)`` token sequences."""
        return self.mask.ndim == 2

    def rows(self, values: Tensor) -> Tensor:
        """``values`` of shape ``(*mask.shape, ...)`` at the row positions: ``(R, ...)``; differentiable, no sync."""
        return values.flatten(0, self.mask.ndim - 1).index_select(0, self.positions)


def _finite_teacher(teacher: TeacherRows) -> tuple[TeacherRows, Tensor]:
    """``teacher`` without its non-finite rows (marked invalid, zeroed) and how many valid rows were non-finite."""
    finite = torch.isfinite(teacher.values).all(dim=-1)  # (R,)
    nonfinite = (teacher.valid & ~finite).sum()
    valid = teacher.valid & finite
    values = torch.where(valid[:, None], teacher.values, torch.zeros_like(teacher.values))
    return TeacherRows(values, teacher.class_ids, valid), nonfinite


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
            committed atomically at each epoch end; see :class:`~lightning_skd.callbacks.DiskPredictionCache`.
        cache_keep_generations: With ``cache_dir``: finished epochs kept on disk, so older checkpoints can resume.
        refresh_every_n_steps: Snapshot mode only: also refresh the teacher every this many optimizer steps.
        ignore_index: Target value of ignored samples in ``(B,)`` class targets and of padding in ``(B, T)``
            sequence targets.

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
        if cache_dir is not None:
            _check_cache_dir(cache_dir)
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
        self._teacher_checked = False  # snapshot mode: the teacher forward ran once on this fit's first batch
        self._counts = torch.zeros(len(_EPOCH_COUNTS))  # this epoch's statistics, see _EPOCH_COUNTS

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
        rows = batch.rows(logits)  # (R, C)
        target_rows = batch.rows(target)  # (R,) the labels trained on: the ones passed here
        self._predictions = rows.detach()
        self._batch_mixed = mix is not None
        teacher = batch.teacher
        if teacher is not None and teacher.class_ids is None and teacher.values.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"The teacher predicts {teacher.values.shape[-1]} classes but the model outputs {logits.shape[-1]}."
            )
        self._count_rows(teacher, target_rows, self._predictions)
        if mix is not None:  # (B, C) mixed soft targets; predictions on mixed images never enter the cache
            return soft_target_cross_entropy(logits, self.soft_targets(target, mix=mix))
        if teacher is None:  # no teacher tensor yet (first epoch before the cache exists)
            return F.cross_entropy(rows.float(), target_rows)
        alpha = self.alpha * teacher.valid.float()  # (R,): no teacher -> hard label (alpha 0 is plain CE)
        return self_kd_cross_entropy(rows, target_rows, teacher.values, alpha, teacher_class_ids=teacher.class_ids)

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
        target_rows = batch.rows(target)  # (R,)
        if teacher is None or not bool(teacher.valid.any()):
            rows = F.one_hot(target_rows, num_classes).float()  # (R, C)
        else:
            rows = self_kd_targets(target_rows, teacher.dense(num_classes), self.alpha * teacher.valid.float())
        targets = rows.new_zeros(batch.mask.numel(), num_classes)  # (B, C) or (B * T, V), zeros at padding
        targets.index_copy_(0, batch.positions, rows)
        targets = targets.view(*batch.mask.shape, num_classes)
        return targets if mix is None else mix.mix(targets)

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
            if any(cls.__name__ in _SHARDED_STRATEGIES for cls in type(trainer.strategy).__mro__):
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
        self._teacher_checked = False
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
                samples = len(self._disk_state["lengths"]) if token_level else rows_state["num_samples"]
                self._check_cache_matches_dataset(samples, resumed=True)
                self._create_cache(rows_state["num_classes"], pl_module, token_level, restore=self._disk_state)
                self._disk_state = None
            elif self.cache is not None:  # restored from a checkpoint's in-memory table
                self._check_cache_matches_dataset(self.cache.num_samples, resumed=True)
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
            if self.cache is not None:
                self._check_cache_matches_dataset(self.cache.num_samples, resumed=False)
        self._counts = torch.zeros(len(_EPOCH_COUNTS), device=pl_module.device)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Look up (cache) or compute (snapshot) the teacher distribution of this batch's rows."""
        parts = self.unpack_batch(batch)
        mask = parts.target != self.ignore_index  # (B,) or (B, T): the rows; padding and ignored samples are not
        positions = mask.flatten().nonzero().squeeze(1)  # (R,); the one host sync of the row layout
        teacher, index, keys, nonfinite_teachers = None, None, None, None
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
        elif self._has_teacher or not self._teacher_checked:
            # Before the first refresh the teacher still runs once, on the first batch, with no weight in the loss:
            # a forward that does not fit the batch (unpack_batch / teacher_logits) fails at step 0, not an epoch on.
            teacher = self._snapshot_teacher_rows(trainer, parts.inputs, mask, positions)
            self._teacher_checked = True
        if teacher is not None:  # a NaN / inf teacher row is never used: that row trains on its hard label
            teacher, nonfinite_teachers = _finite_teacher(teacher)
        self._batch_teacher = _TeacherForBatch(teacher, mask, positions, index, keys, nonfinite_teachers)
        self._predictions = None
        self._batch_mixed = False
        self._loss_calls = 0

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
                self._create_cache(self._predictions.shape[-1], pl_module, token_level=batch.token_level)
            keys = batch.keys if batch.keys is not None else self.cache.keys(batch.index, batch.mask)
            predictions = self._predictions
            if self._batch_mixed:  # predictions on mixed images are no sample's prediction: write no row
                predictions, keys = predictions[:0], keys[:0]
            else:  # a non-finite row never becomes a teacher: the sample keeps its older prediction
                finite = torch.isfinite(predictions).all(dim=-1)  # (R,)
                predictions, keys = predictions[finite], keys[finite]
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
        totals = trainer.strategy.reduce(self._counts.clone(), reduce_op="sum").tolist()
        counts = dict(zip(_EPOCH_COUNTS, totals, strict=True))
        # Already global (summed over processes above), identical on every rank: sync_dist=True says so to Lightning,
        # and its mean of identical values leaves them unchanged.
        logged = {
            "skd/alpha": self.alpha,
            "skd/teacher_coverage": counts["teacher_rows"] / max(counts["rows"], 1.0),
            "skd/nonfinite_rows": counts["nonfinite_predictions"],
            "skd/nonfinite_teacher_rows": counts["nonfinite_teachers"],
        }
        if counts["teacher_rows"] > 0:
            logged["skd/teacher_acc"] = counts["teacher_correct"] / counts["teacher_rows"]
        for name, value in logged.items():
            pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=True)
        if counts["nonfinite_predictions"] or counts["nonfinite_teachers"]:
            rank_zero_warn(
                f"SelfKDCallback: in epoch {trainer.current_epoch}, {int(counts['nonfinite_predictions'])} rows of the "
                f"model's predictions were non-finite (NaN/inf) and were not kept as teachers, and "
                f"{int(counts['nonfinite_teachers'])} non-finite teacher rows were not used (those rows trained on "
                "their hard label). Check the learning rate, gradient clipping or mixed-precision loss scaling."
            )
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

    def _snapshot_teacher_rows(self, trainer: pl.Trainer, inputs: Any, mask: Tensor, positions: Tensor) -> TeacherRows:
        """The snapshot teacher's distributions of the batch's rows; all invalid before the first refresh."""
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            try:
                logits = self.teacher_logits(self.teacher, inputs)
            except Exception as error:
                if not self._teacher_checked:
                    error.add_note(
                        "SelfKDCallback(mode='snapshot') ran its teacher on the first training batch: "
                        "teacher_logits(teacher, inputs) with the inputs SelfKDCallback.unpack_batch returned. If the "
                        "batch layout is your own, override teacher_logits as well as unpack_batch."
                    )
                raise
        expected = tuple(mask.shape)
        if not isinstance(logits, Tensor) or logits.ndim != mask.ndim + 1 or tuple(logits.shape[:-1]) != expected:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(
                f"SelfKDCallback.teacher_logits must return logits of shape {expected + ('C',)} for this batch "
                f"(target shape {expected}), got {got}. Override teacher_logits for models whose forward returns "
                "something else."
            )
        rows = _TeacherForBatch(None, mask, positions, None, None).rows(logits)  # (R, C)
        valid = torch.full((len(positions),), self._has_teacher, dtype=torch.bool, device=rows.device)
        probs = rows.float().softmax(dim=-1) * valid[:, None]
        return TeacherRows(probs, None, valid)

    def _count_rows(self, teacher: TeacherRows | None, target: Tensor, predictions: Tensor) -> None:
        """Add a batch's rows to this epoch's statistics (:data:`_EPOCH_COUNTS`), on the device: no host sync."""
        zero = torch.zeros((), device=target.device, dtype=torch.long)
        correct = zero if teacher is None else ((teacher.argmax() == target) & teacher.valid).sum()
        with_teacher = zero if teacher is None else teacher.valid.sum()
        nonfinite_predictions = (~torch.isfinite(predictions).all(dim=-1)).sum()
        nonfinite_teachers = self._batch_teacher.nonfinite_teachers
        counts = [
            correct,
            with_teacher,
            torch.full_like(zero, len(target)),
            nonfinite_predictions,
            zero if nonfinite_teachers is None else nonfinite_teachers,
        ]
        self._counts += torch.stack(counts).to(self._counts)

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
        # torch.compile(LightningModule) makes `forward` and the step methods instance attributes wrapping the
        # *student's* bound methods; a copy sharing them would run the live student. The teacher drops them (falling
        # back to its own class methods) and compiles its own forward with the same compiler settings.
        compiled = getattr(pl_module, "_compiler_ctx", None)
        wrapped = {name for name in _COMPILED_METHODS if name in vars(pl_module)}
        if compiled is None:
            for name in wrapped:
                value = vars(pl_module)[name]
                if not (inspect.ismethod(value) and value.__self__ is pl_module):
                    raise ValueError(
                        f"SelfKDCallback(mode='snapshot') cannot copy {type(pl_module).__name__}: its `{name}` is an "
                        f"instance attribute ({type(value).__name__}) that the frozen teacher would share with the "
                        "student. Compile with torch.compile(module) or compile the inner nn.Module instead, or use "
                        "mode='cache'."
                    )
        shared = {
            id(value): value
            for name, value in vars(pl_module).items()
            if callable(value) and not isinstance(value, (torch.nn.Module, type)) and name not in wrapped
        }
        if compiled is not None:
            shared[id(compiled)] = None  # the teacher is compiled below, not through the student's context
        teacher = copy.deepcopy(pl_module, memo=shared)
        if compiled is not None:
            for name in wrapped:
                delattr(teacher, name)
            teacher.forward = compiled["dynamo_ctx"](teacher.forward)
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

    def _check_cache_matches_dataset(self, cached_samples: int, resumed: bool) -> None:
        if cached_samples == self._num_samples:
            return
        what_to_do = (
            "Resume with the training set the checkpoint was trained on; to train on another one, start a new run "
            "(no ckpt_path"
            + (", and a new or empty cache_dir" if self.cache_dir is not None else "")
            + "): the checkpoint's teachers belong to the old samples."
            if resumed
            else "Keep the training set fixed during fit."
        )
        raise ValueError(
            f"The training dataset has {self._num_samples} samples but the Self-KD prediction cache "
            f"{'in the checkpoint ' if resumed else ''}was built for {cached_samples}: cache mode keys each teacher "
            f"by sample index. {what_to_do} Use mode='snapshot' for a training set whose size changes."
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
    if logits.ndim == 3:  # (B, T, V) tokens: cross_entropy wants the classes in dimension 1
        return F.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=-100)
    return F.cross_entropy(logits.float(), target)
