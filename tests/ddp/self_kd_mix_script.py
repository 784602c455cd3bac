"""Trains ImageClassifier's own training_step with a batch mixer and SelfKDCallback, and records every soft target.

The "images" are ``(B, 1, 1, 1)`` tensors holding the sample index and the model's logits are a known function
f(index, epoch), so the test can compute every soft target and the exact cache contents. The test mixer draws
``lam`` and the pairing like the real ones (``BatchMix.__call__``) but leaves the images as they are (so the logits
stay known) and mixes by a fixed per-rank pattern, so that under DDP one rank mixes while the other does not, both
do, or neither. Usage (Lightning re-launches this script for rank 1):

    python self_kd_mix_script.py --out DIR --devices 1|2

or, on one device in the caller's process, ``main(["--out", DIR, "--devices", "1"])``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_skd import SelfKDCallback
from lightning_skd.models import ImageClassifier
from lightning_skd.regularizers import BatchMix, MixInfo

NUM_CLASSES = 5


def known_logits(index: Tensor, epoch: float) -> Tensor:
    """f(index, epoch): (B,) -> (B, C)."""
    classes = torch.arange(NUM_CLASSES, dtype=torch.float32)
    return 2.0 * torch.sin(0.7 * index.float()[:, None] * (classes + 1) + 1.3 * epoch)


def mixes(step: int, rank: int) -> bool:
    """Rank 0 mixes 2 batches of 3, rank 1 every other batch: all four combinations occur."""
    return step % 3 != 0 if rank == 0 else step % 2 == 0


class PatternMix(BatchMix):
    """Mixes by :func:`mixes`; draws lam and perm from torch's generator; keeps the images (known logits)."""

    def __init__(self) -> None:
        super().__init__(alpha=1.0, p=1.0)
        self.step, self.rank, self.last = 0, 0, None

    def __call__(self, images: Tensor) -> tuple[Tensor, MixInfo | None]:
        self.step += 1
        self.last = super().__call__(images)[1] if mixes(self.step, self.rank) else None
        return images, self.last

    def mix_images(self, images: Tensor, perm: Tensor, lam: float) -> tuple[Tensor, MixInfo]:
        return images, MixInfo(perm=perm, lam=lam)


class KnownLogitsClassifier(ImageClassifier):
    def __init__(self) -> None:
        super().__init__(
            backbone="lightning_skd:small_cnn",
            num_classes=NUM_CLASSES,
            in_channels=1,
            batch_mix=PatternMix(),
            log_figures=False,
        )
        self.net.requires_grad_(False)  # unused: the logits are known
        self.bias = torch.nn.Parameter(torch.zeros(NUM_CLASSES))  # lr 0: stays zero; gradients flow through DDP
        self.records: list[dict] = []

    def forward(self, images: Tensor) -> Tensor:  # (B, 1, 1, 1) holding the index -> (B, C)
        return known_logits(images.flatten(), float(self.current_epoch)) + self.bias

    def on_train_start(self) -> None:
        self.batch_mix.rank = self.global_rank

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        _, target, index = batch
        mix = self.batch_mix.last
        callback = next(cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback))
        self.records.append(
            {
                "epoch": self.current_epoch,
                "batch_idx": batch_idx,
                "index": index.clone(),
                "target": target.clone(),
                "perm": None if mix is None else mix.perm.clone(),
                "lam": None if mix is None else mix.lam,
                "soft": callback.soft_targets(target, mix=mix).clone(),
                "loss": loss.detach().clone(),
            }
        )
        return loss

    def on_train_end(self) -> None:
        out = Path(self.trainer.default_root_dir)
        torch.save(self.records, out / f"records_rank{self.global_rank}.pt")
        callback = next(cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback))
        torch.save(callback.state_dict(), out / f"callback_state_rank{self.global_rank}.pt")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def main(argv: list[str] | None = None) -> None:
    """Fit as the command line says; ``argv`` instead of ``sys.argv[1:]`` runs it in the caller's process."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--num-samples", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)

    pl.seed_everything(0)
    index = torch.arange(args.num_samples)
    dataset = TensorDataset(index.float().reshape(-1, 1, 1, 1), index % NUM_CLASSES, index)
    loader = DataLoader(dataset, batch_size=3, shuffle=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_epochs=args.epochs,
        callbacks=[SelfKDCallback(mode="cache", alpha_T=0.8)],
        default_root_dir=args.out,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(KnownLogitsClassifier(), loader)


if __name__ == "__main__":
    main()
