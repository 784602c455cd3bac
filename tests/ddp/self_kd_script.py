"""Runs SelfKDCallback under Lightning's own DDP (2 CPU processes, gloo) and records every soft target per rank.

The model's logits are a known function f(index, epoch) of the sample index and the epoch, so the test can compute
the exact soft target of every sample on every rank. With ``--tokens`` the model is a sequence model: sample ``i`` has
``token_lengths(i)`` target tokens (padded to ``MAX_TOKENS`` with -100) and logits f(index, position, epoch) of shape
(B, T, C), so every token's soft target is known too.

One launch fits each configuration named on the command line in turn, in the same two processes (each with its own
Trainer and callback, writing to ``DIR/<name>``): starting the processes costs far more than these tiny fits. Usage
(Lightning re-launches this script for rank 1)::

    python self_kd_script.py --out DIR [--num-samples 13] [--epochs 4] NAME=ARGS [NAME=ARGS ...]

where ``ARGS`` are a configuration's options separated by spaces, e.g. ``"cache-top3=--mode cache --cache-topk 3"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_skd import SelfKDCallback, self_kd_loss

NUM_CLASSES = 5
MAX_TOKENS = 4


def known_logits(index: torch.Tensor, epoch: float) -> torch.Tensor:
    """f(index, epoch): (B,) -> (B, C)."""
    classes = torch.arange(NUM_CLASSES, dtype=torch.float32)
    return 2.0 * torch.sin(0.7 * index.float()[:, None] * (classes + 1) + 1.3 * epoch)


def token_lengths(index: torch.Tensor) -> torch.Tensor:
    """Target tokens of each sample, 1..MAX_TOKENS: (B,) -> (B,)."""
    return 1 + (7 * index) % MAX_TOKENS


def token_targets(index: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, MAX_TOKENS) token ids, -100 after each sample's length."""
    positions = torch.arange(MAX_TOKENS)
    target = (index[:, None] + positions) % NUM_CLASSES
    return target.masked_fill(positions >= token_lengths(index)[:, None], -100)


def known_token_logits(index: torch.Tensor, epoch: float) -> torch.Tensor:
    """f(index, position, epoch): (B,) -> (B, MAX_TOKENS, C)."""
    classes = torch.arange(NUM_CLASSES, dtype=torch.float32)
    positions = torch.arange(MAX_TOKENS, dtype=torch.float32)[:, None]
    return 2.0 * torch.sin(0.7 * index.float()[:, None, None] * (classes + 1) + 0.4 * positions + 1.3 * epoch)


class TokenDataset(Dataset):
    """Items ``(index as input, (T,) targets, index)``; ``target_lengths`` sizes the callback's token cache."""

    def __init__(self, num_samples: int) -> None:
        self.index = torch.arange(num_samples)
        self.targets = token_targets(self.index)
        self.target_lengths = token_lengths(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.index[i].float(), self.targets[i], self.index[i]


class IndexEpochModel(pl.LightningModule):
    def __init__(self, tokens: bool = False) -> None:
        super().__init__()
        self.register_buffer("epoch", torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(NUM_CLASSES))  # lr 0: stays zero, but gradients flow through DDP
        self.records: list[tuple[int, int, torch.Tensor]] = []
        self.tokens = tokens

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        logits = known_token_logits if self.tokens else known_logits
        return logits(index, float(self.epoch)) + self.bias

    def on_train_epoch_start(self) -> None:
        self.epoch.fill_(self.current_epoch)

    def training_step(self, batch, batch_idx):
        inputs, target, index = batch
        loss = self_kd_loss(self, self(inputs), target)
        callback = next(cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback))
        for i, soft in zip(index.tolist(), callback.soft_targets(target), strict=True):
            self.records.append((self.current_epoch, i, soft.clone()))
        return loss

    def on_train_end(self) -> None:
        out = Path(self.trainer.default_root_dir)
        torch.save(self.records, out / f"records_rank{self.global_rank}.pt")
        callback = next(cb for cb in self.trainer.callbacks if isinstance(cb, SelfKDCallback))
        torch.save(callback.state_dict(), out / f"callback_state_rank{self.global_rank}.pt")  # what a checkpoint holds

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(args: argparse.Namespace, out: Path) -> None:
    """One configuration: a fresh Trainer, callback and model; records and callback state under ``out``."""
    pl.seed_everything(0)
    index = torch.arange(args.num_samples)
    dataset = TensorDataset(index.float(), index % NUM_CLASSES, index)
    if args.tokens:
        dataset = TokenDataset(args.num_samples)
    loader = DataLoader(dataset, batch_size=3, shuffle=True)
    kwargs = {"cache_dtype": args.cache_dtype, "cache_topk": args.cache_topk} if args.mode == "cache" else {}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=args.epochs,
        callbacks=[SelfKDCallback(mode=args.mode, alpha_T=0.8, **kwargs)],
        default_root_dir=out,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(IndexEpochModel(tokens=args.tokens), loader)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num-samples", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("runs", nargs="+", metavar="NAME=ARGS")
    options = parser.parse_args()

    run_parser = argparse.ArgumentParser()
    run_parser.add_argument("--mode", choices=["cache", "snapshot"], required=True)
    run_parser.add_argument("--cache-dtype", default="float32")
    run_parser.add_argument("--cache-topk", type=int, default=None)
    run_parser.add_argument("--tokens", action="store_true")
    for run in options.runs:
        name, _, run_args = run.partition("=")
        args = run_parser.parse_args(run_args.split(), namespace=argparse.Namespace(**vars(options)))
        out = options.out / name
        out.mkdir(parents=True, exist_ok=True)
        fit(args, out)


if __name__ == "__main__":
    main()
