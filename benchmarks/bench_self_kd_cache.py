"""Self-KD cache: memory per storage option, and training-step overhead of cache / snapshot mode vs plain CE.

Run: ``.venv/bin/python benchmarks/bench_self_kd_cache.py [--steps 30] [--repeats 3]``

Memory is the bytes of the tensors each cache allocates (the CIFAR-100 shape is allocated for real; the ImageNet
shape is sized on the meta device, where shapes exist without storage). Step time is measured side by side in one
process, the three configurations interleaved ``--repeats`` times, median of the per-step times of the second epoch
(the epoch that reads teachers), batch 128, 100 classes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_skd import SelfKDCallback
from lightning_skd.callbacks import PredictionCache
from lightning_skd.models import ImageClassifier

SHAPES = {"CIFAR-100 (50k x 100)": (50_000, 100), "ImageNet (1.28M x 1000)": (1_281_167, 1000)}
OPTIONS = {
    "dense float32 (PS-KD)": {"dtype": torch.float32},
    "dense float16": {"dtype": torch.float16},
    "dense bfloat16": {"dtype": torch.bfloat16},
    "top-10 float32": {"dtype": torch.float32, "topk": 10},
    "top-10 float16": {"dtype": torch.float16, "topk": 10},
}


def memory_table() -> None:
    print("Cache memory per process (MB = 2^20 bytes); cache_dir= keeps the same bytes on disk, paged in on demand")
    print(f"{'storage':<24}" + "".join(f"{name:>26}" for name in SHAPES))
    for option, kwargs in OPTIONS.items():
        cells = []
        for rows, classes in SHAPES.values():
            device = "cpu" if rows * classes <= 10_000_000 else "meta"
            cells.append(f"{PredictionCache(rows, classes, device=device, **kwargs).nbytes / 2**20:>24.1f}MB")
        print(f"{option:<24}" + "".join(cells))


class PooledImages(Dataset):
    """50,000 indexed samples whose images cycle through a pool of 1,024 random 32x32 images."""

    def __init__(self, num_samples: int = 50_000, num_classes: int = 100) -> None:
        generator = torch.Generator().manual_seed(0)
        self.pool = torch.randn(1024, 3, 32, 32, generator=generator)
        self.target = torch.randint(0, num_classes, (num_samples,), generator=generator)

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, index: int):
        return self.pool[index % len(self.pool)], self.target[index], index


class StepTimer(pl.Callback):
    """Wall time between consecutive training-batch starts of the second epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if trainer.current_epoch == 1 and self._last is not None and batch_idx > 0:
            self.times.append(now - self._last)
        self._last = now


def time_steps(callback: SelfKDCallback | None, steps: int) -> float:
    pl.seed_everything(0)
    model = ImageClassifier("lightning_skd:small_cnn", num_classes=100, in_channels=3, log_figures=False)
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=steps,
        limit_val_batches=0,
        callbacks=[timer] + ([callback] if callback else []),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(PooledImages(), batch_size=128, shuffle=True)
    trainer.fit(model, loader)
    return statistics.median(timer.times)


def overhead_table(steps: int, repeats: int) -> None:
    configs = {
        "plain cross-entropy": lambda: None,
        "cache, dense float32": lambda: SelfKDCallback(mode="cache"),
        "cache, top-10 float16": lambda: SelfKDCallback(mode="cache", cache_dtype="float16", cache_topk=10),
        "snapshot": lambda: SelfKDCallback(mode="snapshot"),
    }
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, make in configs.items():
            samples[name].append(time_steps(make(), steps))
    base = statistics.median(samples["plain cross-entropy"])
    print(f"\nTraining-step time, batch 128 x 3x32x32, 100 classes, SmallCNN on {torch.get_num_threads()} CPU threads")
    print(f"{'configuration':<24}{'ms/step':>10}{'vs plain CE':>14}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<24}{median * 1e3:>10.1f}{median / base:>13.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of every configuration")
    args = parser.parse_args()
    memory_table()
    overhead_table(args.steps, args.repeats)


if __name__ == "__main__":
    main()
