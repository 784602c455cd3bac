import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from lightning_skd.data.token_batching import TokenBatchSampler, make_token_batches


def _lengths(num_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    source = rng.integers(2, 60, size=num_pairs)
    target = np.clip(source + rng.integers(-8, 9, size=num_pairs), 2, None)
    return source, target


def _cost(batch: list[int], source: np.ndarray, target: np.ndarray) -> int:
    return len(batch) * int(max(source[batch].max(), target[batch].max()))


def _epoch(source, target, world_size: int, epoch: int = 0, **kwargs) -> list[list[list[int]]]:
    per_rank = []
    for rank in range(world_size):
        sampler = TokenBatchSampler(source, target, num_replicas=world_size, rank=rank, **kwargs)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(sampler) == len(batches)
        per_rank.append(batches)
    return per_rank


def test_make_token_batches_respects_budget_and_keeps_order():
    source, target = _lengths(500)
    cost = np.maximum(source, target)
    order = np.argsort(cost, kind="stable")
    batches = make_token_batches(order, cost, max_tokens=300, max_sentences=16)
    assert np.array_equal(np.concatenate(batches), order)
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) * cost[batch].max() <= 300
    # greedy: adding the next pair to a batch would have broken a limit
    for batch, following in zip(batches[:-1], batches[1:], strict=True):
        grown = np.append(batch, following[0])
        assert len(grown) > 16 or len(grown) * cost[grown].max() > 300


def test_make_token_batches_gives_an_overlong_pair_its_own_batch():
    batches = make_token_batches(np.arange(4), np.array([3, 3, 50, 3]), max_tokens=10)
    assert [b.tolist() for b in batches] == [[0, 1], [2], [3]]


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("max_tokens", [200, 257, 1000])
def test_token_batch_sampler_every_pair_once_per_epoch_with_equal_counts(world_size, max_tokens):
    source, target = _lengths(701)
    for epoch in range(3):
        per_rank = _epoch(source, target, world_size, epoch, max_tokens=max_tokens, seed=5)
        counts = {len(batches) for batches in per_rank}
        assert len(counts) == 1, f"ranks got different numbers of batches: {[len(b) for b in per_rank]}"
        seen = [i for batches in per_rank for batch in batches for i in batch]
        assert sorted(seen) == list(range(701))
        for batches in per_rank:
            for batch in batches:
                assert _cost(batch, source, target) <= max_tokens


def test_token_batch_sampler_splits_a_batch_when_the_count_is_uneven():
    source = target = np.full(10, 5)
    one_rank = list(TokenBatchSampler(source, target, max_tokens=25, num_replicas=1))  # 2 batches of 5
    assert sorted(len(b) for b in one_rank) == [5, 5]
    per_rank = _epoch(source, target, 3, max_tokens=25)  # 2 batches -> split to 3
    assert [len(b) for b in per_rank] == [1, 1, 1]
    assert sorted(i for batches in per_rank for b in batches for i in b) == list(range(10))


def test_token_batch_sampler_shuffle_is_seeded_and_changes_with_epoch():
    source, target = _lengths(400)
    first = _epoch(source, target, 2, 0, max_tokens=300, seed=1)
    assert _epoch(source, target, 2, 0, max_tokens=300, seed=1) == first
    second = _epoch(source, target, 2, 1, max_tokens=300, seed=1)
    assert second != first
    assert _epoch(source, target, 2, 0, max_tokens=300, seed=2) != first
    assert [len(b) for b in second] == [len(b) for b in first]  # same count every epoch (Lightning reads len once)
    # length-bucketed: padding adds little (random batches of this length spread pad about 40 %)
    cost = np.maximum(source, target)
    padded = sum(_cost(b, source, target) for batches in first for b in batches)
    assert padded <= 1.05 * cost.sum()


def test_token_batch_sampler_evaluation_order_is_deterministic_and_sorted():
    source, target = _lengths(301, seed=3)
    kwargs = dict(max_tokens=400, shuffle=False, even_batches=False)
    per_rank = _epoch(source, target, 2, 0, **kwargs)
    assert per_rank == _epoch(source, target, 2, 7, **kwargs)  # epochs do not change evaluation
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 1
    sampler = TokenBatchSampler(source, target, **kwargs)
    flat = [i for batch in sampler for i in batch]
    cost = np.maximum(source, target)
    assert flat == sorted(range(301), key=lambda i: (cost[i], i))
    assert sorted(i for batches in per_rank for b in batches for i in b) == list(range(301))


def test_token_batch_sampler_evaluation_gives_every_rank_a_batch():
    source = target = np.full(3, 4)
    per_rank = _epoch(source, target, 2, max_tokens=1000, shuffle=False, even_batches=False)
    assert [len(b) for b in per_rank] == [1, 1]


def test_token_batch_sampler_is_a_distributed_sampler():
    # Lightning replaces any sampler that is not a DistributedSampler under DDP (use_distributed_sampler=True).
    assert isinstance(TokenBatchSampler([3, 4], [3, 4], max_tokens=10), DistributedSampler)
    sampler = TokenBatchSampler(torch.tensor([3, 4]), torch.tensor([3, 4]), max_tokens=10)
    sampler.set_epoch(4)
    assert sampler.epoch == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_tokens=10, max_sentences=0), "max_sentences"),
        (dict(max_tokens=10, num_replicas=2, rank=2), "rank"),
        (dict(max_tokens=10, num_replicas=4), "cannot be spread over 4 processes"),
    ],
)
def test_token_batch_sampler_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenBatchSampler([3, 4, 5], [3, 4, 5], **kwargs)


def test_token_batch_sampler_rejects_unequal_length_arrays():
    with pytest.raises(ValueError, match="target_lengths"):
        TokenBatchSampler([3, 4, 5], [3, 4], max_tokens=10)


def test_token_batch_sampler_explains_when_counts_cannot_be_evened():
    sampler = TokenBatchSampler([9, 9, 9], [9, 9, 9], max_tokens=5, num_replicas=2)  # 3 single-pair batches
    with pytest.raises(ValueError, match="same number of batches"):
        list(sampler)
