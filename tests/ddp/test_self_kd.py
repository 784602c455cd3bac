"""SelfKDCallback under Lightning's DDP: 2 CPU processes with gloo, shuffling on, sampler padding on."""

import collections
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.multiprocess import run_command

from .self_kd_script import NUM_CLASSES, known_logits, known_token_logits, token_lengths, token_targets

SCRIPT = Path(__file__).with_name("self_kd_script.py")
NUM_SAMPLES = 13  # odd: DistributedSampler pads one rank with a repeated index
EPOCHS = 4


# Every configuration the tests below read, by name: fitted one after the other in a single 2-process launch.
RUNS = {
    "cache": ["--mode", "cache"],
    "cache-top3-float16": ["--mode", "cache", "--cache-dtype", "float16", "--cache-topk", "3"],  # bytes payloads
    "snapshot": ["--mode", "snapshot"],
    "token-cache-top2-float16": ["--mode", "cache", "--tokens", "--cache-dtype", "float16", "--cache-topk", "2"],
    "token-snapshot": ["--mode", "snapshot", "--tokens"],
}


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> dict[str, Path]:
    """Fits every configuration of ``RUNS`` once per module, in one launch; returns each one's output folder."""
    out = tmp_path_factory.mktemp("ddp")
    runs = [f"{name}={' '.join(args)}" for name, args in RUNS.items()]
    args = ["--out", str(out), "--num-samples", str(NUM_SAMPLES), "--epochs", str(EPOCHS), *runs]
    run_command([sys.executable, str(SCRIPT), *args], out, timeout=300)  # fails with every rank's stack on a hang
    return {name: out / name for name in RUNS}


def load_records(out: Path) -> list[list[tuple[int, int, torch.Tensor]]]:
    return [torch.load(out / f"records_rank{rank}.pt") for rank in range(2)]


def expected_soft_target(index: int, epoch: int, topk: int | None = None) -> torch.Tensor:
    alpha = 0.8 * (epoch + 1) / EPOCHS
    teacher = known_logits(torch.tensor([index]), epoch - 1).softmax(-1)[0]
    if topk is not None:  # stored as the float16 top-k, renormalised over those k classes
        values, ids = teacher.topk(topk)
        values = values.half().float()
        teacher = torch.zeros_like(teacher).scatter(0, ids, values / values.sum())
    return (1 - alpha) * F.one_hot(torch.tensor(index % NUM_CLASSES), NUM_CLASSES).float() + alpha * teacher


@pytest.mark.parametrize(
    ("run", "topk"),
    [("cache", None), ("cache-top3-float16", 3), ("snapshot", None)],
    ids=["cache", "cache-top3-float16", "snapshot"],
)
def test_self_kd_callback_ddp_soft_targets_exact_on_every_rank(run, topk, ddp_runs):
    mode = RUNS[run][1]
    per_rank = load_records(ddp_runs[run])
    hard = lambda i: F.one_hot(torch.tensor(i % NUM_CLASSES), NUM_CLASSES).float()  # noqa: E731
    expected = lambda i, e: expected_soft_target(i, e, topk)  # noqa: E731

    # shuffling really moves samples between ranks, so the teacher of a sample often comes from the other rank
    seen_on = [{(e, i): rank for e, i, _ in records} for rank, records in enumerate(per_rank)]
    moved = sum(1 for (e, i) in seen_on[0] if e > 0 and (e - 1, i) in seen_on[1] and (e - 1, i) not in seen_on[0])
    assert moved > 0

    occurrences = collections.Counter((e, i) for records in per_rank for e, i, _ in records)
    for epoch in range(EPOCHS):
        assert {i for (e, i) in occurrences if e == epoch} == set(range(NUM_SAMPLES))
    assert any(count == 2 for count in occurrences.values())  # the padded duplicate is exercised

    for records in per_rank:
        for epoch, index, soft in records:
            if epoch == 0:
                torch.testing.assert_close(soft, hard(index))
            elif occurrences[(epoch, index)] == 1 or mode == "snapshot":
                torch.testing.assert_close(soft, expected(index, epoch))
            else:  # a padded duplicate: its teacher from epoch t-1, or the hard label once the row was rewritten
                assert torch.allclose(soft, expected(index, epoch)) or torch.allclose(soft, hard(index))


