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
from lightning_skd.callbacks.prediction_cache import PredictionCache, check_index_range
from lightning_skd.functional.soft_targets import self_kd_cross_entropy, self_kd_targets

_CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_SHARDED_STRATEGIES = ("FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy")


@dataclass
class SelfKDBatch:
    """The parts of a training batch the callback needs."""

    inputs: Any  # what the model's forward takes; used by the snapshot teacher
    target: Tensor  # (B,) class indices
    index: Tensor | None  # (B,) position of each sample in the training dataset; required in cache mode


@dataclass
class _TeacherForBatch:
    probs: Tensor  # (B, C) teacher probabilities, zeros where `valid` is False
    valid: Tensor  # (B,) bool: the sample has a teacher
    index: Tensor | None  # (B,)


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

        self.alpha: float = 0.0  # alpha_t of the current epoch
        self.cache: PredictionCache | None = None
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
        self._predictions: Tensor | None = None  # (B, C) student probabilities of the current batch
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
        """Snapshot mode: the teacher's logits ``(B, C)`` for the batch inputs. Override if forward differs."""
        return teacher(inputs)

    def alpha_for_epoch(self, epoch: int, max_epochs: int | None) -> float:
        """Teacher weight for the 1-based ``epoch``; validated to lie in [0, 1]."""
        alpha = float(self.schedule(epoch, max_epochs))
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"The alpha schedule returned {alpha} for epoch {epoch}; alpha must lie in [0, 1].")
        return alpha

    # ---------------------------------------------------------------- the loss the module calls
    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Self-KD cross-entropy of the current training batch; called through :func:`self_kd_loss`."""
        if self._batch_teacher is None:
            raise RuntimeError(
                "SelfKDCallback.loss was called outside a training batch; call lightning_skd.self_kd_loss from "
                "training_step only."
            )
        if logits.ndim != 2 or logits.shape[0] != target.shape[0]:
            raise ValueError(
                f"self_kd_loss expects logits of shape (B, C) and target (B,), got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}."
            )
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"SelfKDCallback(num_classes={self.num_classes}) but the model outputs {logits.shape[1]} classes."
            )
        self._loss_calls += 1
        teacher = self._batch_teacher
        probs = logits.detach().float().softmax(dim=-1)  # (B, C)
        self._predictions = probs
        if teacher.probs.shape[-1] not in (0, logits.shape[-1]):
            raise ValueError(
                f"The teacher predicts {teacher.probs.shape[-1]} classes but the model outputs {logits.shape[-1]}."
            )
        if not teacher.probs.shape[-1]:  # no teacher tensor yet (first epoch before the cache exists)
            return F.cross_entropy(logits.float(), target)
        alpha = self.alpha * teacher.valid.float()  # (B,): no teacher -> hard label (alpha 0 is plain CE)
        return self_kd_cross_entropy(logits, target, teacher.probs, alpha)

    def soft_targets(self, target: Tensor) -> Tensor:
        """The current training batch's soft targets ``(1 - a_i) onehot(y_i) + a_i P_teacher(x_i)``, shape ``(B, C)``.

        ``a_i`` is ``alpha_t`` for samples with a teacher and 0 for the others. For custom losses (e.g. mixing with
        CutMix); :meth:`loss` computes the same cross-entropy without building this matrix.
        """
        if self._batch_teacher is None:
            raise RuntimeError("SelfKDCallback.soft_targets is only available during a training batch.")
        teacher = self._batch_teacher
        if not bool(teacher.valid.any()):
            num_classes = self._predictions.shape[-1] if self._predictions is not None else self.num_classes
            if num_classes is None:
                raise RuntimeError("Call soft_targets after self_kd_loss (the number of classes is not known yet).")
            return F.one_hot(target, num_classes).float()
        return self_kd_targets(target, teacher.probs, self.alpha * teacher.valid.float())

    # ---------------------------------------------------------------- hooks, in lifecycle order
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the trainer and build the snapshot teacher when fitting starts."""
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
            if self.teacher is None:
                self.teacher = self._make_teacher(pl_module)
        if self._pending_state is not None:
            self._apply_state(self._pending_state)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start afresh unless a checkpoint was restored; move the teacher; size the cache from the training set."""
        if not self._restored:  # a new run (e.g. the same callback in a second trainer.fit): nothing carries over
            self._start_afresh()
        self._restored = False
        if self.teacher is not None:
            self.teacher.to(pl_module.device)
        if self.mode == "cache":
            self._num_samples = self._train_dataset_length(trainer)
            if self._disk_state is not None:
                self._create_cache(self._disk_state["num_classes"], pl_module, restore=self._disk_state)
                self._disk_state = None
            elif self.cache is not None:
                self._check_cache_matches_dataset()
                self._warn_if_resumed_mid_epoch(trainer.current_epoch)
                self.cache.to(self._cache_device(pl_module))
            elif self.num_classes is not None:
                self._create_cache(self.num_classes, pl_module)
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
        """Look up (cache) or compute (snapshot) the teacher distribution of this batch."""
        parts = self.unpack_batch(batch)
        target = parts.target
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
                probs, valid = (
                    target.new_zeros((len(target), 0), dtype=torch.float32),
                    torch.zeros_like(target, dtype=torch.bool),
                )
            else:
                probs, valid = self.cache.read(index, trainer.current_epoch)
        else:
            index = None
            valid = torch.full_like(target, self._has_teacher, dtype=torch.bool)
            if self._has_teacher:
                with torch.no_grad(), trainer.precision_plugin.forward_context():
                    probs = self.teacher_logits(self.teacher, parts.inputs).float().softmax(dim=-1)
            else:
                probs = target.new_zeros((len(target), 0), dtype=torch.float32)
        self._batch_teacher = _TeacherForBatch(probs=probs, valid=valid, index=index)
        self._predictions = None
        self._loss_calls = 0
        if probs.shape[-1]:  # accumulated on the device: no host sync per step
            agree = probs.argmax(dim=-1) == target
            self._teacher_correct += (agree & valid).sum()
            self._teacher_count += valid.sum()
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
            predictions = self._predictions
            if self.cache is None:
                self._create_cache(predictions.shape[-1], pl_module)
            payload = self.cache.compress(predictions)
            index, payload = self._all_gather_rows(trainer, self._batch_teacher.index, payload)
            self.cache.write(index, payload, trainer.current_epoch)
        elif self.refresh_every_n_steps and trainer.global_step > self._last_refresh_step:
            if trainer.global_step % self.refresh_every_n_steps == 0:
                self._refresh_teacher(pl_module, trainer.global_step)
        self._batch_teacher = None
        self._predictions = None
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
        if state["cache"] is not None and "committed_epoch" in state["cache"]:
            self._disk_state = state["cache"]  # opened in on_train_start, once this process's rank is known
        elif state["cache"] is not None:
            self.cache = PredictionCache.from_state_dict(state["cache"])
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
        self, num_classes: int, pl_module: pl.LightningModule, restore: dict[str, Any] | None = None
    ) -> None:
        if self.cache_dir is None:
            self.cache = PredictionCache(
                self._num_samples, num_classes, self.cache_dtype, self.cache_topk, self._cache_device(pl_module)
            )
            return
        folder = Path(self.cache_dir) / f"rank{self._global_rank}"
        cache = DiskPredictionCache(
            folder, self._num_samples, num_classes, self.cache_dtype, self.cache_topk, self.cache_keep_generations
        )
        if restore is not None:
            cache.restore(restore)
        elif cache.holds_generations:
            raise FileExistsError(
                f"SelfKDCallback(cache_dir={self.cache_dir!r}): {folder} holds a prediction cache from another run. "
                "Resume that run from its checkpoint (ckpt_path=...), or delete the folder / choose a new cache_dir."
            )
        self.cache = cache

    def _check_cache_matches_dataset(self) -> None:
        if self.cache is not None and self.cache.num_samples != self._num_samples:
            raise ValueError(
                f"The training dataset has {self._num_samples} samples but the Self-KD prediction cache was built "
                f"for {self.cache.num_samples}. Cache mode needs a fixed training set with stable indices; use "
                "mode='snapshot' for datasets whose length changes."
            )

    def _warn_if_resumed_mid_epoch(self, epoch: int) -> None:
        already_written = int((self.cache.stamps == epoch).sum())
        if already_written:
            rank_zero_warn(
                f"SelfKDCallback: the checkpoint was taken during epoch {epoch}; {already_written} samples already "
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


def self_kd_loss(module: pl.LightningModule, logits: Tensor, target: Tensor) -> Tensor:
    """The training loss of ``module``: Self-KD cross-entropy if a :class:`SelfKDCallback` is attached.

    Without the callback (a baseline run) this is plain cross-entropy, so one ``training_step`` serves both.

    Args:
        module: The LightningModule whose ``training_step`` calls this.
        logits: Its logits for the batch, shape ``(B, C)``.
        target: Class indices, shape ``(B,)``.

    Returns:
        The scalar loss.

    Example:
        >>> import pytorch_lightning as pl
        >>> self_kd_loss(pl.LightningModule(), torch.zeros(2, 4), torch.tensor([0, 1]))  # no trainer: plain CE
        tensor(1.3863)

    """
    trainer = module._trainer
    callbacks = [] if trainer is None else [cb for cb in trainer.callbacks if isinstance(cb, SelfKDCallback)]
    if callbacks and trainer.training:
        return callbacks[0].loss(logits, target)
    return F.cross_entropy(logits.float(), target)
