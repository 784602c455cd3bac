"""Fills a MemmapPredictionTable for epoch 0, then is killed (SIGKILL) during a write or the end-of-epoch commit of
epoch 1. Usage: python disk_cache_crash_script.py CACHE_DIR {during_epoch,before_rename,before_latest}"""

import os
import signal
import sys

import torch

from lightning_skd.callbacks.memmap_prediction_table import MemmapPredictionTable

NUM_SAMPLES, NUM_CLASSES = 64, 10


def probs_for_epoch(epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(epoch)
    return torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=generator).softmax(-1)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    folder, crash_point = sys.argv[1], sys.argv[2]
    cache = MemmapPredictionTable(folder, NUM_SAMPLES, NUM_CLASSES, topk=4)
    for epoch in (0, 1):
        cache.begin_epoch(epoch)
        half = NUM_SAMPLES // 2
        cache.write(torch.arange(half), cache.compress(probs_for_epoch(epoch)[:half]), epoch)
        if epoch == 1 and crash_point == "during_epoch":
            die()
        cache.write(torch.arange(half, NUM_SAMPLES), cache.compress(probs_for_epoch(epoch)[half:]), epoch)
        if epoch == 1 and crash_point == "before_rename":
            os.rename = lambda *args: die()
        if epoch == 1 and crash_point == "before_latest":
            cache._write_latest = lambda epoch: die()
        cache.end_epoch(epoch)


if __name__ == "__main__":
    main()
