"""SelfKDCallback(mode="cache") under Lightning's FSDPStrategy on 2 CPU processes (gloo): the shipped ImageClassifier
(small_cnn) on the digits, 3 epochs, a checkpoint of epoch 2 resumed for epoch 3. See ``fsdp_self_kd_script.py`` for
the two CPU refusals of Lightning 2.6 that the script's ``FSDPStrategy`` subclass works around. Snapshot mode is also
tried there and under ``ModelParallelStrategy`` (FSDP2), which setup must refuse.

1079 training samples on 2 ranks: the DistributedSampler repeats one, whose second visit may find its row already
rewritten in the same epoch (then it trains on its hard label), so coverage is 1079/1080 or 1.
"""

import math
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.multiprocess import run_command

SCRIPT = Path(__file__).with_name("fsdp_self_kd_script.py")
NUM_TRAIN = 1079
EPOCHS = 3


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    """The script's runs (full, resumed, snapshot), loaded per rank."""
    out = tmp_path_factory.mktemp("fsdp")
    run_command([sys.executable, str(SCRIPT), "--out", str(out)], out, timeout=240)  # every rank's stack on a hang
    return {
        name: [torch.load(out / f"{name}_rank{rank}.pt", weights_only=False) for rank in range(2)]
        for name in ("full", "resumed", "snapshot", "snapshot_model_parallel")
    }


def test_fsdp_cache_mode_teaches_every_sample_on_every_rank(fsdp_runs):
    full = fsdp_runs["full"]
    for rank, record in enumerate(full):
        assert "error" not in record, record.get("error")
        assert record["local_numel"] * 2 == record["total_numel"], rank  # FSDP really shards the parameters
        epochs = record["epochs"]
        assert [e["epoch"] for e in epochs] == list(range(EPOCHS))
        assert epochs[0]["skd/teacher_coverage"] == 0.0  # epoch 1 trains on hard labels
        for e in epochs[1:]:
            assert e["skd/teacher_coverage"] >= 1 - 1 / (NUM_TRAIN + 1), (rank, e)
            assert 0.0 < e["skd/teacher_acc"] <= 1.0
        assert [e["skd/alpha_scheduled"] for e in epochs] == pytest.approx(
            [0.8 * t / EPOCHS for t in range(1, EPOCHS + 1)]
        )
        for e in epochs:
            assert math.isfinite(e["train/loss"]), (rank, e)
            # this rank's table holds every training sample's prediction of this epoch, whichever rank made it
            assert e["values"].shape == (NUM_TRAIN, 10)
            assert (e["stamps"] == e["epoch"]).all(), (rank, e["epoch"])
            torch.testing.assert_close(e["values"].sum(-1), torch.ones(NUM_TRAIN))
    for e0, e1 in zip(full[0]["epochs"], full[1]["epochs"], strict=True):
        torch.testing.assert_close(e0["values"], e1["values"], rtol=0, atol=0)


def test_fsdp_cache_mode_checkpoint_resumes_exactly(fsdp_runs):
    """Epoch 3 resumed from the epoch-2 checkpoint (written by rank 0, read by both) equals the uninterrupted one."""
    full, resumed = fsdp_runs["full"], fsdp_runs["resumed"]
    epoch_two = full[0]["epochs"][1]
    for rank, record in enumerate(resumed):
        assert "error" not in record, record.get("error")
        values, stamps = record["restored"]  # the table every rank restored from the checkpoint
        torch.testing.assert_close(values, epoch_two["values"], rtol=0, atol=0)
        assert (stamps == 1).all()
        (epoch_three,) = record["epochs"]
        reference = full[rank]["epochs"][2]
        assert epoch_three["epoch"] == 2
        for key in ("train/loss", "skd/alpha", "skd/teacher_coverage", "skd/teacher_acc"):
            assert epoch_three[key] == reference[key], (rank, key)
        torch.testing.assert_close(epoch_three["values"], reference["values"], rtol=0, atol=0)


def _assert_refused_in_setup(records: list[dict], strategy: str) -> None:
    for record in records:
        assert record.get("error", "").startswith(
            f"ValueError: SelfKDCallback(mode='snapshot') copies the whole model and cannot work with the sharded "
            f"{strategy}; use mode='cache'"
        ), record.get("error")
        assert record["epochs"] == []  # refused in setup, before training


def test_model_parallel_snapshot_mode_refused_with_clear_error(fsdp_runs):
    _assert_refused_in_setup(fsdp_runs["snapshot_model_parallel"], "ModelParallelStrategy")


def test_fsdp_snapshot_mode_refused_with_clear_error(fsdp_runs):
    _assert_refused_in_setup(fsdp_runs["snapshot"], "CPUFSDPStrategy")
