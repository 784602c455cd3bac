import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_skd.callbacks.memmap_prediction_table import MemmapPredictionTable
from lightning_skd.callbacks.prediction_table import MemoryPredictionTable

from .disk_cache_crash_script import NUM_CLASSES, NUM_SAMPLES, probs_for_epoch

SCRIPT = Path(__file__).with_name("disk_cache_crash_script.py")


def filled(cache, probs: torch.Tensor, epoch: int):
    cache.begin_epoch(epoch)
    cache.write(torch.arange(len(probs)), cache.compress(probs), epoch)
    cache.end_epoch(epoch)
    return cache


@pytest.mark.parametrize(("dtype", "topk"), [(torch.float32, None), (torch.float16, None), (torch.float32, 3)])
def test_memmap_prediction_table_reads_like_the_in_memory_cache(tmp_path, dtype, topk):
    probs = probs_for_epoch(0)[:, :8].softmax(-1)
    disk = filled(MemmapPredictionTable(tmp_path, NUM_SAMPLES, 8, dtype=dtype, topk=topk), probs, epoch=0)
    memory = filled(MemoryPredictionTable(NUM_SAMPLES, 8, dtype=dtype, topk=topk), probs, epoch=0)
    index = torch.randperm(NUM_SAMPLES, generator=torch.Generator().manual_seed(0))[:20]
    for got, want in zip(disk.read(index, epoch=1), memory.read(index, epoch=1), strict=True):
        assert torch.equal(got, want)


def test_memmap_prediction_table_reads_previous_generation_during_an_epoch(tmp_path):
    cache = filled(MemmapPredictionTable(tmp_path, NUM_SAMPLES, NUM_CLASSES), probs_for_epoch(0), epoch=0)
    cache.begin_epoch(1)
    cache.write(torch.arange(NUM_SAMPLES), cache.compress(probs_for_epoch(1)), epoch=1)
    # a duplicate met later in epoch 1 still gets its epoch-0 teacher
    torch.testing.assert_close(cache.read(torch.tensor([3]), epoch=1)[0], probs_for_epoch(0)[[3]])
    cache.end_epoch(1)
    torch.testing.assert_close(cache.read(torch.tensor([3]), epoch=2)[0], probs_for_epoch(1)[[3]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "gen-000000", "gen-000001"]


def test_memmap_prediction_table_keeps_only_the_newest_generations(tmp_path):
    cache = MemmapPredictionTable(tmp_path, NUM_SAMPLES, NUM_CLASSES, keep_generations=2)
    for epoch in range(4):
        filled(cache, probs_for_epoch(epoch), epoch)
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-000002", "gen-000003"]
    with pytest.raises(FileNotFoundError, match="epoch 1"):
        cache.restore({**cache.state_dict(), "committed_epoch": 1})


CRASH_POINTS = ["during_epoch", "before_rename", "before_latest"]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """One Python for all crash points (the script forks a child per crash point); the root folder, exit codes."""
    root = tmp_path_factory.mktemp("crashed")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, str(SCRIPT), str(root), *CRASH_POINTS]
    result = subprocess.run(command, env=env, timeout=120, stdout=subprocess.PIPE, text=True, check=True)
    return root, json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_memmap_prediction_table_survives_a_process_killed_while_writing(crashed, crash_point):
    root, exit_codes = crashed
    assert exit_codes[crash_point] == -signal.SIGKILL
    folder = root / crash_point

    reopened = MemmapPredictionTable(folder, NUM_SAMPLES, NUM_CLASSES, topk=4)
    assert reopened.committed_epoch == 0  # epoch 1 never became visible
    assert not list(folder.glob("*.partial"))
    expected = MemoryPredictionTable(NUM_SAMPLES, NUM_CLASSES, topk=4)
    expected.write(torch.arange(NUM_SAMPLES), expected.compress(probs_for_epoch(0)), epoch=0)
    for got, want in zip(
        reopened.read(torch.arange(NUM_SAMPLES), 1), expected.read(torch.arange(NUM_SAMPLES), 1), strict=True
    ):
        assert torch.equal(got, want)


def test_memmap_prediction_table_rejects_a_folder_of_another_shape(tmp_path):
    filled(MemmapPredictionTable(tmp_path, NUM_SAMPLES, NUM_CLASSES), probs_for_epoch(0), epoch=0)
    with pytest.raises(ValueError, match="new `cache_dir`"):
        MemmapPredictionTable(tmp_path, NUM_SAMPLES + 1, NUM_CLASSES)
    with pytest.raises(ValueError, match="float16"):
        MemmapPredictionTable(tmp_path / "other", NUM_SAMPLES, NUM_CLASSES, dtype=torch.bfloat16)
