import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from lightning_skd._warnings import LightningSKDWarning
from lightning_skd.data.base import ClassificationDataModule, stratified_split
from lightning_skd.data.indexed import IndexedDataset


class _TinyDataModule(ClassificationDataModule):
    num_classes = 2
    in_channels = 1
    image_size = 2

    def setup(self, stage=None):
        data = IndexedDataset(TensorDataset(torch.zeros(7, 1, 2, 2), torch.arange(7) % 2))
        self.train_dataset = self.val_dataset = self.test_dataset = data


def test_stratified_split_sizes_and_sorted_disjoint_parts():
    targets = np.repeat(np.arange(4), 10)
    rest, a, b = stratified_split(targets, [8, 4], seed=3)
    assert (len(rest), len(a), len(b)) == (28, 8, 4)
    assert np.array_equal(np.sort(np.concatenate([rest, a, b])), np.arange(40))
    for part in (rest, a, b):
        assert np.array_equal(part, np.sort(part)) and part.dtype == np.int64
    assert np.array_equal(np.bincount(targets[a], minlength=4), [2, 2, 2, 2])


def test_stratified_split_is_deterministic_per_seed():
    targets = np.repeat(np.arange(3), 20)
    first = stratified_split(targets, [9], seed=7)
    second = stratified_split(targets, [9], seed=7)
    other = stratified_split(targets, [9], seed=8)
    assert all(np.array_equal(p, q) for p, q in zip(first, second, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_stratified_split_falls_back_to_random_split_with_warning():
    targets = np.arange(10)  # one sample per class: cannot stratify
    with pytest.warns(LightningSKDWarning, match="non-stratified"):
        rest, held_out = stratified_split(targets, [3], seed=0)
    assert (len(rest), len(held_out)) == (7, 3)


def test_stratified_split_rejects_sizes_leaving_nothing():
    with pytest.raises(ValueError, match="leave no sample"):
        stratified_split([0, 1, 0, 1], [2, 2], seed=0)


def test_classification_datamodule_loaders_keep_partial_batches():
    dm = _TinyDataModule(batch_size=3, eval_batch_size=5)
    dm.setup("fit")
    train_batches = list(dm.train_dataloader())
    assert [len(batch[2]) for batch in train_batches] == [3, 3, 1]
    assert [len(batch[2]) for batch in dm.val_dataloader()] == [5, 2]
    assert [len(batch[2]) for batch in dm.predict_dataloader()] == [5, 2]
    assert dm.input_shape == (1, 2, 2)


def test_classification_datamodule_loader_before_setup_raises():
    with pytest.raises(RuntimeError, match=r"setup\('fit'\)"):
        _TinyDataModule().train_dataloader()


def test_classification_datamodule_ignores_persistent_workers_without_workers():
    with pytest.warns(LightningSKDWarning, match="persistent_workers"):
        dm = _TinyDataModule(persistent_workers=True, num_workers=0)
    assert dm.persistent_workers is False


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"eval_batch_size": -1}, "eval_batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"seed": "zero"}, "seed"),
    ],
)
def test_classification_datamodule_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        _TinyDataModule(**kwargs)
