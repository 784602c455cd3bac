import pytest
import torch

from lightning_skd.callbacks.memmap_prediction_table import MemmapPredictionTable
from lightning_skd.callbacks.prediction_table import MemoryPredictionTable
from lightning_skd.callbacks.row_keys import SampleKeys, TokenKeys

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


def token_table(topk: int | None = 4, dtype: torch.dtype = torch.float16) -> MemoryPredictionTable:
    return MemoryPredictionTable(int(LENGTHS.sum()), VOCAB, dtype=dtype, topk=topk)


def test_token_keys_follow_per_sample_offsets():
    layout = TokenKeys(LENGTHS)
    assert (layout.num_samples, layout.num_rows) == (5, 15)
    index = torch.tensor([4, 0, 2, 1])
    mask = padded_mask(index)
    assert torch.equal(layout.keys(index, mask), reference_keys(index, mask))
    # any layout with the right token count works, e.g. left padding
    left = mask.flip(1)
    assert torch.equal(layout.keys(index, left), reference_keys(index, mask))


def test_sample_keys_are_the_indices_of_the_rows_kept():
    layout = SampleKeys(6)
    index = torch.tensor([5, 0, 3])
    assert torch.equal(layout.keys(index, torch.tensor([True, False, True])), torch.tensor([5, 3]))
    with pytest.raises(IndexError, match="training dataset has 6 samples"):
        layout.keys(torch.tensor([6]), torch.tensor([True]))
    with pytest.raises(ValueError, match="one target per sample"):
        layout.keys(index, torch.ones(3, 2, dtype=torch.bool))


@pytest.mark.parametrize("topk", [None, 4])
def test_token_table_returns_what_was_stored_for_each_index_and_position(topk):
    layout, cache = TokenKeys(LENGTHS), token_table(topk=topk)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(int(LENGTHS.sum()), VOCAB, generator=generator) * 3  # one row per token of the corpus
    for index in (torch.tensor([3, 1]), torch.tensor([0, 4, 2])):  # written in two batches
        keys = layout.keys(index, padded_mask(index))
        cache.write(keys, cache.compress_logits(logits[keys]), epoch=0)

    index = torch.tensor([2, 0, 4, 1, 3])
    keys = layout.keys(index, padded_mask(index))
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


def test_token_table_uses_the_smallest_id_type_and_half_values():
    cache = token_table()
    assert cache.values.dtype == torch.float16 and cache.class_ids.dtype == torch.int16
    big = MemoryPredictionTable(int(LENGTHS.sum()), 40_000, dtype=torch.bfloat16, topk=8)
    assert big.class_ids.dtype == torch.int32
    assert cache.nbytes == int(LENGTHS.sum()) * (4 * 2 + 4 * 2 + 4)


def test_token_keys_refuse_a_changed_tokenisation():
    cache = TokenKeys(LENGTHS)
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
        cache.keys(index, torch.ones(2, dtype=torch.bool))


def test_token_table_on_disk_matches_memory(tmp_path):
    memory = token_table(topk=3)
    disk = MemmapPredictionTable(tmp_path, int(LENGTHS.sum()), VOCAB, dtype=torch.float16, topk=3)
    logits = torch.randn(int(LENGTHS.sum()), VOCAB, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([1, 4, 0, 2, 3])
    keys = TokenKeys(LENGTHS).keys(index, padded_mask(index))
    for cache in (memory, disk):
        cache.write(keys, cache.compress_logits(logits[keys]), epoch=0)
        cache.end_epoch(0)
    reopened = MemmapPredictionTable(tmp_path, int(LENGTHS.sum()), VOCAB, dtype=torch.float16, topk=3)
    for cache in (disk, reopened):
        got, want = cache.read_teacher(keys, epoch=1), memory.read_teacher(keys, epoch=1)
        torch.testing.assert_close(got.values, want.values)
        assert torch.equal(got.class_ids, want.class_ids) and torch.equal(got.valid, want.valid)
