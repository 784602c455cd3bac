"""Past predictions for every target token of a sequence task, one flat row per (sample, position)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_skd.callbacks.prediction_cache import PredictionCache, TeacherRows, check_index_range


class TokenPredictionCache:
    """Self-KD's cache mode for sequence outputs: a row table keyed by (sample index, target position).

    Sample ``i`` of the training set has ``lengths[i]`` target tokens (padding excluded); its tokens own the rows
    ``offsets[i] .. offsets[i] + lengths[i] - 1`` of a flat row table (``offsets`` the exclusive cumulative sum of
    ``lengths``), held by ``rows``: any :class:`~lightning_skd.callbacks.PredictionCache` (in memory, or the disk
    cache) sized to the total token count, with its dtype, top-k and per-epoch stamps. With ``topk=8`` and float16
    values each token costs ``8 * 2 + 8 * 2`` bytes (int16 ids up to 32,767 classes) plus a 4-byte stamp, instead of
    ``4 * V`` for a dense float32 row.

    The interface is the one :class:`~lightning_skd.callbacks.SelfKDCallback` uses for per-sample caches:
    :meth:`keys` maps a batch to table rows (vectorised: no loop over samples or tokens), :meth:`read_teacher`,
    :meth:`compress_logits` / :meth:`write`, :meth:`begin_epoch` / :meth:`end_epoch` and :meth:`state_dict`.

    Args:
        lengths: ``(N,)`` number of target tokens of each training sample, in dataset-index order.
        rows: The row table, with ``num_samples == lengths.sum()``.

    Example:
        >>> lengths = torch.tensor([2, 3])
        >>> cache = TokenPredictionCache(lengths, PredictionCache(num_samples=5, num_classes=3, topk=2))
        >>> target = torch.tensor([[2, 0, 1], [1, 2, -100]])  # samples 1 and 0, padding at -100
        >>> keys = cache.keys(torch.tensor([1, 0]), target != -100)  # sample 1 -> rows 2..4, sample 0 -> rows 0..1
        >>> keys
        tensor([2, 3, 4, 0, 1])
        >>> logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(5, 3)
        >>> cache.write(keys, cache.compress_logits(logits), epoch=0)
        >>> cache.read_teacher(keys[:2], epoch=1).dense(3)  # top-2 renormalised: 0.6 / 0.9, 0.3 / 0.9
        tensor([[0.6667, 0.3333, 0.0000],
                [0.6667, 0.3333, 0.0000]])

    """

    def __init__(self, lengths: Tensor, rows: PredictionCache) -> None:
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.ndim != 1 or not len(lengths) or bool((lengths < 0).any()):
            raise ValueError(
                f"`lengths` must be a non-empty 1-D tensor of non-negative token counts, got {tuple(lengths.shape)}."
            )
        if int(lengths.sum()) != rows.num_samples:
            raise ValueError(
                f"The row table has {rows.num_samples} rows but the {len(lengths)} samples have {int(lengths.sum())} "
                "target tokens."
            )
        self.rows = rows
        device = rows.device if rows.device.type != "meta" else torch.device("cpu")
        self.lengths = lengths.to(device)  # (N,)
        self.offsets = (torch.cumsum(lengths, 0) - lengths).to(device)  # (N,) first row of each sample

    # ---------------------------------------------------------------- what the callback uses
    @property
    def num_samples(self) -> int:
        """Training samples (not tokens)."""
        return len(self.lengths)

    @property
    def num_classes(self) -> int:
        """Classes (the vocabulary)."""
        return self.rows.num_classes

    @property
    def device(self) -> torch.device:
        """Where the lookup tensors live (the row table's device; CPU for a disk table)."""
        return self.lengths.device

    @property
    def nbytes(self) -> int:
        """Bytes of the row table plus the lengths and offsets."""
        return self.rows.nbytes + 2 * self.lengths.numel() * self.lengths.element_size()

    def keys(self, index: Tensor, mask: Tensor | None = None) -> Tensor:
        """Table rows ``(R,)`` of the non-padding tokens of a batch, in row-major ``(B, T)`` order.

        Args:
            index: ``(B,)`` dataset index of each sample.
            mask: ``(B, T)`` bool, True at the target tokens (padding False); each row's True positions must be its
                first ``lengths[index]`` tokens' positions, in order (any layout with that many tokens works).

        Raises:
            IndexError: An index is out of range.
            ValueError: A sample has another number of target tokens than the data module reported (its
                tokenisation changed since the cache was sized).

        """
        if mask is None or mask.ndim != 2 or mask.shape[0] != index.shape[0]:
            shape = None if mask is None else tuple(mask.shape)
            raise ValueError(
                f"A token cache needs a (B, T) target mask for B={index.shape[0]} samples, got {shape}: sequence "
                "targets must have shape (B, T)."
            )
        index = index.to(self.device, torch.long)
        mask = mask.to(self.device)
        check_index_range(index, self.num_samples)
        counts = mask.sum(dim=1)  # (B,)
        expected = self.lengths[index]  # (B,)
        changed = counts != expected
        if bool(changed.any()):
            where = int(changed.nonzero()[0, 0])
            raise ValueError(
                f"Training sample {int(index[where])} has {int(counts[where])} target tokens in this batch but "
                f"{int(expected[where])} when the Self-KD token cache was sized: its tokenisation changed (another "
                "tokenizer, vocabulary, truncation or data file). Cache mode needs fixed target sequences; start "
                "the cache afresh (new run / new cache_dir) or use mode='snapshot'."
            )
        positions = mask.long().cumsum(dim=1) - 1  # (B, T) rank of each token within its sample
        return (self.offsets[index][:, None] + positions)[mask]  # (R,)

    def read_teacher(self, keys: Tensor, epoch: int) -> TeacherRows:
        """The teachers of token rows ``keys`` (see :meth:`PredictionCache.read_teacher`)."""
        return self.rows.read_teacher(keys, epoch)

    def compress(self, probs: Tensor) -> dict[str, Tensor]:
        """Row payload of token probabilities ``(R, V)``."""
        return self.rows.compress(probs)

    def compress_logits(self, logits: Tensor) -> dict[str, Tensor]:
        """Row payload of token logits ``(R, V)`` (top-k without materialising the probabilities)."""
        return self.rows.compress_logits(logits)

    def write(self, keys: Tensor, payload: dict[str, Tensor], epoch: int) -> None:
        """Store token rows made during 0-based ``epoch``; the first write of a row in an epoch wins."""
        self.rows.write(keys, payload, epoch)

    def rows_written_in(self, epoch: int) -> int:
        """Token rows already holding a prediction of ``epoch``."""
        return self.rows.rows_written_in(epoch)

    def begin_epoch(self, epoch: int) -> None:
        """Forwarded to the row table."""
        self.rows.begin_epoch(epoch)

    def end_epoch(self, epoch: int) -> None:
        """Forwarded to the row table (the disk table commits its generation here)."""
        self.rows.end_epoch(epoch)

    def to(self, device: torch.device | str) -> TokenPredictionCache:
        """Move the table and the lookup tensors (in place); returns the cache."""
        self.rows.to(device)
        self.lengths = self.lengths.to(device)
        self.offsets = self.offsets.to(device)
        return self

    def check_lengths(self, lengths: Tensor) -> None:
        """Raise if the training set's target lengths differ from those the cache was built for."""
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        own = self.lengths.cpu()
        if lengths.shape != own.shape:
            raise ValueError(
                f"The training set has {len(lengths)} samples but the Self-KD token cache was built for {len(own)}."
            )
        changed = (lengths != own).nonzero()
        if len(changed):
            first = int(changed[0, 0])
            raise ValueError(
                f"{len(changed)} training samples changed their number of target tokens since the Self-KD token cache "
                f"was built (first: sample {first}, {int(own[first])} tokens then, {int(lengths[first])} now): the "
                "tokenisation changed. Start the cache afresh (new run / new cache_dir) or use mode='snapshot'."
            )

    def state_dict(self) -> dict[str, Any]:
        """The lengths and the row table's state (the table itself, or a disk pointer)."""
        return {"layout": "token", "lengths": self.lengths.cpu(), "rows": self.rows.state_dict()}
