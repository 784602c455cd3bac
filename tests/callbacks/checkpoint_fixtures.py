"""Self-KD checkpoints in the format of lightning_skd 0.1.0 (before the teacher-strategy refactor), as test fixtures.

``python -m tests.callbacks.checkpoint_fixtures`` (from the repository root) was run once, at the commit that added
this file, to write ``fixtures/self_kd_v0/<case>.ckpt`` (the checkpoint at the end of epoch 1 of a 4-epoch run) and
``<case>.expected.pt`` (what the uninterrupted run did afterwards: alpha, the soft targets of every sample in epochs
2 and 3, the final weights). Do not regenerate them with newer code: they pin the old format.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lightning_skd import SelfKDCallback, self_kd_loss
from tests.helpers.trainer import quiet_trainer

FIXTURES = Path(__file__).parent / "fixtures" / "self_kd_v0"
NUM_SAMPLES, NUM_CLASSES, MAX_TOKENS = 12, 5, 4
EPOCHS, RESUME_EPOCH = 4, 1
CASES = {  # name -> (SelfKDCallback kwargs, token targets)
    "cache": ({"mode": "cache", "alpha_T": 0.7}, False),
    "cache_topk_fp16": ({"mode": "cache", "alpha_T": 0.7, "cache_topk": 2, "cache_dtype": "float16"}, False),
    "snapshot": ({"mode": "snapshot", "alpha_T": 0.7}, False),
    "token_cache": ({"mode": "cache", "alpha_T": 0.7, "cache_topk": 3, "cache_dtype": "float16"}, True),
}


def loader(tokens: bool) -> DataLoader:
    """Batches ``(index, target, index)``; the order is a function of the epoch (reproducible after resume)."""
    generator = torch.Generator().manual_seed(0)
    if tokens:
        lengths = torch.randint(1, MAX_TOKENS + 1, (NUM_SAMPLES,), generator=generator)
        target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES, MAX_TOKENS), generator=generator)
        target = target.masked_fill(torch.arange(MAX_TOKENS) >= lengths[:, None], -100)
    else:
        target = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=generator)
    dataset = TensorDataset(torch.arange(NUM_SAMPLES), target, torch.arange(NUM_SAMPLES))
    if tokens:
        dataset.target_lengths = (target != -100).sum(dim=1)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
    return DataLoader(dataset, batch_size=4, sampler=sampler)


class Table(pl.LightningModule):
    """Logits are a learnable table row per sample (``(C,)`` or ``(T, C)``); records each epoch's soft targets."""

    def __init__(self, tokens: bool) -> None:
        super().__init__()
        shape = (NUM_SAMPLES, MAX_TOKENS, NUM_CLASSES) if tokens else (NUM_SAMPLES, NUM_CLASSES)
        self.table = nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(1)))
        self.soft_targets: dict[int, dict[int, torch.Tensor]] = {}

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]

    def training_step(self, batch, batch_idx):
        index, target, _ = batch
        loss = self_kd_loss(self, self(index), target)
        callback = next(cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback))
        for i, soft in zip(index.tolist(), callback.soft_targets(target), strict=True):
            self.soft_targets.setdefault(self.current_epoch, {})[i] = soft.clone()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=2.0)


def fit(case: str, root: Path, ckpt_path: str | Path | None = None) -> tuple[Table, SelfKDCallback]:
    """Train ``case`` for :data:`EPOCHS` epochs (from ``ckpt_path`` if given), saving every epoch's checkpoint."""
    kwargs, tokens = CASES[case]
    model, callback = Table(tokens), SelfKDCallback(**kwargs)
    checkpoint = ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = quiet_trainer([callback, checkpoint], max_epochs=EPOCHS, default_root_dir=root, enable_checkpointing=True)
    trainer.fit(model, loader(tokens), ckpt_path=ckpt_path)
    return model, callback


def expected(model: Table, callback: SelfKDCallback) -> dict:
    """What a run resumed after epoch :data:`RESUME_EPOCH` must reproduce."""
    later = range(RESUME_EPOCH + 1, EPOCHS)
    return {
        "alpha": callback.alpha,
        "soft_targets": {epoch: model.soft_targets[epoch] for epoch in later},
        "table": model.table.detach().clone(),
    }


def main() -> None:
    import tempfile

    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        with tempfile.TemporaryDirectory() as root:
            model, callback = fit(case, Path(root))
            (Path(root) / f"epoch={RESUME_EPOCH}.ckpt").rename(FIXTURES / f"{case}.ckpt")
        torch.save(expected(model, callback), FIXTURES / f"{case}.expected.pt")


if __name__ == "__main__":
    main()
