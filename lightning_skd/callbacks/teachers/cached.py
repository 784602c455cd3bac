"""The cached teacher: each training sample's (or token's) own prediction from the previous epoch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_skd._lightning import pl, rank_zero_info, rank_zero_warn
from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.callbacks._distributed import all_gather_rows
from lightning_skd.callbacks.memmap_prediction_table import MemmapPredictionTable
from lightning_skd.callbacks.prediction_table import (
    MemoryPredictionTable,
    PredictionTable,
    TeacherRows,
    check_index_range,
)
from lightning_skd.callbacks.row_keys import SampleKeys, TokenKeys
from lightning_skd.callbacks.teachers.base import BatchRows, Teacher, check_state_kind

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CachedTeacher(Teacher):
    """``mode="cache"`` (the official PS-KD code's way): the softmax output the model produced for each training row.

    During epoch ``t-1`` every row's prediction is stored in a :class:`PredictionTable` keyed by the sample's dataset
    index (or, for token targets, by (index, position): :class:`TokenKeys`), and is that row's teacher at epoch
    ``t``. Every training batch must carry the sample indices. Under DDP each rank all-gathers the
    ``(key, prediction)`` rows of every training step, so every rank holds the complete table.

    Args:
        dtype: Storage dtype of the probabilities: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        topk: Keep only the ``k`` largest probabilities per row (renormalised over those ``k``).
        device: Device of an in-memory table; ``None`` keeps it on the model's device.
        cache_dir: Keep the table in memory-mapped files under this folder (one ``rank<r>`` subfolder per process).
        keep_generations: With ``cache_dir``: finished epochs kept on disk, so older checkpoints can resume.
        target_lengths: ``trainer -> (N,)`` token counts of the training samples, for token targets.

    """

    def __init__(
        self,
        dtype: str = "float32",
        topk: int | None = None,
        device: str | None = None,
        cache_dir: str | None = None,
        keep_generations: int = 2,
        target_lengths: Callable[[pl.Trainer], Tensor] | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"`cache_dtype` must be one of {sorted(_DTYPES)}, got {dtype!r}.")
        if topk is not None and not (isinstance(topk, int) and topk >= 1):
            raise ValueError(f"`cache_topk` must be a positive integer or None, got {topk!r}.")
        if cache_dir is not None and (device is not None or dtype == "bfloat16"):
            raise ValueError(
                "`cache_dir` keeps the cache on disk in float32 or float16: drop `cache_device` and use "
                f"cache_dtype='float32' or 'float16' (got cache_device={device!r}, cache_dtype={dtype!r})."
            )
        if not (isinstance(keep_generations, int) and keep_generations >= 1):
            raise ValueError(f"`cache_keep_generations` must be a positive integer, got {keep_generations!r}.")
        self.dtype = _DTYPES[dtype]
        self.topk = topk
        self.device = device
        self.cache_dir = cache_dir
        self.keep_generations = keep_generations
        self.target_lengths = target_lengths
        self.table: PredictionTable | None = None
        self.layout: SampleKeys | TokenKeys | None = None
        self.num_samples: int | None = None
        self._restored_memmap: dict[str, Any] | None = None  # a checkpoint's on-disk table, opened in start()
        self._check_resumed_epoch = False  # a restored in-memory table: check the restarted epoch's rows
        self._rank = 0

    def reset(self) -> None:
        """Forget an earlier fit's table."""
        self.table, self.layout, self._restored_memmap = None, None, None
        self._check_resumed_epoch = False

    def start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Size from the training set; open a resumed checkpoint's table."""
        self._rank = trainer.global_rank
        self.num_samples = _train_dataset_length(trainer)
        if self.layout is not None:  # restored from a checkpoint
            self._check_samples(self.layout.num_samples, resumed=True)
            self._open_restored(trainer, pl_module)
        if isinstance(self.layout, TokenKeys):
            self.layout.check_lengths(self._target_lengths(trainer))
        rank_zero_info(f"SelfKDCallback: cache mode over {self.num_samples} training samples.")

    def start_epoch(self, trainer: pl.Trainer) -> None:
        """Refuse a training set whose size changed since the table was built."""
        if trainer.current_epoch > 0:
            self.num_samples = _train_dataset_length(trainer)
            if self.layout is not None:
                self._check_samples(self.layout.num_samples, resumed=False)

    def rows(self, trainer: pl.Trainer, batch: BatchRows) -> TeacherRows | None:
        """The stored predictions of the batch's rows from earlier epochs."""
        if self._check_resumed_epoch:  # Lightning skips on_train_epoch_start when it restarts mid-epoch
            self._check_resumed_epoch = False
            self._warn_if_resumed_mid_epoch(trainer.current_epoch)
        index = self._index(batch)
        if self.table is None:
            check_index_range(index, self.num_samples)  # at step 0, before the table exists
            return None
        return self.table.read_teacher(self.layout.keys(index, batch.mask), trainer.current_epoch)

    def observe(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: BatchRows, predictions: Tensor, keep: Tensor
    ) -> None:
        """Store the kept rows' predictions (every rank stores every rank's rows)."""
        if self.table is None:
            self._create(predictions.shape[-1], trainer, pl_module, batch.token_level)
        keys = self.layout.keys(self._index(batch), batch.mask)
        keys, predictions = keys[keep], predictions[keep]
        payload = self.table.compress_logits(predictions)
        # every rank takes part in the gather, also with no rows (another rank's batch may have some)
        keys, payload = all_gather_rows(trainer, keys, payload)
        if len(keys):
            self.table.write(keys, payload, trainer.current_epoch)

    def end_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Commit the epoch's rows (the memory-mapped table publishes its generation)."""
        if self.table is not None:
            self.table.end_epoch(trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        """The layout and the table (in memory: the rows; memory-mapped: where they are)."""
        layout = None if self.layout is None else self.layout.state_dict()
        table = self._restored_memmap if self.table is None else self.table.state_dict()
        return {"kind": "cache", "layout": layout, "table": table}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the layout and an in-memory table (on CPU until :meth:`start`); a memory-mapped one opens there."""
        check_state_kind(state_dict, "cache")
        self.reset()
        layout, table = state_dict["layout"], state_dict["table"]
        if table is None:
            return
        tokens = layout["layout"] == "token"
        self.layout = TokenKeys(layout["lengths"]) if tokens else SampleKeys(layout["num_samples"])
        if table["storage"] == "memmap":
            self._restored_memmap = table
        else:
            self.table = MemoryPredictionTable.from_state_dict(table)

    # ---------------------------------------------------------------- internals
    def _index(self, batch: BatchRows) -> Tensor:
        if batch.index is None:
            raise ValueError(
                "SelfKDCallback(mode='cache') needs the dataset index of every training sample: make the "
                "training batches `(inputs, target, index)` (wrap the dataset in lightning_skd.IndexedDataset)"
                " or use mode='snapshot'."
            )
        return batch.index.long()

    def _target_lengths(self, trainer: pl.Trainer) -> Tensor:
        if self.target_lengths is None:
            raise ValueError("CachedTeacher needs `target_lengths` for token targets.")
        return torch.as_tensor(self.target_lengths(trainer), dtype=torch.long)

    def _create(self, num_classes: int, trainer: pl.Trainer, pl_module: pl.LightningModule, tokens: bool) -> None:
        self.layout = TokenKeys(self._target_lengths(trainer)) if tokens else SampleKeys(self.num_samples)
        if tokens and self.layout.num_samples != self.num_samples:
            raise ValueError(
                f"The training set's target lengths cover {self.layout.num_samples} samples but the training dataset "
                f"has {self.num_samples}: SelfKDCallback.target_lengths must give one length per training sample."
            )
        self.table = self._new_table(self.layout.num_rows, num_classes, pl_module)
        if isinstance(self.table, MemmapPredictionTable) and self.table.holds_generations:
            raise FileExistsError(
                f"SelfKDCallback(cache_dir={self.cache_dir!r}): {self.table.cache_dir} holds a prediction cache from "
                "another run. Resume that run from its checkpoint (ckpt_path=...), or delete the folder / choose a "
                "new cache_dir."
            )
        if tokens:
            rank_zero_info(
                f"SelfKDCallback: token cache over {self.layout.num_rows} target tokens of {self.num_samples} samples "
                f"({self.table.nbytes / 2**20:.1f} MiB)."
            )

    def _new_table(self, num_rows: int, num_classes: int, pl_module: pl.LightningModule) -> PredictionTable:
        if self.cache_dir is not None:
            folder = Path(self.cache_dir) / f"rank{self._rank}"
            return MemmapPredictionTable(folder, num_rows, num_classes, self.dtype, self.topk, self.keep_generations)
        device = torch.device(self.device) if self.device is not None else pl_module.device
        return MemoryPredictionTable(num_rows, num_classes, self.dtype, self.topk, device)

    def _open_restored(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open a restored on-disk table (in this rank's folder), or move a restored in-memory one to its device."""
        if self._restored_memmap is not None:
            state, self._restored_memmap = self._restored_memmap, None
            self.table = self._new_table(state["num_rows"], state["num_classes"], pl_module)
            self.table.restore(state)
            return
        self.table.to(torch.device(self.device) if self.device is not None else pl_module.device)
        self._check_resumed_epoch = True  # at the first batch: the epoch that restarts is known then

    def _warn_if_resumed_mid_epoch(self, epoch: int) -> None:
        """An in-memory table whose rows already hold the restarted epoch's predictions: the resume is not exact.

        (A memory-mapped table never has them: the epoch's partial generation is dropped when it is reopened.)
        """
        written = self.table.rows_written_in(epoch)
        if written:
            unit = "target tokens" if isinstance(self.layout, TokenKeys) else "samples"
            rank_zero_warn(
                f"SelfKDCallback: the checkpoint was taken during epoch {epoch}; {written} {unit} already hold their "
                "prediction of this epoch. If the restarted epoch meets them again they are trained on their hard "
                "label (their epoch-(t-1) prediction was overwritten) and keep that prediction. Resume from an "
                "end-of-epoch checkpoint for bit-exact Self-KD.",
                category=LightningSKDWarning,
            )

    def _check_samples(self, cached_samples: int, resumed: bool) -> None:
        if cached_samples == self.num_samples:
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
            f"The training dataset has {self.num_samples} samples but the Self-KD prediction cache "
            f"{'in the checkpoint ' if resumed else ''}was built for {cached_samples}: cache mode keys each teacher "
            f"by sample index. {what_to_do} Use mode='snapshot' for a training set whose size changes."
        )


def _train_dataset_length(trainer: pl.Trainer) -> int:
    loader = trainer.train_dataloader
    if isinstance(loader, DataLoader):
        return len(loader.dataset)
    raise ValueError(
        "SelfKDCallback(mode='cache') needs a single training DataLoader over a map-style dataset to size its "
        f"prediction cache, got {type(loader).__name__}; use mode='snapshot' for other loaders."
    )
