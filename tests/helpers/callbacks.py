"""Small modules and data whose outputs the tests control exactly."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd import SelfKDCallback, self_kd_loss


def indexed_loader(
    num_samples: int = 12,
    num_features: int = 3,
    num_classes: int = 4,
    batch_size: int = 4,
    shuffle: bool = True,
    seed: int = 0,
) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(num_samples, num_features, generator=generator)
    target = torch.randint(0, num_classes, (num_samples,), generator=generator)
    dataset = TensorDataset(inputs, target, torch.arange(num_samples))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


class RecordingClassifier(pl.LightningModule):
    """A linear classifier that records, per epoch, its logits and the callback's soft targets per sample index."""

    def __init__(self, num_features: int = 3, num_classes: int = 4, lr: float = 0.5) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, num_classes)
        self.lr = lr
        self.logits_by_epoch: dict[int, dict[int, torch.Tensor]] = {}
        self.targets_by_epoch: dict[int, dict[int, torch.Tensor]] = {}
        self.weights_by_epoch: dict[int, dict[str, torch.Tensor]] = {}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs)

    def training_step(self, batch, batch_idx):
        inputs, target, index = batch
        logits = self(inputs)
        loss = self_kd_loss(self, logits, target)
        callback = next((cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback)), None)
        epoch = self.current_epoch
        for i, row in zip(index.tolist(), logits.detach(), strict=True):
            self.logits_by_epoch.setdefault(epoch, {})[i] = row.clone()
        if callback is not None:
            for i, row in zip(index.tolist(), callback.soft_targets(target), strict=True):
                self.targets_by_epoch.setdefault(epoch, {})[i] = row.clone()
        return loss

    def on_train_epoch_end(self) -> None:
        self.weights_by_epoch[self.current_epoch] = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def table_loader(target: torch.Tensor, batch_size: int = 4) -> DataLoader:
    """Batches ``(index, target, index)``: the input of sample ``i`` is ``i`` itself (see :class:`TableClassifier`)."""
    index = torch.arange(len(target))
    return DataLoader(TensorDataset(index, target, index), batch_size=batch_size, shuffle=False)


class TableClassifier(pl.LightningModule):
    """Logits are a learnable table row per sample index, so every prediction is known exactly.

    Records, per epoch, each batch's logits (with their gradient after backward) and loss.
    """

    def __init__(self, logits: torch.Tensor, lr: float = 0.0) -> None:
        super().__init__()
        self.table = nn.Parameter(logits.clone())
        self.lr = lr
        self.steps: list[dict] = []

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]

    def training_target(self, target: torch.Tensor) -> torch.Tensor:
        return target

    def training_step(self, batch, batch_idx):
        index, target, _ = batch
        logits = self(index)
        logits.retain_grad()
        passed = self.training_target(target)
        loss = self_kd_loss(self, logits, passed)
        self.steps.append({"epoch": self.current_epoch, "index": index, "target": passed, "logits": logits})
        self.steps[-1]["loss"] = loss.detach()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)
