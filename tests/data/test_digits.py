import sys

import numpy as np
import pytest
import torch
from pytorch_lightning import LightningModule
from sklearn.datasets import load_digits

from lightning_skd.cli import SelfKDCLI
from lightning_skd.data import DigitsDataModule


@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule(batch_size=100, seed=0)
    dm.setup("fit")
    return dm


def _tensors(dataset):
    return dataset.dataset.tensors


def test_digits_split_sizes(digits):
    sizes = (len(digits.train_dataset), len(digits.val_dataset), len(digits.test_dataset))
    assert sizes == (1079, 359, 359)
    assert sum(sizes) == 1797
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 8)
    assert digits.class_names == [str(d) for d in range(10)]


def test_digits_split_is_deterministic_per_seed(digits):
    same = DigitsDataModule(seed=0)
    same.setup("fit")
    other = DigitsDataModule(seed=1)
    other.setup("fit")
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        for a, b in zip(_tensors(getattr(digits, split)), _tensors(getattr(same, split)), strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(_tensors(digits.val_dataset)[1], _tensors(other.val_dataset)[1])


def test_digits_splits_are_disjoint_and_stratified(digits):
    parts = digits.split_indices
    assert np.array_equal(np.sort(np.concatenate([parts["train"], parts["val"], parts["test"]])), np.arange(1797))
    assert torch.equal(_tensors(digits.val_dataset)[1], torch.as_tensor(load_digits().target[parts["val"]]))
    totals = torch.bincount(torch.as_tensor(load_digits().target))
    for split in ("val_dataset", "test_dataset"):
        counts = torch.bincount(_tensors(getattr(digits, split))[1], minlength=10)
        expected = totals.double() * len(getattr(digits, split)) / 1797
        assert torch.all((counts.double() - expected).abs() <= 1.0)


def test_digits_inputs_are_normalised_with_train_statistics(digits):
    x_train = _tensors(digits.train_dataset)[0]
    assert abs(x_train.mean().item()) < 1e-5
    assert abs(x_train.std().item() - 1.0) < 1e-5
    assert 0.0 < digits.mean < 1.0 and digits.std > 0.0


def test_digits_batches_are_inputs_targets_indices(digits):
    digits.setup("test")
    digits.setup("predict")
    loaders = [digits.train_dataloader(), digits.val_dataloader()]
    for loader in [*loaders, digits.test_dataloader(), digits.predict_dataloader()]:
        x, y, idx = next(iter(loader))
        assert x.dtype == torch.float32 and x.shape == (100, 1, 8, 8)
        assert y.dtype == torch.int64 and y.shape == (100,)
        assert idx.dtype == torch.int64 and idx.shape == (100,)
        assert 0 <= y.min() and y.max() < 10


def test_digits_indices_index_the_dataset(digits):
    torch.manual_seed(0)
    pairs = ((digits.train_dataloader(), digits.train_dataset), (digits.val_dataloader(), digits.val_dataset))
    for loader, dataset in pairs:
        x, y, idx = next(iter(loader))
        for row, i in enumerate(idx.tolist()):
            x_i, y_i, j = dataset[i]
            assert j == i
            assert torch.equal(x[row], x_i) and y[row] == y_i


def test_digits_train_epoch_covers_each_index_once(digits):
    torch.manual_seed(0)
    epochs = [torch.cat([idx for _, _, idx in digits.train_dataloader()]) for _ in range(2)]
    for indices in epochs:
        assert torch.equal(indices.sort().values, torch.arange(len(digits.train_dataset)))
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled between epochs


def test_digits_augment_shifts_train_images_by_at_most_one_pixel():
    dm = DigitsDataModule(augment=True, seed=0)
    dm.setup("fit")
    stored_x = _tensors(dm.train_dataset)[0]
    background = (0.0 - dm.mean) / dm.std
    torch.manual_seed(0)
    changed = 0
    for i in range(20):
        x, _, _ = dm.train_dataset[i]
        assert x.shape == (1, 8, 8)
        padded = torch.nn.functional.pad(stored_x[i], (1, 1, 1, 1), value=background)
        shifts = [padded[:, r : r + 8, c : c + 8] for r in range(3) for c in range(3)]
        assert any(torch.equal(x, s) for s in shifts)
        changed += not torch.equal(x, stored_x[i])
    assert changed > 0
    assert torch.equal(dm.val_dataset[0][0], _tensors(dm.val_dataset)[0][0])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.2}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -2}, "num_workers"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        DigitsDataModule(**kwargs)


def test_digits_builds_from_lightning_cli_yaml(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-skd"])
    config = tmp_path / "config.yaml"
    config.write_text(
        "seed_everything: 0\n"  # explicit: LightningCLI would otherwise seed from the environment or warn
        "model:\n  class_path: pytorch_lightning.demos.boring_classes.BoringModel\n"
        "data:\n  class_path: lightning_skd.data.DigitsDataModule\n"
        "  init_args:\n    batch_size: 16\n    val_fraction: 0.1\n    augment: true\n    seed: 3\n"
        f"trainer:\n  logger: false\n  enable_checkpointing: false\n  default_root_dir: {tmp_path}\n"
    )
    cli = SelfKDCLI(args=["--config", str(config)], run=False)
    dm = cli.datamodule
    assert isinstance(dm, DigitsDataModule)
    assert (dm.batch_size, dm.val_fraction, dm.augment, dm.seed) == (16, 0.1, True, 3)
    assert dm.hparams["val_fraction"] == 0.1


class _Probe(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)
        self.seen = []

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        self.seen.append(idx)
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_digits_trains_one_epoch_with_lightning(tmp_path, trainer_factory):
    dm = DigitsDataModule(batch_size=256, seed=0)
    model = _Probe()
    trainer = trainer_factory(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert torch.equal(torch.cat(model.seen).sort().values, torch.arange(1079))


def test_digits_loader_works_with_worker_processes():
    dm = DigitsDataModule(augment=True, batch_size=500, num_workers=1, seed=0)
    dm.setup("fit")
    indices = torch.cat([idx for _, _, idx in dm.train_dataloader()])
    assert torch.equal(indices.sort().values, torch.arange(1079))
