"""A dataset wrapper that returns each sample's index with it, as Self-KD's cache of past predictions needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wrap a map-style dataset of ``(x, y)`` pairs so that it returns ``(x, y, index)`` triples.

    The index is the position of the sample in *this* dataset (``0 .. len(self) - 1``), so it is stable across
    epochs and can key a per-sample store such as the past predictions of PS-KD's cache mode. After the default
    collate function a batch is ``(inputs, targets, indices)`` with ``indices`` an ``int64`` tensor.

    Args:
        dataset: Any map-style dataset whose items are ``(x, y)`` pairs (``len`` and integer ``__getitem__``).
        transform: Optional callable applied to ``x`` (e.g. a torchvision transform), which lets several splits of
            one underlying dataset use different augmentations.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> ds = IndexedDataset(TensorDataset(torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 0])))
        >>> len(ds)
        3
        >>> ds[1]
        (tensor([2., 3.]), tensor(1), 1)
        >>> ds[-1][2]
        2

    """

    def __init__(self, dataset: Any, transform: Callable[[Any], Any] | None = None) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"IndexedDataset: `dataset` must be a map-style dataset with __getitem__ and __len__, "
                f"got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        index = int(index)
        length = len(self)
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError(f"IndexedDataset: index {index} out of range for a dataset of {length} samples")
        x, y = self.dataset[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, y, index

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataset!r}, transform={self.transform!r})"
