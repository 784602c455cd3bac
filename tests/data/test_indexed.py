import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd.data import IndexedDataset


def _pairs(n: int = 5) -> TensorDataset:
    return TensorDataset(torch.arange(2.0 * n).view(n, 2), torch.arange(n) % 3)


def test_indexed_dataset_returns_sample_and_its_index():
    base = _pairs()
    ds = IndexedDataset(base)
    assert len(ds) == 5
    for i in range(5):
        x, y, index = ds[i]
        assert index == i
        assert torch.equal(x, base[i][0]) and torch.equal(y, base[i][1])


def test_indexed_dataset_normalises_negative_and_tensor_indices():
    ds = IndexedDataset(_pairs())
    assert ds[-1][2] == 4
    assert ds[torch.tensor(3)][2] == 3


def test_indexed_dataset_rejects_out_of_range_index():
    ds = IndexedDataset(_pairs())
    with pytest.raises(IndexError, match="out of range"):
        ds[5]
    with pytest.raises(IndexError, match="out of range"):
        ds[-6]


def test_indexed_dataset_applies_transform_to_inputs_only():
    ds = IndexedDataset(_pairs(), transform=lambda x: x * 10)
    x, y, index = ds[2]
    assert torch.equal(x, torch.tensor([40.0, 50.0]))
    assert y.item() == 2 and index == 2


def test_indexed_dataset_rejects_non_datasets():
    with pytest.raises(TypeError, match="map-style dataset"):
        IndexedDataset(42)


def test_indexed_dataset_collates_to_int64_indices():
    loader = DataLoader(IndexedDataset(_pairs()), batch_size=5)
    x, y, index = next(iter(loader))
    assert x.shape == (5, 2)
    assert y.dtype == torch.int64 and index.dtype == torch.int64
    assert index.tolist() == [0, 1, 2, 3, 4]
