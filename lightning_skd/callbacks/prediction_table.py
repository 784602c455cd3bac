"""Tables of past predictions for cache-mode Self-KD: one row per key, each row stamped with the epoch that wrote it.

:class:`PredictionTable` fixes the row format (dense or top-k values in a storage dtype, an int32 epoch stamp) and
the read / write rules; :class:`MemoryPredictionTable` keeps the rows in tensors and
:class:`~lightning_skd.callbacks.memmap_prediction_table.MemmapPredictionTable` in memory-mapped files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

NEVER = -1  # stamp of a row that holds no prediction yet
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class TeacherRows:
    """Teacher distributions of a batch's rows (samples, or target tokens), as a teacher strategy gives them.

    Dense when ``class_ids`` is ``None`` (``values`` are ``(R, C)`` probabilities); sparse otherwise (``values`` are
    the ``(R, k)`` probabilities of the classes ``class_ids``, summing to one; every other class has zero). Rows
    without a teacher (``valid`` False) hold zeros.
    """

    values: Tensor  # (R, C) or (R, k) float32
    class_ids: Tensor | None  # (R, k) int64, or None when dense
    valid: Tensor  # (R,) bool

    @property
    def num_rows(self) -> int:
        """``R``."""
        return self.values.shape[0]

    def dense(self, num_classes: int) -> Tensor:
        """The ``(R, num_classes)`` probability matrix."""
        if self.class_ids is None:
            return self.values
        return self.values.new_zeros(self.num_rows, num_classes).scatter_(1, self.class_ids, self.values)

    def argmax(self) -> Tensor:
        """The most probable class of each row, ``(R,)``."""
        best = self.values.argmax(dim=-1)  # (R,)
        return best if self.class_ids is None else self.class_ids.gather(1, best[:, None]).squeeze(1)

    def without_nonfinite(self) -> tuple[TeacherRows, Tensor]:
        """These rows with the non-finite ones marked invalid (and zeroed), and how many valid rows that dropped."""
        finite = torch.isfinite(self.values).all(dim=-1)  # (R,)
        dropped = (self.valid & ~finite).sum()
        valid = self.valid & finite
        values = torch.where(valid[:, None], self.values, torch.zeros_like(self.values))
        return TeacherRows(values, self.class_ids, valid), dropped


class PredictionTable(ABC):
    """Past predictions, one row per key (a training sample, or a target token), for Self-KD's cache mode.

    Each row holds the model's softmax output from the epoch stamped on it (0-based). At epoch ``t`` a row is a
    valid teacher if it was written in an earlier epoch (normally ``t - 1``). Writes at epoch ``t`` skip rows already
    stamped ``t``, so a key met twice in one epoch (``DistributedSampler`` padding, a mid-epoch restart) keeps its
    first prediction; generations are never mixed silently.

    With ``topk=k`` only the ``k`` largest probabilities and their class ids are kept; on read the ``k`` values are
    renormalised to sum to one and the remaining classes get probability zero.

    Subclasses store the rows: :meth:`_gather`, :meth:`_store`, :meth:`rows_written_in`, :meth:`end_epoch`,
    :meth:`state_dict`, :attr:`device`.

    Args:
        num_rows: Rows (keys).
        num_classes: Classes of the model output.
        dtype: Storage dtype of the probabilities.
        topk: Keep only the ``topk`` largest probabilities per row; ``None`` keeps all ``num_classes``.

    """

    storage: str  # the name :func:`restore_table` knows this kind by

    def __init__(self, num_rows: int, num_classes: int, dtype: torch.dtype, topk: int | None) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"`cache_dtype` must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}.")
        if topk is not None and not (1 <= topk <= num_classes):
            raise ValueError(f"`cache_topk` must be in [1, num_classes={num_classes}] or None, got {topk}.")
        self.num_rows = num_rows
        self.num_classes = num_classes
        self.dtype = dtype
        self.topk = topk
        self.width = num_classes if topk is None else topk
        self.id_dtype = torch.int16 if num_classes <= torch.iinfo(torch.int16).max else torch.int32

    # ---------------------------------------------------------------- storage, per subclass
    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where reads return their tensors."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of the table."""

    @abstractmethod
    def _gather(self, keys: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The stored ``(stamps (R,), values (R, width), class_ids (R, k) or None)`` of rows ``keys`` (on device)."""

    @abstractmethod
    def _store(self, keys: Tensor, payload: dict[str, Tensor], epoch: int) -> None:
        """Write the payload rows to the distinct, not-yet-written-this-epoch rows ``keys``, stamped ``epoch``."""

    @abstractmethod
    def _stamps_of(self, keys: Tensor, epoch: int) -> Tensor:
        """Stamps ``(R,)`` of rows ``keys`` as the writes of ``epoch`` see them."""

    @abstractmethod
    def rows_written_in(self, epoch: int) -> int:
        """How many rows already hold a prediction made in ``epoch`` (one host sync)."""

    def begin_epoch(self, epoch: int) -> None:
        """Hook before the first write of an epoch (:meth:`write` calls it where the storage needs it)."""

    def end_epoch(self, epoch: int) -> None:
        """Hook after the last write of an epoch."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to restore this table (see :func:`restore_table`)."""

    def to(self, device: torch.device | str) -> PredictionTable:
        """Move the table to ``device`` (in place) where it can move; returns the table."""
        return self

    # ---------------------------------------------------------------- the row format
    def compress(self, probs: Tensor) -> dict[str, Tensor]:
        """Turn probabilities ``(R, C)`` into the row payload that :meth:`write` stores (and DDP all-gathers)."""
        self._check_classes(probs.shape[-1])
        if self.topk is None:
            return {"values": probs.to(self.dtype)}
        values, class_ids = probs.topk(self.topk, dim=-1)  # (R, k), (R, k)
        return {"values": values.to(self.dtype), "class_ids": class_ids.to(self.id_dtype)}

    def compress_logits(self, logits: Tensor) -> dict[str, Tensor]:
        """:meth:`compress` of ``softmax(logits)``; with ``topk`` without building the ``(R, C)`` probabilities."""
        self._check_classes(logits.shape[-1])
        if self.topk is None:
            return self.compress(logits.float().softmax(dim=-1))
        top_logits, class_ids = logits.topk(self.topk, dim=-1)  # (R, k), (R, k)
        values = (top_logits.float() - logits.float().logsumexp(dim=-1, keepdim=True)).exp()  # top-k probabilities
        return {"values": values.to(self.dtype), "class_ids": class_ids.to(self.id_dtype)}

    @torch.no_grad()
    def write(self, keys: Tensor, payload: dict[str, Tensor], epoch: int) -> None:
        """Store rows ``keys`` ``(R,)`` made during 0-based ``epoch``; the first write of a row in an epoch wins."""
        keys = keys.to(self.device, torch.long)
        check_index_range(keys, self.num_rows)
        positions = _first_occurrences(keys)
        positions = positions[self._stamps_of(keys[positions], epoch) != epoch]
        payload = {name: rows.to(self.device)[positions] for name, rows in payload.items()}
        self._store(keys[positions], payload, epoch)

    @torch.no_grad()
    def read_teacher(self, keys: Tensor, epoch: int) -> TeacherRows:
        """The teachers of rows ``keys`` ``(R,)`` at 0-based ``epoch``, sparse when the table keeps the top-k.

        A row is valid if it was written in an earlier epoch. Top-k values are renormalised to sum to one.
        """
        local_keys = keys.to(self.device, torch.long)
        check_index_range(local_keys, self.num_rows)
        stamps, values, class_ids = self._gather(local_keys)
        valid = (stamps != NEVER) & (stamps < epoch)  # (R,)
        values = values.float()
        if class_ids is not None:
            values = values / values.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            class_ids = class_ids.long().to(keys.device)
        values = values * valid[:, None]
        return TeacherRows(values.to(keys.device), class_ids, valid.to(keys.device))

    def read(self, keys: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        """Dense teacher probabilities ``(R, C)`` (zeros where invalid) and the valid mask ``(R,)``."""
        teacher = self.read_teacher(keys, epoch)
        return teacher.dense(self.num_classes), teacher.valid

    def _check_classes(self, num_classes: int) -> None:
        if num_classes != self.num_classes:
            raise ValueError(
                f"The model output has {num_classes} classes but the prediction cache was built for "
                f"{self.num_classes}; pass the right `num_classes` to SelfKDCallback or fix the model head."
            )

    def _metadata(self) -> dict[str, Any]:
        return {
            "storage": self.storage,
            "num_rows": self.num_rows,
            "num_classes": self.num_classes,
            "topk": self.topk,
            "dtype": str(self.dtype),
        }


class MemoryPredictionTable(PredictionTable):
    """A :class:`PredictionTable` in tensors on one device (the official PS-KD code's ``all_predictions``).

    Args:
        num_rows: Rows (keys).
        num_classes: Classes of the model output.
        dtype: Storage dtype of the probabilities (float32, float16 or bfloat16).
        topk: Keep only the ``topk`` largest probabilities per row.
        device: Where the table lives.

    Example:
        >>> table = MemoryPredictionTable(num_rows=3, num_classes=2)
        >>> table.write(torch.tensor([2]), table.compress(torch.tensor([[0.25, 0.75]])), epoch=0)
        >>> table.read(torch.tensor([2, 0]), epoch=1)
        (tensor([[0.2500, 0.7500],
                [0.0000, 0.0000]]), tensor([ True, False]))

    """

    storage = "memory"

    def __init__(
        self,
        num_rows: int,
        num_classes: int,
        dtype: torch.dtype = torch.float32,
        topk: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(num_rows, num_classes, dtype, topk)
        self.values = torch.zeros(num_rows, self.width, dtype=dtype, device=device)  # (N, C) or (N, k)
        self.class_ids = None if topk is None else torch.zeros(num_rows, topk, dtype=self.id_dtype, device=device)
        self.stamps = torch.full((num_rows,), NEVER, dtype=torch.int32, device=device)  # (N,)

    @property
    def device(self) -> torch.device:
        """Where the table lives."""
        return self.values.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the table, stamps included."""
        tensors = [self.values, self.stamps] + ([] if self.class_ids is None else [self.class_ids])
        return sum(t.numel() * t.element_size() for t in tensors)

    def rows_written_in(self, epoch: int) -> int:
        """How many rows already hold a prediction made in ``epoch`` (one host sync)."""
        return int((self.stamps == epoch).sum())

    def to(self, device: torch.device | str) -> MemoryPredictionTable:
        """Move the table to ``device`` (in place); returns the table."""
        self.values = self.values.to(device)
        self.stamps = self.stamps.to(device)
        if self.class_ids is not None:
            self.class_ids = self.class_ids.to(device)
        return self

    def _stamps_of(self, keys: Tensor, epoch: int) -> Tensor:
        return self.stamps[keys]

    def _store(self, keys: Tensor, payload: dict[str, Tensor], epoch: int) -> None:
        self.values[keys] = payload["values"]
        if self.class_ids is not None:
            self.class_ids[keys] = payload["class_ids"]
        self.stamps[keys] = epoch

    def _gather(self, keys: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        class_ids = None if self.class_ids is None else self.class_ids[keys]
        return self.stamps[keys], self.values[keys], class_ids

    def state_dict(self) -> dict[str, Any]:
        """The whole table (on CPU): a checkpoint restores it exactly."""
        state = {**self._metadata(), "values": self.values.cpu(), "stamps": self.stamps.cpu()}
        if self.class_ids is not None:
            state["class_ids"] = self.class_ids.cpu()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> MemoryPredictionTable:
        """Rebuild a table saved with :meth:`state_dict`."""
        table = cls(state["num_rows"], state["num_classes"], _dtype(state["dtype"]), state["topk"], device)
        table.values.copy_(state["values"])
        table.stamps.copy_(state["stamps"])
        if table.class_ids is not None:
            table.class_ids.copy_(state["class_ids"])
        return table


def check_index_range(indices: Tensor, num_samples: int) -> None:
    """Raise ``IndexError`` if an index of ``indices`` falls outside ``[0, num_samples)`` (one host sync)."""
    if not indices.numel():
        return
    low, high = (int(v) for v in torch.aminmax(indices))
    if low < 0 or high >= num_samples:
        raise IndexError(
            f"Sample index out of range: the batch holds indices in [{low}, {high}] but the training dataset has "
            f"{num_samples} samples. The index in each batch must be the sample's position in the training dataset "
            "(see lightning_skd.IndexedDataset)."
        )


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name.removeprefix("torch."))


def _first_occurrences(indices: Tensor) -> Tensor:
    """Positions ``(U,)`` of the first occurrence of each distinct value of ``indices`` ``(B,)``."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    first = torch.full((len(unique),), len(indices), dtype=torch.long, device=indices.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")
