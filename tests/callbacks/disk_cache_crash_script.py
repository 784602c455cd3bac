"""Fills a MemmapPredictionTable for epoch 0, then is killed (SIGKILL) during a write or the end-of-epoch commit of
epoch 1. Usage: python disk_cache_crash_script.py ROOT CRASH_POINT [CRASH_POINT ...], crash points among
``during_epoch``, ``before_rename``, ``before_latest``.

Each crash point runs in a child process of its own (forked after the imports, which cost far more than the writes),
on the table in ``ROOT/CRASH_POINT``; the script prints ``{crash point: the child's exit code}`` as JSON (-9: killed
by SIGKILL) and exits 0.
"""

import json
import os
import signal
import sys
import traceback

import torch

from lightning_skd.callbacks.memmap_prediction_table import MemmapPredictionTable

NUM_SAMPLES, NUM_CLASSES = 64, 10


def probs_for_epoch(epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(epoch)
    return torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=generator).softmax(-1)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash(folder: str, crash_point: str) -> None:
    """Write epoch 0 and commit it, then die at ``crash_point`` of epoch 1."""
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


def main() -> None:
    root, crash_points = sys.argv[1], sys.argv[2:]
    exit_codes = {}
    for crash_point in crash_points:
        folder = os.path.join(root, crash_point)
        os.makedirs(folder)
        pid = os.fork()
        if pid == 0:  # the child: never returns into this loop
            try:
                crash(folder, crash_point)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)  # not killed at its crash point: the test sees exit code 0
        exit_codes[crash_point] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(json.dumps(exit_codes))


if __name__ == "__main__":
    main()
