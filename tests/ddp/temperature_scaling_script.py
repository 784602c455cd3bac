"""Tests a digits ImageClassifier checkpoint with TemperatureScaling, under Lightning's DDP or in one process.

Each rank saves the fitted ``T`` (the exact float) and the metrics ``trainer.test`` returned to ``OUT/rank<r>.pt``.
Usage (Lightning re-launches this script for rank 1)::

    python temperature_scaling_script.py --checkpoint CKPT --out DIR [--devices 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytorch_lightning as pl
import torch

from lightning_skd.callbacks import TemperatureScaling
from lightning_skd.data import DigitsDataModule
from lightning_skd.models import ImageClassifier


def run(checkpoint: Path, out: Path, devices: int) -> dict:
    """``trainer.test`` of ``checkpoint`` with a TemperatureScaling callback on ``devices`` CPU processes."""
    torch.set_num_threads(1)
    callback = TemperatureScaling()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    model = ImageClassifier.load_from_checkpoint(checkpoint, log_figures=False)
    (metrics,) = trainer.test(model, datamodule=DigitsDataModule(batch_size=64), verbose=False)
    record = {"temperature": callback.temperature, "metrics": {k: float(v) for k, v in metrics.items()}}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(record, out / f"rank{trainer.global_rank}.pt")
    return record


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=2)
    options = parser.parse_args()
    run(options.checkpoint, options.out, options.devices)
