"""Self-KD cache: memory per storage option, and training-step overhead of cache / snapshot mode vs plain CE.

Run: ``.venv/bin/python benchmarks/bench_self_kd_cache.py [--steps 30] [--repeats 3]``

Memory is the bytes of the tensors each cache allocates (the CIFAR-100 shape is allocated for real; the ImageNet
shape is sized on the meta device, where shapes exist without storage). Step overhead is measured in one process:
the time spent inside the callback's hooks during real training steps of the second epoch (the epoch that reads
teachers), plus the fwd+bwd time of the Self-KD loss minus plain cross-entropy, relative to the median plain step;
the end-to-end ratio of separate runs is printed beside it. Batch 128, 100 classes, 50,000 training samples.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lightning_skd import SelfKDCallback
from lightning_skd.callbacks.prediction_table import MemoryPredictionTable
from lightning_skd.functional import self_kd_cross_entropy
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
            cells.append(f"{MemoryPredictionTable(rows, classes, device=device, **kwargs).nbytes / 2**20:>24.1f}MB")
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
    """Wall time between consecutive training-batch starts of the second epoch (device synchronised)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._last: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if trainer.current_epoch == 1 and self._last is not None and batch_idx > 0:
            self.times.append(now - self._last)
        self._last = now


class TimedSelfKDCallback(SelfKDCallback):
    """SelfKDCallback that records the time spent in its per-step hooks during the second epoch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hook_times: list[float] = []
        self._step_time = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        start = time.perf_counter()
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self._step_time = time.perf_counter() - start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        start = time.perf_counter()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.current_epoch == 1:
            self.hook_times.append(self._step_time + time.perf_counter() - start)


def run(callback: SelfKDCallback | None, steps: int) -> float:
    """Median step time (s) of the second epoch."""
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
    trainer.fit(model, DataLoader(PooledImages(), batch_size=128, shuffle=True))
    return statistics.median(timer.times)


def loss_time_difference(repeats: int = 300) -> float:
    """Median fwd+bwd time (s) of the Self-KD cross-entropy minus plain cross-entropy, batch 128 x 100 classes."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(128, 100, generator=generator, requires_grad=True)
    target = torch.randint(0, 100, (128,), generator=generator)
    teacher = torch.randn(128, 100, generator=generator).softmax(-1)
    alpha = torch.full((128,), 0.5)

    def median_time(step) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    skd = median_time(lambda: self_kd_cross_entropy(logits, target, teacher, alpha).backward())
    plain = median_time(lambda: F.cross_entropy(logits, target).backward())
    return skd - plain


def overhead_table(steps: int, repeats: int) -> None:
    configs = {
        "cache, dense float32": {"mode": "cache"},
        "cache, top-10 float16": {"mode": "cache", "cache_dtype": "float16", "cache_topk": 10},
        "snapshot": {"mode": "snapshot"},
    }
    plain_times: list[float] = []
    hooks: dict[str, list[float]] = {name: [] for name in configs}
    paired_ratios: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):  # interleaved, so that drifting machine load hits every configuration alike
        plain = run(None, steps)
        plain_times.append(plain)
        for name, kwargs in configs.items():
            callback = TimedSelfKDCallback(**kwargs)
            paired_ratios[name].append(run(callback, steps) / plain)
            hooks[name].append(statistics.median(callback.hook_times))
    base = statistics.median(plain_times)
    loss_delta = loss_time_difference()
    print(
        f"\nTraining-step overhead, batch 128 x 3x32x32, 100 classes, SmallCNN, {torch.get_num_threads()} CPU threads"
    )
    print(f"plain cross-entropy step: {base * 1e3:.1f} ms (median of {repeats} runs x {steps - 1} steps)")
    print(f"Self-KD loss minus plain CE, fwd+bwd: {loss_delta * 1e6:.0f} us")
    print(f"{'configuration':<24}{'hooks ms/step':>15}{'attributed':>13}{'end-to-end':>13}")
    for name in configs:
        hook_time = statistics.median(hooks[name])
        print(
            f"{name:<24}{hook_time * 1e3:>15.2f}{1 + (hook_time + loss_delta) / base:>12.3f}x"
            f"{statistics.median(paired_ratios[name]):>12.3f}x"
        )
    print(
        "attributed = 1 + (time inside the callback's hooks + loss difference) / plain step time, same process;\n"
        "end-to-end = median over repeats of (step time with the callback / step time of the plain run just\n"
        "before), which on a shared machine varies by about +-15% between runs and cannot resolve a few percent."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of every configuration")
    args = parser.parse_args()
    memory_table()
    overhead_table(args.steps, args.repeats)


if __name__ == "__main__":
    main()
