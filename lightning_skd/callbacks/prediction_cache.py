"""A table of past predictions, one row per training sample, each row stamped with the epoch that produced it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

_NEVER = -1  # stamp of a row that holds no prediction yet


@dataclass
class TeacherRows:
    """Teacher distributions of a batch's rows (samples, or target tokens), as a cache or snapshot teacher gives them.

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


class PredictionCache:
    """Per-sample past predictions for Self-KD's cache mode (the official PS-KD code's ``all_predictions``).

    A single table holds one row per sample plus an int32 stamp: the 0-based epoch whose forward pass wrote the row.
    At epoch ``t`` a row is a valid teacher if it was written in an earlier epoch (normally ``t - 1``: every sample
    is met once per epoch). Writes at epoch ``t`` skip rows already stamped ``t``, so a sample met twice in one epoch
    (``DistributedSampler`` padding, a mid-epoch restart) keeps its first prediction, and its second occurrence has
    no teacher (it is trained on the hard label). Generations are therefore never mixed silently.

    With ``topk=k`` only the ``k`` largest probabilities and their class ids are kept; on read the ``k`` values are
    renormalised to sum to one and the remaining classes get probability zero.

    Args:
        num_samples: Rows, the length of the training dataset.
        num_classes: Classes of the model output.
        dtype: Storage dtype of the probabilities (float32, float16 or bfloat16).
        topk: Keep only the ``topk`` largest probabilities per sample; ``None`` keeps all ``num_classes``.
        device: Where the table lives.

    Example:
        >>> cache = PredictionCache(num_samples=3, num_classes=2)
        >>> cache.write(torch.tensor([2]), cache.compress(torch.tensor([[0.25, 0.75]])), epoch=0)
        >>> probs, valid = cache.read(torch.tensor([2, 0]), epoch=1)
        >>> probs, valid
        (tensor([[0.2500, 0.7500],
                [0.0000, 0.0000]]), tensor([ True, False]))

    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        dtype: torch.dtype = torch.float32,
        topk: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"`cache_dtype` must be torch.float32, torch.float16 or torch.bfloat16, got {dtype}.")
        if topk is not None and not (1 <= topk <= num_classes):
            raise ValueError(f"`cache_topk` must be in [1, num_classes={num_classes}] or None, got {topk}.")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.dtype = dtype
        self.topk = topk
        width = num_classes if topk is None else topk
        self.values = torch.zeros(num_samples, width, dtype=dtype, device=device)  # (N, C) or (N, k)
        id_dtype = torch.int16 if num_classes <= torch.iinfo(torch.int16).max else torch.int32
        self.class_ids = None if topk is None else torch.zeros(num_samples, topk, dtype=id_dtype, device=device)
        self.stamps = torch.full((num_samples,), _NEVER, dtype=torch.int32, device=device)  # (N,)

    @property
    def device(self) -> torch.device:
        """Where the table lives."""
        return self.values.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the table, stamps included."""
        tensors = [self.values, self.stamps] + ([] if self.class_ids is None else [self.class_ids])
        return sum(t.numel() * t.element_size() for t in tensors)

    def keys(self, index: Tensor, mask: Tensor | None = None) -> Tensor:
        """The table rows of a batch: one per sample, its dataset index ``(B,)``.

        ``mask`` ``(B,)``, if given, keeps only the samples that are rows (target not ignored): ``(R,)``.
        """
        if mask is None:
            return index
        if mask.shape != index.shape:
            raise ValueError(
                f"This prediction cache holds one row per sample: `mask` must have the index's shape "
                f"{tuple(index.shape)}, got {tuple(mask.shape)}; per-token targets need a TokenPredictionCache."
            )
        return index[mask.to(index.device)]

    def rows_written_in(self, epoch: int) -> int:
        """How many rows already hold a prediction made in ``epoch`` (one host sync)."""
        return int((self.stamps == epoch).sum())

    def begin_epoch(self, epoch: int) -> None:
        """Hook before the first write of an epoch; the in-memory table needs nothing."""

    def end_epoch(self, epoch: int) -> None:
        """Hook after the last write of an epoch; the in-memory table needs nothing."""

    def compress(self, probs: Tensor) -> dict[str, Tensor]:
        """Turn probabilities ``(B, C)`` into the row payload that :meth:`write` stores (and DDP all-gathers)."""
        if probs.shape[-1] != self.num_classes:
            raise ValueError(
                f"The model output has {probs.shape[-1]} classes but the prediction cache was built for "
                f"{self.num_classes}; pass the right `num_classes` to SelfKDCallback or fix the model head."
            )
        if self.topk is None:
            return {"values": probs.to(self.dtype)}
        values, class_ids = probs.topk(self.topk, dim=-1)  # (B, k), (B, k)
        return {"values": values.to(self.dtype), "class_ids": class_ids.to(self.class_ids.dtype)}

    def compress_logits(self, logits: Tensor) -> dict[str, Tensor]:
        """:meth:`compress` of ``softmax(logits)``; with ``topk`` without building the ``(B, C)`` probabilities."""
        if self.topk is None or logits.shape[-1] != self.num_classes:
            return self.compress(logits.float().softmax(dim=-1))
        top_logits, class_ids = logits.topk(self.topk, dim=-1)  # (B, k), (B, k)
        values = (top_logits.float() - logits.float().logsumexp(dim=-1, keepdim=True)).exp()  # top-k probabilities
        return {"values": values.to(self.dtype), "class_ids": class_ids.to(self.class_ids.dtype)}

    def check_indices(self, indices: Tensor) -> None:
        """Raise if an index falls outside ``[0, num_samples)``."""
        check_index_range(indices, self.num_samples)

    def to(self, device: torch.device | str) -> PredictionCache:
        """Move the table to ``device`` (in place); returns the cache."""
        self.values = self.values.to(device)
        self.stamps = self.stamps.to(device)
        if self.class_ids is not None:
            self.class_ids = self.class_ids.to(device)
        return self

    @torch.no_grad()
    def write(self, indices: Tensor, payload: dict[str, Tensor], epoch: int) -> None:
        """Store the rows of ``indices`` (``(B,)``) made during 0-based ``epoch``; first occurrence wins."""
        indices = indices.to(self.device, torch.long)
        self.check_indices(indices)
        positions = _first_occurrences(indices)
        positions = positions[self.stamps[indices[positions]] != epoch]  # rows already written this epoch stay
        rows = indices[positions]
        self.values[rows] = payload["values"].to(self.device)[positions]
        if self.class_ids is not None:
            self.class_ids[rows] = payload["class_ids"].to(self.device)[positions]
        self.stamps[rows] = epoch

    @torch.no_grad()
    def read(self, indices: Tensor, epoch: int) -> tuple[Tensor, Tensor]:
        """Teacher probabilities for ``indices`` at 0-based ``epoch``.

        Returns:
            ``(probs, valid)``: float32 probabilities ``(B, C)`` (zeros where invalid) and a bool mask ``(B,)`` of
            rows written in an earlier epoch.

        """
        teacher = self.read_teacher(indices, epoch)
        return teacher.dense(self.num_classes), teacher.valid

    @torch.no_grad()
    def read_teacher(self, keys: Tensor, epoch: int) -> TeacherRows:
        """The teachers of table rows ``keys`` ``(R,)`` at 0-based ``epoch``, sparse when the cache keeps the top-k.

        A row is valid if it was written in an earlier epoch. Top-k values are renormalised to sum to one.
        """
        local_keys = keys.to(self.device, torch.long)
        self.check_indices(local_keys)
        stamps, values, class_ids = self._gather(local_keys)  # (R,), (R, C) or (R, k), (R, k) or None
        valid = (stamps != _NEVER) & (stamps < epoch)  # (R,)
        values = values.float()
        if class_ids is not None:
            values = values / values.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
            class_ids = class_ids.long().to(keys.device)
        values = values * valid[:, None]
        return TeacherRows(values.to(keys.device), class_ids, valid.to(keys.device))

    def _gather(self, keys: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The stored ``(stamps, values, class_ids)`` of rows ``keys``."""
        class_ids = None if self.class_ids is None else self.class_ids[keys]
        return self.stamps[keys], self.values[keys], class_ids

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the table exactly (stored on CPU)."""
        state = {
            "num_samples": self.num_samples,
            "num_classes": self.num_classes,
            "topk": self.topk,
            "dtype": str(self.dtype),
            "values": self.values.cpu(),
            "stamps": self.stamps.cpu(),
        }
        if self.class_ids is not None:
            state["class_ids"] = self.class_ids.cpu()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> PredictionCache:
        """Rebuild a cache saved with :meth:`state_dict`."""
        dtype = getattr(torch, state["dtype"].removeprefix("torch."))
        cache = cls(state["num_samples"], state["num_classes"], dtype=dtype, topk=state["topk"], device=device)
        cache.values.copy_(state["values"])
        cache.stamps.copy_(state["stamps"])
        if cache.class_ids is not None:
            cache.class_ids.copy_(state["class_ids"])
        return cache


def check_index_range(indices: Tensor, num_samples: int) -> None:
    """Raise ``IndexError`` if an index of ``indices`` falls outside ``[0, num_samples)`` (one host sync)."""
    if not indices.numel():
        return
    low, high = (int(v) for v in torch.aminmax(indices))
    if low < 0 or high >= num_samples:
        raise IndexError(
            f"Sample index out of range: the batch holds indices in [{low}, {high}] but the training dataset has "
            f"{num_samples} samples. The index in each batch must be the sample's position in the training dataset "
            "(see lightning_skd.data.IndexedDataset)."
        )


def _first_occurrences(indices: Tensor) -> Tensor:
    """Positions ``(U,)`` of the first occurrence of each distinct value of ``indices`` ``(B,)``."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    positions = torch.arange(len(indices), device=indices.device)
    first = torch.full((len(unique),), len(indices), dtype=torch.long, device=indices.device)
    return first.scatter_reduce(0, inverse, positions, reduce="amin")