def test_self_kd_callback_ddp_rank_zero_state_is_complete(ddp_runs):
    """Only rank 0 writes checkpoints: its cache must hold every sample's latest prediction, like every rank's."""
    out = ddp_runs["cache"]
    states = [torch.load(out / f"callback_state_rank{rank}.pt") for rank in range(2)]
    cache = states[0]["teacher"]["table"]
    assert cache["num_rows"] == NUM_SAMPLES
    assert (cache["stamps"] == EPOCHS - 1).all()  # every row written in the last epoch, whichever rank saw it
    expected = known_logits(torch.arange(NUM_SAMPLES), EPOCHS - 1).softmax(-1)
    torch.testing.assert_close(cache["values"], expected)
    torch.testing.assert_close(states[1]["teacher"]["table"]["values"], cache["values"])
    assert states[0]["alpha"] == states[1]["alpha"] == 0.8


def expected_token_soft_targets(index: int, epoch: int, topk: int | None) -> torch.Tensor:
    """(T, C): Eq. 6 per non-padding token, with the token's own previous-epoch prediction; zero rows at padding."""
    alpha = 0.8 * (epoch + 1) / EPOCHS
    target = token_targets(torch.tensor([index]))[0]  # (T,)
    real = target != -100
    teacher = known_token_logits(torch.tensor([index]), epoch - 1)[0].softmax(-1)  # (T, C)
    if topk is not None:
        values, ids = teacher.topk(topk, dim=-1)
        values = values.half().float()
        teacher = torch.zeros_like(teacher).scatter(1, ids, values / values.sum(-1, keepdim=True))
    onehot = F.one_hot(target.clamp_min(0), NUM_CLASSES).float()
    return ((1 - alpha) * onehot + alpha * teacher) * real[:, None]


@pytest.mark.parametrize(
    ("run", "topk"),
    [("token-cache-top2-float16", 2), ("token-snapshot", None)],
    ids=["token-cache-top2-float16", "token-snapshot"],
)
def test_self_kd_callback_ddp_token_soft_targets_exact_on_every_rank(run, topk, ddp_runs):
    """Every (sample, position) reads its own previous-epoch prediction, whichever rank made it; padding is zero."""
    mode = RUNS[run][1]
    per_rank = load_records(ddp_runs[run])
    seen_on = [{(e, i) for e, i, _ in records} for records in per_rank]
    assert any((e - 1, i) in seen_on[1] and (e - 1, i) not in seen_on[0] for (e, i) in seen_on[0] if e > 0)
    occurrences = collections.Counter((e, i) for records in per_rank for e, i, _ in records)
    for epoch in range(EPOCHS):
        assert {i for (e, i) in occurrences if e == epoch} == set(range(NUM_SAMPLES))
    for records in per_rank:
        for epoch, index, soft in records:
            target = token_targets(torch.tensor([index]))[0]
            hard = F.one_hot(target.clamp_min(0), NUM_CLASSES).float() * (target != -100)[:, None]
            if epoch == 0:
                torch.testing.assert_close(soft, hard)
            elif occurrences[(epoch, index)] == 1 or mode == "snapshot":
                torch.testing.assert_close(soft, expected_token_soft_targets(index, epoch, topk))
            else:  # the sampler's padded duplicate
                assert torch.allclose(soft, expected_token_soft_targets(index, epoch, topk)) or torch.equal(soft, hard)


def test_self_kd_callback_ddp_token_cache_state_is_complete(ddp_runs):
    """Rank 0's token table (what its checkpoint holds) has every token's last-epoch prediction at its flat row."""
    out = ddp_runs["token-cache-top2-float16"]
    states = [torch.load(out / f"callback_state_rank{rank}.pt") for rank in range(2)]
    layout = states[0]["teacher"]["layout"]
    lengths = token_lengths(torch.arange(NUM_SAMPLES))
    assert layout["layout"] == "token" and torch.equal(layout["lengths"], lengths)
    rows = states[0]["teacher"]["table"]
    assert rows["num_rows"] == int(lengths.sum()) and (rows["stamps"] == EPOCHS - 1).all()
    logits = known_token_logits(torch.arange(NUM_SAMPLES), EPOCHS - 1)  # (N, T, C)
    real = token_targets(torch.arange(NUM_SAMPLES)) != -100
    values, ids = logits[real].softmax(-1).topk(2, dim=-1)  # rows in (sample, position) order
    torch.testing.assert_close(rows["values"].float(), values.half().float())
    assert torch.equal(rows["class_ids"].long(), ids)
    assert rows["class_ids"].dtype == torch.int16 and rows["values"].dtype == torch.float16
    torch.testing.assert_close(states[1]["teacher"]["table"]["values"], rows["values"])
