"""CutMix / Mixup with Self-KD: mixed targets mix the Self-KD targets of the same pairs; mixed batches write no cache.

Runs ImageClassifier.training_step (the shipped path) with a model whose logits are known, single-process and under
DDP (2 CPU processes, gloo, shuffling and sampler padding on), and recomputes every soft target from the documented
formula with a simulated cache: the teacher of sample i at epoch t is f(i, e) for the last epoch e < t in which i was
in an *un-mixed* batch (on any rank), or none (hard label) if there is no such epoch or i's row was already written
in epoch t; target = lam * s_i + (1 - lam) * s_perm[i] for mixed batches.
"""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.multiprocess import run_command

from . import self_kd_mix_script
from .self_kd_mix_script import NUM_CLASSES, known_logits

SCRIPT = Path(__file__).with_name("self_kd_mix_script.py")
EPOCHS = 4
NEVER = -1


def soft_target(index: int, epoch: int, written: dict[int, int]) -> torch.Tensor:
    alpha = 0.8 * (epoch + 1) / EPOCHS
    onehot = F.one_hot(torch.tensor(index % NUM_CLASSES), NUM_CLASSES).float()
    teacher_epoch = written.get(index, NEVER)
    if teacher_epoch == NEVER or teacher_epoch >= epoch:
        return onehot
    teacher = known_logits(torch.tensor([index]), teacher_epoch).softmax(-1)[0]
    return (1 - alpha) * onehot + alpha * teacher


def check_against_simulated_cache(records_per_rank: list[list[dict]]) -> dict[str, int]:
    """Walk the steps in order (ranks in lockstep), check each record, then apply the un-mixed batches' writes."""
    written: dict[int, int] = {}  # index -> epoch of its cached prediction
    counts = {"mixed": 0, "unmixed": 0, "with_teacher": 0}
    steps = max(len(r) for r in records_per_rank)
    for step in range(steps):
        records = [r[step] for r in records_per_rank if step < len(r)]
        epochs = {rec["epoch"] for rec in records}
        assert len(epochs) == 1
        for rec in records:
            epoch, index = rec["epoch"], rec["index"].tolist()
            own = torch.stack([soft_target(i, epoch, written) for i in index])  # (B, C)
            counts["with_teacher"] += sum(epoch > written.get(i, epoch) for i in index)
            if rec["perm"] is None:
                expected = own
                counts["unmixed"] += 1
            else:
                expected = rec["lam"] * own + (1 - rec["lam"]) * own[rec["perm"]]
                counts["mixed"] += 1
            torch.testing.assert_close(rec["soft"], expected, atol=1e-6, rtol=0)
            log_probs = F.log_softmax(known_logits(rec["index"], epoch), dim=-1)
            torch.testing.assert_close(rec["loss"], -(expected * log_probs).sum(-1).mean(), atol=1e-5, rtol=0)
        for rec in records:  # writes after the step, un-mixed batches only; first write of an epoch wins
            if rec["perm"] is None:
                for i in rec["index"].tolist():
                    if written.get(i) != rec["epoch"]:
                        written[i] = rec["epoch"]
    return counts, written


def check_cache_state(state: dict, written: dict[int, int], num_samples: int = 13) -> None:
    stamps = state["teacher"]["table"]["stamps"]
    for i in range(num_samples):
        if i not in written:  # never in an un-mixed batch: never written
            assert int(stamps[i]) < 0, i
        else:
            assert int(stamps[i]) == written[i], i
            expected = known_logits(torch.tensor([i]), written[i]).softmax(-1)[0]
            torch.testing.assert_close(state["teacher"]["table"]["values"][i].float(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("devices", [1, 2], ids=["single", "ddp2"])
def test_self_kd_mix_targets_follow_formula_and_cache_written_only_unmixed(devices, tmp_path, one_thread):
    args = ["--out", str(tmp_path), "--devices", str(devices), "--epochs", str(EPOCHS)]
    if devices == 1:  # in this process: a second Python would spend seconds importing torch and Lightning
        self_kd_mix_script.main(args)
    else:
        run_command([sys.executable, str(SCRIPT), *args], cwd=tmp_path, timeout=240)
    records = [torch.load(tmp_path / f"records_rank{rank}.pt") for rank in range(devices)]
    counts, written = check_against_simulated_cache(records)
    assert counts["mixed"] > 0 and counts["unmixed"] > 0 and counts["with_teacher"] > 0
    state = torch.load(tmp_path / "callback_state_rank0.pt")
    check_cache_state(state, written)
