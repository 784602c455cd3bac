"""Where a batch's rows live in a prediction table: one row per training sample, or one per target token."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_skd.callbacks.prediction_table import check_index_range


class SampleKeys:
    """One table row per training sample: row ``i`` is the sample with dataset index ``i``.

    Args:
        num_samples: Length of the training dataset.

    Example:
        >>> SampleKeys(4).keys(torch.tensor([3, 0, 2]), torch.tensor([True, False, True]))
        tensor([3, 2])

    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    @property
    def num_rows(self) -> int:
        """Rows of the table: one per sample."""
        return self.num_samples

    def keys(self, index: Tensor, mask: Tensor) -> Tensor:
        """Table rows ``(R,)`` of a batch's samples whose ``mask`` ``(B,)`` is True (target not ignored)."""
        if mask.shape != index.shape:
            raise ValueError(
                f"Per-sample rows need one target per sample: a (B,) mask for the {tuple(index.shape)} indices, got "
                f"{tuple(mask.shape)}."
            )
        check_index_range(index, self.num_samples)
        return index[mask.to(index.device)]

    def state_dict(self) -> dict[str, Any]:
        """The layout, for a checkpoint."""
        return {"layout": "sample", "num_samples": self.num_samples}


class TokenKeys:
    """One table row per target token, keyed by (sample index, position among the sample's target tokens).

    Sample ``i`` of the training set has ``lengths[i]`` target tokens (padding excluded); its tokens own the rows
    ``offsets[i] .. offsets[i] + lengths[i] - 1`` (``offsets`` the exclusive cumulative sum of ``lengths``). With a
    top-8 float16 table each token costs ``8 * 2 + 8 * 2`` bytes (int16 ids up to 32,767 classes) plus a 4-byte
    stamp, instead of ``4 * V`` for a dense float32 row.

    Args:
        lengths: ``(N,)`` number of target tokens of each training sample, in dataset-index order.

    Example:
        >>> layout = TokenKeys(torch.tensor([2, 3]))
        >>> target = torch.tensor([[2, 0, 1], [1, 2, -100]])  # samples 1 and 0, padding at -100
        >>> layout.keys(torch.tensor([1, 0]), target != -100)  # sample 1 -> rows 2..4, sample 0 -> rows 0..1
        tensor([2, 3, 4, 0, 1])

    """

    def __init__(self, lengths: Tensor) -> None:
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.ndim != 1 or not len(lengths) or bool((lengths < 0).any()):
            raise ValueError(
                f"`lengths` must be a non-empty 1-D tensor of non-negative token counts, got {tuple(lengths.shape)}."
            )
        self.lengths = lengths  # (N,)
        self.offsets = torch.cumsum(lengths, 0) - lengths  # (N,) first row of each sample

    @property
    def num_samples(self) -> int:
        """Training samples (not tokens)."""
        return len(self.lengths)

    @property
    def num_rows(self) -> int:
        """Rows of the table: the training set's target tokens."""
        return int(self.lengths.sum())

    def keys(self, index: Tensor, mask: Tensor) -> Tensor:
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
        if mask.ndim != 2 or mask.shape[0] != index.shape[0]:
            raise ValueError(
                f"A token cache needs a (B, T) target mask for B={index.shape[0]} samples, got {tuple(mask.shape)}: "
                "sequence targets must have shape (B, T)."
            )
        device = index.device
        check_index_range(index, self.num_samples)
        self.lengths, self.offsets = self.lengths.to(device), self.offsets.to(device)
        index, mask = index.long(), mask.to(device)
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
        """The layout and every sample's token count, for a checkpoint."""
        return {"layout": "token", "lengths": self.lengths.cpu()}
