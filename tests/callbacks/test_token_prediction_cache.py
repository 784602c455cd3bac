import pytest
import torch

from lightning_skd.callbacks import DiskPredictionCache, PredictionCache, TokenPredictionCache

LENGTHS = torch.tensor([3, 1, 4, 2, 5])
VOCAB = 11


def padded_mask(index: torch.Tensor, width: int = 6) -> torch.Tensor:
    return torch.arange(width)[None, :] < LENGTHS[index][:, None]  # (B, T) right padding


def reference_keys(index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row of token p of sample i = sum of the lengths of samples before i, plus p (written as plain loops)."""
    keys = []
    for i, row in zip(index.tolist(), mask, strict=True):
        offset = sum(LENGTHS[:i].tolist())
        keys += [offset + p for p, real in enumerate(row.tolist()) if real]
    return torch.tensor(keys)


def token_cache(topk: int | None = 4, dtype: torch.dtype = torch.float16) -> TokenPredictionCache:
    return TokenPredictionCache(LENGTHS, PredictionCache(int(LENGTHS.sum()), VOCAB, dtype=dtype, topk=topk))


def test_token_prediction_cache_keys_follow_per_sample_offsets():
    cache = token_cache()
    index = torch.tensor([4, 0, 2, 1])
    mask = padded_mask(index)
    assert torch.equal(cache.keys(index, mask), reference_keys(index, mask))
    # any layout with the right token count works, e.g. left padding
    left = mask.flip(1)
    assert torch.equal(cache.keys(index, left), reference_keys(index, mask))


@pytest.mark.parametrize("topk", [None, 4])
def test_token_prediction_cache_returns_what_was_stored_for_each_index_and_position(topk):
    cache = token_cache(topk=topk)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(int(LENGTHS.sum()), VOCAB, generator=generator) * 3  # one row per token of the corpus
    for index in (torch.tensor([3, 1]), torch.tensor([0, 4, 2])):  # written in two batches
        keys = cache.keys(index, padded_mask(index))
        cache.write(keys, cache.compress_logits(logits[keys]), epoch=0)

    index = torch.tensor([2, 0, 4, 1, 3])
    keys = cache.keys(index, padded_mask(index))
    teacher = cache.read_teacher(keys, epoch=1)
    probs = logits[keys].softmax(-1)
    if topk is None:
        expected = probs.half().float()
        assert teacher.class_ids is None
    else:
        values, ids = probs.topk(topk, dim=-1)
        values = values.half().float()
        expected = torch.zeros_like(probs).scatter(1, ids, values / values.sum(-1, keepdim=True))
        assert torch.equal(teacher.class_ids, ids)
    torch.testing.assert_close(teacher.dense(VOCAB), expected)
    assert teacher.valid.all()
    assert not cache.read_teacher(keys, epoch=0).valid.any()  # written in epoch 0: no teacher within epoch 0


def test_token_prediction_cache_uses_the_smallest_id_type_and_half_values():
    cache = token_cache()
    assert cache.rows.values.dtype == torch.float16 and cache.rows.class_ids.dtype == torch.int16
    big = TokenPredictionCache(LENGTHS, PredictionCache(int(LENGTHS.sum()), 40_000, dtype=torch.bfloat16, topk=8))
    assert big.rows.class_ids.dtype == torch.int32
    assert cache.nbytes == int(LENGTHS.sum()) * (4 * 2 + 4 * 2 + 4) + 2 * len(LENGTHS) * 8


def test_token_prediction_cache_refuses_a_changed_tokenisation():
    cache = token_cache()
    index = torch.tensor([0, 3])
    mask = padded_mask(index)
    mask[1, 2] = True  # sample 3 now has 3 tokens instead of 2
    with pytest.raises(ValueError, match="Training sample 3 has 3 target tokens in this batch but 2"):
        cache.keys(index, mask)
    with pytest.raises(ValueError, match=r"first: sample 1, 1 tokens then, 2 now"):
        cache.check_lengths(torch.tensor([3, 2, 4, 2, 5]))
    with pytest.raises(ValueError, match="training set has 4 samples but the Self-KD token cache was built for 5"):
        cache.check_lengths(LENGTHS[:4])
    with pytest.raises(IndexError, match="index out of range"):
        cache.keys(torch.tensor([5]), torch.ones(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs a \\(B, T\\) target mask"):
        cache.keys(index, None)
    with pytest.raises(ValueError, match="row table has 14 rows but the 5 samples have 15 target tokens"):
        TokenPredictionCache(LENGTHS, PredictionCache(14, VOCAB))


def test_token_prediction_cache_on_disk_matches_memory(tmp_path):
    memory = token_cache(topk=3)
    disk = TokenPredictionCache(
        LENGTHS, DiskPredictionCache(tmp_path, int(LENGTHS.sum()), VOCAB, dtype=torch.float16, topk=3)
    )
    logits = torch.randn(int(LENGTHS.sum()), VOCAB, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([1, 4, 0, 2, 3])
    keys = memory.keys(index, padded_mask(index))
    for cache in (memory, disk):
        cache.begin_epoch(0)
        cache.write(keys, cache.compress_logits(logits[keys]), epoch=0)
        cache.end_epoch(0)
    reopened = TokenPredictionCache(
        LENGTHS, DiskPredictionCache(tmp_path, int(LENGTHS.sum()), VOCAB, dtype=torch.float16, topk=3)
    )
    for cache in (disk, reopened):
        got, want = cache.read_teacher(keys, epoch=1), memory.read_teacher(keys, epoch=1)
        torch.testing.assert_close(got.values, want.values)
        assert torch.equal(got.class_ids, want.class_ids) and torch.equal(got.valid, want.valid)
